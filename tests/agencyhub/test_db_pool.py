"""The database pool's health check (agencyhub.db_pool) and what the API answers when PostgreSQL is unreachable."""

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from agencyhub import db_pool


def _dsn():
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


def _terminate(pid):
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def pool(db):
    pool = ConnectionPool(_dsn(), min_size=1, max_size=1, open=True, check=db_pool.check_unless_recently_used,
                          reset=db_pool.mark_returned)
    yield pool
    pool.close()


def _killed_after_use(pool):
    with pool.connection() as conn:
        pid = conn.info.backend_pid
    _terminate(pid)
    return pid


def test_a_connection_idle_for_a_while_is_probed_and_replaced_when_dead(pool, monkeypatch):
    monkeypatch.setattr(db_pool, "RECENTLY_USED_SECONDS", 0.0)
    dead_pid = _killed_after_use(pool)
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid != dead_pid


def test_a_connection_used_a_moment_ago_is_handed_out_without_a_round_trip(pool, monkeypatch):
    monkeypatch.setattr(db_pool, "RECENTLY_USED_SECONDS", 60.0)
    dead_pid = _killed_after_use(pool)
    with pytest.raises(psycopg.OperationalError):  # not probed: the dead connection is handed out as it is
        with pool.connection() as conn:
            assert conn.info.backend_pid == dead_pid
            conn.execute("SELECT 1")
    with pool.connection() as conn:  # the pool replaced it when it came back broken
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_pool_django_builds_gets_this_check(db):
    from django.db.utils import load_backend

    settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": 0,
                     "OPTIONS": {**connection.settings_dict["OPTIONS"], "pool": db_pool.pool_options(2)}}
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias="pool_check_test")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert wrapper.pool._check is db_pool.check_unless_recently_used
    finally:
        wrapper.close()
        wrapper.close_pool()


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_503_in_the_error_shape_when_the_database_connection_is_lost(tenant_and_key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_and_key[1]}")
    assert client.post("/api/v1/conversations", {}, format="json").status_code == 201
    connection.ensure_connection()
    _terminate(connection.connection.info.backend_pid)
    response = client.post("/api/v1/conversations", {}, format="json")
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response["Retry-After"] == "1"
    connection.close()  # the next request (and the test's teardown) connects afresh
    assert client.post("/api/v1/conversations", {}, format="json").status_code == 201

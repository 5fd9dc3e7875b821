import uuid

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.config_cache import VERSION_KEY
from tenants.models import ApiKey, hash_api_key
from tenants.services import api_key_issue, api_key_revoke


class WhoAmI(APIView):
    def get(self, request):
        return Response({"tenant": request.user.tenant.slug})


# /v1/… runs in a configuration-cache scope (agencyhub.middleware.ConfigScopeMiddleware), as the client API does.
urlpatterns = [path("whoami", WhoAmI.as_view()), path("v1/whoami", WhoAmI.as_view())]
pytestmark = pytest.mark.urls("tests.tenants.test_api_key_auth")


def test_it_resolves_the_tenant_from_a_valid_key(api_client, tenant):
    response = api_client.get("/whoami")
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme"}
    assert ApiKey.objects.get(tenant=tenant).last_used_at is not None


def test_it_stores_only_a_hash_and_a_prefix(tenant_and_key):
    tenant, raw = tenant_and_key
    key = ApiKey.objects.get(tenant=tenant)
    assert key.key_hash == hash_api_key(raw)
    assert raw.startswith(key.prefix) and len(key.prefix) < len(raw) // 2
    stored = [str(v) for v in ApiKey.objects.filter(pk=key.pk).values_list().get()]
    assert raw not in stored


def _assert_401(response, code):
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_it_rejects_a_revoked_key(api_client, tenant):
    api_key_revoke(api_key=ApiKey.objects.get(tenant=tenant))
    _assert_401(api_client.get("/whoami"), "invalid_api_key")


def test_it_rejects_an_unknown_key(client, db):
    _assert_401(client.get("/whoami", HTTP_AUTHORIZATION="Bearer ahk_not-a-real-key"), "invalid_api_key")


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "Bearer a b", "ahk_123", "Bearer "])
def test_it_rejects_a_malformed_header(client, db, header):
    _assert_401(client.get("/whoami", HTTP_AUTHORIZATION=header), "invalid_api_key")


def test_it_asks_for_a_key_when_none_is_sent(client, db):
    response = client.get("/whoami")
    _assert_401(response, "missing_api_key")
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_rejects_keys_of_an_inactive_tenant(api_client, tenant):
    tenant.is_active = False
    tenant.save()
    _assert_401(api_client.get("/whoami"), "invalid_api_key")


def test_a_second_key_works_alongside_the_first(client, tenant):
    issued = api_key_issue(tenant=tenant, name="site")
    assert client.get("/whoami", HTTP_AUTHORIZATION=f"Bearer {issued.raw}").status_code == 200


# --- the per-process cache of keys (tenants.config_cache) -----------------------------------------------------


def test_a_known_key_is_resolved_from_the_cache_without_a_query(api_client, tenant):
    assert api_client.get("/v1/whoami").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert api_client.get("/v1/whoami").json() == {"tenant": "acme"}
    assert queries.captured_queries == []


def test_a_cached_key_revoked_in_this_process_is_refused_at_once(api_client, tenant):
    assert api_client.get("/v1/whoami").status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(tenant=tenant))
    _assert_401(api_client.get("/v1/whoami"), "invalid_api_key")


def test_a_cached_key_of_a_tenant_deactivated_in_this_process_is_refused_at_once(api_client, tenant):
    assert api_client.get("/v1/whoami").status_code == 200
    tenant.is_active = False
    tenant.save()
    _assert_401(api_client.get("/v1/whoami"), "invalid_api_key")


def test_a_key_revoked_by_another_process_is_refused_once_it_publishes(api_client, tenant):
    assert api_client.get("/v1/whoami").status_code == 200
    ApiKey.objects.filter(tenant=tenant).update(revoked_at=timezone.now())  # another process: no signal here
    assert api_client.get("/v1/whoami").status_code == 200  # still cached: nothing was published
    cache.set(VERSION_KEY, uuid.uuid4().hex)  # what that process's commit publishes
    _assert_401(api_client.get("/v1/whoami"), "invalid_api_key")


def test_an_unknown_key_takes_no_cache_entry_and_is_looked_up_each_time(client, db):
    """A client chooses what it sends: caching misses would let a flood of random keys grow the cache without bound."""
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            _assert_401(client.get("/v1/whoami", HTTP_AUTHORIZATION="Bearer ahk_random-key"), "invalid_api_key")
        assert len(queries.captured_queries) == 1

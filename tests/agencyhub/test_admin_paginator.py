"""Large tables: the admin never COUNTs a whole table, and its list pages stay usable with filters."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.admin_paginator import EstimatedCountPaginator
from providers.models import AttemptLog
from tests.agencyhub.admin_fixtures import llm_model, openai  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def attempts(openai):
    model = llm_model(openai, "gpt-cheap")
    AttemptLog.objects.bulk_create([
        AttemptLog(provider_kind="openai", model=model, outcome="ok" if i % 3 else "overloaded", latency_ms=100 * i) for i in range(12)
    ])
    return model


def unbounded_counts(queries) -> list[str]:
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "LIMIT" not in q["sql"].upper()]


def test_it_counts_small_results_exactly(settings, attempts):
    settings.ADMIN_COUNT_CAP = 100
    paginator = EstimatedCountPaginator(AttemptLog.objects.exclude(outcome="ok").order_by("-created_at"), 2)
    assert paginator.count == 4 and paginator.num_pages == 2 and not paginator.is_estimate


def test_it_caps_a_filtered_count_without_counting_every_row(settings, attempts):
    settings.ADMIN_COUNT_CAP = 5
    with CaptureQueriesContext(connection) as queries:
        paginator = EstimatedCountPaginator(AttemptLog.objects.filter(outcome="ok").order_by("-created_at"), 2)
        assert paginator.count == 5 and paginator.is_estimate
    assert unbounded_counts(queries.captured_queries) == []


def test_it_takes_postgresqls_estimate_for_a_whole_table(settings, attempts):
    settings.ADMIN_COUNT_CAP = 5
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE providers_attemptlog")
    with CaptureQueriesContext(connection) as queries:
        assert EstimatedCountPaginator(AttemptLog.objects.order_by("-created_at"), 2).count == 12
    assert unbounded_counts(queries.captured_queries) == []
    assert any("reltuples" in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("url", [
    "/admin/providers/attemptlog/", "/admin/providers/attemptlog/?failed=yes", "/admin/providers/attemptlog/?slow=yes",
    "/admin/providers/attemptlog/?provider_kind=openai", "/admin/billing/usagerecord/?ownership__exact=byok",
    "/admin/conversations/message/?failed=yes&slow=yes", "/admin/conversations/conversation/",
    "/admin/conversations/conversation/?q=not-a-uuid", "/admin/conversations/message/?q=not-a-uuid",
    "/admin/billing/usagerecord/?q=not-a-uuid",
])
def test_the_large_lists_never_count_whole_tables(admin_client, settings, attempts, url):
    settings.ADMIN_COUNT_CAP = 5
    settings.ADMIN_SLOW_CALL_MS = 500
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert unbounded_counts(queries.captured_queries) == []


def test_the_failed_and_slow_filters_pick_their_rows(admin_client, settings, attempts):
    settings.ADMIN_SLOW_CALL_MS = 500
    failed = admin_client.get("/admin/providers/attemptlog/?failed=yes")
    slow_failed = admin_client.get("/admin/providers/attemptlog/?failed=yes&slow=yes")
    assert failed.context["cl"].result_count == 4  # i = 0, 3, 6, 9
    assert slow_failed.context["cl"].result_count == 2  # 600 ms and 900 ms

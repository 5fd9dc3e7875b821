"""Daily token budgets, alerts, rate limits, the usage API and retention, through services and the public API."""

from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.budget import BudgetExceeded, budget_release, budget_reserve, budget_settle, budget_usage
from billing.models import BudgetAlert, UsageRecord
from billing.services import tenant_local_date, tokens_used_today
from conversations.models import Conversation, Message
from conversations.retention import purge_expired_content
from providers.state import shared_state
from routing.models import OverBudget
from tenants.models import ApiKey
from tests.conversations.conftest import post_message


def test_reserve_settle_and_release(tenant):
    tenant.daily_token_budget = 1000
    tenant.save()
    first = budget_reserve(tenant=tenant, tokens=300)
    second = budget_reserve(tenant=tenant, tokens=400)
    assert budget_usage(tenant) == (0, 700)
    budget_settle(reservation=first, tenant=tenant, tokens_used=250)
    assert budget_usage(tenant) == (250, 400)
    budget_release(reservation=second)
    assert budget_usage(tenant) == (250, 0)
    with pytest.raises(BudgetExceeded) as exceeded:
        budget_reserve(tenant=tenant, tokens=800)
    assert 0 < exceeded.value.retry_after <= 24 * 3600
    assert budget_usage(tenant) == (250, 0)  # a refused reservation leaves nothing behind
    # Room is left, just not for this call: the message says so (a smaller max_tokens would pass now).
    assert "may use up to 800 tokens" in str(exceeded.value) and "more than the 750 left" in str(exceeded.value)
    budget_settle(reservation=budget_reserve(tenant=tenant, tokens=750), tenant=tenant, tokens_used=750)
    with pytest.raises(BudgetExceeded, match=r"daily token budget of 1000 reached \(1000 used or reserved\)"):
        budget_reserve(tenant=tenant, tokens=1)


def test_a_call_reserved_before_midnight_and_settled_after_counts_on_the_day_of_its_ledger_row(tenant, monkeypatch):
    from django.utils import timezone

    from billing.budget import budget_day

    tenant.daily_token_budget = 1000
    tenant.save()
    shift = [datetime(2026, 11, 24, 23, 59, 59, tzinfo=dt_timezone.utc) - timezone.now()]
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + shift[0])
    reservation = budget_reserve(tenant=tenant, tokens=300)
    assert reservation.day == "2026-11-24"
    shift[0] += timedelta(seconds=2)  # the answer comes after midnight: the ledger row is dated the 25th
    assert budget_day(tenant) == "2026-11-25"
    budget_settle(reservation=reservation, tenant=tenant, tokens_used=250)
    assert budget_usage(tenant) == (250, 0)  # today's counter (the 25th) holds it, as the ledger does


def test_an_unlimited_tenant_is_never_refused(tenant):
    reservation = budget_reserve(tenant=tenant, tokens=10**9)
    assert reservation.is_noop


def test_reservations_of_a_crashed_process_expire(tenant, settings):
    settings.BUDGET_RESERVATION_SECONDS = 1
    tenant.daily_token_budget = 100
    tenant.save()
    budget_reserve(tenant=tenant, tokens=90)  # never settled: the process "crashed"
    bucket_keys = [k for k in shared_state().keys("budget:res:*")]
    assert bucket_keys and all(0 < shared_state().ttl(k) <= 61 for k in bucket_keys)
    for key in bucket_keys:  # what expiry does, without waiting for it
        shared_state().delete(key)
    assert budget_reserve(tenant=tenant, tokens=90).tokens == 90


def test_budget_days_follow_the_tenant_time_zone(tenant):
    tenant.timezone = "Pacific/Kiritimati"  # UTC+14
    tenant.save()
    at = datetime(2026, 11, 24, 11, 0, tzinfo=dt_timezone.utc)
    assert tenant_local_date(tenant, at).isoformat() == "2026-11-25"
    tenant.timezone = "America/Los_Angeles"
    assert tenant_local_date(tenant, at).isoformat() == "2026-11-24"
    assert tenant_local_date(tenant, datetime(2026, 11, 24, 7, 59, tzinfo=dt_timezone.utc)).isoformat() == "2026-11-23"


def test_over_budget_answers_429_with_retry_after_and_keeps_the_message(api_client, conversation_id, tenant):
    tenant.daily_token_budget = 10
    tenant.save()
    response = post_message(api_client, conversation_id, "hello")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert 0 < int(response["Retry-After"]) <= 24 * 3600 + 3600
    assert Message.objects.get(role="user").content == "hello"
    assert Message.objects.get(role="assistant").error_code == "budget_exceeded"


def test_over_budget_degrades_to_the_economy_tier_when_the_policy_says_so(api_client, conversation_id, tenant, policy):
    policy.over_budget = OverBudget.DEGRADE
    policy.save()
    tenant.daily_token_budget = 10
    tenant.save()
    reply = post_message(api_client, conversation_id, "hello").json()
    assert reply["status"] == "completed" and reply["route"]["reason"].startswith("over budget, degraded: economy tier")
    assert Message.objects.get(role="assistant").model.tier == "economy"


def test_settled_usage_counts_against_the_budget_and_rebuilds_from_the_ledger(api_client, conversation_id, tenant):
    tenant.daily_token_budget = 100_000
    tenant.save()
    post_message(api_client, conversation_id, "one")
    post_message(api_client, conversation_id, "two")
    ledger = tokens_used_today(tenant)
    assert budget_usage(tenant) == (ledger, 0) and ledger > 0
    shared_state().flush()  # counters lost (Redis restarted)
    assert budget_usage(tenant) == (0, 0)
    call_command("reconcile_budgets", stdout=__import__("io").StringIO())
    assert budget_usage(tenant) == (ledger, 0)


def test_alerts_at_80_and_100_percent_are_sent_once_per_day(tenant, mailoutbox):
    tenant.daily_token_budget = 1000
    tenant.account_manager_email = "am@agency.example"
    tenant.save()
    from billing.alerts import budget_alerts_check

    day = tenant_local_date(tenant, timezone.now()).isoformat()
    assert budget_alerts_check(tenant=tenant, day=day, used_tokens=500) == []
    assert budget_alerts_check(tenant=tenant, day=day, used_tokens=810) == [80]
    assert budget_alerts_check(tenant=tenant, day=day, used_tokens=850) == []
    assert budget_alerts_check(tenant=tenant, day=day, used_tokens=1000) == [100]
    assert budget_alerts_check(tenant=tenant, day=day, used_tokens=1200) == []
    assert [m.to for m in mailoutbox] == [["am@agency.example"], ["am@agency.example"]]
    assert "80%" in mailoutbox[0].subject and "100%" in mailoutbox[1].subject
    assert list(BudgetAlert.objects.values_list("threshold", flat=True).order_by("threshold")) == [80, 100]


def test_per_tenant_and_per_key_rate_limits(api_client, conversation_id, tenant):
    tenant.rate_limit_per_minute = 3
    tenant.save()
    statuses = [api_client.get(f"/api/v1/conversations/{conversation_id}").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = api_client.get(f"/api/v1/conversations/{conversation_id}")
    assert limited.json()["error"]["code"] == "rate_limited" and 1 <= int(limited["Retry-After"]) <= 60
    shared_state().flush()
    tenant.rate_limit_per_minute = None
    tenant.save()
    ApiKey.objects.filter(tenant=tenant).update(rate_limit_per_minute=1)
    assert [api_client.get("/api/v1/usage").status_code for _ in range(2)] == [200, 429]


def test_requests_a_key_s_own_limit_refuses_leave_the_client_s_allowance_to_its_other_keys(api_client, tenant):
    from rest_framework.test import APIClient

    from tenants.services import api_key_issue

    tenant.rate_limit_per_minute = 3
    tenant.save()
    ApiKey.objects.filter(tenant=tenant).update(rate_limit_per_minute=1)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant, name='site B').raw}")
    assert [api_client.get("/api/v1/usage").status_code for _ in range(4)] == [200, 429, 429, 429]
    assert [other.get("/api/v1/usage").status_code for _ in range(3)] == [200, 200, 429]


def test_the_usage_api_shows_usage_cost_and_budget_left(api_client, conversation_id, tenant, outsider_client):
    tenant.daily_token_budget = 50_000
    tenant.markup_percent = Decimal("20")
    tenant.save()
    post_message(api_client, conversation_id, "hello")
    body = api_client.get("/api/v1/usage").json()
    record = UsageRecord.objects.get()
    today = body["days"][-1]
    assert today["day"] == record.local_date.isoformat()
    line = today["models"][0]
    assert line["model"] == record.model_name and line["calls"] == 1 and Decimal(line["cost"]) == record.cost
    assert Decimal(line["billed"]) == (record.cost * Decimal("1.2")).quantize(Decimal("0.00000001"))
    assert body["budget"]["daily_tokens"] == 50_000 and body["budget"]["remaining"] == 50_000 - record.total_tokens
    assert outsider_client.get("/api/v1/usage").json()["days"] == []  # only one's own usage
    assert api_client.get("/api/v1/usage?from=2026-13-01").status_code == 400


def test_retention_purges_old_content_but_never_the_ledger(api_client, conversation_id, tenant):
    post_message(api_client, conversation_id, "old news")
    tenant.retention_days = 30
    tenant.save()
    Conversation.objects.filter(pk=conversation_id).update(updated_at=timezone.now() - timedelta(days=31))
    report = purge_expired_content(batch=1)
    assert report["conversations"] == 1
    assert not Conversation.objects.exists() and not Message.objects.exists()
    assert UsageRecord.objects.filter(conversation_id=conversation_id).count() == 1


@pytest.mark.slow
def test_concurrent_requests_never_overspend_the_budget(live_server, transactional_db, simulator, tenant_and_key):
    """30 requests in flight at once against a budget that fits about 10: the ledger never exceeds the budget
    (each call reserves its estimate — prompt + max output — before it starts, and usage stays within it)."""
    from tests.chat_fixtures import live_chain, post_at_once

    tenant, key = tenant_and_key
    live_chain(simulator, tenant, max_tokens=50)
    simulator.add_fault(fault="latency", latency_ms=300)  # keep them all in flight together
    tenant.daily_token_budget = 600
    tenant.save()
    statuses = post_at_once(live_server, key, 30)
    used = sum(r.total_tokens for r in UsageRecord.objects.filter(tenant=tenant))
    assert statuses.count(201) >= 1 and statuses.count(429) >= 1 and set(statuses) <= {201, 429}
    assert used <= tenant.daily_token_budget
    assert UsageRecord.objects.filter(tenant=tenant).count() == statuses.count(201)
    assert Message.objects.filter(role="user").count() == 30  # nothing the clients sent was lost


def test_a_budget_counter_redis_cannot_update_never_fails_a_stored_reply(api_client, conversation_id, tenant, settings, caplog):
    """The reply and its ledger row are written before the budget is settled: with the shared state unreachable, the
    client still gets its reply (never a 500), and the miss is logged for reconcile_budgets to repair."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: every shared-state call fails at once
    assert budget_settle(reservation=budget_reserve(tenant=tenant, tokens=10), tenant=tenant, tokens_used=10) is None
    response = post_message(api_client, conversation_id, "Hello while Redis is down")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "completed"
    assert UsageRecord.objects.filter(tenant=tenant, message_id=response.json()["id"]).count() == 1
    assert "not added to today's budget counter" in caplog.text


def test_a_renewed_reservation_stays_counted_past_the_lease(tenant, monkeypatch):
    """A call that outlives the reservation lease (a long stream) moves its holds to the current minute: they keep
    counting against the budget and the spend cap, and settling takes them back from where they are now."""
    import time as time_module

    from billing.budget import budget_renew

    tenant.daily_token_budget, tenant.monthly_spend_cap = 1000, Decimal("1")
    tenant.save()
    reservation = budget_reserve(tenant=tenant, tokens=400, cost=Decimal("0.5"))
    real_time = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 9 * 60)  # near the end of the 10-minute lease
    renewed = budget_renew(reservation=reservation)
    assert renewed.bucket_key != reservation.bucket_key and renewed.spend_key != reservation.spend_key
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 15 * 60)  # the first buckets left the window
    assert budget_usage(tenant) == (0, 400)
    with pytest.raises(BudgetExceeded):
        budget_reserve(tenant=tenant, tokens=700)
    budget_settle(reservation=renewed, tenant=tenant, tokens_used=300)
    assert budget_usage(tenant) == (300, 0)
    assert sum(int(shared_state().get(k) or 0) for k in shared_state().keys("spend:res:*")) == 0


def test_a_budget_redis_cannot_check_answers_503_and_a_retry_with_the_key_generates_the_reply(api_client, conversation_id, tenant, settings):
    """Reserving needs the shared state: with Redis unreachable a tenant with a daily budget gets a retryable 503 in the
    error shape (never a 500), the reply is not left `running` for its lease, and a retry with the same
    Idempotency-Key once Redis is back generates it."""
    tenant.daily_token_budget = 1_000_000
    tenant.save()
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = post_message(api_client, conversation_id, "Hello while Redis is down", headers={"Idempotency-Key": "k-503"})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "service_unavailable" and int(response["Retry-After"]) > 0
    assert Message.objects.get(role="assistant").status == "failed"
    assert api_client.get("/api/v1/usage").status_code == 200  # the ledger figures; today's counters unknown
    settings.REDIS_URL = redis_url
    response = post_message(api_client, conversation_id, "Hello while Redis is down", headers={"Idempotency-Key": "k-503"})
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "completed"

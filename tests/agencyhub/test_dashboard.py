"""The admin dashboard: its figures against known data (agencyhub/dashboard.py), and the admin index rendering them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agencyhub import dashboard as dash
from billing.models import UsageRecord
from billing.services import usage_record_append, usage_record_build
from conversations.models import Assistant, Conversation, Feedback, Message
from providers.breaker import breaker
from providers.health import circuits_not_closed
from providers.models import AttemptLog, Credential, LLMModel, ModelPrice, ModelTier
from providers.services import credential_set, provider_configure
from providers.types import ChatResult, FinishReason, Usage
from routing.models import RoutingPolicy, RoutingRule, RoutingTarget
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
D = Decimal


def make_model(kind: str, model_id: str, tier: str, **rates) -> LLMModel:
    provider = provider_configure(kind=kind)
    model = LLMModel.objects.create(
        provider=provider, model_id=model_id, display_name=model_id.title(), context_window=400_000, max_output_tokens=8_000, tier=tier,
    )
    ModelPrice.objects.create(model=model, valid_from=datetime(2026, 1, 1, tzinfo=UTC), **rates)
    return model


def ledger(tenant, model, credential, at, tokens_in, tokens_out, conversation=None):
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out)
    result = ChatResult(text="", finish_reason=FinishReason.STOP, usage=usage, model=model.model_id)
    return usage_record_append(usage_record_build(tenant=tenant, model=model, credential=credential, result=result, conversation_id=conversation, at=at))


def attempt(model, credential, at, latency, outcome="ok", probe=False):
    return AttemptLog.objects.create(
        provider_kind=model.provider.kind, model=model, credential=credential, outcome=outcome, latency_ms=latency,
        error_kind="" if outcome == "ok" else outcome, is_probe=probe, created_at=at,
    )


def reply_with_feedback(conversation, model, rating, at):
    message = Message.objects.create(tenant=conversation.tenant, conversation=conversation, role="assistant", model=model, content="hi")
    Message.objects.filter(pk=message.pk).update(created_at=at)  # auto_now_add: set the time afterwards
    return Feedback.objects.create(message=message, rating=rating)


@pytest.fixture
def world():
    """Two clients, two models (an economy one and the premium reference), ledger rows, attempts and feedback.

    Rates per MTok: cheap in 1 / out 5; premium in 15 / out 75, and in 30 / out 150 above 200,000 prompt tokens."""
    cheap = make_model("sandbox", "cheap", ModelTier.ECONOMY, input_per_mtok=D("1"), output_per_mtok=D("5"))
    premium = make_model(
        "openai", "premium", ModelTier.PREMIUM, input_per_mtok=D("15"), output_per_mtok=D("75"),
        tiers=[{"above_input_tokens": 200_000, "input": "30", "output": "150"}],
    )
    # The agency default policy: economy by default, escalation to the premium model (the savings reference).
    economy_target = RoutingTarget.objects.create(name="Economy", model=cheap)
    premium_target = RoutingTarget.objects.create(name="Premium", model=premium)
    policy = RoutingPolicy.objects.create(name="Agency default", is_agency_default=True, default_target=economy_target)
    RoutingRule.objects.create(policy=policy, position=1, name="Escalation", on_escalation=True, target=premium_target)

    acme = Tenant.objects.create(
        name="Acme", slug="acme", daily_token_budget=1_000_000, monthly_spend_cap=D("100"), markup_percent=D("20"),
    )
    globex = Tenant.objects.create(name="Globex", slug="globex", timezone="Pacific/Kiritimati", byok_fee_percent=D("10"))
    Tenant.objects.create(name="Dormant", slug="dormant", is_active=False)

    agency_cheap = credential_set(kind="sandbox", key="sk-agency-sandbox-1111", label="agency")
    agency_premium = credential_set(kind="openai", key="sk-agency-openai-2222", label="agency")
    byok = credential_set(kind="sandbox", key="sk-globex-own-3333", label="globex own", tenant=globex)
    rejected = credential_set(kind="openai", key="sk-old-4444", label="old key")
    Credential.objects.filter(pk=rejected.pk).update(
        is_enabled=False, needs_attention=True, disabled_reason="The provider rejected this key (HTTP 401)", disabled_at=NOW,
    )

    conv_a, conv_b, conv_c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # Acme (UTC): today is 2026-11-15.
    ledger(acme, cheap, agency_cheap, NOW - timedelta(hours=1), 1000, 500, conv_a)          # 0.0035, premium 0.0525
    ledger(acme, premium, agency_premium, NOW - timedelta(minutes=30), 2000, 1000, conv_c)  # 0.105, premium 0.105
    ledger(acme, cheap, agency_cheap, NOW - timedelta(minutes=10), 300_000, 1000, conv_b)   # 0.305, premium (long) 9.15
    ledger(acme, cheap, agency_cheap, datetime(2026, 11, 3, 9, tzinfo=UTC), 1_000_000, 200_000)  # 2.0, premium (long) 60
    ledger(acme, cheap, agency_cheap, datetime(2026, 10, 31, 9, tzinfo=UTC), 1_000_000, 0)      # last month
    # Globex (UTC+14): 2026-11-15 12:00 UTC is 2026-11-16 02:00 there.
    ledger(globex, cheap, byok, NOW - timedelta(hours=1), 10_000, 2_000)                        # today: 0.02 (BYOK), premium 0.30
    ledger(globex, premium, agency_premium, NOW - timedelta(hours=3), 1000, 1000, conv_c)       # 11-15 local: 0.09, premium 0.09

    for latency in (100, 200, 300, 400, 500, 600, 700, 800):
        attempt(cheap, agency_cheap, NOW - timedelta(minutes=latency // 10), latency)
    attempt(cheap, agency_cheap, NOW - timedelta(hours=2), 5000, outcome="overloaded")
    attempt(cheap, agency_cheap, NOW - timedelta(hours=3), 5000, outcome="timeout")
    attempt(cheap, agency_cheap, NOW - timedelta(hours=4), 99_999, probe=True)          # probes are not traffic
    attempt(cheap, agency_cheap, NOW - timedelta(hours=30), 5000, outcome="overloaded")  # outside the 24 h
    for latency in (1000, 2000, 3000, 4000):
        attempt(premium, agency_premium, NOW - timedelta(minutes=5), latency)

    assistant = Assistant.objects.create(tenant=acme, name="Bot", slug="bot")
    conversation = Conversation.objects.create(tenant=acme, assistant=assistant)
    for rating in (1, 1, -1):
        reply_with_feedback(conversation, cheap, rating, NOW - timedelta(hours=2))
    reply_with_feedback(conversation, premium, -1, NOW - timedelta(hours=2))
    reply_with_feedback(conversation, premium, 1, NOW - timedelta(days=3))  # outside the 24 h

    return {"cheap": cheap, "premium": premium, "acme": acme, "globex": globex, "agency_cheap": agency_cheap,
            "agency_premium": agency_premium, "rejected": rejected, "byok": byok}


def test_savings_reference_is_the_agency_policy_premium_target(world):
    assert dash.savings_reference()[0] == world["premium"]


def test_savings_reference_falls_back_to_the_most_expensive_enabled_model(world):
    RoutingPolicy.objects.all().delete()
    with CaptureQueriesContext(connection) as queries:
        assert dash.savings_reference()[0] == world["premium"]
    assert len(queries) == 3  # the policy, the enabled models, all their prices: not one query per model
    LLMModel.objects.filter(pk=world["premium"].pk).update(is_enabled=False)
    assert dash.savings_reference()[0] == world["cheap"]


def test_spend_per_client_today_and_this_month(world):
    price = world["premium"].price_at(NOW)
    with CaptureQueriesContext(connection) as queries:
        spend = dash.tenant_spend(now=NOW, reference_price=price)
    # the tenants, then one ledger query per local date the clients are on (UTC: 11-15, Kiritimati: 11-16)
    assert len(queries) == 3
    rows = {row["slug"]: row for row in spend["tenants"]}
    assert set(rows) == {"acme", "globex"}  # inactive clients are left out
    assert [row["slug"] for row in spend["tenants"]] == ["acme", "globex"]  # highest billed first

    acme = rows["acme"]
    assert acme["today"].isoformat() == "2026-11-15"
    assert acme["tokens_today"] == 1500 + 3000 + 301_000
    assert acme["budget_used"] == 0.3055
    assert acme["calls_today"] == 3 and acme["calls_month"] == 4
    assert acme["cost_today"] == D("0.4135") and acme["cost_month"] == D("2.4135")
    assert acme["billed_today"] == D("0.4962") and acme["billed_month"] == D("2.8962")  # 20 % markup
    assert acme["cap_used"] == 0.028962
    assert acme["premium_cost_today"] == D("9.3075") and acme["premium_cost_month"] == D("69.3075")
    assert acme["saved_today"] == D("8.894") and acme["saved_month"] == D("66.894")

    globex = rows["globex"]
    assert globex["today"].isoformat() == "2026-11-16"
    assert globex["tokens_today"] == 12_000
    assert globex["budget_used"] is None and globex["cap_used"] is None  # unlimited
    assert globex["cost_today"] == D("0.02") and globex["cost_month"] == D("0.11")
    assert globex["billed_today"] == D("0.002")  # BYOK: the 10 % platform fee only
    assert globex["billed_month"] == D("0.092")  # + agency usage at no markup
    assert globex["saved_today"] == D("0.28") and globex["saved_month"] == D("0.28")

    totals = spend["totals"]
    assert totals["billed_month"] == D("2.9882")
    assert totals["billed_today"] == D("0.4982")
    assert totals["cost_month"] == D("2.5235")
    assert totals["premium_cost_month"] == D("69.6975")
    assert totals["saved_month"] == D("67.174")
    assert totals["saved_month_share"] == round(67.174 / 69.6975, 6)


def test_model_figures_last_24_hours(world):
    rows = {row["model"]: row for row in dash.model_figures(now=NOW)}
    cheap, premium = rows["cheap"], rows["premium"]

    assert cheap["provider"] == "sandbox"
    assert (cheap["requests"], cheap["errors"], cheap["error_rate"]) == (10, 2, 0.2)
    assert cheap["latency_p50_ms"] == 450.0 and cheap["latency_p95_ms"] == 765.0  # ok attempts only, no probe
    assert (cheap["thumbs_up"], cheap["feedback"], cheap["thumbs_up_rate"]) == (2, 3, 0.666667)
    assert cheap["calls"] == 3 and cheap["cost"] == D("0.3285")
    # 0.3085 on conversations A and B (the BYOK call has no conversation)
    assert cheap["conversations"] == 2 and cheap["cost_per_conversation"] == D("0.15425")

    # Availability counts the health probes (the 4 h old one: 9 ok of 11); the last hour is its own window.
    assert cheap["availability"] == 0.818182
    assert cheap["hour"] == {"requests": 6, "error_rate": 0.0, "latency_p50_ms": 350.0, "latency_p95_ms": 575.0, "availability": 1.0}

    assert (premium["requests"], premium["errors"], premium["error_rate"]) == (4, 0, 0.0)
    assert premium["latency_p50_ms"] == 2500.0 and premium["latency_p95_ms"] == 3850.0
    assert (premium["thumbs_up"], premium["feedback"], premium["thumbs_up_rate"]) == (0, 1, 0.0)
    assert premium["cost"] == D("0.195") and premium["cost_per_conversation"] == D("0.195")

    providers = {p["provider"]: p for p in dash.provider_figures(list(rows.values()))}
    assert providers["sandbox"]["requests"] == 10 and providers["sandbox"]["error_rate"] == 0.2
    assert providers["openai"]["cost"] == D("0.195")


def test_open_breakers_and_credentials_needing_attention(world):
    breaker().force_open(world["agency_cheap"].pk, world["cheap"].pk, 60)
    breaker().record_success(world["agency_premium"].pk, world["premium"].pk, 120)  # closed: not listed
    [circuit] = circuits_not_closed()
    assert circuit["state"] == "open"
    assert (circuit["provider"], circuit["credential"], circuit["owner"], circuit["model"]) == ("sandbox", "agency", "agency", "cheap")
    assert 0 < circuit["retry_in"] <= 60

    [credential] = dash.credentials_needing_attention()
    assert credential["id"] == world["rejected"].pk
    assert (credential["is_enabled"], credential["needs_attention"], credential["key_last4"]) == (False, True, "4444")
    assert "HTTP 401" in credential["reason"]


# --------------------------------------------------------------------------------------------- the admin index

@pytest.fixture
def today_world():
    """Data at the real current time (the admin index computes for now): one Acme call today, one open breaker."""
    cheap = make_model("sandbox", "cheap", ModelTier.ECONOMY, input_per_mtok=D("1"), output_per_mtok=D("5"))
    premium = make_model("openai", "premium", ModelTier.PREMIUM, input_per_mtok=D("15"), output_per_mtok=D("75"))
    acme = Tenant.objects.create(name="Acme", slug="acme", daily_token_budget=10_000, monthly_spend_cap=D("50"), markup_percent=D("50"))
    credential = credential_set(kind="sandbox", key="sk-agency-sandbox-1111", label="agency")
    rejected = credential_set(kind="openai", key="sk-old-4444", label="old openai key")
    Credential.objects.filter(pk=rejected.pk).update(is_enabled=False, needs_attention=True, disabled_reason="rejected (HTTP 401)")
    now = timezone.now()
    ledger(acme, cheap, credential, now - timedelta(seconds=5), 4000, 1000, uuid.uuid4())  # 0.009 -> billed 0.0135
    for latency in (100, 300):
        attempt(cheap, credential, now - timedelta(seconds=5), latency)
    breaker().force_open(credential.pk, cheap.pk, 60)
    return {"cheap": cheap, "premium": premium, "acme": acme}


def test_admin_index_renders_the_dashboard(admin_client, today_world):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="agencyhub-dashboard"' in html
    # reference: the most expensive enabled model (no agency policy here): 4000 * 15 + 1000 * 75 = 0.135
    assert "openai:premium" in html
    assert re.search(r'id="dash-billed-today">\$0\.01<', html)  # 0.0135 billed, shown to the cent
    assert re.search(r'id="dash-saved-month">\$0\.13<', html)  # 0.135 - 0.009 = 0.126
    tenant_row = re.search(r'<tr class="dash-tenant" data-slug="acme">(.*?)</tr>', html, re.S).group(1)
    assert "<td>5000</td>" in tenant_row and "50.0 %" in tenant_row  # 5,000 of 10,000 tokens
    model_row = re.search(r'<tr class="dash-model" data-model="sandbox:cheap">(.*?)</tr>', html, re.S).group(1)
    assert "<td>2</td>" in model_row and "0.0 %" in model_row and "200 ms" in model_row and "290 ms" in model_row
    assert "$0.0090" in model_row  # cost per conversation
    assert "req · " in model_row and " up</td>" in model_row  # the last hour's figures
    assert html.count('class="dash-breaker"') == 1
    assert "old openai key" in html and "needs attention" in html
    # the app list is still there, below the dashboard
    assert html.index('id="agencyhub-dashboard"') < html.index('class="app-tenants module')

    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)
    assert "/static/agencyhub/chart.umd.min.js" in scripts
    assert not [src for src in scripts if re.match(r"(https?:)?//", src)]  # nothing from a CDN
    assert "dashboard-charts" in html


def test_the_dashboard_renders_when_redis_is_down(admin_client, today_world, settings):
    """Staff need the dashboard most during an outage: the breaker list says it is unknown instead of a 500."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert "Breaker state unavailable" in response.content.decode()


def test_chart_script_is_served_locally_with_its_license(client):
    from django.contrib.staticfiles import finders

    path = finders.find("agencyhub/chart.umd.min.js")
    assert path, "the vendored Chart.js is missing from agencyhub/static/agencyhub/"
    with open(path, encoding="utf-8") as f:
        head = f.read(300)
    assert "Chart.js v4" in head and "Released under the MIT License" in head


def test_staff_without_billing_permission_see_health_only(client, today_world):
    user = User.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_credential"))
    client.force_login(user)
    html = client.get("/admin/").content.decode()
    assert 'id="agencyhub-dashboard"' in html
    assert 'data-model="sandbox:cheap"' in html and "old openai key" in html
    assert 'id="dash-spend"' not in html and "Billed this month" not in html and "cost / conversation" not in html
    assert "$0.0" not in html
    assert '"spend"' not in re.search(r'id="dashboard-charts"[^>]*>(.*?)</script>', html, re.S).group(1)


def test_usage_record_helper_sanity(world):
    # the ledger rows above are priced as the docstring says (guards the arithmetic the expectations rely on)
    assert UsageRecord.objects.filter(tenant=world["acme"]).count() == 5


def test_the_reference_cost_in_sql_prices_a_row_as_model_price_cost_does_cache_writes_included():
    price_row = make_model("anthropic", "ref", ModelTier.PREMIUM, input_per_mtok=D("3"), output_per_mtok=D("15"),
                           cached_input_per_mtok=D("0.3"), cache_write_per_mtok=D("3.75"),
                           tiers=[{"above_input_tokens": 200_000, "input": "6", "output": "22.5"}]).prices.get()
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    model = LLMModel.objects.get(model_id="ref")
    for usage in (Usage(input_tokens=1_000, output_tokens=200, cached_input_tokens=5_000, cache_write_tokens=4_000, cache_write_1h_tokens=3_000),
                  Usage(input_tokens=250_000, output_tokens=10, cache_write_tokens=1_000, cache_write_1h_tokens=1_000)):
        result = ChatResult(text="", finish_reason=FinishReason.STOP, usage=usage, model="ref")
        row = usage_record_append(usage_record_build(tenant=tenant, model=model, credential=None, result=result, at=NOW))
        in_sql = UsageRecord.objects.filter(pk=row.pk).annotate(ref=dash.reference_cost_expression(price_row)).get().ref
        assert in_sql / 1_000_000 == price_row.cost(usage) == row.cost

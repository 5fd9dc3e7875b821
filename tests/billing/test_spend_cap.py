"""The monthly spend cap: every call holds its estimated billed cost against the cap while it runs, so calls started
together cannot pass it; through the services and the public API."""

from decimal import Decimal

import pytest

from billing.budget import BudgetExceeded, SpendCapReached, budget_release, budget_reserve, budget_settle, spend_reserve
from billing.models import UsageRecord
from billing.services import billed_estimate, month_spend
from conversations.models import Message
from providers.state import shared_state
from tests.chat_fixtures import CHAIN, live_chain, model, post_at_once, post_message


def held(tenant) -> int:
    """Micro-dollars held against the tenant's cap by calls in flight."""
    return sum(max(0, int(shared_state().get(k) or 0)) for k in shared_state().keys(f"spend:res:{tenant.pk}:*"))


def set_cap(tenant, cap: str, **fields) -> None:
    tenant.monthly_spend_cap = Decimal(cap)
    for name, value in fields.items():
        setattr(tenant, name, value)
    tenant.save()


def test_calls_in_flight_hold_their_estimate_until_they_let_go(tenant):
    set_cap(tenant, "1.00")
    first = spend_reserve(tenant=tenant, cost=Decimal("0.60"))
    assert held(tenant) == 600_000
    with pytest.raises(SpendCapReached) as refused:
        spend_reserve(tenant=tenant, cost=Decimal("0.50"))
    # Room is left once the first call settles at what it really cost: worth a retry in seconds, not next month.
    assert refused.value.retry_after == 5
    assert "may cost up to 0.5000 USD" in str(refused.value) and "0.6000 USD of it held by calls still running" in str(refused.value)
    assert held(tenant) == 600_000  # the refused hold left nothing behind
    budget_release(reservation=first)
    second = spend_reserve(tenant=tenant, cost=Decimal("0.50"))
    budget_settle(reservation=second, tenant=tenant, tokens_used=10)
    assert held(tenant) == 0


def test_a_call_dearer_than_what_is_left_is_told_to_ask_for_fewer_tokens(tenant):
    set_cap(tenant, "0.10")
    with pytest.raises(SpendCapReached) as refused:
        spend_reserve(tenant=tenant, cost=Decimal("0.25"))
    assert "ask for fewer output tokens" in str(refused.value)
    assert refused.value.retry_after > 5  # the same request would not pass before next month


def test_a_token_budget_refusal_lets_go_of_the_held_cost(tenant):
    set_cap(tenant, "1.00", daily_token_budget=100)
    with pytest.raises(BudgetExceeded):
        budget_reserve(tenant=tenant, tokens=500, cost=Decimal("0.10"))
    assert held(tenant) == 0
    reservation = budget_reserve(tenant=tenant, tokens=50, cost=Decimal("0.10"))
    assert (reservation.tokens, reservation.spend_micros) == (50, 100_000)
    budget_release(reservation=reservation)
    assert held(tenant) == 0


def test_the_estimate_is_the_dearest_candidates_prompt_and_max_output_billed_with_markup(tenant, catalog):
    tenant.markup_percent = Decimal("20")
    haiku = model("anthropic", "claude-haiku-4-5")
    price = haiku.price_at()
    estimate = billed_estimate(tenant=tenant, model=haiku, byok=False, prices=None, input_tokens=1000, output_tokens=500)
    assert estimate == (1000 * price.input_per_mtok + 500 * price.output_per_mtok) / 1_000_000 * Decimal("1.2")
    tenant.byok_fee_percent = Decimal("5")
    assert billed_estimate(tenant=tenant, model=haiku, byok=True, prices=None, input_tokens=1000, output_tokens=500) == \
        (1000 * price.input_per_mtok + 500 * price.output_per_mtok) / 1_000_000 * Decimal("0.05")


def test_the_api_refuses_a_message_once_the_month_reached_the_cap_and_keeps_it(api_client, conversation_id, tenant):
    set_cap(tenant, "100")
    assert post_message(api_client, conversation_id, "First").status_code == 201
    spent = month_spend(tenant)
    assert spent > 0 and held(tenant) == 0
    set_cap(tenant, str(spent.quantize(Decimal("0.00000001"))))
    response = post_message(api_client, conversation_id, "Second")
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "spend_cap_reached"
    assert "monthly spend cap" in response.json()["error"]["message"]
    assert int(response["Retry-After"]) > 5
    assert Message.objects.filter(role="user", content="Second").exists()  # nothing the client sent is lost
    assert UsageRecord.objects.filter(tenant=tenant).count() == 1 and held(tenant) == 0


def test_a_failed_call_lets_go_of_its_hold(api_client, conversation_id, tenant, simulator):
    set_cap(tenant, "100")
    simulator.add_fault(fault="overloaded")
    response = post_message(api_client, conversation_id, "Everything is overloaded")
    assert response.status_code in (502, 503), response.content
    assert held(tenant) == 0


@pytest.mark.slow
def test_concurrent_calls_never_bill_past_the_cap(live_server, transactional_db, simulator, tenant_and_key):
    """20 calls at once against a cap that fits the estimates of about four: the month never bills past the cap
    (each holds its prompt and max output at the dearest candidate's price before it starts). Calls that finish let
    go of their estimate and are billed what they really cost, far less here, so a few more than four may run."""
    tenant, key = tenant_and_key
    live_chain(simulator, tenant, max_tokens=2000)
    simulator.add_fault(fault="latency", latency_ms=300)  # keep them all in flight together
    dearest = max(billed_estimate(tenant=tenant, model=model(*m), byok=False, prices=None, input_tokens=50,
                                  output_tokens=min(2000, model(*m).max_output_tokens)) for m in CHAIN)
    set_cap(tenant, str((dearest * 4).quantize(Decimal("0.0001"))))
    statuses = post_at_once(live_server, key, 20)
    assert statuses.count(201) >= 1 and statuses.count(429) >= 1 and set(statuses) <= {201, 429}, statuses
    assert UsageRecord.objects.filter(tenant=tenant).count() == statuses.count(201) < 20
    assert month_spend(tenant) <= tenant.monthly_spend_cap
    assert Message.objects.filter(role="user").count() == 20  # nothing the clients sent was lost
    assert held(tenant) == 0

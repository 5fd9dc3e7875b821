"""Failover through the public API: breaker skips, retry-after cool-downs, BYOK policy, context windows,
and the decision record stored with each reply."""

import pytest

from billing.models import UsageRecord
from conversations.models import Message
from providers.breaker import breaker
from providers.models import Credential, LLMModel
from providers.services import credential_set
from tests.conversations.conftest import post_message
from tests.routing.conftest import add_rule, model


@pytest.fixture
def conversation(api_client, routed_policy) -> str:
    return api_client.post("/api/v1/conversations", {}, format="json").json()["id"]


def anthropic_calls(simulator) -> int:
    return sum(1 for r in simulator.requests() if r["provider"] == "anthropic")


def test_the_decision_record_is_stored_with_the_reply(api_client, conversation, routed_policy, targets):
    add_rule(routed_policy, targets["premium"], name="escalation", on_escalation=True)
    reply = post_message(api_client, conversation, "please escalate", escalate=True).json()
    stored = Message.objects.get(pk=reply["id"])
    decision = stored.route_decision
    assert decision["rule"] == "escalation" and decision["target"] == "Premium chain"
    assert decision["candidates"][0].startswith("anthropic:claude-opus-4-8")
    assert decision["attempts"][0]["outcome"] == "ok"
    assert stored.complexity_score is not None and decision["complexity"] == stored.complexity_score
    assert reply["route"]["reason"] == "rule 'escalation' -> Premium chain"
    route = reply["route"]  # the API shows the decision, not only the reason
    assert (route["rule"], route["target"], route["complexity"]) == ("escalation", "Premium chain", stored.complexity_score)
    assert route["candidates"] == decision["candidates"] and route["attempts"] == decision["attempts"]
    assert "answer" not in route and "tool_calls" not in route


def test_an_open_circuit_is_skipped_without_calling_the_provider(api_client, conversation, simulator):
    credential = Credential.objects.get(provider__kind="anthropic")
    breaker().force_open(credential.pk, model("anthropic", "claude-haiku-4-5").pk, 60)
    reply = post_message(api_client, conversation).json()
    assert reply["provider"] == "openai"
    assert reply["route"]["attempts"][0]["outcome"] == "skipped"
    assert anthropic_calls(simulator) == 0


def test_retry_after_is_honoured_as_a_cool_down(api_client, conversation, simulator):
    simulator.add_fault(provider="anthropic", fault="rate_limit", retry_after=30, count=1)
    first = post_message(api_client, conversation, "one").json()
    assert first["provider"] == "openai" and first["route"]["attempts"][0]["outcome"] == "rate_limited"
    second = post_message(api_client, conversation, "two").json()
    assert second["provider"] == "openai"
    skipped = second["route"]["attempts"][0]
    assert skipped["outcome"] == "skipped" and 0 < skipped["retry_in"] <= 30
    assert anthropic_calls(simulator) == 1  # the cooling-down provider was not called again


def test_repeated_failures_open_the_circuit(api_client, conversation, simulator, settings):
    simulator.add_fault(provider="anthropic", fault="overloaded")
    for i in range(6):
        post_message(api_client, conversation, f"m{i}")
    calls = anthropic_calls(simulator)
    assert calls < 6  # opened after the threshold: later messages did not wait on the dead provider
    last = Message.objects.filter(role="assistant").order_by("-created_at").first()
    assert last.route_decision["attempts"][0]["outcome"] == "skipped"


def test_all_circuits_open_answers_503_with_retry_after(api_client, conversation):
    cb = breaker()
    for credential in Credential.objects.all():
        for llm in LLMModel.objects.filter(provider=credential.provider):
            cb.force_open(credential.pk, llm.pk, 45)
    response = post_message(api_client, conversation)
    assert response.status_code == 503 and 1 <= int(response["Retry-After"]) <= 45
    assert Message.objects.get(role="user").content == "Hello there"


def test_a_rejected_byok_key_fails_over_to_the_agency_key_billed_as_agency(api_client, conversation, simulator, tenant):
    own = credential_set(kind="anthropic", key="bad-tenant-key", label="own", tenant=tenant)
    reply = post_message(api_client, conversation).json()
    assert reply["provider"] == "anthropic"  # same model, the agency's key
    record = UsageRecord.objects.get(message_id=reply["id"])
    assert record.ownership == "agency" and record.credential.tenant is None
    own.refresh_from_db()
    assert own.is_enabled is False and own.last_error


def test_byok_usage_is_billed_as_byok(api_client, conversation, tenant):
    credential_set(kind="anthropic", key="sk-tenant-good", label="own", tenant=tenant)
    reply = post_message(api_client, conversation).json()
    assert UsageRecord.objects.get(message_id=reply["id"]).ownership == "byok"


def test_byok_failover_to_the_agency_key_can_be_forbidden(api_client, conversation, simulator, tenant, routed_policy):
    routed_policy.allow_agency_fallback = False
    routed_policy.save()
    for kind in ("anthropic", "openai", "openrouter"):
        credential_set(kind=kind, key=f"sk-own-{kind}", label="own", tenant=tenant)
    simulator.add_fault(fault="overloaded")
    response = post_message(api_client, conversation)
    assert response.status_code == 503
    attempts = Message.objects.get(role="assistant").route_decision["attempts"]
    assert attempts and all("(byok)" in a["candidate"] for a in attempts)
    assert not any(r["headers"]["authorization"].startswith("Bearer sk-agency") for r in simulator.requests())


def test_context_too_long_moves_only_to_a_larger_window(api_client, conversation, simulator):
    LLMModel.objects.filter(model_id="gpt-4o-mini").update(context_window=100_000)
    LLMModel.objects.filter(model_id="claude-haiku-4-5").update(context_window=150_000)
    simulator.add_fault(provider="anthropic", model="claude-haiku-4-5", fault="context_too_long")
    reply = post_message(api_client, conversation).json()
    # gpt-4o-mini's window is smaller than the one that just overflowed: straight to a larger one
    assert reply["model"] == "anthropic/claude-haiku-4.5"
    assert [a["outcome"] for a in reply["route"]["attempts"]] == ["context_too_long", "ok"]


def test_a_key_this_process_cannot_decrypt_is_skipped_and_stays_enabled(api_client, conversation, simulator):
    from cryptography.fernet import Fernet

    from providers.tasks import probe_providers

    anthropic = Credential.objects.get(provider__kind="anthropic")
    # As if stored by a process with another FIELD_ENCRYPTION_KEYS (an out-of-date .env on a worker).
    Credential.objects.filter(pk=anthropic.pk).update(encrypted_key=Fernet(Fernet.generate_key()).encrypt(b"sk-x").decode())
    reply = post_message(api_client, conversation).json()
    assert reply["provider"] == "openai"
    assert reply["route"]["attempts"][0]["outcome"] == "skipped" and "decrypt" in reply["route"]["attempts"][0]["error"]
    report = probe_providers()
    assert {r["outcome"] for r in report["results"] if r["credential_id"] == anthropic.pk} == {"unreadable_key"}
    anthropic.refresh_from_db()
    assert anthropic.is_enabled and not anthropic.needs_attention and anthropic.disabled_reason == ""
    assert anthropic_calls(simulator) == 0


def test_a_byok_tenant_without_agency_fallback_never_runs_on_the_agency_keys(api_client, conversation, simulator, tenant, routed_policy):
    routed_policy.allow_agency_fallback = False
    routed_policy.save()
    own = credential_set(kind="anthropic", key="sk-own-anthropic", label="own", tenant=tenant)
    simulator.add_fault(provider="anthropic", fault="overloaded")
    response = post_message(api_client, conversation)
    assert response.status_code == 503  # its only key failed: no agency key for the other providers either
    assert not any(r["headers"]["authorization"].startswith("Bearer sk-agency") for r in simulator.requests())
    Credential.objects.filter(pk=own.pk).update(is_enabled=False)  # e.g. disabled after a 401: still the tenant's
    response = post_message(api_client, conversation)
    assert response.status_code == 503 and not UsageRecord.objects.filter(ownership="agency").exists()


def test_a_model_with_no_price_in_force_is_never_called(api_client, conversation, simulator):
    from datetime import timedelta

    from django.utils import timezone

    from providers.models import ModelPrice

    haiku = model("anthropic", "claude-haiku-4-5")
    ModelPrice.objects.filter(model=haiku).update(valid_from=timezone.now() + timedelta(days=3))  # not in force yet
    reply = post_message(api_client, conversation).json()
    assert reply["provider"] == "openai" and anthropic_calls(simulator) == 0
    assert UsageRecord.objects.get(message_id=reply["id"]).model_name == "gpt-4o-mini"

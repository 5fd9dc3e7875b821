"""Failover drills: each chain's primary is skipped on purpose and a backup must answer (routing.drills, the
failover_drill command)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from providers.models import AttemptLog
from routing.drills import failover_drill
from routing.models import RoutingPolicy, RoutingTarget
from tests.chat_fixtures import chain_target, model


def test_a_drill_skips_the_primary_and_the_backup_answers(tenant, policy):
    (report,) = failover_drill(tenant=tenant)
    assert report["status"] == "ok" and report["policy"] == "Acme" and report["target"] == "Economy chain"
    assert report["primary"] == "anthropic:claude-haiku-4-5 (agency)"
    assert report["answered_by"] == "openai:gpt-4o-mini (agency)"
    assert [a["outcome"] for a in report["attempts"]] == ["ok"] and report["latency_ms"] >= 0
    logged = AttemptLog.objects.filter(tenant_id=tenant.pk)
    assert [(a.provider_kind, a.outcome) for a in logged] == [("openai", "ok")]  # the skipped primary was never called
    assert all(a.is_probe for a in logged)  # a health check, not client traffic on the dashboard


def test_the_primary_is_the_one_real_traffic_calls_first_under_the_target_s_strategy(tenant, policy):
    policy.default_target.strategy = "cheapest"
    policy.default_target.save()
    (report,) = failover_drill(tenant=tenant)
    assert report["primary"] == "openai:gpt-4o-mini (agency)"  # the cheapest, which the planner tries first
    assert report["status"] == "ok" and report["answered_by"] != report["primary"]


def test_a_backup_that_refuses_fails_the_drill(tenant, policy, simulator):
    simulator.add_fault(provider="openai", fault="refusal")
    (report,) = failover_drill(tenant=tenant)
    assert report["status"] == "failed" and "refused" in report["error"]
    assert report["answered_by"] == "openai:gpt-4o-mini (agency)"


def test_a_chain_without_a_backup_fails_the_drill(tenant, providers_on_simulator):
    lonely = RoutingTarget.objects.create(name="Lonely", model=model("openai", "gpt-4o-mini"))
    RoutingPolicy.objects.create(name="Solo", tenant=tenant, default_target=lonely)
    (report,) = failover_drill(tenant=tenant)
    assert report["status"] == "failed" and "no backup" in report["error"]


def test_the_command_prints_the_report_and_fails_when_a_chain_fails(tenant, policy, providers_on_simulator):
    out = StringIO()
    call_command("failover_drill", "--tenant", tenant.slug, stdout=out, stderr=StringIO())
    printed = json.loads(out.getvalue())
    assert printed["ok"] is True and printed["chains"][0]["answered_by"] == "openai:gpt-4o-mini (agency)"

    policy.default_target = RoutingTarget.objects.create(name="Lonely", model=model("openai", "gpt-4o-mini"))
    policy.save()
    with pytest.raises(SystemExit) as exited:
        call_command("failover_drill", "--tenant", tenant.slug, stdout=StringIO(), stderr=StringIO())
    assert exited.value.code == 1
    with pytest.raises(CommandError, match="no tenant"):
        call_command("failover_drill", "--tenant", "nobody", stdout=StringIO(), stderr=StringIO())


def test_a_disabled_backup_is_no_backup(tenant, policy):
    from providers.models import LLMModel

    LLMModel.objects.filter(model_id__in=["gpt-4o-mini", "anthropic/claude-haiku-4.5"]).update(is_enabled=False)
    (report,) = failover_drill(tenant=tenant)
    assert report["status"] == "failed" and "no backup" in report["error"]


def test_the_admin_action_drills_the_selected_policy(tenant, policy, providers_on_simulator, admin_client):
    from django.contrib.messages import get_messages

    lonely = RoutingTarget.objects.create(name="Lonely", model=model("openai", "gpt-4o-mini"))
    override = RoutingPolicy.objects.create(name="Override", default_target=lonely)  # an assistant's, no tenant
    RoutingPolicy.objects.create(name="Agency", is_agency_default=True, default_target=policy.default_target)
    response = admin_client.post("/admin/routing/routingpolicy/", {"action": "run_failover_drill", "_selected_action": [override.pk]},
                                 follow=True)
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert len(shown) == 1 and shown[0].startswith("Override: Lonely: failed")


def test_the_health_probes_cover_every_model_a_policy_routes_to(tenant, policy, settings):
    from providers.tasks import probe_targets

    settings.PROBE_MODELS_PER_CREDENTIAL = 1
    probed = {(t.credential.provider.kind, t.model.model_id) for t in probe_targets()}
    assert {("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini"), ("openrouter", "anthropic/claude-haiku-4.5")} <= probed


def test_a_clients_own_key_is_probed_only_for_its_own_policy(tenant, policy, settings):
    from providers.services import credential_set
    from providers.tasks import probe_targets
    from tenants.services import tenant_create

    settings.PROBE_MODELS_PER_CREDENTIAL = 0
    other, _ = tenant_create(slug="other", name="Other")
    theirs = credential_set(kind="openai", key="sk-other-own-1234", label="own", tenant=other)
    premium = RoutingTarget.objects.create(name="Premium", model=model("openai", "gpt-4.1"))
    RoutingPolicy.objects.create(name="Other", tenant=other, default_target=premium)
    probed = {(t.credential.pk, t.model.model_id) for t in probe_targets()}
    assert (theirs.pk, "gpt-4.1") in probed and (theirs.pk, "gpt-4o-mini") not in probed  # acme's policy model
    agency = {m for pk, m in probed if pk != theirs.pk}
    assert {"gpt-4.1", "gpt-4o-mini"} <= agency


def test_an_assistant_override_is_drilled_as_its_client_s_traffic_sees_it(tenant, providers_on_simulator):
    """An agency-wide policy an assistant uses as its override, with "own keys only": the client's calls never reach
    an agency key, so a drill that answered through one would promise a backup real traffic does not have."""
    from conversations.models import Assistant
    from providers.services import credential_set

    credential_set(kind="anthropic", key="sk-own-anthropic", label="own", tenant=tenant)
    own_only = RoutingPolicy.objects.create(name="Own keys only", allow_agency_fallback=False,
                                            default_target=chain_target("Haiku chain", [("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini")]))
    Assistant.objects.create(tenant=tenant, name="Support", slug="support", routing_policy=own_only)
    as_client = [r for r in failover_drill(policy=own_only) if r.get("tenant") == tenant.slug]
    assert [r["status"] for r in as_client] == ["failed"] and "no backup" in as_client[0]["error"]
    assert [r["status"] for r in failover_drill(tenant=tenant) if r["policy"] == "Own keys only"] == ["failed"]

"""Routing forms refuse what could not work and say why: a model without a price, a context window too small."""

import pytest

from routing.models import RoutingPolicy, RoutingRule, RoutingTarget
from tests.agencyhub.admin_fixtures import llm_model, openai  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def targets(openai):
    priced = RoutingTarget.objects.create(name="Economy", model=llm_model(openai, "gpt-cheap", context_window=128_000))
    priceless = RoutingTarget.objects.create(name="Unpriced", model=llm_model(openai, "gpt-unpriced", priced=False))
    return priced, priceless


def policy_form(default_target, rules: list[dict]) -> dict:
    data = {
        "name": "Acme policy", "default_target": default_target.pk, "escalation_phrases": "human",
        "allow_agency_fallback": "on", "over_budget": "reject",
        "rules-TOTAL_FORMS": str(len(rules)), "rules-INITIAL_FORMS": "0", "rules-MIN_NUM_FORMS": "0", "rules-MAX_NUM_FORMS": "1000",
    }
    for index, rule in enumerate(rules):
        base = {"position": "0", "name": f"rule {index}", "is_enabled": "on", "pattern": "", "metadata_equals": "{}"}
        data.update({f"rules-{index}-{key}": value for key, value in {**base, **rule}.items()})
    return data


def test_it_refuses_a_rule_to_a_model_without_a_price(admin_client, targets):
    priced, priceless = targets
    response = admin_client.post("/admin/routing/routingpolicy/add/", policy_form(priced, [{"target": priceless.pk}]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Target “Unpriced” routes to GPT-UNPRICED (openai:gpt-unpriced), which has no price in force" in html
    assert not RoutingPolicy.objects.exists()


def test_it_refuses_a_default_target_without_a_price(admin_client, targets):
    _, priceless = targets
    response = admin_client.post("/admin/routing/routingpolicy/add/", policy_form(priceless, []))

    assert "The default target “Unpriced” routes to GPT-UNPRICED" in response.content.decode()
    assert not RoutingPolicy.objects.exists()


def test_it_refuses_a_rule_needing_more_context_than_its_model_has(admin_client, targets):
    priced, _ = targets
    response = admin_client.post(
        "/admin/routing/routingpolicy/add/", policy_form(priced, [{"target": priced.pk, "min_prompt_tokens": "200000"}]),
    )

    html = response.content.decode()
    assert "This rule applies to prompts of at least 200,000 tokens, but GPT-CHEAP (openai:gpt-cheap)" in html
    assert "context window of 128,000 tokens" in html
    assert not RoutingPolicy.objects.exists()


def test_it_saves_a_policy_whose_rules_can_be_billed(admin_client, targets):
    priced, _ = targets
    response = admin_client.post(
        "/admin/routing/routingpolicy/add/", policy_form(priced, [{"target": priced.pk, "min_prompt_tokens": "1000"}]),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert RoutingRule.objects.get().target == priced


def test_it_refuses_a_target_whose_model_or_fallback_has_no_price(admin_client, openai, targets):
    unpriced = targets[1].model
    data = {
        "name": "Chain", "model": unpriced.pk, "tier": "", "strategy": "in_order",
        "fallbacks-TOTAL_FORMS": "1", "fallbacks-INITIAL_FORMS": "0", "fallbacks-MIN_NUM_FORMS": "0", "fallbacks-MAX_NUM_FORMS": "1000",
        "fallbacks-0-model": unpriced.pk, "fallbacks-0-position": "1",
    }
    html = admin_client.post("/admin/routing/routingtarget/add/", data).content.decode()

    assert "This target routes to GPT-UNPRICED (openai:gpt-unpriced), which has no price in force" in html
    assert not RoutingTarget.objects.filter(name="Chain").exists()

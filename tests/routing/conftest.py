import pytest

from routing.models import RoutingPolicy, RoutingRule
from tests.chat_fixtures import CHAIN, chain_target, model  # noqa: F401

PREMIUM = [("anthropic", "claude-opus-4-8"), ("openai", "o3")]


@pytest.fixture
def targets(providers_on_simulator):
    return {"economy": chain_target("Economy chain", CHAIN), "premium": chain_target("Premium chain", PREMIUM)}


@pytest.fixture
def routed_policy(tenant, targets):
    return RoutingPolicy.objects.create(name="Acme", tenant=tenant, default_target=targets["economy"])


def add_rule(policy, target, **conditions) -> RoutingRule:
    rule = RoutingRule(policy=policy, target=target, name=conditions.pop("name", "rule"), position=policy.rules.count(), **conditions)
    rule.full_clean()
    rule.save()
    return rule

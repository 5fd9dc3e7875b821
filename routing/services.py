"""Writes in the routing app: the starter policy, complexity calibration."""

from __future__ import annotations

from django.db import transaction

from providers.models import LLMModel
from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback

# Equivalent models on other providers, cheapest chain first. Models without a usable credential are
# simply skipped by the planner, so one set of chains serves every combination of configured providers.
STARTER_CHAINS = {
    "Economy chain": [("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini"), ("openrouter", "anthropic/claude-haiku-4.5"), ("sandbox", "sandbox-economy")],
    "Standard chain": [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4.1"), ("openrouter", "anthropic/claude-sonnet-4.5"), ("sandbox", "sandbox-standard")],
    "Premium chain": [("anthropic", "claude-opus-4-8"), ("openai", "o3"), ("openrouter", "openai/gpt-4o"), ("sandbox", "sandbox-premium")],
}


def _model(kind: str, model_id: str) -> LLMModel | None:
    return LLMModel.objects.filter(provider__kind=kind, model_id=model_id).first()


def target_ensure(*, name: str, chain: list[tuple[str, str]]) -> RoutingTarget:
    target = RoutingTarget.objects.filter(name=name).first()
    if target is not None:
        return target
    models = [m for m in (_model(*ref) for ref in chain) if m is not None]
    if not models:
        raise LookupError(f"none of the models of {name} is in the catalogue: run load_catalog first")
    target = RoutingTarget.objects.create(name=name, model=models[0])
    TargetFallback.objects.bulk_create(TargetFallback(target=target, model=m, position=i) for i, m in enumerate(models[1:], start=1))
    return target


@transaction.atomic
def starter_policy_ensure() -> RoutingPolicy:
    """The agency-wide default policy: economy by default, premium on escalation or complex messages,
    standard for long conversations. Created once; staff edit it in the admin afterwards."""
    existing = RoutingPolicy.objects.filter(is_agency_default=True).first()
    if existing is not None:
        return existing
    targets = {name: target_ensure(name=name, chain=chain) for name, chain in STARTER_CHAINS.items()}
    policy = RoutingPolicy.objects.create(name="Agency default", is_agency_default=True, default_target=targets["Economy chain"])
    RoutingRule.objects.bulk_create([
        RoutingRule(policy=policy, position=1, name="Escalation", on_escalation=True, target=targets["Premium chain"]),
        RoutingRule(policy=policy, position=2, name="Complex message", premium_share_percent=20, target=targets["Premium chain"]),
        RoutingRule(policy=policy, position=3, name="Long conversation", min_turns=12, target=targets["Standard chain"]),
    ])
    return policy


def calibration_store(*, tenant_id: int | None, share_percent: int, scores: list[float]) -> ComplexityCalibration | None:
    """Set the threshold that sends about `share_percent` % of these (recent) scores to premium."""
    if not scores:
        return None
    ordered = sorted(scores)
    index = min(len(ordered) - 1, max(0, int(len(ordered) * (1 - share_percent / 100))))
    calibration, _ = ComplexityCalibration.objects.update_or_create(
        tenant_id=tenant_id, share_percent=share_percent, defaults={"threshold": ordered[index], "sample_size": len(ordered)},
    )
    return calibration

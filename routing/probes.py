"""Which models the periodic health probes (providers.tasks) must cover: every model a routing policy can send to,
so that a dead primary or backup is found before traffic needs it (the probes' own pick is the cheapest few)."""

from __future__ import annotations

from providers.models import Credential
from routing.models import RoutingPolicy, RoutingRule
from routing.planner import target_models
from tenants.config_cache import memo


def _routed_models() -> dict[int, list[tuple[int | None, int]]]:
    """Per provider id, (the policy's tenant id or None for a shared policy, model id) of every policy's default
    target and enabled rules' targets, chains included, primaries first. Built once per probe run."""
    targets = [(p.default_target, p.tenant_id) for p in RoutingPolicy.objects.select_related("default_target").order_by("pk")]
    targets += [(r.target, r.policy.tenant_id) for r in
                RoutingRule.objects.filter(is_enabled=True).select_related("target", "policy").order_by("pk")]
    by_provider: dict[int, list[tuple[int | None, int]]] = {}
    for target, tenant_id in targets:
        for model in target_models(target):
            by_provider.setdefault(model.provider_id, []).append((tenant_id, model.pk))
    return by_provider


def policy_models(credential: Credential) -> list[int]:
    """The ids of the models routing can send to on this credential's provider. A client's own (BYOK) key is probed
    only for its own policy's models and the shared ones (the agency default, assistants' overrides): a probe costs
    a token on the key's owner."""
    routed = memo(("probe-routed-models",), _routed_models).get(credential.provider_id, [])
    mine = (None, credential.tenant_id)
    return list(dict.fromkeys(pk for tenant_id, pk in routed if credential.tenant_id is None or tenant_id in mine))

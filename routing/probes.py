"""Which models the periodic health probes (providers.tasks) must cover: every model a routing policy can send to,
so that a dead primary or backup is found before traffic needs it (the probes' own pick is the cheapest few)."""

from __future__ import annotations

from providers.models import Credential
from routing.models import RoutingPolicy, RoutingRule, RoutingTarget
from routing.planner import target_models


def policy_models(credential: Credential) -> list[int]:
    """The ids of the models of every policy's default target and enabled rules' targets (chains included), on
    this credential's provider, primaries first."""
    target_ids = set(RoutingPolicy.objects.values_list("default_target_id", flat=True))
    target_ids |= set(RoutingRule.objects.filter(is_enabled=True).values_list("target_id", flat=True))
    found: list[int] = []
    for target in RoutingTarget.objects.filter(pk__in=target_ids).select_related("model__provider").order_by("pk"):
        found += [m.pk for m in target_models(target) if m.provider_id == credential.provider_id and m.pk not in found]
    return found

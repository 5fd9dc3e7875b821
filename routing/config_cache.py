"""The routing configuration in the per-process configuration cache (tenants.config_cache), so that planning a
message does not re-read what is the same for every message of a tenant: its policy and rules, the targets' models
and their prices, the tier lists, the usable credentials, the calibrated thresholds.

`plan_route` plans inside `planning()` (one version check per message, or none inside an API request's scope).
Every save or delete of a model the planner reads, and a credential disabled by a queryset update
(`credential_disabled`), invalidates every process's entries; call `tenants.config_cache.config_changed()` after a
bulk update.
"""

from __future__ import annotations

from tenants.config_cache import config_changed, config_scope, memo, watch

__all__ = ["planning", "memo", "connect_signals"]

planning = config_scope


def connect_signals() -> None:
    from providers.models import Credential, LLMModel, ModelPrice, Provider
    from providers.signals import credential_disabled
    from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback

    watch(Provider, Credential, LLMModel, ModelPrice, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback, ComplexityCalibration)
    credential_disabled.connect(config_changed, dispatch_uid="config-cache-credential-disabled")

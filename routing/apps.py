from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        from providers.models import Credential, LLMModel, ModelPrice, Provider
        from providers.signals import credential_disabled
        from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback
        from tenants.config_cache import config_changed, watch

        # The planner caches what it reads (tenants.config_cache): any change to it, and a credential disabled by a
        # queryset update after a 401, invalidates every process's entries.
        watch(Provider, Credential, LLMModel, ModelPrice, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback,
              ComplexityCalibration)
        credential_disabled.connect(config_changed, dispatch_uid="config-cache-credential-disabled")

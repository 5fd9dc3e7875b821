from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        from providers.models import Credential, LLMModel, ModelPrice, Provider
        from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback
        from tenants.config_cache import watch

        # The planner caches what it reads (tenants.config_cache): any change to it invalidates every process's
        # entries (a credential disabled after a 401 is invalidated by providers.health itself).
        watch(Provider, Credential, LLMModel, ModelPrice, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback,
              ComplexityCalibration)

        from providers.tasks import register_probe_models
        from routing.probes import policy_models

        register_probe_models(policy_models)  # the health probes cover every model a policy can route to

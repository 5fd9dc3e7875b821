from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Clients"

    def ready(self) -> None:
        import tenants.schema  # noqa: F401 - registers the API key's OpenAPI security scheme
        from tenants.config_cache import watch
        from tenants.models import ApiKey, Tenant

        watch(Tenant, ApiKey)  # api_key_resolve caches a key with its tenant

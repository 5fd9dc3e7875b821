from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        from conversations.models import ApiKeyScope, Assistant
        from tenants.config_cache import watch

        watch(Assistant, ApiKeyScope)  # the API caches a key's assistant and a tenant's default one

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from providers.models import ProviderKind
from providers.services import provider_configure


class Command(BaseCommand):
    help = "Set a provider's base URL (what its SDK takes as base_url) or enable/disable it."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=ProviderKind.values)
        parser.add_argument("--base-url", help="e.g. https://api.anthropic.com, https://api.openai.com/v1, https://openrouter.ai/api/v1")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--enable", action="store_true")
        state.add_argument("--disable", action="store_true")

    def handle(self, *args, kind, base_url, enable, disable, **options):
        try:
            provider = provider_configure(kind=kind, base_url=base_url, is_enabled=True if enable else False if disable else None)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(json.dumps({"kind": provider.kind, "base_url": provider.base_url, "enabled": provider.is_enabled}))

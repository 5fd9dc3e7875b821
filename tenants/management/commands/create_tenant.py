import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a client (tenant) and print its first API key (shown once) as JSON."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--daily-token-budget", type=int)
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args, slug, name, daily_token_budget, timezone, **options):
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"a tenant with slug {slug!r} exists already; use issue_api_key {slug} for a new key")
        try:
            tenant, issued = tenant_create(slug=slug, name=name, daily_token_budget=daily_token_budget, timezone_name=timezone)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(json.dumps({
            "tenant": tenant.slug, "name": tenant.name, "daily_token_budget": tenant.daily_token_budget,
            "timezone": tenant.timezone, "api_key": issued.raw, "api_key_prefix": issued.api_key.prefix,
            "webhook_secret": tenant.webhook_secret,
        }))

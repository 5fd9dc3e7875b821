import json

from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import api_key_issue


class Command(BaseCommand):
    help = "Issue a new API key for a tenant; prints it once, as JSON."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args, slug, name, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {slug!r}")
        if len(name) > 100:
            raise CommandError(f"--name has at most 100 characters (it has {len(name)})")
        issued = api_key_issue(tenant=tenant, name=name)
        self.stdout.write(json.dumps({"tenant": slug, "api_key": issued.raw, "api_key_prefix": issued.api_key.prefix}))

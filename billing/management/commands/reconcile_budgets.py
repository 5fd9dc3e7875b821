import json

from django.core.management.base import BaseCommand, CommandError

from billing.budget import budget_rebuild
from providers.state import UNAVAILABLE
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Rebuild today's budget counters (per tenant, in its time zone) from the usage ledger, the source of truth."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG")

    def handle(self, *args, tenant, **options):
        tenants = Tenant.objects.filter(daily_token_budget__isnull=False)
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"no tenant {tenant!r} with a daily budget")
        try:
            report = {t.slug: budget_rebuild(tenant=t) for t in tenants.iterator()}
        except UNAVAILABLE as exc:
            raise CommandError(f"the shared state (REDIS_URL) cannot be reached: {exc}; run this again once it is back") from None
        self.stdout.write(json.dumps({"used_today": report}))

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from routing.drills import failover_drill
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Skip each routing chain's primary on purpose and check that a backup answers. Prints a JSON report."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="Drill this client's policy and credentials (default: the agency default policy).")

    def handle(self, *args, tenant, **options):
        owner = None
        if tenant:
            owner = Tenant.objects.filter(slug=tenant).first()
            if owner is None:
                raise CommandError(f"no tenant with slug {tenant!r}")
        self.stderr.write("running failover drill (one minimal request per chain)…")
        reports = failover_drill(tenant=owner)
        for report in reports:
            self.stderr.write(f"  {report['target']}: {report['status']}" + (f" via {report.get('answered_by')}" if report["status"] == "ok" else ""))
        self.stdout.write(json.dumps({"tenant": tenant, "chains": reports, "ok": all(r["status"] == "ok" for r in reports)}, indent=2))
        if not reports:
            self.stderr.write("no routing policy to drill: create one, or run seed_demo for the starter policy")
        if any(r["status"] != "ok" for r in reports):
            sys.exit(1)

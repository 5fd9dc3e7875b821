import json
import time
from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.rollup import rollup_usage


class Command(BaseCommand):
    help = "Roll the usage ledger up into DailyUsage (per tenant, day, provider, model, key ownership). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--date", dest="start", help="YYYY-MM-DD (default: yesterday)")
        parser.add_argument("--to", dest="end", help="YYYY-MM-DD: roll up every day from --date to this one")

    def handle(self, *args, start: str | None, end: str | None, **options):
        try:
            first = date.fromisoformat(start) if start else timezone.localdate() - timedelta(days=1)
            last = date.fromisoformat(end) if end else first
        except ValueError as exc:
            raise CommandError(f"dates are YYYY-MM-DD: {exc}") from exc
        if last < first:
            raise CommandError("--to is before --date")
        started = time.perf_counter()
        rows = rollup_usage(start=first, end=last)
        self.stdout.write(json.dumps({"from": first.isoformat(), "to": last.isoformat(), "rows": rows,
                                      "seconds": round(time.perf_counter() - started, 3)}))

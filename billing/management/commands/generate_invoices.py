import json
import time
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.invoicing import (
    InvoiceError, invoice_issue, invoices_generate, month_before_client, month_has_ended, month_has_started, parse_month,
    usage_reprice,
)
from billing.models import Invoice, InvoiceStatus
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Roll up a month's ledger and build (or refresh) each tenant's draft invoice; --issue numbers and freezes them. "
        "Issued invoices are left alone. Progress on stderr, a JSON summary on stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (default: the previous month)")
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")
        parser.add_argument("--issue", action="store_true", help="issue the drafts (gapless numbers; irreversible)")
        parser.add_argument("--reprice", action="store_true",
                            help="with --tenant: bill the month's usage at the client's current markup and BYOK fee first "
                                 "(to correct a wrong rate; refused while the month has an issued invoice)")

    def handle(self, *args, month: str | None, tenant: str | None, issue: bool, reprice: bool = False, **options):
        if month is not None:
            try:
                first = parse_month(month)
            except ValueError as exc:
                raise CommandError(f"--month is YYYY-MM: {exc}") from exc
        else:
            first = (timezone.localdate().replace(day=1) - timedelta(days=1)).replace(day=1)
        if not month_has_started(first):
            raise CommandError(f"--month {first:%Y-%m} has not started in any time zone yet")
        only = None
        if tenant is not None:
            only = Tenant.objects.filter(slug=tenant).first()
            if only is None:
                raise CommandError(f"no tenant {tenant!r}")
            if month_before_client(only, first):
                raise CommandError(f"--month {first:%Y-%m} ended before {tenant} became a client ({only.created_at:%Y-%m-%d})")

        self.stderr.style_func = None  # progress, not errors: no red
        started = time.perf_counter()
        if reprice:
            if only is None:
                raise CommandError("--reprice needs --tenant: it changes what one client is billed")
            try:
                count = usage_reprice(tenant=only, month=first)
            except InvoiceError as exc:
                raise CommandError(str(exc)) from None
            self.stderr.write(f"repriced {count} ledger row(s) of {first:%Y-%m} at markup {only.markup_percent} %, "
                              f"BYOK fee {only.byok_fee_percent} %")

        def progress(done: int, total: int, invoice: Invoice) -> None:
            self.stderr.write(f"[{done}/{total}] {invoice.tenant.slug}: {invoice.total} {invoice.currency} ({invoice.status})")

        invoices = invoices_generate(month=first, tenants=[only] if only else None, progress=progress)
        if issue:
            not_ended = [i.tenant.slug for i in invoices if i.status == InvoiceStatus.DRAFT and not month_has_ended(i.tenant, first)]
            if not_ended:
                raise CommandError(f"{first:%Y-%m} has not ended for {', '.join(not_ended)}: drafts built, nothing issued")
            issued = 0
            for index, each in enumerate(invoices):
                if each.status == InvoiceStatus.DRAFT:
                    invoices[index] = invoice_issue(invoice=each)
                    issued += 1
            self.stderr.write(f"issued {issued} invoice(s)")

        totals: dict[str, Decimal] = {}
        for invoice in invoices:
            totals[invoice.currency] = totals.get(invoice.currency, Decimal("0")) + invoice.total
        self.stdout.write(json.dumps({
            "month": first.strftime("%Y-%m"),
            "count": len(invoices),
            "totals": {currency: str(amount) for currency, amount in totals.items()},
            "seconds": round(time.perf_counter() - started, 3),
            "invoices": [
                {"id": i.pk, "tenant": i.tenant.slug, "number": i.number, "status": i.status, "total": str(i.total), "currency": i.currency}
                for i in invoices
            ],
        }))

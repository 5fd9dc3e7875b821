"""Monthly invoices, built from the DailyUsage roll-ups (themselves rebuilt from the ledger first).

- A month is the calendar month in the tenant's time zone: DailyUsage.day is already tenant-local.
- One line per section (agency usage / BYOK) x provider x model. Usage lines charge provider cost plus the
  tenant's markup; BYOK lines show usage the client paid its provider for, and charge only the platform fee.
  Each line amount is rounded half-up to the cent; totals are sums of line amounts.
- Drafts are rebuilt freely; issuing assigns the next number of a gapless yearly series (AH-2026-000123) and
  freezes the invoice. Corrections are credit notes: negative copies of the lines, numbered in the same series,
  which void the original so that a corrected invoice can be generated and issued for the month.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import (
    DailyUsage,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceSection,
    InvoiceSequence,
    InvoiceStatus,
    KeyOwnership,
    UsageRecord,
)
from billing.rollup import rollup_usage
from billing.services import tenant_local_date
from tenants.models import Tenant

CENT = Decimal("0.01")
FIRST_YEAR = 2000  # no month before this one is invoiced (an empty invoice for year 1 would take a number)
NUMBER_PREFIX = "AH"
SUM_FIELDS = ("calls", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens",
              "reasoning_tokens", "provider_cost")

Progress = Callable[[int, int, Invoice], None]


class InvoiceError(Exception):
    """A request the invoice rules refuse (issuing a void invoice, crediting a draft...)."""


def parse_month(value: str) -> date:
    """The first day of a month written YYYY-MM (ValueError otherwise): the form, the command and the finance page."""
    try:
        first = date.fromisoformat(f"{value.strip()}-01")
    except ValueError:
        raise ValueError(f"{value!r} is not a month written YYYY-MM") from None
    if not FIRST_YEAR <= first.year < 9999:  # month_bounds needs the next month; nothing was billed before
        raise ValueError(f"{value!r} is out of range ({FIRST_YEAR} to 9998)")
    return first


def month_bounds(month: date) -> tuple[date, date]:
    """First and last day of the month that contains `month`."""
    start = month.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return start, end


def month_has_started(month: date) -> bool:
    """Whether the month has begun somewhere (UTC+14 is a day ahead of UTC at most)."""
    return month <= timezone.localdate(timezone.now() + timedelta(days=1)).replace(day=1)


def month_has_ended(tenant: Tenant, month: date) -> bool:
    """Whether the month is over in the tenant's time zone (only then can its invoice be complete)."""
    return month_bounds(month)[1] < tenant_local_date(tenant, timezone.now())


def month_before_client(tenant: Tenant, month: date) -> bool:
    """Whether the month ended before the tenant was created, with no usage: an invoice would bill nothing and
    still take a number."""
    start, end = month_bounds(month)
    return (
        end < tenant_local_date(tenant, tenant.created_at)
        and not UsageRecord.objects.filter(tenant=tenant, local_date__gte=start, local_date__lte=end).exists()
    )


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class _LineData:
    section: str
    provider_kind: str
    model_id: int
    model_name: str
    billed_percent: Decimal
    billed: Decimal
    sums: dict[str, int | Decimal]


def _month_lines(start: date, end: date, tenant_ids: Iterable[int] | None = None) -> dict[int, list[_LineData]]:
    """The month's roll-ups summed per tenant x ownership x provider x model x rate: one GROUP BY query for all
    tenants."""
    rows = DailyUsage.objects.filter(day__gte=start, day__lte=end)
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=list(tenant_ids))
    rows = (
        rows.values("tenant_id", "ownership", "provider_kind", "model_id", "model__display_name", "billed_percent")
        .annotate(billed=Sum("billed_amount"), **{field: Sum(field) for field in SUM_FIELDS})
        .order_by("tenant_id", "ownership", "provider_kind", "model__display_name", "billed_percent")
    )
    lines: dict[int, list[_LineData]] = {}
    for row in rows:
        section = InvoiceSection.BYOK if row["ownership"] == KeyOwnership.BYOK else InvoiceSection.USAGE
        lines.setdefault(row["tenant_id"], []).append(_LineData(
            section=section, provider_kind=row["provider_kind"], model_id=row["model_id"],
            model_name=row["model__display_name"], billed_percent=row["billed_percent"], billed=row["billed"],
            sums={field: row[field] for field in SUM_FIELDS},
        ))
    return lines


@transaction.atomic
def _invoice_build(tenant: Tenant, start: date, end: date, lines: list[_LineData]) -> Invoice:
    # Serialise builders of this tenant's invoices. NO KEY UPDATE does not block the ledger's inserts, whose
    # foreign key check only takes KEY SHARE on the tenant row.
    tenant = Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
    invoice = (
        Invoice.objects.filter(tenant=tenant, kind=InvoiceKind.INVOICE, period_start=start)
        .exclude(status=InvoiceStatus.VOID).first()
    )
    if invoice is not None and invoice.status == InvoiceStatus.ISSUED:
        return invoice
    if invoice is None:
        invoice = Invoice(tenant=tenant, kind=InvoiceKind.INVOICE, period_start=start, period_end=end)
    else:
        invoice.lines.all().delete()

    new_lines = []
    for line in lines:
        new_lines.append(InvoiceLine(
            section=line.section, provider_kind=line.provider_kind, model_id=line.model_id, model_name=line.model_name,
            markup_percent=line.billed_percent, amount=to_cents(line.billed or Decimal("0")),
            **{**line.sums, "provider_cost": line.sums["provider_cost"] or Decimal("0")},
        ))
    invoice.provider_cost = sum((line.provider_cost for line in new_lines), Decimal("0.00000000"))
    invoice.subtotal = sum((line.amount for line in new_lines), Decimal("0.00"))
    invoice.total = invoice.subtotal
    invoice.generated_at = timezone.now()
    invoice.save()
    for line in new_lines:
        line.invoice = invoice
    InvoiceLine.objects.bulk_create(new_lines)
    return invoice


def invoice_generate(*, tenant: Tenant, month: date) -> Invoice:
    """Build (or rebuild) the tenant's draft invoice for the month from fresh roll-ups. An issued invoice for
    that month is returned untouched. The tenant's roll-ups for the month are rebuilt first, so late rows count."""
    [invoice] = invoices_generate(month=month, tenants=[tenant])
    return invoice


def invoices_generate(
    *, month: date, tenants: Iterable[Tenant] | None = None, progress: Progress | None = None,
) -> list[Invoice]:
    """Draft invoices for every tenant with usage in the month (or just `tenants`), after one roll-up of the month
    (of those tenants' rows only, when given).

    Tenants deactivated since are included: they still owe the month's usage. Each tenant is built in its own
    transaction, so a failure leaves the others done and a rerun picks up where it stopped."""
    start, end = month_bounds(month)
    chosen = sorted(tenants, key=lambda t: t.slug) if tenants is not None else None
    ids = [t.pk for t in chosen] if chosen is not None else None
    rollup_usage(start=start, end=end, tenant_ids=ids)
    lines = _month_lines(start, end, ids)
    if chosen is None:
        chosen = list(Tenant.objects.filter(pk__in=lines.keys()).order_by("slug"))
    invoices = []
    for index, each in enumerate(chosen, start=1):
        invoice = _invoice_build(each, start, end, lines.get(each.pk, []))
        invoices.append(invoice)
        if progress:
            progress(index, len(chosen), invoice)
    return invoices


def _next_number(year: int) -> str:
    sequence, _ = InvoiceSequence.objects.select_for_update().get_or_create(year=year)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return f"{NUMBER_PREFIX}-{year}-{sequence.last_number:06d}"


@transaction.atomic
def invoice_issue(*, invoice: Invoice) -> Invoice:
    """Give the draft the next number and freeze it. Issuing an issued invoice returns it unchanged.

    The number comes from a row-locked counter in this transaction: issuers queue on it for a moment, and a
    rolled-back issue gives its number back, so issued numbers have no gaps."""
    invoice = Invoice.objects.select_for_update().select_related("tenant").get(pk=invoice.pk)
    if invoice.status == InvoiceStatus.ISSUED:
        return invoice
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvoiceError(f"{invoice} is {invoice.status} and cannot be issued")
    if invoice.kind == InvoiceKind.INVOICE and not month_has_ended(invoice.tenant, invoice.period_start):
        # Issuing freezes the invoice: the rest of the month's usage would never be billed.
        raise InvoiceError(f"{invoice}: {invoice.period_start:%Y-%m} has not ended in {invoice.tenant.timezone}; issue it once it has")
    if invoice.kind == InvoiceKind.INVOICE and tenant_local_date(invoice.tenant, invoice.generated_at) <= invoice.period_end:
        # A draft built before the month ended lacks the rest of the month: issuing it would freeze it short.
        raise InvoiceError(f"{invoice}: this draft was built on {invoice.generated_at:%Y-%m-%d %H:%M} UTC, before "
                           f"{invoice.period_start:%Y-%m} ended in {invoice.tenant.timezone}; refresh it, then issue it")
    now = timezone.now()
    invoice.number = _next_number(timezone.localdate(now).year)
    invoice.status = InvoiceStatus.ISSUED
    invoice.issued_at = now
    invoice.client = {"name": invoice.tenant.name, "slug": invoice.tenant.slug, "timezone": invoice.tenant.timezone}
    invoice.save(update_fields=["number", "status", "issued_at", "client"])
    return invoice


@transaction.atomic
def credit_note_create(*, invoice: Invoice, reason: str) -> Invoice:
    """Cancel an issued invoice with an issued credit note (its lines negated) and mark the invoice void.

    The month can then be generated again (a new draft, with a new number once issued)."""
    if not reason.strip():
        raise InvoiceError("a credit note needs a reason")
    invoice = Invoice.objects.select_for_update().select_related("tenant").get(pk=invoice.pk)
    if invoice.kind != InvoiceKind.INVOICE:
        raise InvoiceError("only invoices can be credited")
    if invoice.status != InvoiceStatus.ISSUED:
        raise InvoiceError(f"{invoice} is {invoice.status}: only issued invoices are credited (edit or regenerate a draft)")
    note = Invoice.objects.create(
        tenant=invoice.tenant, kind=InvoiceKind.CREDIT_NOTE, corrects=invoice, period_start=invoice.period_start,
        period_end=invoice.period_end, currency=invoice.currency, provider_cost=-invoice.provider_cost,
        subtotal=-invoice.subtotal, total=-invoice.total, reason=reason.strip(),
    )
    InvoiceLine.objects.bulk_create([
        InvoiceLine(
            invoice=note, section=line.section, provider_kind=line.provider_kind, model_id=line.model_id,
            model_name=line.model_name, calls=-line.calls, input_tokens=-line.input_tokens,
            output_tokens=-line.output_tokens, cached_input_tokens=-line.cached_input_tokens,
            cache_write_tokens=-line.cache_write_tokens, cache_write_1h_tokens=-line.cache_write_1h_tokens,
            reasoning_tokens=-line.reasoning_tokens,
            provider_cost=-line.provider_cost, markup_percent=line.markup_percent, amount=-line.amount,
        )
        for line in invoice.lines.all()
    ])
    note = invoice_issue(invoice=note)
    invoice.status = InvoiceStatus.VOID
    invoice.save(update_fields=["status"])
    return note


@transaction.atomic
def usage_reprice(*, tenant: Tenant, month: date) -> int:
    """Bill the month's usage at the client's current rates (markup, BYOK fee), to correct a month billed at a wrong
    rate once its invoice was cancelled by a credit note. Every ledger row keeps the rates in force when its call was
    made, so changing a rate never reprices the past by itself. Refused while the month has an issued invoice: what was
    issued keeps matching the ledger. Returns how many rows were repriced."""
    start, end = month_bounds(month)
    tenant = Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)  # no invoice is built meanwhile
    if Invoice.objects.filter(tenant=tenant, kind=InvoiceKind.INVOICE, period_start=start, status=InvoiceStatus.ISSUED).exists():
        raise InvoiceError(f"{tenant.slug} has an issued invoice for {start:%Y-%m}: cancel it with a credit note first")
    return UsageRecord.objects.filter(tenant=tenant, local_date__gte=start, local_date__lte=end).reprice(
        markup_percent=tenant.markup_percent, byok_fee_percent=tenant.byok_fee_percent)


def invoice_for_download(*, pk: int) -> Invoice:
    """The invoice with what rendering needs (tenant, lines, the invoice a credit note corrects)."""
    return Invoice.objects.select_related("tenant", "corrects").prefetch_related("lines").get(pk=pk)


"""An invoice as a PDF (HTML template rendered by WeasyPrint) and as CSV (one row per line, then the total)."""

from __future__ import annotations

import csv
import io
import logging
from decimal import Decimal

from django.template.loader import render_to_string

from billing.models import Invoice, InvoiceLine, InvoiceSection

# fontTools logs every glyph subset at INFO: one PDF would flood the logs.
logging.getLogger("fontTools").setLevel(logging.WARNING)
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

CSV_COLUMNS = [
    "invoice_number", "kind", "status", "tenant", "period_start", "period_end", "section", "provider", "model",
    "calls", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens", "provider_cost", "markup_percent", "amount", "currency",
]


def _section_summary(lines: list[InvoiceLine]) -> dict:
    return {
        "lines": lines,
        "provider_cost": sum((line.provider_cost for line in lines), Decimal("0")),
        "amount": sum((line.amount for line in lines), Decimal("0")),
    }


def invoice_context(invoice: Invoice) -> dict:
    lines = list(invoice.lines.all())
    return {
        "invoice": invoice,
        "tenant": invoice.billed_to,
        "usage": _section_summary([line for line in lines if line.section == InvoiceSection.USAGE]),
        "byok": _section_summary([line for line in lines if line.section == InvoiceSection.BYOK]),
    }


def invoice_html(invoice: Invoice) -> str:
    return render_to_string("billing/invoice.html", invoice_context(invoice))


def invoice_pdf(invoice: Invoice) -> bytes:
    # Imported here: WeasyPrint loads Pango through cffi at import, which only PDF rendering needs.
    from weasyprint import HTML

    return HTML(string=invoice_html(invoice)).write_pdf()


def _plain(value):
    """Decimals in plain notation (a zero read from numeric(18, 8) is Decimal('0E-8'))."""
    return format(value, "f") if isinstance(value, Decimal) else value


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """A text cell a spreadsheet would read as a formula (=, +, -, @, tab, CR first) is written with a leading quote."""
    return f"'{value}" if value.startswith(FORMULA_PREFIXES) else value


def invoice_csv(invoice: Invoice) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    head = [invoice.number or "", invoice.kind, invoice.status, _text(invoice.billed_to["slug"]),
            invoice.period_start.isoformat(), invoice.period_end.isoformat()]
    for line in invoice.lines.all():
        writer.writerow(head + [
            line.section, line.provider_kind, _text(line.model_name), line.calls, line.input_tokens, line.output_tokens,
            line.cached_input_tokens, line.cache_write_tokens, line.cache_write_1h_tokens, line.reasoning_tokens,
            _plain(line.provider_cost), _plain(line.markup_percent), _plain(line.amount), invoice.currency,
        ])
    total = dict.fromkeys(CSV_COLUMNS, "") | dict(zip(CSV_COLUMNS, head)) | {
        "section": "total", "provider_cost": _plain(invoice.provider_cost), "amount": _plain(invoice.total), "currency": invoice.currency}
    writer.writerow(total.values())
    return out.getvalue()

"""Finance's invoice pages: list, PDF, CSV. Django sessions only (no API-key auth): a client's Bearer key is
not a session, so it gets the login page like anyone anonymous; staff need billing.download_invoice."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.invoicing import invoice_for_download, parse_month
from billing.models import Invoice
from billing.rendering import invoice_csv, invoice_pdf
from tenants.models import Tenant

DOWNLOAD_PERMISSION = "billing.download_invoice"


def finance_only(view):
    @wraps(view)
    @require_GET
    @login_required(login_url="admin:login")
    @permission_required(DOWNLOAD_PERMISSION, raise_exception=True)
    def wrapped(request, *args, **kwargs):
        return view(request, *args, **kwargs)

    return wrapped


@finance_only
def invoice_list(request):
    invoices = Invoice.objects.select_related("tenant", "corrects")
    month, month_error = None, ""
    if request.GET.get("month"):
        try:
            month = parse_month(request.GET["month"])
        except ValueError as exc:
            month_error = f"Month: {exc}. Showing every month."
    if month:
        invoices = invoices.filter(period_start=month)
    tenant_slug = request.GET.get("tenant", "")
    if tenant_slug:
        invoices = invoices.filter(tenant__slug=tenant_slug)
    page = Paginator(invoices, 100).get_page(request.GET.get("page"))
    return render(request, "billing/invoice_list.html", {
        "page": page, "month": month, "month_error": month_error, "tenant_slug": tenant_slug,
        "tenants": Tenant.objects.filter(invoices__isnull=False).distinct().order_by("name"),
        "title": "Invoices", "has_permission": True,
    })


def _download(pk: int) -> Invoice:
    try:
        return invoice_for_download(pk=pk)
    except Invoice.DoesNotExist:
        raise Http404("no such invoice") from None


def _attachment(content, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@finance_only
def invoice_pdf_download(request, pk: int):
    invoice = _download(pk)
    return _attachment(invoice_pdf(invoice), "application/pdf", f"{invoice.filename}.pdf")


@finance_only
def invoice_csv_download(request, pk: int):
    invoice = _download(pk)
    return _attachment(invoice_csv(invoice), "text/csv; charset=utf-8", f"{invoice.filename}.csv")

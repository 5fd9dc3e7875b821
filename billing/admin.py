from __future__ import annotations

from datetime import date

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from tenants.admin_paginator import EstimatedCountPaginator
from billing import views as billing_views
from billing.invoicing import (
    InvoiceError, credit_note_create, invoice_issue, invoices_generate, month_before_client, month_has_started, parse_month,
)
from billing.models import BudgetAlert, DailyUsage, Invoice, InvoiceKind, InvoiceLine, InvoiceStatus, UsageRecord
from providers.admin import ProviderKindFilter, SlowFilter
from tenants.models import Tenant


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived or append-only data: staff look, nobody edits here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "tenant", "provider_kind", "model_name", "ownership", "input_tokens", "output_tokens",
        "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost", "provider_reported_cost", "cost_mismatch",
        "latency_ms",
    )
    # "ownership" is the BYOK filter; the provider's comes from the fixed list of kinds (no DISTINCT over the ledger).
    list_filter = ("ownership", ProviderKindFilter, SlowFilter, "usage_estimated", "tenant", "model")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    search_fields = ("=request_id", "=conversation_id", "=message_id")
    paginator = EstimatedCountPaginator  # the ledger is large: never COUNT(*) it
    show_full_result_count = False  # ... nor a second, unfiltered COUNT(*) per page

    @admin.display(boolean=True, description="cost mismatch")
    def cost_mismatch(self, obj: UsageRecord) -> bool:
        return obj.cost_mismatch


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdmin):
    list_display = (
        "day", "tenant", "provider_kind", "model", "ownership", "calls", "input_tokens", "output_tokens",
        "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "provider_cost", "billed_amount",
    )
    list_filter = ("ownership", ProviderKindFilter, "tenant", "model")
    list_select_related = ("tenant", "model__provider")
    date_hierarchy = "day"
    ordering = ("-day",)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("day", "tenant", "threshold", "used_tokens", "budget_tokens", "acknowledged", "created_at")
    list_filter = ("acknowledged", "threshold")
    list_select_related = ("tenant",)
    readonly_fields = ("tenant", "day", "threshold", "used_tokens", "budget_tokens", "created_at")
    actions = ["acknowledge"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        alerts = list(queryset.filter(acknowledged=False))
        BudgetAlert.objects.filter(pk__in=[a.pk for a in alerts]).update(acknowledged=True)
        for alert in alerts:
            self.log_change(request, alert, "Acknowledged.")
        self.message_user(request, f"Acknowledged {len(alerts)} alert(s).")


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = (
        "section", "provider_kind", "model_name", "calls", "input_tokens", "output_tokens", "cached_input_tokens",
        "cache_write_tokens", "reasoning_tokens", "provider_cost", "markup_percent", "amount",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class GenerateInvoicesForm(forms.Form):
    month = forms.CharField(help_text="YYYY-MM", widget=forms.TextInput(attrs={"type": "month"}))
    tenant = forms.ModelChoiceField(Tenant.objects.all(), required=False, empty_label="all clients with usage")

    def clean_month(self) -> date:
        try:
            first = parse_month(self.cleaned_data["month"])
        except ValueError:
            raise forms.ValidationError("Enter a month as YYYY-MM.") from None
        if not month_has_started(first):
            raise forms.ValidationError(f"{first:%Y-%m} has not started in any time zone yet.")
        return first

    def clean(self):
        cleaned = super().clean()
        month, tenant = cleaned.get("month"), cleaned.get("tenant")
        if month and tenant and month_before_client(tenant, month):
            self.add_error("month", f"{month:%Y-%m} ended before {tenant} became a client ({tenant.created_at:%Y-%m-%d}).")
        return cleaned


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Invoices are generated from the roll-ups, never typed in: every field is read-only, drafts are refreshed
    or issued with the actions, issued invoices cannot be changed or deleted (the model refuses too)."""

    change_list_template = "admin/billing/invoice/change_list.html"
    list_display = ("__str__", "tenant", "period_start", "kind", "status", "total", "currency", "issued_at")
    list_filter = ("status", "kind", "period_start", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("number", "tenant__name", "tenant__slug")
    date_hierarchy = "period_start"
    inlines = [InvoiceLineInline]
    actions = ["refresh_drafts", "issue", "credit"]
    readonly_fields = (
        "tenant", "kind", "corrects", "period_start", "period_end", "number", "status", "currency", "provider_cost",
        "subtotal", "total", "reason", "generated_at", "issued_at",
    )

    def has_add_permission(self, request):
        return False  # "Generate invoices" above the list, or the generate_invoices command

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_frozen:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_frozen:
            return False
        return super().has_delete_permission(request, obj)

    def get_list_display(self, request):
        if request.user.has_perm(billing_views.DOWNLOAD_PERMISSION):
            return (*self.list_display, "downloads")
        return self.list_display

    def get_readonly_fields(self, request, obj=None):
        if request.user.has_perm(billing_views.DOWNLOAD_PERMISSION):
            return (*self.readonly_fields, "downloads")
        return self.readonly_fields

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would trip over issued invoices; drafts are deleted one by one
        return actions

    @admin.display(description="download")
    def downloads(self, obj: Invoice) -> str:
        return format_html(
            '<a href="{}">PDF</a> · <a href="{}">CSV</a>',
            reverse("admin:billing_invoice_pdf", args=[obj.pk]), reverse("admin:billing_invoice_csv", args=[obj.pk]),
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/pdf/", wrap(billing_views.invoice_pdf_download), name="billing_invoice_pdf"),
            path("<int:pk>/csv/", wrap(billing_views.invoice_csv_download), name="billing_invoice_csv"),
            path("generate/", wrap(self.generate_view), name="billing_invoice_generate"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_generate": self.has_change_permission(request)}
        return super().changelist_view(request, extra_context)

    def generate_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = GenerateInvoicesForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            chosen = form.cleaned_data["tenant"]
            invoices = invoices_generate(month=form.cleaned_data["month"], tenants=[chosen] if chosen else None)
            drafts = sum(1 for invoice in invoices if invoice.status == InvoiceStatus.DRAFT)
            self.message_user(request, f"{drafts} draft(s) generated or refreshed; {len(invoices) - drafts} already issued, left alone.")
            return redirect("admin:billing_invoice_changelist")
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form, "title": "Generate invoices"}
        return TemplateResponse(request, "admin/billing/invoice/generate.html", context)

    @admin.action(description="Generate / refresh draft", permissions=["change"])
    def refresh_drafts(self, request, queryset):
        by_month: dict[date, list[Tenant]] = {}
        for invoice in queryset.filter(kind=InvoiceKind.INVOICE, status=InvoiceStatus.DRAFT).select_related("tenant"):
            by_month.setdefault(invoice.period_start, []).append(invoice.tenant)
        # One roll-up per month for the selected clients, not one per invoice.
        refreshed = sum(len(invoices_generate(month=month, tenants=tenants)) for month, tenants in by_month.items())
        self.message_user(request, f"Refreshed {refreshed} draft(s) from the ledger; issued invoices are never rebuilt.")

    @admin.action(description="Issue (number and freeze)", permissions=["change"])
    def issue(self, request, queryset):
        drafts = list(queryset.filter(status=InvoiceStatus.DRAFT).select_related("tenant").order_by("pk"))
        if not drafts:
            self.message_user(request, "Nothing issued: only drafts can be issued, and none was selected.", messages.WARNING)
            return
        # Issue what the ledger says now, not what the draft said when it was built (maybe before the month ended).
        by_month: dict[date, list[Tenant]] = {}
        for invoice in drafts:
            if invoice.kind == InvoiceKind.INVOICE:
                by_month.setdefault(invoice.period_start, []).append(invoice.tenant)
        for month, tenants in by_month.items():
            invoices_generate(month=month, tenants=tenants)
        issued = []
        for invoice in drafts:
            try:
                issued.append(invoice_issue(invoice=invoice))
            except InvoiceError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if issued:
            self.message_user(request, f"Issued {len(issued)} invoice(s): {', '.join(i.number for i in issued)}.")

    @admin.action(description="Cancel with a credit note (then regenerate the month)", permissions=["change"])
    def credit(self, request, queryset):
        for invoice in queryset.filter(kind=InvoiceKind.INVOICE, status=InvoiceStatus.ISSUED).order_by("pk"):
            try:
                note = credit_note_create(invoice=invoice, reason=f"Cancelled from the admin by {request.user}.")
            except InvoiceError as exc:
                self.message_user(request, f"{invoice}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{invoice.number} cancelled by credit note {note.number}.")

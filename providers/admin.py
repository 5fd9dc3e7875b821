"""Providers: their credentials (write-only keys), health, the model catalogue with dated prices, attempt logs."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from tenants.admin_paginator import EstimatedCountPaginator
from providers.errors import NoPriceError
from providers.health import circuits_not_closed
from providers.models import AttemptLog, Credential, LLMModel, ModelPrice, Provider, ProviderKind, price_in_force
from providers.state import UNAVAILABLE

log = logging.getLogger(__name__)

HEALTH_WINDOW = timedelta(hours=1)


def _recent_attempts(*, errors: bool) -> Subquery:
    """Attempts (or failed ones) of this provider in the last hour: one indexed subquery per row."""
    rows = AttemptLog.objects.filter(provider_kind=OuterRef("kind"), created_at__gte=timezone.now() - HEALTH_WINDOW)
    if errors:
        rows = rows.exclude(outcome="ok")
    counted = rows.order_by().values("provider_kind").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _circuits_by_credential() -> dict[int, list[str]] | None:
    """Circuits that are not closed, per credential ("open: gpt-4o-mini"); None when the shared state is down."""
    try:
        circuits = circuits_not_closed()
    except UNAVAILABLE as exc:
        log.warning("admin: breaker state unavailable: %s", exc, extra={"throttle": True})
        return None
    out: dict[int, list[str]] = {}
    for circuit in circuits:
        out.setdefault(circuit["credential_id"], []).append(f"{circuit['state']}: {circuit['model']}")
    return out


def _circuits_text(by_credential: dict[int, list[str]] | None, credential_id: int) -> str:
    if by_credential is None:
        return "unknown (shared state down)"
    return ", ".join(by_credential.get(credential_id, [])) or "all closed"


class EnableDisableActions:
    """Enable / disable actions that record each change in the object's history."""

    @admin.action(description="Enable selected", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = [obj for obj in queryset if obj.is_enabled != enabled]
        for obj in changed:
            # One save per row (not a queryset update): the routing configuration cache hears of it.
            obj.is_enabled = enabled
            fields = ["is_enabled"]
            if enabled and isinstance(obj, Credential):
                obj.needs_attention = False  # staff re-enabling a rejected key have dealt with it
                fields.append("needs_attention")
            obj.save(update_fields=fields)
            self.log_change(request, obj, "Enabled." if enabled else "Disabled.")
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {len(changed)} of {queryset.count()} selected.")


@admin.register(Provider)
class ProviderAdmin(EnableDisableActions, admin.ModelAdmin):
    list_display = ("kind", "base_url", "is_enabled", "credentials_enabled", "attempts_last_hour", "errors_last_hour")
    actions = ["enable", "disable"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _credentials=Count("credentials", filter=Q(credentials__is_enabled=True), distinct=True),
            _attempts=_recent_attempts(errors=False),
            _errors=_recent_attempts(errors=True),
        )

    @admin.display(description="enabled credentials", ordering="_credentials")
    def credentials_enabled(self, obj: Provider) -> int:
        return obj._credentials

    @admin.display(description="attempts (last hour)", ordering="_attempts")
    def attempts_last_hour(self, obj: Provider) -> int:
        return obj._attempts

    @admin.display(description="errors (last hour)", ordering="_errors")
    def errors_last_hour(self, obj: Provider) -> str:
        if not obj._attempts:
            return "-"
        return f"{obj._errors} ({100 * obj._errors / obj._attempts:.1f} %)"


class CredentialForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back, not even into the form's HTML.
    api_key = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only. Leave empty to keep the current key.",
    )

    class Meta:
        model = Credential
        fields = ("provider", "tenant", "label", "is_enabled")

    def clean_api_key(self):
        key = (self.cleaned_data.get("api_key") or "").strip()
        if key:
            try:
                Credential.check_key(key)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return key

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("api_key") and "api_key" not in self.errors:  # not twice
            self.add_error("api_key", "A new credential needs its API key.")
        provider, label = cleaned.get("provider"), cleaned.get("label")
        if provider and label and cleaned.get("tenant") is None:
            # uniq_credential_label does not hold for agency keys: PostgreSQL treats NULL tenants as distinct.
            clash = Credential.objects.filter(provider=provider, tenant__isnull=True, label=label).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("label", "The agency already has a credential with this provider and label: change its key instead.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("api_key"):
            self.instance.set_key(self.cleaned_data["api_key"])
        return super().save(commit)


@admin.register(Credential)
class CredentialAdmin(EnableDisableActions, admin.ModelAdmin):
    form = CredentialForm
    list_display = (
        "label", "provider", "owner", "masked_key", "is_enabled", "needs_attention", "last_used_at", "last_error_at", "last_error_short",
    )
    list_filter = ("provider", "is_enabled", "needs_attention", ("tenant", admin.EmptyFieldListFilter))
    list_select_related = ("provider", "tenant")
    search_fields = ("label", "tenant__name", "tenant__slug")
    readonly_fields = (
        "masked_key", "circuits", "last_error", "last_error_at", "disabled_reason", "disabled_at", "last_used_at", "created_at",
    )
    actions = ["enable", "disable"]

    def get_list_display(self, request):
        circuits = cache(_circuits_by_credential)  # one SCAN of the breaker keys per page, not per row

        @admin.display(description="circuits not closed")
        def breaker_state(obj: Credential) -> str:
            return _circuits_text(circuits(), obj.pk)

        return (*self.list_display, breaker_state)

    @admin.display(description="circuits not closed")
    def circuits(self, obj: Credential) -> str:
        return _circuits_text(_circuits_by_credential(), obj.pk) if obj.pk is not None else "-"

    @admin.display(description="last error")
    def last_error_short(self, obj: Credential) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.display(description="owner")
    def owner(self, obj: Credential) -> str:
        return f"BYOK: {obj.tenant}" if obj.tenant_id else "agency"


class ModelPriceFormSet(forms.BaseInlineFormSet):
    """An enabled model must have a price in force: a call to it is never billed as zero. Decided from the prices
    this save leaves (the existing ones not deleted in it, plus the new ones), as `price_in_force` picks them for the
    ledger. `self.instance` is the model as submitted (the admin builds the inlines on the unsaved object), so
    enabling and pricing can be one save."""

    def clean(self):
        super().clean()
        if not self.instance.is_enabled:
            return
        kept = [
            form.instance for form in self.forms
            if (form.instance.pk or form.has_changed()) and not self._should_delete_form(form) and form.instance.valid_from
        ]
        try:
            price_in_force(self.instance, kept, timezone.now())
        except NoPriceError:
            raise forms.ValidationError(
                "This model has no price in force: add one valid from now or earlier before enabling it "
                "(calls to it could not be billed)."
            ) from None


class ModelPriceInline(admin.TabularInline):
    model = ModelPrice
    formset = ModelPriceFormSet
    extra = 0
    fields = ("valid_from", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok",
              "cache_write_1h_per_mtok", "tiers", "source")

    def has_change_permission(self, request, obj=None):
        return False  # prices are dated rows: add a new one, never rewrite what was billed


@admin.register(LLMModel)
class LLMModelAdmin(EnableDisableActions, admin.ModelAdmin):
    list_display = (
        "display_name", "model_id", "provider", "tier", "context_window", "is_enabled", "input_price", "output_price", "price_from",
    )
    list_filter = ("provider", "tier", "is_enabled")
    list_select_related = ("provider",)
    search_fields = ("model_id", "display_name")
    inlines = [ModelPriceInline]
    actions = ["enable", "disable"]

    def get_queryset(self, request):
        current = ModelPrice.objects.filter(model=OuterRef("pk"), valid_from__lte=timezone.now()).order_by("-valid_from")
        return super().get_queryset(request).annotate(
            _input=Subquery(current.values("input_per_mtok")[:1]),
            _output=Subquery(current.values("output_per_mtok")[:1]),
            _from=Subquery(current.values("valid_from")[:1]),
        )

    @admin.display(description="input $/MTok (now)", ordering="_input")
    def input_price(self, obj: LLMModel):
        return obj._input if obj._input is not None else "no price"

    @admin.display(description="output $/MTok (now)", ordering="_output")
    def output_price(self, obj: LLMModel):
        return obj._output

    @admin.display(description="price since", ordering="_from")
    def price_from(self, obj: LLMModel):
        return obj._from

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        if enabled:
            priceless = [m for m in queryset if m._from is None]  # get_queryset annotates the price in force
            if priceless:
                names = ", ".join(m.model_id for m in priceless)
                self.message_user(
                    request, f"Not enabled: {names} has no price in force (calls to it could not be billed). Add a price first.",
                    messages.ERROR,
                )
                queryset = queryset.exclude(pk__in=[m.pk for m in priceless])
        super()._set_enabled(request, queryset, enabled)


class ProviderKindFilter(admin.SimpleListFilter):
    """The provider, from the fixed list of kinds (a plain filter on a column without choices would run a
    SELECT DISTINCT over the whole table)."""

    title = "provider"
    parameter_name = "provider_kind"

    def lookups(self, request, model_admin):
        return ProviderKind.choices

    def queryset(self, request, queryset):
        return queryset.filter(provider_kind=self.value()) if self.value() else queryset


class FailedFilter(admin.SimpleListFilter):
    """Failed calls. `failed_condition` says what "failed" means for the rows (a subclass may change it)."""

    title = "failed"
    parameter_name = "failed"

    def lookups(self, request, model_admin):
        return [("yes", "Failed"), ("no", "Succeeded")]

    def queryset(self, request, queryset):
        condition = self.failed_condition()
        if self.value() == "yes":
            return queryset.filter(condition)
        if self.value() == "no":
            return queryset.exclude(condition)
        return queryset

    def failed_condition(self) -> Q:
        return ~Q(outcome="ok")


class SlowFilter(admin.SimpleListFilter):
    """Calls slower than ADMIN_SLOW_CALL_MS (default 10 s)."""

    title = "speed"
    parameter_name = "slow"

    @staticmethod
    def threshold_ms() -> int:
        return settings.ADMIN_SLOW_CALL_MS

    def lookups(self, request, model_admin):
        return [("yes", f"Slow (over {self.threshold_ms() / 1000:g} s)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(latency_ms__gt=self.threshold_ms())
        return queryset


@admin.register(AttemptLog)
class AttemptLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "provider_kind", "model", "credential", "outcome", "status_code", "latency_ms", "is_probe")
    # No plain filter on `outcome`: it would SELECT DISTINCT over the whole table on every page.
    list_filter = (ProviderKindFilter, FailedFilter, SlowFilter, "is_probe", "model")
    list_select_related = ("model__provider", "credential__provider", "credential__tenant")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

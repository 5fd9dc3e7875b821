"""Clients: tenants, their budgets and API keys. The assistants and routing policy inlines are added by the apps
that own them (conversations/admin.py builds the full client page: apps import only downwards)."""

from django.contrib import admin, messages
from django.db.models import Count, Q

from tenants.models import ApiKey, Tenant
from tenants.services import api_key_issue, api_key_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at", "rate_limit_per_minute")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # keys are issued with "Add API key" or the "Issue API key" action, which show the secret once


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = (
        "name", "slug", "is_active", "timezone", "daily_token_budget", "monthly_spend_cap", "markup_percent", "active_keys",
    )
    list_filter = ("is_active",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)
    fieldsets = [
        (None, {"fields": ("name", "slug", "is_active", "timezone", "account_manager_email", "created_at")}),
        ("Budgets and billing", {
            "description": "Every change here is kept in the page's history.",
            "fields": ("daily_token_budget", "monthly_spend_cap", "markup_percent", "byok_fee_percent", "rate_limit_per_minute"),
        }),
        ("Data and callbacks", {"fields": ("retention_days", "webhook_secret"), "classes": ("collapse",)}),
    ]
    inlines = [ApiKeyInline]
    actions = ["issue_api_key"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)),
        )

    @admin.display(description="active keys", ordering="_active_keys")
    def active_keys(self, obj: Tenant) -> int:
        return obj._active_keys

    @admin.action(description="Issue a new API key (shown once)", permissions=["change"])
    def issue_api_key(self, request, queryset):
        for tenant in queryset:
            issued = api_key_issue(tenant=tenant, name=f"issued by {request.user}")
            self.log_change(request, tenant, f"Issued API key {issued.api_key.prefix}…")
            self.message_user(
                request, f"New API key for {tenant}: {issued.raw} — copy it now, it will not be shown again.", messages.WARNING
            )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "tenant", "name", "created_at", "last_used_at", "revoked_at", "rate_limit_per_minute")
    list_filter = ("tenant", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("tenant",)
    search_fields = ("prefix", "name", "tenant__name", "tenant__slug")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    autocomplete_fields = ["tenant"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:  # the secret is generated, not typed: a new key needs only its client and a name
            return ("tenant", "name", "rate_limit_per_minute")
        return ("tenant", "name", "prefix", "created_at", "last_used_at", "revoked_at", "rate_limit_per_minute")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        issued = api_key_issue(key=obj)
        # Shown once, in the message after the save; only the hash and the prefix are stored.
        self.message_user(
            request, f"New API key for {obj.tenant}: {issued.raw} — copy it now, it will not be shown again.", messages.WARNING
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(api_key=key)
            self.log_change(request, key, "Revoked.")
        self.message_user(request, f"Revoked {len(keys)} key(s).")

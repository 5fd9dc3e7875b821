"""Conversations: assistants, read-only transcripts (each reply with its model, cost, route and attempts), messages,
feedback. Also the full client page: the tenant admin with its assistants and routing policy (this app sits on top
of tenants and routing, so it is the one that may put them together)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from tenants.admin_paginator import EstimatedCountPaginator
from conversations.images import shown
from conversations.models import ApiKeyScope, Assistant, Conversation, Feedback, Message, MessageRole, MessageStatus
from providers.admin import FailedFilter, ProviderKindFilter, SlowFilter
from routing.admin import RoutingPolicyForm
from routing.models import RoutingPolicy
from tenants.admin import TenantAdmin
from tenants.models import Tenant


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --------------------------------------------------------------------------------------------- clients

class AssistantInline(admin.StackedInline):
    model = Assistant
    extra = 0
    fields = (("name", "slug", "is_active", "is_default"), "instructions", ("default_max_tokens", "temperature"), "routing_policy")
    prepopulated_fields = {"slug": ("name",)}
    show_change_link = True


class RoutingPolicyInline(admin.StackedInline):
    """The client's own routing policy (rules are edited on the policy's page: "change" link)."""

    model = RoutingPolicy
    form = RoutingPolicyForm
    fk_name = "tenant"
    max_num = 1
    extra = 0
    can_delete = True
    show_change_link = True
    fields = ("name", "default_target", ("over_budget", "allow_agency_fallback"), "escalation_phrases")
    autocomplete_fields = ["default_target"]
    verbose_name = "routing policy (empty: the agency default applies)"


admin.site.unregister(Tenant)


@admin.register(Tenant)
class ClientAdmin(TenantAdmin):
    inlines = [*TenantAdmin.inlines, RoutingPolicyInline, AssistantInline]


# --------------------------------------------------------------------------------------------- assistants

@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "slug", "is_active", "is_default", "routing_policy", "created_at")
    list_filter = ("is_active", "tenant")
    list_select_related = ("tenant", "routing_policy")
    search_fields = ("name", "slug", "tenant__name", "tenant__slug")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ["tenant"]
    fieldsets = [
        (None, {"fields": ("tenant", ("name", "slug"), ("is_active", "is_default"))}),
        ("Behaviour", {"fields": ("instructions", "greeting", ("default_max_tokens", "temperature"), "routing_policy")}),
        ("Browser access", {"fields": ("allowed_origins",)}),
    ]


@admin.register(ApiKeyScope)
class ApiKeyScopeAdmin(admin.ModelAdmin):
    list_display = ("api_key", "assistant")
    list_select_related = ("api_key__tenant", "assistant__tenant")
    autocomplete_fields = ["assistant"]
    raw_id_fields = ["api_key"]


# --------------------------------------------------------------------------------------------- transcripts

def attempts_html(message: Message) -> str:
    attempts = (message.route_decision or {}).get("attempts") or []
    if not attempts:
        return "-"
    return format_html(
        "<ol>{}</ol>",
        format_html_join(
            "", "<li>{}: <b>{}</b> · {} ms{}</li>",
            ((a.get("candidate", "?"), a.get("outcome", "?"), a.get("latency_ms", 0),
              f" · {a['error'][:200]}" if a.get("error") else "") for a in attempts),
        ),
    )


class MessageInline(ReadOnlyMixin, admin.StackedInline):
    """The transcript: every message in order; replies show what answered, what it cost and why it was routed there."""

    model = Message
    extra = 0
    can_delete = False
    fields = (
        ("role", "status", "created_at"), "content",
        ("provider_kind", "model_name", "finish_reason"),
        ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost", "latency_ms"),
        ("route_reason", "complexity_score"), "attempts", ("error_code", "error_detail"),
    )
    readonly_fields = (
        "role", "status", "created_at", "content", "provider_kind", "model_name", "finish_reason", "input_tokens",
        "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost", "latency_ms", "route_reason", "complexity_score",
        "attempts", "error_code", "error_detail",
    )

    @admin.display(description="attempts")
    def attempts(self, obj: Message) -> str:
        return attempts_html(obj)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "tenant", "assistant", "external_user_id", "input_tokens", "output_tokens", "cost", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "assistant")
    search_fields = ("=id", "=external_user_id", "=client_ref")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = ("id", "tenant", "assistant", "external_user_id", "client_ref", "metadata", "input_tokens", "output_tokens", "cost",
              "created_at", "updated_at")
    readonly_fields = fields
    inlines = [MessageInline]


class MessageFailedFilter(FailedFilter):
    def failed_condition(self) -> Q:
        return Q(status=MessageStatus.FAILED)


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at", "tenant", "conversation_link", "role", "status", "provider_kind", "model_name", "input_tokens",
        "output_tokens", "cost", "latency_ms", "route_reason",
    )
    list_filter = ("role", MessageFailedFilter, SlowFilter, ProviderKindFilter, "tenant", "model")
    list_select_related = ("tenant",)
    search_fields = ("=id", "=conversation__id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = (
        "id", "tenant", "conversation", "role", "status", "mode", "created_at", "completed_at", "content", "images_sent",
        "escalate", "provider_kind", "model_name", "finish_reason", "input_tokens", "output_tokens", "cached_input_tokens",
        "cache_write_tokens", "reasoning_tokens", "cost", "latency_ms", "ttft_ms", "complexity_score", "route_reason",
        "attempts", "error_code", "error_detail",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # The list never shows these: leave the large columns in the table.
            queryset = queryset.defer("content", "route_decision", "metadata", "images", "error_detail")
        return queryset

    @admin.display(description="conversation")
    def conversation_link(self, obj: Message) -> str:
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}…</a>', url, str(obj.conversation_id)[:8])

    @admin.display(description="attempts")
    def attempts(self, obj: Message) -> str:
        return attempts_html(obj) if obj.role == MessageRole.ASSISTANT else "-"

    @admin.display(description="images")
    def images_sent(self, obj: Message) -> str:
        """Each image as a link (a URL) or its type, size and hash (inline data): never the data itself."""
        if not obj.images:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}", (
            (format_html('<a href="{}" rel="noreferrer">{}</a>', item["url"], item["url"][:120]) if "url" in item
             else f"{item['media_type']}, {item['base64_chars']:,} base64 characters, SHA-256 {item['sha256'][:16]}…",)
            for item in shown(obj.images)
        ))


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "tenant", "rating", "comment", "reply_link", "reply_model")
    list_filter = ("rating", ("message__tenant", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("message__tenant",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fields = ("message", "rating", "comment", "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="client", ordering="message__tenant__name")
    def tenant(self, obj: Feedback) -> str:
        return str(obj.message.tenant)

    @admin.display(description="model")
    def reply_model(self, obj: Feedback) -> str:
        return obj.message.model_name

    @admin.display(description="transcript")
    def reply_link(self, obj: Feedback) -> str:
        url = reverse("admin:conversations_conversation_change", args=[obj.message.conversation_id])
        return format_html('<a href="{}">open</a>', url)

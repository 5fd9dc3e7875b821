from django.contrib import admin, messages

from routing.drills import failover_drill
from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback


class TargetFallbackInline(admin.TabularInline):
    model = TargetFallback
    extra = 1
    autocomplete_fields = ["model"]


@admin.register(RoutingTarget)
class RoutingTargetAdmin(admin.ModelAdmin):
    list_display = ("name", "model", "tier", "strategy")
    list_select_related = ("model__provider",)
    autocomplete_fields = ["model"]
    search_fields = ["name"]
    inlines = [TargetFallbackInline]


class RoutingRuleInline(admin.StackedInline):
    model = RoutingRule
    extra = 0
    autocomplete_fields = ["target"]
    fieldsets = [
        (None, {"fields": (("position", "name", "is_enabled"), "target")}),
        ("Conditions (all that are set must hold)", {"fields": (
            "on_escalation", ("min_turns", "min_conversation_tokens", "min_prompt_tokens"),
            ("min_complexity", "premium_share_percent"), "pattern", "metadata_equals",
            ("needs_tools", "needs_vision"), "budget_used_percent",
        )}),
    ]


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "is_agency_default", "default_target", "allow_agency_fallback", "over_budget", "updated_at")
    list_select_related = ("tenant", "default_target")
    autocomplete_fields = ["default_target"]
    inlines = [RoutingRuleInline]
    actions = ["run_failover_drill"]

    @admin.action(description="Run a failover drill (skip each chain's primary)")
    def run_failover_drill(self, request, queryset):
        for policy in queryset.select_related("tenant"):
            for report in failover_drill(tenant=policy.tenant):
                level = messages.SUCCESS if report["status"] == "ok" else messages.ERROR
                detail = f"answered by {report['answered_by']} in {report['latency_ms']} ms" if report["status"] == "ok" else report.get("error", "")
                self.message_user(request, f"{policy}: {report['target']}: {report['status']} — {detail}", level)


@admin.register(ComplexityCalibration)
class ComplexityCalibrationAdmin(admin.ModelAdmin):
    list_display = ("tenant", "share_percent", "threshold", "sample_size", "computed_at")
    readonly_fields = ("tenant", "share_percent", "threshold", "sample_size", "computed_at")

"""Routing: targets (model chains), policies and their rules. The forms refuse what could not work, and say why:
a target, rule or default pointing at a model without a price, a rule requiring more context than its models have."""

from django import forms
from django.contrib import admin, messages

from routing import checks
from routing.drills import failover_drill
from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback


class TargetFallbackFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        fallbacks = [
            form.cleaned_data["model"] for form in self.forms
            if form.cleaned_data.get("model") and not (self.can_delete and form.cleaned_data.get("DELETE"))
        ]
        problems = checks.price_problems(fallbacks, where=f"A fallback of “{self.instance.name or 'this target'}”")
        if problems:
            raise forms.ValidationError(problems)


class TargetFallbackInline(admin.TabularInline):
    model = TargetFallback
    formset = TargetFallbackFormSet
    extra = 1
    autocomplete_fields = ["model"]


class RoutingTargetForm(forms.ModelForm):
    class Meta:
        model = RoutingTarget
        fields = "__all__"

    def clean_model(self):
        model = self.cleaned_data.get("model")
        if model is not None:
            problems = checks.price_problems([model], where="This target")
            if problems:
                raise forms.ValidationError(problems)
        return model


@admin.register(RoutingTarget)
class RoutingTargetAdmin(admin.ModelAdmin):
    form = RoutingTargetForm
    list_display = ("name", "model", "tier", "strategy")
    list_select_related = ("model__provider",)
    autocomplete_fields = ["model"]
    search_fields = ["name"]
    inlines = [TargetFallbackInline]


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        target = cleaned.get("target")
        if target is not None and cleaned.get("is_enabled", True):
            for problem in checks.target_problems(target, where=f"Target “{target}”"):
                self.add_error("target", problem)
            for problem in checks.context_problems(target, min_prompt_tokens=cleaned.get("min_prompt_tokens")):
                self.add_error("min_prompt_tokens", problem)
        return cleaned


class RoutingRuleInline(admin.StackedInline):
    model = RoutingRule
    form = RoutingRuleForm
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


class RoutingPolicyForm(forms.ModelForm):
    class Meta:
        model = RoutingPolicy
        fields = "__all__"

    def clean_default_target(self):
        target = self.cleaned_data.get("default_target")
        if target is not None:
            problems = checks.target_problems(target, where=f"The default target “{target}”")
            if problems:
                raise forms.ValidationError(problems)
        return target


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    form = RoutingPolicyForm
    list_display = ("name", "tenant", "is_agency_default", "default_target", "allow_agency_fallback", "over_budget", "updated_at")
    list_select_related = ("tenant", "default_target")
    list_filter = ("is_agency_default", "over_budget")
    search_fields = ("name", "tenant__name", "tenant__slug")
    autocomplete_fields = ["default_target", "tenant"]
    inlines = [RoutingRuleInline]
    actions = ["run_failover_drill"]

    @admin.action(description="Run a failover drill (skip each chain's primary)", permissions=["change"])
    def run_failover_drill(self, request, queryset):
        for policy in queryset.select_related("tenant"):
            for report in failover_drill(tenant=policy.tenant, policy=policy):
                level = messages.SUCCESS if report["status"] == "ok" else messages.ERROR
                detail = f"answered by {report['answered_by']} in {report['latency_ms']} ms" if report["status"] == "ok" else report.get("error", "")
                via = f" (as {report['tenant']}'s assistants use it)" if report.get("tenant") else ""
                self.message_user(request, f"{policy}{via}: {report['target']}: {report['status']} — {detail}", level)


@admin.register(ComplexityCalibration)
class ComplexityCalibrationAdmin(admin.ModelAdmin):
    list_display = ("tenant", "share_percent", "threshold", "sample_size", "computed_at")
    readonly_fields = ("tenant", "share_percent", "threshold", "sample_size", "computed_at")

    def has_add_permission(self, request):
        return False  # every field is computed: a hand-made row saved NULLs (IntegrityError, 500)

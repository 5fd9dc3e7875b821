from django import forms
from django.contrib import admin

from providers.models import AttemptLog, Credential, LLMModel, ModelPrice, Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("kind", "base_url", "is_enabled")


class CredentialForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back, not even into the form's HTML.
    api_key = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only. Leave empty to keep the current key.",
    )

    class Meta:
        model = Credential
        fields = ("provider", "tenant", "label", "is_enabled")

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("api_key"):
            self.add_error("api_key", "A new credential needs its API key.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("api_key"):
            self.instance.set_key(self.cleaned_data["api_key"])
        return super().save(commit)


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = ("label", "provider", "owner", "masked_key", "is_enabled", "needs_attention", "last_used_at", "last_error_at")
    list_filter = ("provider", "is_enabled", "needs_attention", ("tenant", admin.EmptyFieldListFilter))
    list_select_related = ("provider", "tenant")
    readonly_fields = ("masked_key", "last_error", "last_error_at", "disabled_reason", "disabled_at", "last_used_at", "created_at")

    @admin.display(description="owner")
    def owner(self, obj: Credential) -> str:
        return f"BYOK: {obj.tenant}" if obj.tenant_id else "agency"


class ModelPriceFormSet(forms.BaseInlineFormSet):
    """An enabled model must have a price: a call to it is never billed as zero. `self.instance` is the model as
    submitted (the admin builds the inlines on the unsaved object), so enabling and pricing can be one save."""

    def clean(self):
        super().clean()
        if not self.instance.is_enabled:
            return
        new_prices = [form for form in self.forms if form.has_changed() and not self.can_delete_form(form)]
        if not new_prices and not (self.instance.pk and self.instance.prices.exists()):
            raise forms.ValidationError(
                "This model has no price: add one before enabling it (calls to it could not be billed)."
            )

    def can_delete_form(self, form) -> bool:
        return bool(self.can_delete and form.cleaned_data.get("DELETE"))


class ModelPriceInline(admin.TabularInline):
    model = ModelPrice
    formset = ModelPriceFormSet
    extra = 0
    fields = ("valid_from", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "tiers", "source")

    def has_change_permission(self, request, obj=None):
        return False  # prices are dated rows: add a new one, never rewrite what was billed


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ("display_name", "model_id", "provider", "tier", "context_window", "is_enabled")
    list_filter = ("provider", "tier", "is_enabled")
    list_select_related = ("provider",)
    search_fields = ("model_id", "display_name")
    inlines = [ModelPriceInline]


@admin.register(AttemptLog)
class AttemptLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "provider_kind", "model", "credential", "outcome", "status_code", "latency_ms", "is_probe")
    list_filter = ("provider_kind", "outcome", "is_probe")
    list_select_related = ("model", "credential__provider")
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

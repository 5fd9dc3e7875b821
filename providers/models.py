from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from providers import crypto
from providers.errors import NoPriceError
from providers.types import Usage

MTOK = Decimal(1_000_000)
COST_PLACES = Decimal("0.00000001")  # costs are kept to 1e-8 USD; rounding happens on invoices


def cost_text(value: Decimal) -> str:
    """A cost as the API writes it: always 8 decimals, plain notation ("0.00003700", never "0", "0E-8" or the 18
    decimals SQLite's sums carry)."""
    return format(Decimal(value).quantize(COST_PLACES), "f")


class ProviderKind(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI = "openai", "OpenAI"
    OPENROUTER = "openrouter", "OpenRouter"
    SANDBOX = "sandbox", "Sandbox (offline, deterministic)"


DEFAULT_BASE_URLS = {
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.OPENROUTER: "https://openrouter.ai/api/v1",
    ProviderKind.SANDBOX: "",
}


class Provider(models.Model):
    kind = models.CharField(max_length=20, choices=ProviderKind.choices, unique=True)
    base_url = models.URLField(blank=True, help_text="What the provider's SDK takes as base_url.")
    is_enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind"]

    def __str__(self) -> str:
        return self.get_kind_display()

    def clean(self) -> None:
        # URLField accepts ftp://, control characters and port 99999; the SDKs' HTTP client then raises at call
        # time (httpx2.InvalidURL), outside the failover loop.
        if not self.base_url:
            return
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in self.base_url):
            raise ValidationError({"base_url": "The base URL contains a space or control character."})
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https"):
            raise ValidationError({"base_url": "The base URL must start with http:// or https://."})
        try:
            parts.port
        except ValueError:
            raise ValidationError({"base_url": "The base URL's port must be 1-65535."}) from None
        if parts.username or parts.password:
            raise ValidationError({"base_url": "Put no credentials in the base URL: store the key with set_credential."})


class CredentialQuerySet(models.QuerySet):
    def usable(self) -> CredentialQuerySet:
        return self.filter(is_enabled=True, provider__is_enabled=True)

    def agency(self) -> CredentialQuerySet:
        return self.filter(tenant__isnull=True)

    def for_tenant(self, tenant) -> CredentialQuerySet:
        """The tenant's own (BYOK) credentials."""
        return self.filter(tenant=tenant)


class Credential(models.Model):
    """A provider API key, encrypted at rest. Agency-owned (tenant empty) or a tenant's own (BYOK)."""

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="credentials")
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="credentials",
        help_text="Empty: the agency's own key. Set: this client's own key (BYOK).",
    )
    label = models.CharField(max_length=100)
    encrypted_key = models.TextField(editable=False)
    key_last4 = models.CharField(max_length=4, editable=False)
    is_enabled = models.BooleanField(default=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    needs_attention = models.BooleanField(
        default=False, help_text="Set when the provider rejected this key (401/403) and it was disabled; staff clear it.",
    )
    disabled_reason = models.TextField(blank=True, help_text="Why the credential was disabled automatically.")
    disabled_at = models.DateTimeField(null=True, blank=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "tenant", "label"], name="uniq_credential_label")]

    def __str__(self) -> str:
        owner = self.tenant.slug if self.tenant_id else "agency"
        return f"{self.provider} · {owner} · {self.label} (…{self.key_last4})"

    @property
    def is_byok(self) -> bool:
        return self.tenant_id is not None

    SANDBOX_BYOK_ERROR = ("The sandbox is the agency's offline demo provider: a client cannot bring its own sandbox key "
                          "(its users would get canned sandbox replies, billed). Leave the client empty.")

    def clean(self) -> None:
        super().clean()
        if self.tenant_id and self.provider_id and self.provider.kind == ProviderKind.SANDBOX:
            raise ValidationError({"tenant": self.SANDBOX_BYOK_ERROR})

    @staticmethod
    def check_key(plain: str) -> None:
        """ValueError unless `plain` can be a provider key. It goes into an HTTP header: httpx2 raises at call time (a
        500, no failover) for anything but visible ASCII."""
        if not plain:
            raise ValueError("A provider key cannot be empty.")
        if not all(0x21 <= ord(ch) <= 0x7E for ch in plain):
            raise ValueError("A provider key may contain only visible ASCII characters (no spaces, no control characters).")

    def set_key(self, plain: str) -> None:
        plain = plain.strip()
        self.check_key(plain)
        self.encrypted_key = crypto.encrypt(plain)
        self.key_last4 = plain[-4:]

    def get_key(self) -> str:
        return crypto.decrypt(self.encrypted_key)

    @property
    def masked_key(self) -> str:
        return f"••••{self.key_last4}" if self.key_last4 else ""


class ModelTier(models.TextChoices):
    ECONOMY = "economy", "Economy"
    STANDARD = "standard", "Standard"
    PREMIUM = "premium", "Premium"


class Capability(models.TextChoices):
    REASONING = "reasoning"
    TOOLS = "tools"
    VISION = "vision"
    LONG_CONTEXT = "long_context"


class LLMModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    model_id = models.CharField(max_length=200, help_text="The provider's model id, as sent to its API.")
    display_name = models.CharField(max_length=200)
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    capabilities = models.JSONField(default=list, blank=True, help_text="Tags: reasoning, tools, vision, long_context.")
    tier = models.CharField(max_length=10, choices=ModelTier.choices, default=ModelTier.STANDARD)
    supports_temperature = models.BooleanField(default=True)
    is_enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name = "model"
        ordering = ["provider__kind", "model_id"]
        constraints = [models.UniqueConstraint(fields=["provider", "model_id"], name="uniq_provider_model")]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.provider.kind})"

    def has_capability(self, capability: str) -> bool:
        return capability in (self.capabilities or [])

    def price_at(self, at: datetime | None = None) -> ModelPrice:
        return price_for(self, at)


class ModelPrice(models.Model):
    """List price per million tokens, in force from `valid_from` until the next row. Never overwritten.

    `tiers` models long-prompt pricing: a list of {"above_input_tokens": N, "input": "..", "output": "..",
    "cached_input": "..", "cache_write": "..", "cache_write_1h": ".."}; when a call's prompt exceeds N tokens, every
    token of the call is billed at that tier's rates (the providers' "cliff" rule).

    Cache writes: `cache_write_per_mtok` is the rate of a plain write (Anthropic's 5-minute cache, 1.25x input);
    writes cached for an hour (Anthropic, `cache_creation.ephemeral_1h_input_tokens`) cost `cache_write_1h_per_mtok`,
    by default twice the input rate in force, as Anthropic bills them.
    """

    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="prices")
    valid_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_1h_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="Empty: twice the input rate (Anthropic's 1-hour cache).")
    tiers = models.JSONField(default=list, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    source = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [models.UniqueConstraint(fields=["model", "valid_from"], name="uniq_model_price_from")]

    def __str__(self) -> str:
        return f"{self.model.model_id} from {self.valid_from:%Y-%m-%d}: in {self.input_per_mtok} / out {self.output_per_mtok}"

    def rates_for(self, prompt_tokens: int) -> dict[str, Decimal]:
        """The per-MTok rates that apply to a call with this many prompt tokens."""
        rates: dict[str, Decimal | None] = {
            "input": self.input_per_mtok,
            "output": self.output_per_mtok,
            "cached_input": self.cached_input_per_mtok,
            "cache_write": self.cache_write_per_mtok,
            "cache_write_1h": self.cache_write_1h_per_mtok,
        }
        for tier in sorted(self.tiers or [], key=lambda t: t["above_input_tokens"]):
            if prompt_tokens > tier["above_input_tokens"]:
                rates.update({k: Decimal(str(v)) for k, v in tier.items() if k in rates and v is not None})
        # With no separate rate, cached reads and cache writes are billed as plain input (at the tier in force).
        for key in ("cached_input", "cache_write"):
            if rates[key] is None:
                rates[key] = rates["input"]
        if rates["cache_write_1h"] is None:
            rates["cache_write_1h"] = 2 * rates["input"]
        return rates  # type: ignore[return-value]

    def cost(self, usage: Usage) -> Decimal:
        rates = self.rates_for(usage.total_input_tokens)
        total = (
            usage.input_tokens * rates["input"]
            + usage.output_tokens * rates["output"]
            + usage.cached_input_tokens * rates["cached_input"]
            + (usage.cache_write_tokens - usage.cache_write_1h_tokens) * rates["cache_write"]
            + usage.cache_write_1h_tokens * rates["cache_write_1h"]
        ) / MTOK
        return total.quantize(COST_PLACES)


def price_for(model: LLMModel, at: datetime | None = None) -> ModelPrice:
    """The price in force for `model` at `at` (default now). Raises NoPriceError, never returns a zero price."""
    at = at or timezone.now()
    price = model.prices.filter(valid_from__lte=at).order_by("-valid_from").first()
    if price is None:
        raise _no_price(model, at)
    return price


def price_in_force(model: LLMModel, prices: Iterable[ModelPrice], at: datetime) -> ModelPrice:
    """`price_for` from the model's dated prices already in memory (e.g. cached by the planner): no query."""
    price = max((p for p in prices if p.valid_from <= at), key=lambda p: p.valid_from, default=None)
    if price is None:
        raise _no_price(model, at)
    return price


def _no_price(model: LLMModel, at: datetime) -> NoPriceError:
    return NoPriceError(
        f"No price in force for {model.provider.kind}:{model.model_id} at {at.isoformat()}: "
        "add a ModelPrice (or run `manage.py load_catalog`) before using this model."
    )


class AttemptLog(models.Model):
    """One call to a provider (a routed attempt or a health probe). A plain append table: raw rows are purged
    after their retention period; the health figures are computed from it (providers.health.health_summary)."""

    provider_kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="attempts")
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts")
    tenant_id = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, help_text='"ok" or the error kind.')
    error_kind = models.CharField(max_length=32, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    is_probe = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["model", "created_at"], name="attemptlog_model_created"),
            # The admin's filters: by provider, and failed calls only (a partial index: failures are few).
            models.Index(fields=["provider_kind", "created_at"], name="attemptlog_provider_created"),
            models.Index(fields=["created_at"], condition=~models.Q(outcome="ok"), name="attemptlog_failed_created"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_kind}:{self.model_id} {self.outcome} {self.latency_ms} ms"

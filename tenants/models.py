import hashlib
import secrets
import zoneinfo
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

API_KEY_PREFIX = "ahk_"


def _validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin).") from exc


def _new_webhook_secret() -> str:
    return secrets.token_hex(32)


class Tenant(models.Model):
    """A client of the agency."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[_validate_timezone])
    daily_token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Tokens per day in the tenant's time zone; empty = unlimited (to stop a client, untick Active).",
    )
    markup_percent = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )
    monthly_spend_cap = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Optional: refuse calls once this month's billed spend reaches it (USD)."
    )
    byok_fee_percent = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))],
        help_text="Platform fee on BYOK usage, as % of its list cost (the client pays the provider directly).",
    )
    account_manager_email = models.EmailField(blank=True, help_text="Receives budget alerts.")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Requests per minute for the tenant; empty = unlimited."
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete conversation content and attempt logs older than this; empty = keep. The ledger is always kept."
    )
    webhook_secret = models.CharField(
        max_length=64, default=_new_webhook_secret, help_text="Signs callbacks (HMAC-SHA256) so the client can verify them."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> "ApiKeyQuerySet":
        return self.filter(revoked_at__isnull=True, tenant__is_active=True)


class ApiKey(models.Model):
    """A tenant's API key. Only the SHA-256 hash and a short prefix are stored; the secret is shown once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Requests per minute for this key; empty = unlimited."
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @staticmethod
    def generate() -> tuple[str, str, str]:
        """Return (raw key, prefix, hash)."""
        raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
        return raw, raw[: len(API_KEY_PREFIX) + 8], hash_api_key(raw)

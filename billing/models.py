from decimal import Decimal

from django.db import models
from django.utils import timezone


class KeyOwnership(models.TextChoices):
    AGENCY = "agency", "Agency key"
    BYOK = "byok", "Client's own key (BYOK)"


class AppendOnlyError(Exception):
    """The usage ledger is append-only: corrections are new rows, never edits."""


class UsageRecordQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("UsageRecord rows are never updated")

    def reprice(self, *, markup_percent: Decimal, byok_fee_percent: Decimal) -> int:
        """Bill these rows at other rates: the one change the ledger allows, and only through
        billing.invoicing.usage_reprice (a month with no issued invoice). Tokens and cost never change."""
        money = models.DecimalField(max_digits=18, decimal_places=8)
        agency = super(UsageRecordQuerySet, self.filter(ownership=KeyOwnership.AGENCY)).update(
            billed_percent=markup_percent, billed=models.ExpressionWrapper(models.F("cost") * (1 + markup_percent / 100), output_field=money))
        byok = super(UsageRecordQuerySet, self.filter(ownership=KeyOwnership.BYOK)).update(
            billed_percent=byok_fee_percent, billed=models.ExpressionWrapper(models.F("cost") * (byok_fee_percent / 100), output_field=money))
        return agency + byok

    def delete(self):
        raise AppendOnlyError("UsageRecord rows are never deleted")


class UsageRecord(models.Model):
    """One provider call, as billed. The source of truth for budgets, roll-ups and invoices.

    conversation_id / message_id are plain ids, not foreign keys: deleting a transcript for privacy
    never deletes what was billed.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="usage_records")
    conversation_id = models.UUIDField(null=True, blank=True, db_index=True)
    message_id = models.UUIDField(null=True, blank=True, unique=True)
    provider_kind = models.CharField(max_length=20)
    model = models.ForeignKey("providers.LLMModel", on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=200, help_text="The model id the provider reported.")
    credential = models.ForeignKey("providers.Credential", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ownership = models.CharField(max_length=10, choices=KeyOwnership.choices)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveBigIntegerField(
        default=0, help_text="Of the cache writes, those cached for an hour (priced at the price's 1-hour rate).")
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    price = models.ForeignKey("providers.ModelPrice", on_delete=models.PROTECT, related_name="+")
    cost = models.DecimalField(max_digits=18, decimal_places=8, help_text="At the list price in force, USD.")
    billed_percent = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("0"),
        help_text="The client's rate when the call was made: on agency keys its markup, on its own keys (BYOK) its "
        "platform fee, as % of cost. A later change of the client's rates never reprices this call.",
    )
    billed = models.DecimalField(
        max_digits=18, decimal_places=8, default=Decimal("0"),
        help_text="What the client is billed for this call, USD, unrounded: cost plus markup, or the BYOK fee.",
    )
    provider_reported_cost = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    usage_estimated = models.BooleanField(
        default=False, help_text="The provider reported no usage (a stream without it, or broken mid-reply): the token "
        "counts are an estimate, about 4 characters a token.",
    )
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The day in the tenant's time zone, fixed when the call happens: budgets, roll-ups and invoices
    # group by it with plain SQL on any database.
    local_date = models.DateField()

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_time"),
            models.Index(fields=["local_date", "tenant"], name="usage_day_tenant"),
            # The admin's ledger: newest first, and by model.
            models.Index(fields=["created_at"], name="usage_time"),
            models.Index(fields=["model", "created_at"], name="usage_model_time"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.model_name} {self.total_tokens} tok ${self.cost}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cached_input_tokens + self.cache_write_tokens

    @property
    def cost_difference(self) -> Decimal | None:
        """The provider's own figure minus ours (OpenRouter reports one)."""
        if self.provider_reported_cost is None:
            return None
        return self.provider_reported_cost - self.cost

    @property
    def cost_mismatch(self) -> bool:
        """Flag a provider-reported cost more than 1 % (and a hundredth of a cent) away from ours."""
        difference = self.cost_difference
        if difference is None:
            return False
        return abs(difference) > max(Decimal("0.0001"), abs(self.cost) / 100)

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("UsageRecord rows are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("UsageRecord rows are never deleted")


class DailyUsage(models.Model):
    """The ledger rolled up per tenant x tenant-local day x provider x model x key ownership. Rebuildable.

    Derived from the ledger (whose foreign keys are enforced), rebuilt in bulk: its own keys are not checked
    by the database (Django still cascades and protects), and the tenant needs no index of its own (the
    unique constraint starts with it). The nightly roll-up writes each row with two index entries fewer
    and no foreign-key checks at commit (bench/README.md)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    day = models.DateField()
    provider_kind = models.CharField(max_length=20)
    model = models.ForeignKey("providers.LLMModel", on_delete=models.PROTECT, related_name="+", db_constraint=False)
    ownership = models.CharField(max_length=10, choices=KeyOwnership.choices)
    calls = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveBigIntegerField(default=0, help_text="Of the cache writes, those cached for an hour.")
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    provider_cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal("0"))
    billed_percent = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("0"),
        help_text="The rate the calls were billed at (markup, or BYOK fee, % of cost): a change of rate starts a new row.",
    )
    billed_amount = models.DecimalField(
        max_digits=18, decimal_places=8, default=Decimal("0"),
        help_text="Agency keys: provider cost plus the tenant's markup. BYOK: the platform fee only. At the rates in force "
        "when each call was made.",
    )
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "provider_kind", "model", "ownership", "billed_percent"],
                                    name="uniq_daily_usage"),
        ]
        indexes = [models.Index(fields=["day"], name="daily_usage_day")]

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cached_input_tokens + self.cache_write_tokens


class BudgetAlert(models.Model):
    """An 80 % / 100 % budget alert: shown to staff in the admin, emailed to the account manager."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="budget_alerts")
    day = models.DateField()
    threshold = models.PositiveSmallIntegerField()
    used_tokens = models.PositiveBigIntegerField()
    budget_tokens = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "threshold"], name="uniq_budget_alert")]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.threshold}% on {self.day}"


# --- Invoices ------------------------------------------------------------------------------------------------


class InvoiceImmutableError(Exception):
    """An issued invoice (or credit note) and its lines are never edited or deleted: correct with a credit note."""


class InvoiceKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    CREDIT_NOTE = "credit_note", "Credit note"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    VOID = "void", "Void (cancelled by a credit note)"


class InvoiceSection(models.TextChoices):
    USAGE = "usage", "Usage (agency keys)"
    BYOK = "byok", "BYOK usage (informational; platform fee only)"


FROZEN_STATUSES = (InvoiceStatus.ISSUED, InvoiceStatus.VOID)


class InvoiceSequence(models.Model):
    """The last invoice number handed out in a year. Numbers are taken when a document is issued, under a row
    lock in the issuing transaction, so a rollback gives the number back: the series has no gaps."""

    year = models.PositiveSmallIntegerField(unique=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


class InvoiceQuerySet(models.QuerySet):
    def update(self, **kwargs):
        if self.filter(status__in=FROZEN_STATUSES).exists():
            raise InvoiceImmutableError("issued invoices are never updated")
        return super().update(**kwargs)

    def delete(self):
        if self.filter(status__in=FROZEN_STATUSES).exists():
            raise InvoiceImmutableError("issued invoices are never deleted")
        return super().delete()


class Invoice(models.Model):
    """A tenant's invoice for one calendar month in its own time zone (DailyUsage.day within the month), or a
    credit note cancelling one. Built as a draft from the roll-ups; frozen once issued."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=12, choices=InvoiceKind.choices, default=InvoiceKind.INVOICE)
    corrects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes",
        help_text="Credit notes: the invoice they cancel.",
    )
    period_start = models.DateField(help_text="First day of the month, in the tenant's time zone.")
    period_end = models.DateField(help_text="Last day of the month (inclusive).")
    number = models.CharField(max_length=32, unique=True, null=True, blank=True, help_text="Given when issued.")
    status = models.CharField(max_length=10, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    currency = models.CharField(max_length=3, default="USD")
    provider_cost = models.DecimalField(
        max_digits=18, decimal_places=8, default=Decimal("0"), help_text="Sum of the lines' provider cost, unrounded."
    )
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"), help_text="No tax is modelled: equals the subtotal.")
    reason = models.TextField(blank=True, help_text="Credit notes: why the invoice was cancelled.")
    generated_at = models.DateTimeField(default=timezone.now)
    issued_at = models.DateTimeField(null=True, blank=True)
    client = models.JSONField(
        default=dict, blank=True,
        help_text="The client as it was when the invoice was issued (name, slug, time zone): what its PDF and CSV show.",
    )

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "tenant__name", "id"]
        permissions = [("download_invoice", "Can download invoices (PDF, CSV)")]
        constraints = [
            # One live invoice per tenant and month; a voided one may be replaced by a corrected one.
            models.UniqueConstraint(
                fields=["tenant", "period_start"], name="uniq_live_invoice_per_month",
                condition=models.Q(kind="invoice") & ~models.Q(status="void"),
            ),
        ]
        indexes = [models.Index(fields=["period_start", "status"], name="invoice_period_status")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.number or 'draft'} · {self.tenant} · {self.period_start:%Y-%m}"

    @property
    def is_frozen(self) -> bool:
        return self.status in FROZEN_STATUSES

    @property
    def filename(self) -> str:
        return f"{self.number or f'draft-{self.pk}'}-{self.billed_to['slug']}-{self.period_start:%Y-%m}"

    def _stored_status(self) -> str | None:
        if self._state.adding or self.pk is None:
            return None
        return type(self).objects.filter(pk=self.pk).values_list("status", flat=True).first()

    @property
    def billed_to(self) -> dict:
        """Name, slug and time zone of the client: as issued (a later rename or move never changes an issued
        invoice), or as they are now for a draft."""
        return self.client or {"name": self.tenant.name, "slug": self.tenant.slug, "timezone": self.tenant.timezone}

    def save(self, *args, **kwargs):
        # Checked against the stored row, not this instance: a stale copy of a draft cannot overwrite an issued
        # invoice. The one change allowed to an issued invoice is its cancellation by a credit note.
        stored = self._stored_status()
        if stored == InvoiceStatus.VOID or (
            stored == InvoiceStatus.ISSUED
            and not (self.status == InvoiceStatus.VOID and set(kwargs.get("update_fields") or ()) == {"status"})
        ):
            raise InvoiceImmutableError(f"{self} is {stored}: correct it with a credit note")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self._stored_status() in FROZEN_STATUSES:
            raise InvoiceImmutableError(f"{self} is issued: it is never deleted")
        return super().delete(*args, **kwargs)


def _refuse_frozen(invoice_ids) -> None:
    if Invoice.objects.filter(pk__in=set(invoice_ids), status__in=FROZEN_STATUSES).exists():
        raise InvoiceImmutableError("the lines of an issued invoice are never changed")


class InvoiceLineQuerySet(models.QuerySet):
    def update(self, **kwargs):
        _refuse_frozen(self.values_list("invoice_id", flat=True))
        return super().update(**kwargs)

    def delete(self):
        _refuse_frozen(self.values_list("invoice_id", flat=True))
        return super().delete()

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        _refuse_frozen(obj.invoice_id for obj in objs)
        return super().bulk_create(objs, *args, **kwargs)


class InvoiceLine(models.Model):
    """One model's usage in the month. Usage lines bill provider cost plus markup; BYOK lines show the usage the
    client paid the provider for directly, and bill only the platform fee."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    section = models.CharField(max_length=10, choices=InvoiceSection.choices)
    provider_kind = models.CharField(max_length=20)
    model = models.ForeignKey("providers.LLMModel", on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=200, help_text="The model's display name when the invoice was built.")
    calls = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0, help_text="Of the cache writes, those cached for an hour.")
    reasoning_tokens = models.BigIntegerField(default=0)
    provider_cost = models.DecimalField(max_digits=18, decimal_places=8, help_text="List cost, unrounded (USD).")
    markup_percent = models.DecimalField(
        max_digits=6, decimal_places=2,
        help_text="Usage: the tenant's markup on provider cost. BYOK: the platform fee as % of provider cost. The rate in "
        "force when the calls were made: a month with a change of rate has a line for each rate.",
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2, help_text="What is charged, rounded half-up to the cent.")

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "section", "provider_kind", "model_name", "id"]

    def __str__(self) -> str:
        return f"{self.section} {self.provider_kind}:{self.model_name} {self.amount}"

    def save(self, *args, **kwargs):
        _refuse_frozen([self.invoice_id])
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        _refuse_frozen([self.invoice_id])
        return super().delete(*args, **kwargs)

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from providers.models import ModelTier
from routing.patterns import PatternError, pattern_compile


class Strategy(models.TextChoices):
    IN_ORDER = "in_order", "In order"
    CHEAPEST = "cheapest", "Cheapest healthy"
    FASTEST = "fastest", "Fastest healthy (recent latency)"


class RoutingTarget(models.Model):
    """Where a message goes: one model, or every model of a tier, plus a fallback chain of equivalents.

    e.g. "Economy": Claude Haiku -> GPT-4o-mini -> the same Claude model through OpenRouter.
    """

    name = models.CharField(max_length=100, unique=True)
    model = models.ForeignKey("providers.LLMModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tier = models.CharField(max_length=10, choices=ModelTier.choices, blank=True, help_text="Instead of one model: every enabled model of this tier.")
    strategy = models.CharField(max_length=10, choices=Strategy.choices, default=Strategy.IN_ORDER)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if bool(self.model_id) == bool(self.tier):
            raise ValidationError("A target is either one model or one tier: set exactly one of them.")


class TargetFallback(models.Model):
    target = models.ForeignKey(RoutingTarget, on_delete=models.CASCADE, related_name="fallbacks")
    model = models.ForeignKey("providers.LLMModel", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["target", "model"], name="uniq_target_fallback")]

    def __str__(self) -> str:
        return f"{self.target} #{self.position}: {self.model}"


class OverBudget(models.TextChoices):
    REJECT = "reject", "Refuse (429 budget_exceeded)"
    DEGRADE = "degrade", "Answer with the economy tier"


class RoutingPolicy(models.Model):
    """How a tenant's messages are routed: rules in order, first match wins, else the default target.

    The policy with no tenant is the agency-wide default that tenants without their own inherit; an
    assistant may point at its own policy to override its tenant's.
    """

    name = models.CharField(max_length=100)
    tenant = models.OneToOneField(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="routing_policy",
        help_text="Empty: the agency-wide default (or a policy used only as an assistant override).",
    )
    is_agency_default = models.BooleanField(default=False)
    default_target = models.ForeignKey(RoutingTarget, on_delete=models.PROTECT, related_name="+")
    escalation_phrases = models.TextField(
        blank=True, default="talk to a human\nspeak to a human\nreal person\nmanager",
        help_text="One per line; a message containing one counts as an explicit escalation.",
    )
    allow_agency_fallback = models.BooleanField(
        default=True,
        help_text="For BYOK clients: may a call fall back to the agency's key (then billed as agency usage) when theirs fails?",
    )
    over_budget = models.CharField(max_length=10, choices=OverBudget.choices, default=OverBudget.REJECT)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "routing policies"
        constraints = [
            models.UniqueConstraint(fields=["is_agency_default"], condition=models.Q(is_agency_default=True), name="one_agency_default_policy"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.is_agency_default and self.tenant_id is not None:
            raise ValidationError({"is_agency_default": "A client's own policy cannot be the agency default, which every "
                                   "client without a policy inherits: clear the client, or pick an agency-wide policy."})

    def phrases(self) -> list[str]:
        return [p.strip().lower() for p in self.escalation_phrases.splitlines() if p.strip()]


class RoutingRule(models.Model):
    """`conditions -> target`. Every condition that is set must hold (AND); use several rules for OR."""

    policy = models.ForeignKey(RoutingPolicy, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=100)
    is_enabled = models.BooleanField(default=True)
    target = models.ForeignKey(RoutingTarget, on_delete=models.PROTECT, related_name="+")
    # conditions
    on_escalation = models.BooleanField(default=False, help_text="`escalate: true`, or an escalation phrase in the message.")
    min_turns = models.PositiveIntegerField(null=True, blank=True, help_text="User turns in the conversation, this one included.")
    min_conversation_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens used by the conversation so far.")
    min_complexity = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Complexity score threshold (0..1).",
    )
    premium_share_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text="Instead of a fixed threshold: send about this % of messages (the most complex) here, calibrated from recent traffic.",
    )
    pattern = models.CharField(max_length=500, blank=True, help_text="Regular expression (case-insensitive) the message must match.")
    metadata_equals = models.JSONField(default=dict, blank=True, help_text='e.g. {"channel": "sales"}')
    needs_tools = models.BooleanField(default=False, help_text="The request carries tools.")
    needs_vision = models.BooleanField(default=False, help_text="The request carries images.")
    min_prompt_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="The prompt (with history) is at least this long.")
    budget_used_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(1000)], help_text="Today's budget use is above this %.",
    )

    class Meta:
        ordering = ["policy", "position", "pk"]

    def __str__(self) -> str:
        return f"{self.policy}: {self.name}"

    def clean(self) -> None:
        if self.metadata_equals in (None, ""):
            self.metadata_equals = {}  # an emptied admin field: no condition (the column is NOT NULL)
        if not isinstance(self.metadata_equals, dict):
            raise ValidationError({"metadata_equals": 'must be a JSON object of key: value pairs, e.g. {"channel": "sales"}'})
        if self.pattern:
            try:
                pattern_compile(self.pattern)
            except PatternError as exc:
                raise ValidationError({"pattern": f"not a regular expression this router can run (RE2 syntax: no backreferences or lookarounds): {exc}"}) from exc
        if self.min_complexity is not None and self.premium_share_percent is not None:
            raise ValidationError("Use either a complexity threshold or a premium share, not both.")


class ComplexityCalibration(models.Model):
    """The complexity threshold that sends about `share_percent` % of recent messages to premium."""

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    share_percent = models.PositiveSmallIntegerField()
    threshold = models.FloatField()
    sample_size = models.PositiveIntegerField()
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "share_percent"], name="uniq_calibration")]

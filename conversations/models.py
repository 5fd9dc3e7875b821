import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from conversations.web_origins import BadOrigin, origins_normalize


class Assistant(models.Model):
    """One of a client's chatbots: its instructions (the system prompt) and settings."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="assistants")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    instructions = models.TextField(blank=True, help_text="The system prompt.")
    default_max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1), MaxValueValidator(200_000)])
    temperature = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    greeting = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)
    routing_policy = models.ForeignKey(
        "routing.RoutingPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="assistants",
        help_text="Overrides the tenant's routing policy for this assistant.",
    )
    allowed_origins = models.JSONField(
        default=list, blank=True, help_text='Web origins allowed to call this assistant from a browser, e.g. ["https://shop.example"].'
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="uniq_assistant_slug"),
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(is_default=True), name="one_default_assistant"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant})"

    def clean(self) -> None:
        errors = {}
        try:
            self.allowed_origins = origins_normalize(self.allowed_origins)
        except BadOrigin as exc:
            errors["allowed_origins"] = str(exc)
        policy = self.routing_policy
        if policy is not None and policy.tenant_id is not None and policy.tenant_id != self.tenant_id:
            errors["routing_policy"] = f"{policy} belongs to another client: pick this client's policy or an agency-wide one"
        if errors:
            raise ValidationError(errors)


class ApiKeyScope(models.Model):
    """Limits a tenant API key to one assistant."""

    api_key = models.OneToOneField("tenants.ApiKey", on_delete=models.CASCADE, related_name="scope")
    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="key_scopes")

    def __str__(self) -> str:
        return f"{self.api_key} → {self.assistant.slug}"

    def clean(self) -> None:
        if self.api_key_id and self.assistant_id and self.api_key.tenant_id != self.assistant.tenant_id:
            raise ValidationError({"assistant": f"{self.assistant} belongs to another client than the key {self.api_key}"})


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="conversations")
    assistant = models.ForeignKey(Assistant, on_delete=models.PROTECT, related_name="conversations")
    external_user_id = models.CharField(max_length=256, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    callback_url = models.URLField(blank=True, max_length=1000)
    client_ref = models.CharField(
        max_length=250, blank=True, help_text="Groups OpenAI-compatible calls: 'user:<user>' or 'conv:<X-Conversation-Id>'."
    )
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="conv_tenant_recent")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "client_ref"], condition=~models.Q(client_ref=""), name="uniq_conversation_client_ref"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.tenant})"


class MessageRole(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


# A failed reply's error code when a provider refused the request itself: a retry of the same request will not help.
REFUSAL_CODES = {"bad_request": "request_rejected", "context_too_long": "context_too_long", "content_filtered": "content_filtered"}
"""provider error kind -> the reply's error code"""


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=MessageStatus.choices, default=MessageStatus.COMPLETED)
    reply_to = models.OneToOneField("self", null=True, blank=True, on_delete=models.CASCADE, related_name="reply")
    # user messages
    escalate = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    images = models.JSONField(default=list, blank=True, help_text="A user message's images (conversations.images).")
    idempotency_key = models.CharField(max_length=255, blank=True)
    # assistant replies
    mode = models.CharField(max_length=10, blank=True)
    model = models.ForeignKey("providers.LLMModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    provider_kind = models.CharField(max_length=20, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    complexity_score = models.FloatField(null=True, blank=True)
    route_reason = models.TextField(blank=True)
    route_decision = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The async reply's callback (conversations.callbacks): when its last attempt started, how many were made, when the
    # next is due (NULL: none pending) and when one was answered 2xx.
    callback_sent_at = models.DateTimeField(null=True, blank=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    callback_next_at = models.DateTimeField(null=True, blank=True)
    callback_delivered_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"], condition=~models.Q(idempotency_key=""), name="uniq_message_idempotency_key"
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="msg_conv_time"),
            # The admin's filters: by client, and failed replies only (a partial index: failures are few).
            models.Index(fields=["tenant", "created_at"], name="msg_tenant_time"),
            models.Index(fields=["created_at"], condition=models.Q(status="failed"), name="msg_failed_time"),
            # The sweeper's (conversations.sweeper): unfinished replies, few at any time.
            models.Index(fields=["created_at"], condition=models.Q(status__in=["queued", "running"]), name="msg_unfinished_time"),
            # The callback sweeper's (conversations.tasks.send_due_callbacks): callbacks pending, few at any time.
            models.Index(fields=["callback_next_at"], condition=models.Q(callback_next_at__isnull=False), name="msg_callback_due"),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.id} ({self.status})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cached_input_tokens + self.cache_write_tokens


class Feedback(models.Model):
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    rating = models.SmallIntegerField(choices=[(1, "👍 +1"), (-1, "👎 −1")])
    comment = models.TextField(blank=True, max_length=5000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "feedback"

"""Input validation only; output is built by conversations.presenters."""

from django.conf import settings
from rest_framework import serializers


def has_nul(value) -> bool:
    """Whether a string, or any string in a JSON value, holds a NUL character (PostgreSQL text and jsonb cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


class MetadataField(serializers.DictField):
    """A JSON object stored as PostgreSQL jsonb, which cannot hold a NUL character in any string."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if has_nul(value):
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class ConversationCreateInput(serializers.Serializer):
    assistant = serializers.SlugField(required=False, allow_blank=True, max_length=100)
    external_user_id = serializers.CharField(required=False, allow_blank=True, max_length=256, default="")
    metadata = MetadataField(required=False, default=dict)
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=1000, default="")


class MessagePostInput(serializers.Serializer):
    """`images` (a list of {"url", "detail"}) is validated by conversations.images, which names each item."""

    content = serializers.CharField(max_length=settings.MAX_MESSAGE_CHARS, trim_whitespace=False, allow_blank=True)
    escalate = serializers.BooleanField(required=False, default=False)
    mode = serializers.ChoiceField(choices=["sync", "stream", "async"], required=False, default="sync")
    metadata = MetadataField(required=False, default=dict)
    images = serializers.ListField(child=serializers.JSONField(), required=False, help_text=(
        'Up to 20 images: {"url": "https://…" or "data:image/png;base64,…", "detail": "auto" | "low" | "high"}'))

    def validate_content(self, value: str) -> str:
        if not value.strip() and not self.initial_data.get("images"):
            raise serializers.ValidationError("must not be empty")
        return value


class FeedbackInput(serializers.Serializer):
    rating = serializers.ChoiceField(choices=[1, -1])
    comment = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")

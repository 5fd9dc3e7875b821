"""Input validation only; output is built by conversations.presenters."""

from django.conf import settings
from rest_framework import serializers

from conversations.webhooks import callback_url_problem


UNSTORABLE = "Null characters and unpaired surrogates are not allowed."
MAX_JSON_DEPTH = 32


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate ("\ud800"): valid in JSON, refused by PostgreSQL
        return False
    return True


def json_problem(value, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a JSON value cannot be stored as PostgreSQL text / jsonb (None if it can): a NUL character or an
    unpaired surrogate in any string or key, or nesting deeper than `max_depth`. Iterative: no recursion limit."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                return UNSTORABLE
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                return f"nested more than {max_depth} levels deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


class MetadataField(serializers.DictField):
    """A JSON object stored as PostgreSQL jsonb, which cannot hold a NUL character or an unpaired surrogate."""

    def to_internal_value(self, data):
        problem = json_problem(data)  # before DictField walks it (recursively)
        if problem:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class ConversationCreateInput(serializers.Serializer):
    assistant = serializers.SlugField(required=False, allow_blank=True, max_length=100)
    external_user_id = serializers.CharField(required=False, allow_blank=True, max_length=256, default="")
    metadata = MetadataField(required=False, default=dict)
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=1000, default="")

    def validate_callback_url(self, value: str) -> str:
        problem = callback_url_problem(value, resolve=False) if value else None
        if problem:
            raise serializers.ValidationError(problem)
        return value


class StrictCharField(serializers.CharField):
    """Text as JSON text: a number or a list is a client's mistake, not text (DRF's CharField would take 5 as "5")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only (DRF's BooleanField also takes "yes", "on", 1 ...: `"escalate": "no"` would be false by
    luck and `"yes"` a premium call)."""

    default_error_messages = {"invalid": "must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class MessagePostInput(serializers.Serializer):
    """`images` (a list of {"url", "detail"}) is validated by conversations.images, which names each item."""

    content = StrictCharField(max_length=settings.MAX_MESSAGE_CHARS, trim_whitespace=False, allow_blank=True)
    escalate = StrictBooleanField(required=False, default=False)
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

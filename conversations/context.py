"""What a model is sent: the assistant's instructions as the system prompt, then as many recent turns as fit."""

from __future__ import annotations

import math

from conversations.images import replayed
from conversations.models import Message, MessageRole, MessageStatus
from providers.types import ChatMessage, join_turns

PER_MESSAGE_OVERHEAD = 4  # role markers and separators, roughly
IMAGE_TOKENS = 1_600  # one image, at most: Anthropic bills width × height / 750 after scaling to ~1.15 megapixels


def estimate_tokens(text: str) -> int:
    """A character-based estimate (PROVIDER-NOTES: enough for budgets and trimming; usage settles it)."""
    return math.ceil(len(text) / 4)


def message_tokens(message: ChatMessage) -> int:
    """The estimate of one message: its text, its images, its tool calls and the per-message overhead."""
    calls = sum(len(c["function"]["name"]) + len(c["function"]["arguments"]) for c in message.tool_calls)
    return estimate_tokens(message.content) + math.ceil(calls / 4) + IMAGE_TOKENS * len(message.images) + PER_MESSAGE_OVERHEAD


def history_for(reply: Message) -> list[ChatMessage]:
    """The conversation up to the reply's user message: user turns and completed replies, oldest first."""
    user_message = reply.reply_to
    rows = (
        Message.objects.filter(conversation_id=reply.conversation_id, created_at__lte=user_message.created_at)
        .exclude(role=MessageRole.ASSISTANT, status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING, MessageStatus.FAILED])
        .order_by("created_at")
        .values_list("role", "content", "id", "images")
    )
    return join_turns([
        ChatMessage(role, content, replayed(images) if role == MessageRole.USER else ())
        for role, content, pk, images in rows if content or images or pk == user_message.pk
    ])


def trim_to_window(messages: list[ChatMessage], *, system: str, context_window: int, max_output_tokens: int) -> list[ChatMessage]:
    """Drop the oldest turns until the prompt fits the window; the system prompt and the last turn stay.

    The kept history starts with a user turn, as the providers require.
    """
    budget = context_window - max_output_tokens - estimate_tokens(system) - PER_MESSAGE_OVERHEAD
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(messages):
        cost = message_tokens(message)
        if kept and used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while len(kept) > 1 and kept[0].role != "user":
        kept.pop(0)
    return kept

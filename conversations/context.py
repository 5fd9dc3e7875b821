"""What a model is sent: the assistant's instructions as the system prompt, then as many recent turns as fit."""

from __future__ import annotations

from conversations.images import replayed
from conversations.models import REFUSAL_CODES, Message, MessageRole, MessageStatus
from providers.types import ChatMessage, content_tokens, estimate_tokens, join_turns, tool_turns_as_text

PER_MESSAGE_OVERHEAD = 4  # role markers and separators, roughly


def message_tokens(message: ChatMessage) -> int:
    """The estimate of one message: its text, its images, its tool calls and the per-message overhead."""
    return content_tokens(message) + PER_MESSAGE_OVERHEAD


def history_for(reply: Message) -> list[ChatMessage]:
    """The conversation up to the reply's user message: user turns (with their images) and completed replies, oldest
    first. The images of a turn a provider refused are not sent again: they may be why, and would fail every turn."""
    user_message = reply.reply_to
    rows = (
        Message.objects.filter(conversation_id=reply.conversation_id, created_at__lte=user_message.created_at)
        .exclude(role=MessageRole.ASSISTANT, status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING, MessageStatus.FAILED])
        .order_by("created_at")
        .values_list("role", "content", "id", "images", "reply__error_code")
    )
    turns = []
    for role, content, pk, images, reply_error in rows:
        images = replayed(images) if role == MessageRole.USER and reply_error not in REFUSED else ()
        if content or images or pk == user_message.pk:
            turns.append(ChatMessage(role, content, images))
    return join_turns(turns)


REFUSED = frozenset({REFUSAL_CODES["bad_request"], REFUSAL_CODES["content_filtered"]})  # what an image may cause


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
    if kept and kept[0].role == "tool":
        # Only a tool result fits, its call trimmed away: a provider refuses a result with no call, so send it as text.
        kept = tool_turns_as_text(kept)
    return kept

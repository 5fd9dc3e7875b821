"""Plain dicts for the API (cheaper than serializers on the hot path, and shared by views, SSE and webhooks)."""

from __future__ import annotations

from conversations.images import shown
from conversations.models import Conversation, Message
from providers.models import cost_text


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def message_payload(message: Message) -> dict:
    payload = {
        "id": str(message.pk),
        "conversation_id": str(message.conversation_id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": _iso(message.created_at),
    }
    if message.images:
        payload["images"] = shown(message.images)
    if message.role == "assistant":
        payload.update(
            {
                "reply_to": str(message.reply_to_id) if message.reply_to_id else None,
                "model": message.model_name or None,
                "provider": message.provider_kind or None,
                "finish_reason": message.finish_reason or None,
                "usage": {
                    "input_tokens": message.input_tokens,
                    "output_tokens": message.output_tokens,
                    "cached_input_tokens": message.cached_input_tokens,
                    "cache_write_tokens": message.cache_write_tokens,
                    "reasoning_tokens": message.reasoning_tokens,
                    "total_tokens": message.total_tokens,
                },
                "cost": cost_text(message.cost) if message.cost is not None else None,
                "currency": "USD",
                "latency_ms": message.latency_ms,
                "ttft_ms": message.ttft_ms,
                "route": _route(message) if message.route_reason else None,
                "tool_calls": message.route_decision.get("tool_calls") or None,
                "completed_at": _iso(message.completed_at),
                "error": {"code": message.error_code, "message": _error_message(message)} if message.status == "failed" else None,
            }
        )
    else:
        payload["escalate"] = message.escalate
        payload["metadata"] = message.metadata
    return payload


def _error_message(message: Message) -> str:
    """What the client was told when the reply failed (the provider's reason for a refused request, say), as a sync
    call answered it; the internal detail (each candidate's outcome) stays in the admin and the route's attempts."""
    return (message.route_decision.get("answer") or {}).get("message") or message.error_detail


ROUTE_FIELDS = ("policy", "rule", "complexity", "complexity_threshold", "target", "strategy", "excluded", "candidates",
                "attempts", "usage_estimated")
"""What a reply's `route` shows of its stored decision (Message.route_decision), besides the reason."""


def _route(message: Message) -> dict:
    decision = message.route_decision or {}
    return {"reason": message.route_reason, "attempts": [],
            **{name: decision[name] for name in ROUTE_FIELDS if name in decision}}


def conversation_payload(conversation: Conversation, messages: list[Message] | None = None) -> dict:
    payload = {
        "id": str(conversation.pk),
        "assistant": conversation.assistant.slug,
        "external_user_id": conversation.external_user_id,
        "metadata": conversation.metadata,
        "callback_url": conversation.callback_url or None,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "totals": {
            "input_tokens": conversation.input_tokens,
            "output_tokens": conversation.output_tokens,
            "total_tokens": conversation.input_tokens + conversation.output_tokens,
            "cost": cost_text(conversation.cost),
            "currency": "USD",
        },
    }
    if messages is not None:
        payload["messages"] = [message_payload(m) for m in messages]
    return payload

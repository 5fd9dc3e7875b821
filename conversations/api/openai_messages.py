"""The `messages` of an OpenAI Chat Completions request, validated into the provider layer's ChatMessage:
text and image parts, an assistant's tool calls and the tool results that answer them."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError

from conversations.api.serializers import UNSTORABLE, json_problem
from conversations.images import parse_image
from providers.types import ChatMessage, ImagePart, tool_turns_as_text

SYSTEM_ROLES = {"system", "developer"}
CHAT_ROLES = {"user", "assistant", "tool"}


def no_nul(text: str, field: str) -> str:
    """PostgreSQL cannot store a NUL character or an unpaired surrogate in text: refuse them as a validation
    error, like the REST API."""
    if json_problem(text):
        raise ValidationError({field: UNSTORABLE})
    return text


def _content(content: Any, field: str, *, images_allowed: bool) -> tuple[str, tuple[ImagePart, ...]]:
    """A message's text and images: a string, or a list of `text` and (in user messages) `image_url` parts."""
    if content is None:
        return "", ()
    if isinstance(content, str):
        return no_nul(content, field), ()
    if isinstance(content, list):
        parts, images = [], []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append(no_nul(part["text"], f"{field}[{i}]"))
            elif kind == "image_url" and images_allowed:
                images.append(parse_image(part.get("image_url"), f"{field}[{i}].image_url"))
            elif kind == "image_url":
                raise ValidationError({f"{field}[{i}]": "images are only supported in user messages"})
            else:
                raise ValidationError({f"{field}[{i}]": "only text and image_url content parts are supported"})
        return "\n".join(parts), tuple(images)
    raise ValidationError({field: "must be a string or a list of content parts"})


def _tool_calls(raw: Any, field: str) -> tuple[dict[str, Any], ...]:
    """An assistant's `tool_calls`: each with an id and a function (name, arguments as a JSON string)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValidationError({field: "must be a list"})
    calls = []
    for j, call in enumerate(raw):
        call = call if isinstance(call, dict) else {}
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if not all(isinstance(value, str) and value for value in (call.get("id"), function.get("name"))) \
                or not isinstance(function.get("arguments", ""), str):
            raise ValidationError({f"{field}[{j}]": "a tool call needs an id and a function with a name and arguments (a JSON string)"})
        calls.append({"id": no_nul(call["id"], f"{field}[{j}].id"), "type": "function",
                      "function": {"name": no_nul(function["name"], f"{field}[{j}].function.name"),
                                   "arguments": no_nul(function.get("arguments") or "", f"{field}[{j}].function.arguments")}})
    return tuple(calls)


def chat_messages(raw_messages: list) -> tuple[list[str], list[ChatMessage]]:
    """(system texts, chat messages). Every tool call of an assistant message must be answered by `tool` messages
    right after it, and every `tool` message must answer one, as OpenAI (and every provider) requires."""
    system_parts: list[str] = []
    messages: list[ChatMessage] = []
    open_calls: dict[str, int] = {}  # tool call id -> index of the assistant message that made it
    for i, message in enumerate(raw_messages):
        if not isinstance(message, dict):
            raise ValidationError({f"messages[{i}]": "must be an object"})
        role = message.get("role")
        if role not in SYSTEM_ROLES and role not in CHAT_ROLES:
            raise ValidationError({f"messages[{i}].role": f"unsupported role {role!r}"})
        if open_calls and role != "tool":
            first = min(open_calls.values())
            raise ValidationError({f"messages[{first}].tool_calls": f"not answered by tool messages: {', '.join(sorted(open_calls))}"})
        text, images = _content(message.get("content"), f"messages[{i}].content", images_allowed=role == "user")
        if role in SYSTEM_ROLES:
            system_parts.append(text)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise ValidationError({f"messages[{i}].tool_call_id": "must answer a tool call of the assistant message before it"})
            del open_calls[call_id]
            messages.append(ChatMessage("tool", text, tool_call_id=call_id))
        else:
            calls = _tool_calls(message.get("tool_calls"), f"messages[{i}].tool_calls") if role == "assistant" else ()
            open_calls = {call["id"]: i for call in calls}
            if text or images or calls:
                messages.append(ChatMessage(role, text, images, tool_calls=calls))
    if open_calls:
        raise ValidationError({f"messages[{min(open_calls.values())}].tool_calls":
                               f"not answered by tool messages: {', '.join(sorted(open_calls))}"})
    if not any(m.role == "user" for m in messages):
        raise ValidationError({"messages": "needs at least one user message"})
    return system_parts, messages


def stored_text(message: ChatMessage) -> str:
    """What the conversation stores of the request's last message."""
    return tool_turns_as_text([message])[0].content if message.role == "tool" else message.content

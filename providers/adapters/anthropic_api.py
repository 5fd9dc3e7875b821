"""Anthropic Messages API through the official `anthropic` SDK (2.x).

Like the OpenAI adapter (see its docstring), the request goes through the SDK client's own `post`, with a body that
is already plain JSON, and the reply and the stream's events are read as JSON: the same client, headers
(`anthropic-version`), timeouts, error classes and SSE decoding (`ping` skipped, an `error` event raised as
`APIStatusError`) as `client.messages.create`, without its per-call walk over the typed parameters and the pydantic
models of the reply. A reply of the wrong shape is an invalid response, not a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2

from providers.adapters.base import MALFORMED, Clock, clients, malformed, sdk_timeout, text_of, timeout_key
from providers.adapters.classify import classify_anthropic
from providers.errors import ErrorKind, ProviderError
from providers.types import ChatMessage, ChatRequest, ChatResult, FinishReason, StreamEvent, Usage, estimated_usage, tool_turns_as_text

FINISH_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


def _reported(error: ProviderError, usage: Usage, reported: bool) -> ProviderError:
    """A broken stream's error, carrying the usage Anthropic reported before the break (message_start has the input
    and cache counts), so the engine meters those instead of an estimate."""
    if reported:
        error.usage = usage
    return error


def _usage(raw: Any, into: Usage | None = None) -> Usage:
    usage = into or Usage()
    if not isinstance(raw, dict):
        return usage
    for field, attr in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cached_input_tokens", "cache_read_input_tokens"),
        ("cache_write_tokens", "cache_creation_input_tokens"),
    ):
        value = raw.get(attr)
        if value is not None:
            setattr(usage, field, int(value))
    split = raw.get("cache_creation")  # {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}: the writes by lifetime
    if isinstance(split, dict) and split.get("ephemeral_1h_input_tokens") is not None:
        usage.cache_write_1h_tokens = min(int(split["ephemeral_1h_input_tokens"]), usage.cache_write_tokens)
    return usage


def _tools(tools: list[dict]) -> list[dict]:
    converted = []
    for tool in tools:
        fn = tool.get("function", tool)
        converted.append(
            {"name": fn["name"], "description": fn.get("description", ""), "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        )
    return converted


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """Text, or with images the content blocks: each image (inline base64, or a URL Anthropic fetches), then the
    text (Anthropic advises images before the question)."""
    if not message.images:
        return message.content
    blocks: list[dict[str, Any]] = []
    for image in message.images:
        inline = image.inline()
        source = {"type": "base64", "media_type": inline[0], "data": inline[1]} if inline else {"type": "url", "url": image.url}
        blocks.append({"type": "image", "source": source})
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    return blocks


def _tool_choice(choice: dict[str, Any] | str) -> dict[str, Any]:
    """OpenAI's tool_choice in Anthropic's shape: "required" is "any", a named function is a named tool."""
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["function"]["name"]}
    return {"type": {"required": "any"}.get(choice, choice)}


def _json_instruction(response_format: dict[str, Any] | None) -> str:
    """Anthropic has no `response_format`: JSON output is asked for in the system prompt instead."""
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return "Answer with one JSON object and nothing else: no prose and no code fences."
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return ("Answer with one JSON object and nothing else (no prose, no code fences) that matches this JSON Schema"
                f" ({spec.get('name', 'response')}): {json.dumps(spec.get('schema') or {}, separators=(',', ':'))}")
    return ""


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return content if isinstance(content, list) else ([{"type": "text", "text": content}] if content else [])


def _tool_id(raw: str) -> str:
    """Anthropic takes tool ids of letters, digits, _ and - only; ids made elsewhere (another provider, after a
    failover) are mapped the same way in the call and in its result, so the two still match."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", raw) or "tool"


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    try:
        arguments = json.loads(call["function"]["arguments"] or "{}")
    except ValueError:
        arguments = None
    return {"type": "tool_use", "id": _tool_id(call["id"]), "name": call["function"]["name"],
            "input": arguments if isinstance(arguments, dict) else {}}


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Anthropic's turns: an assistant's tool calls become `tool_use` blocks after its text; tool results become
    `tool_result` blocks of the next user turn, first in it (a user message that follows joins that turn)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            content: str | list[dict[str, Any]] = [{"type": "tool_result", "tool_use_id": _tool_id(m.tool_call_id), "content": m.content}]
            role = "user"
        elif m.tool_calls:
            content, role = _blocks(m.content) + [_tool_use(c) for c in m.tool_calls], "assistant"
        else:
            content, role = _content(m), m.role
        if out and out[-1]["role"] == role == "user":
            out[-1]["content"] = _blocks(out[-1]["content"]) + _blocks(content)
        else:
            out.append({"role": role, "content": content})
    return out


class AnthropicAdapter:
    kind = "anthropic"

    def __init__(self, *, api_key: str, base_url: str) -> None:
        self.client: anthropic.Anthropic = clients.get(
            ("anthropic", base_url, api_key, *timeout_key()),
            lambda: anthropic.Anthropic(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=sdk_timeout()),
        )

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": _messages(request.messages if request.tools else tool_turns_as_text(request.messages)),
        }
        system = "\n\n".join(t for t in (request.system, _json_instruction(request.response_format)) if t)
        if system:
            params["system"] = system
        # Anthropic refuses a whitespace-only stop sequence ("\n"): 400 "each stop sequence must contain non-whitespace".
        stop = [s for s in request.stop if s.strip()]
        if stop:
            params["stop_sequences"] = stop
        if request.tools:
            params["tools"] = _tools(request.tools)
            choice = _tool_choice(request.tool_choice) if request.tool_choice is not None else None
            if request.parallel_tool_calls is False and (choice or {}).get("type") != "none":  # OpenAI's parallel_tool_calls: false
                choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
            if choice is not None:
                params["tool_choice"] = choice
        if request.metadata.get("user_id"):
            params["metadata"] = {"user_id": str(request.metadata["user_id"])[:256]}
        # Some models refuse temperature entirely (the 2.x SDK no longer takes it as a keyword of create()).
        if request.temperature is not None and request.supports_temperature:
            params["temperature"] = min(request.temperature, 1.0)  # Anthropic takes 0..1 (OpenAI's range is 0..2)
        return params

    def _post(self, request: ChatRequest, *, stream: bool) -> Any:
        body = self._params(request)
        if stream:
            body["stream"] = True
            return self.client.post("/v1/messages", body=body, cast_to=object, stream=True,
                                    stream_cls=anthropic.Stream[object])
        return self.client.post("/v1/messages", body=body, cast_to=httpx2.Response)

    def complete(self, request: ChatRequest) -> ChatResult:
        clock = Clock()
        try:
            response = self._post(request, stream=False)
            message = response.json()
        except Exception as exc:  # noqa: BLE001 - classified, or re-raised if unknown
            raise classify_anthropic(exc) from exc
        latency = clock.latency_ms
        request_id = response.headers.get("request-id", "")
        try:
            blocks = message["content"]
            text = "".join(text_of(block["text"]) for block in blocks if block["type"] == "text")
            tool_calls = [
                {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": json.dumps(block.get("input") or {})}}
                for block in blocks
                if block["type"] == "tool_use"
            ]
            return ChatResult(
                text=text,
                finish_reason=FINISH_REASONS.get(message.get("stop_reason") or "", FinishReason.STOP),
                usage=_usage(message.get("usage")),
                model=message.get("model") or request.model,
                request_id=request_id or str(message.get("id") or ""),
                latency_ms=latency,
                ttft_ms=latency,
                tool_calls=tool_calls,
            )
        except MALFORMED as exc:
            raise malformed("a reply", exc, request_id) from exc

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        clock = Clock()
        usage = Usage()
        parts: list[str] = []
        tool_calls: list[dict] = []
        model = request.model
        stop_reason: str | None = None
        request_id = ""
        finished = False
        reported = False  # whether any event carried usage
        try:
            stream = self._post(request, stream=True)
            request_id = stream.response.headers.get("request-id", "")
            with stream:
                for event in stream:
                    kind = event["type"]
                    if kind == "message_start":
                        model = event["message"].get("model") or model
                        reported |= isinstance(event["message"].get("usage"), dict)
                        _usage(event["message"].get("usage"), usage)
                    elif kind == "content_block_start" and event["content_block"]["type"] == "tool_use":
                        block = event["content_block"]
                        tool_calls.append({"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": ""}})
                    elif kind == "content_block_delta":
                        delta = event["delta"]
                        text = text_of(delta.get("text")) if delta["type"] == "text_delta" else ""
                        if text:
                            clock.mark_first_token()
                            parts.append(text)
                            yield StreamEvent(type="delta", text=text)
                        elif delta["type"] == "input_json_delta" and tool_calls:
                            tool_calls[-1]["function"]["arguments"] += delta.get("partial_json") or ""
                    elif kind == "message_delta":
                        stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                        reported |= isinstance(event.get("usage"), dict)
                        _usage(event.get("usage"), usage)  # cumulative counts
                    elif kind == "message_stop":
                        finished = True
        except MALFORMED as exc:
            raise _reported(malformed("a streamed event", exc, request_id), usage, reported) from exc
        except ProviderError as exc:
            raise _reported(exc, usage, reported)
        except Exception as exc:  # noqa: BLE001
            raise _reported(classify_anthropic(exc), usage, reported) from exc
        if not finished:
            raise _reported(ProviderError(ErrorKind.CONNECTION, "the stream ended before message_stop", request_id=request_id), usage, reported)
        text = "".join(parts)
        yield StreamEvent(
            type="done",
            result=ChatResult(
                text=text,
                finish_reason=FINISH_REASONS.get(stop_reason or "", FinishReason.STOP),
                usage=usage if reported else estimated_usage(request, text, tool_calls),
                model=model,
                request_id=request_id,
                latency_ms=clock.latency_ms,
                ttft_ms=clock.ttft_ms,
                tool_calls=tool_calls,
            ),
        )

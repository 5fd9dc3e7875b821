"""Anthropic Messages API through the official `anthropic` SDK (2.x)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic

from providers.adapters.base import Clock, clients, sdk_timeout, timeout_key
from providers.adapters.classify import classify_anthropic
from providers.errors import ErrorKind, ProviderError
from providers.types import ChatRequest, ChatResult, FinishReason, StreamEvent, Usage

FINISH_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


def _usage(raw: Any, into: Usage | None = None) -> Usage:
    usage = into or Usage()
    if raw is None:
        return usage
    for field, attr in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cached_input_tokens", "cache_read_input_tokens"),
        ("cache_write_tokens", "cache_creation_input_tokens"),
    ):
        value = getattr(raw, attr, None)
        if value is not None:
            setattr(usage, field, int(value))
    return usage


def _tools(tools: list[dict]) -> list[dict]:
    converted = []
    for tool in tools:
        fn = tool.get("function", tool)
        converted.append(
            {"name": fn["name"], "description": fn.get("description", ""), "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        )
    return converted


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
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.system:
            params["system"] = request.system
        if request.stop:
            params["stop_sequences"] = request.stop
        if request.tools:
            params["tools"] = _tools(request.tools)
        if request.metadata.get("user_id"):
            params["metadata"] = {"user_id": str(request.metadata["user_id"])[:256]}
        # The 2.x SDK no longer takes temperature as a keyword; some models refuse it entirely.
        if request.temperature is not None and request.supports_temperature:
            params["extra_body"] = {"temperature": request.temperature}
        return params

    def complete(self, request: ChatRequest) -> ChatResult:
        clock = Clock()
        try:
            message = self.client.messages.create(**self._params(request))
        except Exception as exc:  # noqa: BLE001 - classified, or re-raised if unknown
            raise classify_anthropic(exc) from exc
        text = "".join(block.text for block in message.content if block.type == "text")
        tool_calls = [
            {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": json.dumps(block.input)}}
            for block in message.content
            if block.type == "tool_use"
        ]
        latency = clock.latency_ms
        return ChatResult(
            text=text,
            finish_reason=FINISH_REASONS.get(message.stop_reason or "", FinishReason.STOP),
            usage=_usage(message.usage),
            model=message.model,
            request_id=getattr(message, "_request_id", None) or message.id,
            latency_ms=latency,
            ttft_ms=latency,
            tool_calls=tool_calls,
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        clock = Clock()
        usage = Usage()
        parts: list[str] = []
        tool_calls: list[dict] = []
        model = request.model
        stop_reason: str | None = None
        request_id = ""
        finished = False
        try:
            stream = self.client.messages.create(**self._params(request), stream=True)
            request_id = stream.response.headers.get("request-id", "")
            with stream:
                for event in stream:
                    if event.type == "message_start":
                        model = event.message.model
                        _usage(event.message.usage, usage)
                    elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                        block = event.content_block
                        tool_calls.append({"id": block.id, "type": "function", "function": {"name": block.name, "arguments": ""}})
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            clock.mark_first_token()
                            parts.append(event.delta.text)
                            yield StreamEvent(type="delta", text=event.delta.text)
                        elif event.delta.type == "input_json_delta" and tool_calls:
                            tool_calls[-1]["function"]["arguments"] += event.delta.partial_json
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        _usage(event.usage, usage)  # cumulative counts
                    elif event.type == "message_stop":
                        finished = True
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify_anthropic(exc) from exc
        if not finished:
            raise ProviderError(ErrorKind.CONNECTION, "the stream ended before message_stop", request_id=request_id)
        yield StreamEvent(
            type="done",
            result=ChatResult(
                text="".join(parts),
                finish_reason=FINISH_REASONS.get(stop_reason or "", FinishReason.STOP),
                usage=usage,
                model=model,
                request_id=request_id,
                latency_ms=clock.latency_ms,
                ttft_ms=clock.ttft_ms,
                tool_calls=tool_calls,
            ),
        )

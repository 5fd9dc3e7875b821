"""OpenAI Chat Completions through the official `openai` SDK (3.x)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import openai

from providers.adapters.base import Clock, clients, sdk_timeout, timeout_key
from providers.adapters.classify import classify_openai
from providers.errors import ErrorKind, ProviderError
from providers.types import ChatRequest, ChatResult, FinishReason, StreamEvent, Usage

FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "error": FinishReason.ERROR,
}


def _detail(obj: Any, name: str) -> int:
    if obj is None:
        return 0
    value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return int(value or 0)


def normalize_usage(raw: Any) -> Usage:
    """OpenAI counts cached tokens inside prompt_tokens and reasoning tokens inside completion_tokens."""
    if raw is None:
        return Usage()
    prompt_details = getattr(raw, "prompt_tokens_details", None)
    cached = _detail(prompt_details, "cached_tokens")
    cache_write = _detail(prompt_details, "cache_write_tokens")  # OpenRouter, for providers that bill writes
    prompt = int(raw.prompt_tokens or 0)
    return Usage(
        input_tokens=max(0, prompt - cached - cache_write),
        output_tokens=int(raw.completion_tokens or 0),
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=_detail(getattr(raw, "completion_tokens_details", None), "reasoning_tokens"),
    )


def reported_cost(raw_usage: Any) -> Decimal | None:
    cost = getattr(raw_usage, "cost", None) if raw_usage is not None else None
    if cost is None:
        return None
    try:
        return Decimal(str(cost))
    except InvalidOperation:
        return None


class OpenAIAdapter:
    kind = "openai"
    max_tokens_param = "max_completion_tokens"  # o-series reject max_tokens

    def __init__(self, *, api_key: str, base_url: str) -> None:
        self.client: openai.OpenAI = clients.get(
            (self.kind, base_url, api_key, *timeout_key()),
            lambda: openai.OpenAI(
                api_key=api_key, base_url=base_url or None, max_retries=0, timeout=sdk_timeout(),
                default_headers=self.default_headers(),
            ),
        )

    def default_headers(self) -> dict[str, str]:
        return {}

    def extra_body(self, request: ChatRequest) -> dict[str, Any]:
        return {}

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        params: dict[str, Any] = {"model": request.model, "messages": messages, self.max_tokens_param: request.max_tokens}
        if request.stop:
            params["stop"] = request.stop[:4]
        if request.temperature is not None and request.supports_temperature:
            params["temperature"] = request.temperature
        if request.tools:
            params["tools"] = request.tools
        if request.metadata.get("user_id"):
            params["user"] = str(request.metadata["user_id"])[:256]
        extra = self.extra_body(request)
        if extra:
            params["extra_body"] = extra
        return params

    def _request_id(self, headers: Any, fallback: str) -> str:
        return headers.get("x-request-id") or fallback

    def complete(self, request: ChatRequest) -> ChatResult:
        clock = Clock()
        try:
            raw = self.client.chat.completions.with_raw_response.create(**self._params(request))
            completion = raw.parse()
        except Exception as exc:  # noqa: BLE001
            raise classify_openai(exc) from exc
        if not completion.choices:
            raise ProviderError(ErrorKind.INVALID_RESPONSE, "the provider answered with no choices")
        choice = completion.choices[0]
        tool_calls = [tc.model_dump() for tc in (choice.message.tool_calls or [])]
        latency = clock.latency_ms
        return ChatResult(
            text=choice.message.content or "",
            finish_reason=FINISH_REASONS.get(choice.finish_reason or "", FinishReason.STOP),
            usage=normalize_usage(completion.usage),
            model=completion.model or request.model,
            request_id=self._request_id(raw.headers, completion.id),
            latency_ms=latency,
            ttft_ms=latency,
            tool_calls=tool_calls,
            provider_cost=reported_cost(completion.usage),
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        clock = Clock()
        parts: list[str] = []
        tool_calls: dict[int, dict] = {}
        model = request.model
        finish: str | None = None
        raw_usage = None
        request_id = ""
        try:
            stream = self.client.chat.completions.create(
                **self._params(request), stream=True, stream_options={"include_usage": True}
            )
            request_id = self._request_id(stream.response.headers, "")
            with stream:
                for chunk in stream:
                    model = chunk.model or model
                    request_id = request_id or chunk.id
                    if chunk.usage is not None:
                        raw_usage = chunk.usage
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta is not None and delta.content:
                            clock.mark_first_token()
                            parts.append(delta.content)
                            yield StreamEvent(type="delta", text=delta.content)
                        for tc in (delta.tool_calls or []) if delta is not None else []:
                            slot = tool_calls.setdefault(tc.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                            slot["id"] = tc.id or slot["id"]
                            if tc.function is not None:
                                slot["function"]["name"] += tc.function.name or ""
                                slot["function"]["arguments"] += tc.function.arguments or ""
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify_openai(exc) from exc
        if finish is None:
            raise ProviderError(ErrorKind.CONNECTION, "the stream ended before a finish reason", request_id=request_id)
        yield StreamEvent(
            type="done",
            result=ChatResult(
                text="".join(parts),
                finish_reason=FINISH_REASONS.get(finish, FinishReason.STOP),
                usage=normalize_usage(raw_usage),
                model=model,
                request_id=request_id,
                latency_ms=clock.latency_ms,
                ttft_ms=clock.ttft_ms,
                tool_calls=[tool_calls[i] for i in sorted(tool_calls)],
                provider_cost=reported_cost(raw_usage),
            ),
        )

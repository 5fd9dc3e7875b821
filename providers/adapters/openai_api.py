"""OpenAI Chat Completions through the official `openai` SDK (3.x).

The request goes through the SDK client's own `post` (its documented way to call an endpoint with a body you
built): the same client, authentication, timeouts, error classes and SSE decoding as
`client.chat.completions.create`, without two costs a gateway does not need. `create` walks every message
against the typed parameter definitions (`maybe_transform`, about 0.45 ms per call, a third of the SDK's CPU), and
builds pydantic models of the response and of every streamed chunk. The body here is already plain JSON, and the
reply is read as the JSON it is, defensively: a malformed body is an invalid response, not a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx2
import openai

from providers.adapters.base import MALFORMED, Clock, clients, malformed, sdk_timeout, text_of, timeout_key
from providers.adapters.classify import classify_accepted_error, classify_openai, retry_after_seconds
from providers.errors import ErrorKind, ProviderError
from providers.types import ChatMessage, ChatRequest, ChatResult, FinishReason, StreamEvent, Usage, estimated_usage, tool_turns_as_text

FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "error": FinishReason.ERROR,
}


def _count(obj: Any, name: str) -> int:
    value = obj.get(name) if isinstance(obj, dict) else None
    return int(value or 0)


def normalize_usage(raw: Any) -> Usage:
    """OpenAI counts cached tokens inside prompt_tokens and reasoning tokens inside completion_tokens."""
    if not isinstance(raw, dict):
        return Usage()
    prompt_details = raw.get("prompt_tokens_details")
    cached = _count(prompt_details, "cached_tokens")
    cache_write = _count(prompt_details, "cache_write_tokens")  # OpenRouter, for providers that bill writes
    return Usage(
        input_tokens=max(0, _count(raw, "prompt_tokens") - cached - cache_write),
        output_tokens=_count(raw, "completion_tokens"),
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=_count(raw.get("completion_tokens_details"), "reasoning_tokens"),
    )


def reported_cost(raw_usage: Any) -> Decimal | None:
    cost = raw_usage.get("cost") if isinstance(raw_usage, dict) else None
    if cost is None or isinstance(cost, bool):
        return None
    try:
        return Decimal(str(cost))
    except InvalidOperation:
        return None


class OpenAIAdapter:
    kind = "openai"
    max_tokens_param = "max_completion_tokens"  # o-series reject max_tokens
    # Reasoning models (o-series, gpt-5: supports_temperature false) refuse `stop` too (400 unsupported_parameter).
    stop_needs_sampling = True

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
        messages += [_message(m) for m in (request.messages if request.tools else tool_turns_as_text(request.messages))]
        params: dict[str, Any] = {"model": request.model, "messages": messages, self.max_tokens_param: request.max_tokens}
        if request.stop and (request.supports_temperature or not self.stop_needs_sampling):
            params["stop"] = request.stop[:4]
        if request.supports_temperature:
            if request.temperature is not None:
                params["temperature"] = request.temperature
            params.update(request.sampling)
        if request.response_format:
            params["response_format"] = request.response_format
        if request.tools:
            params["tools"] = request.tools
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                params["parallel_tool_calls"] = request.parallel_tool_calls
        if request.metadata.get("user_id"):
            params["user"] = str(request.metadata["user_id"])[:256]
        params.update(self.extra_body(request))
        return params

    def _post(self, request: ChatRequest, *, stream: bool) -> Any:
        body = self._params(request)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            return self.client.post("/chat/completions", body=body, cast_to=object, stream=True,
                                    stream_cls=openai.Stream[object])
        return self.client.post("/chat/completions", body=body, cast_to=httpx2.Response)

    def _request_id(self, headers: Any, fallback: str) -> str:
        return headers.get("x-request-id") or fallback

    def complete(self, request: ChatRequest) -> ChatResult:
        clock = Clock()
        try:
            response = self._post(request, stream=False)
            completion = response.json()
        except Exception as exc:  # noqa: BLE001
            raise classify_openai(exc) from exc
        latency = clock.latency_ms
        request_id = self._request_id(response.headers, "")
        if isinstance(completion, dict) and isinstance(completion.get("error"), dict):
            # OpenRouter: an error after the request was accepted comes as a 200 whose body is the error.
            raise classify_accepted_error(completion["error"], request_id=request_id,
                                          retry_after=retry_after_seconds(response.headers))
        try:
            choice = completion["choices"][0]
            message = choice["message"]
            tool_calls = list(message.get("tool_calls") or [])
            usage = completion.get("usage")
            text, refusal = text_of(message.get("content")), text_of(message.get("refusal"))
            return ChatResult(
                text=text or refusal,
                finish_reason=_finish(choice.get("finish_reason"), refused=bool(refusal) and not text),
                usage=normalize_usage(usage),
                model=completion.get("model") or request.model,
                request_id=request_id or str(completion.get("id") or ""),
                latency_ms=latency,
                ttft_ms=latency,
                tool_calls=tool_calls,
                provider_cost=reported_cost(usage),
            )
        except MALFORMED as exc:
            raise malformed("a reply", exc, request_id) from exc

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        clock = Clock()
        parts: list[str] = []
        tool_calls: dict[int, dict] = {}
        model = request.model
        finish: str | None = None
        raw_usage = None
        request_id = ""
        refused = False  # the model declined: its text came in `refusal`, not `content`
        try:
            stream = self._post(request, stream=True)
            request_id = self._request_id(stream.response.headers, "")
            with stream:
                for chunk in stream:
                    model = chunk.get("model") or model
                    request_id = request_id or str(chunk.get("id") or "")
                    if chunk.get("usage") is not None:
                        raw_usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        text = text_of(delta.get("content"))
                        refusal = text_of(delta.get("refusal"))
                        if refusal and not parts:
                            refused = True
                        text = text or refusal
                        if text:
                            clock.mark_first_token()
                            parts.append(text)
                            yield StreamEvent(type="delta", text=text)
                        for tc in delta.get("tool_calls") or ():
                            _merge_tool_call(tool_calls, tc)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except ProviderError:
            raise
        except MALFORMED as exc:
            raise malformed("a streamed chunk", exc, request_id) from exc
        except Exception as exc:  # noqa: BLE001
            raise classify_openai(exc) from exc
        if finish is None:
            raise ProviderError(ErrorKind.CONNECTION, "the stream ended before a finish reason", request_id=request_id)
        text, calls = "".join(parts), [tool_calls[i] for i in sorted(tool_calls)]
        yield StreamEvent(
            type="done",
            result=ChatResult(
                text=text,
                finish_reason=_finish(finish, refused=refused),
                usage=normalize_usage(raw_usage) if raw_usage is not None else estimated_usage(request, text, calls),
                model=model,
                request_id=request_id,
                latency_ms=clock.latency_ms,
                ttft_ms=clock.ttft_ms,
                tool_calls=calls,
                provider_cost=reported_cost(raw_usage),
            ),
        )


def _finish(reason: str | None, *, refused: bool) -> FinishReason:
    """A reply the model declined (its text in `refusal`, as structured outputs report it) is a content_filter stop,
    like Anthropic's `refusal`: the client gets the refusal text and a reason, not an empty answer."""
    return FinishReason.CONTENT_FILTER if refused else FINISH_REASONS.get(reason or "", FinishReason.STOP)


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {"role": "assistant", "content": message.content or None, "tool_calls": list(message.tool_calls)}
    return {"role": message.role, "content": _content(message)}


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """Text, or with images the content parts: the text, then each image as an `image_url` part."""
    if not message.images:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for image in message.images:
        parts.append({"type": "image_url", "image_url": {"url": image.url, **({"detail": image.detail} if image.detail else {})}})
    return parts


def _merge_tool_call(tool_calls: dict[int, dict], tc: dict) -> None:
    """A streamed tool call arrives in pieces keyed by index: the id and name once, the arguments in fragments."""
    slot = tool_calls.setdefault(int(tc.get("index") or 0), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    slot["id"] = tc.get("id") or slot["id"]
    function = tc.get("function") or {}
    slot["function"]["name"] += function.get("name") or ""
    slot["function"]["arguments"] += function.get("arguments") or ""

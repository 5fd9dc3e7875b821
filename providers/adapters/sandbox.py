"""The sandbox provider: deterministic answers with no network, so the demo runs without provider keys."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

from providers.adapters.base import Clock
from providers.types import ChatRequest, ChatResult, FinishReason, StreamEvent, Usage


def _reply_words(request: ChatRequest) -> tuple[list[str], FinishReason]:
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    words = f"Sandbox reply from {request.model}: you said {last_user!r}.".split()
    if len(words) > request.max_tokens:
        return words[: request.max_tokens], FinishReason.LENGTH
    return words, FinishReason.STOP


def _input_tokens(request: ChatRequest) -> int:
    chars = len(request.system) + sum(len(m.content) for m in request.messages)
    return max(1, math.ceil(chars / 4))


class SandboxAdapter:
    kind = "sandbox"

    def __init__(self, *, api_key: str = "", base_url: str = "") -> None:
        pass

    def complete(self, request: ChatRequest) -> ChatResult:
        clock = Clock()
        words, finish = _reply_words(request)
        return ChatResult(
            text=" ".join(words),
            finish_reason=finish,
            usage=Usage(input_tokens=_input_tokens(request), output_tokens=len(words)),
            model=request.model,
            request_id=f"sandbox-{uuid.uuid4().hex[:12]}",
            latency_ms=clock.latency_ms,
            ttft_ms=clock.latency_ms,
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        clock = Clock()
        words, finish = _reply_words(request)
        for i, word in enumerate(words):
            clock.mark_first_token()
            yield StreamEvent(type="delta", text=word if i == 0 else f" {word}")
        yield StreamEvent(
            type="done",
            result=ChatResult(
                text=" ".join(words), finish_reason=finish,
                usage=Usage(input_tokens=_input_tokens(request), output_tokens=len(words)),
                model=request.model, request_id=f"sandbox-{uuid.uuid4().hex[:12]}",
                latency_ms=clock.latency_ms, ttft_ms=clock.ttft_ms,
            ),
        )

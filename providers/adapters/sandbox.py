"""The sandbox provider: deterministic answers with no network, so the demo runs without provider keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from providers.adapters.base import Clock
from providers.types import ChatRequest, ChatResult, FinishReason, StreamEvent, Usage, estimate_input_tokens


def _reply_words(request: ChatRequest) -> tuple[list[str], FinishReason]:
    last = next((m for m in reversed(request.messages) if m.role == "user"), None)
    said = f"you said {last.content if last else ''!r}"
    if last is not None and last.images:
        said += f" and sent {len(last.images)} image{'s' if len(last.images) > 1 else ''}"
    words = f"Sandbox reply from {request.model}: {said}.".split()
    if len(words) > request.max_tokens:
        return words[: request.max_tokens], FinishReason.LENGTH
    return words, FinishReason.STOP


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
            usage=Usage(input_tokens=estimate_input_tokens(request), output_tokens=len(words)),
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
                usage=Usage(input_tokens=estimate_input_tokens(request), output_tokens=len(words)),
                model=request.model, request_id=f"sandbox-{uuid.uuid4().hex[:12]}",
                latency_ms=clock.latency_ms, ttft_ms=clock.ttft_ms,
            ),
        )

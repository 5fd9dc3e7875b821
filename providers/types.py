"""The provider layer's normalized request / result types. Nothing here knows an SDK."""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")  # what every vision provider takes
IMAGE_TOKENS = 1_600  # one image, roughly at most: Anthropic bills width × height / 750 after scaling to ~1.15 megapixels
_DATA_URL = re.compile(r"data:(image/[a-z]+);base64,(.*)", re.DOTALL)


@dataclass(frozen=True)
class ImagePart:
    """An image sent with a user message: an http(s) URL the provider fetches, or a data URL (base64) of one of
    IMAGE_MEDIA_TYPES. `detail` is OpenAI's "auto" / "low" / "high" (other providers ignore it)."""

    url: str
    detail: str = ""

    def inline(self) -> tuple[str, str] | None:
        """(media type, base64 data) of a data URL; None for an http(s) URL."""
        match = _DATA_URL.fullmatch(self.url)
        return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "user" | "assistant" | "tool" (a tool's result)
    content: str
    images: tuple[ImagePart, ...] = ()  # user messages only
    tool_calls: tuple[dict[str, Any], ...] = ()  # assistant: the calls it made, OpenAI's shape {id, type, function}
    tool_call_id: str = ""  # tool: the call this result answers


def estimate_tokens(text: str) -> int:
    """About 4 characters a token: enough for budgets, trimming and a reply whose provider sent no usage
    (PROVIDER-NOTES: a character-based estimate is acceptable; the real usage settles it)."""
    return math.ceil(len(text) / 4)


def content_tokens(message: ChatMessage) -> int:
    """The estimate of one message's content: its text, its tool calls and its images."""
    calls = sum(len(c["function"]["name"]) + len(c["function"]["arguments"]) for c in message.tool_calls)
    return estimate_tokens(message.content) + math.ceil(calls / 4) + IMAGE_TOKENS * len(message.images)


def join_turns(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Providers want alternating turns: consecutive messages of one role become one (texts joined by a blank line,
    images and tool calls kept in order). Tool results are never joined: each answers its own call."""
    joined: list[ChatMessage] = []
    for message in messages:
        if joined and joined[-1].role == message.role and message.role != "tool":
            previous = joined[-1]
            text = "\n\n".join(t for t in (previous.content, message.content) if t)
            joined[-1] = ChatMessage(message.role, text, previous.images + message.images, previous.tool_calls + message.tool_calls)
        else:
            joined.append(message)
    return joined


def tool_turns_as_text(messages: list[ChatMessage]) -> list[ChatMessage]:
    """A request with no tool definitions cannot carry tool blocks (Anthropic refuses them): the calls and results
    of its history become text, and turns of one role that end up next to each other are joined."""
    if not any(m.role == "tool" or m.tool_calls for m in messages):
        return messages
    as_text = []
    for m in messages:
        if m.role == "tool":
            m = ChatMessage("user", f"[tool result {m.tool_call_id}]\n{m.content}")
        elif m.tool_calls:
            calls = "\n".join(f"[tool call {c['id']}: {c['function']['name']}({c['function']['arguments']})]" for c in m.tool_calls)
            m = ChatMessage(m.role, "\n".join(t for t in (m.content, calls) if t), m.images)
        as_text.append(m)
    return join_turns(as_text)


@dataclass
class ChatRequest:
    model: str  # the provider's model id
    messages: list[ChatMessage]
    system: str = ""
    max_tokens: int = 1024
    stop: list[str] = field(default_factory=list)
    temperature: float | None = None  # omitted by adapters where the model refuses it
    tools: list[dict[str, Any]] = field(default_factory=list)  # OpenAI function-tool shape
    metadata: dict[str, Any] = field(default_factory=dict)
    supports_temperature: bool = True  # also top_p, seed and the penalties (reasoning models refuse them all)
    sampling: dict[str, Any] = field(default_factory=dict)  # top_p, seed, presence_penalty, frequency_penalty
    response_format: dict[str, Any] | None = None  # OpenAI's: {"type": "text" | "json_object" | "json_schema", ...}
    tool_choice: dict[str, Any] | str | None = None  # OpenAI's: "none" | "auto" | "required" | {"type": "function", ...}
    parallel_tool_calls: bool | None = None  # False: at most one tool call per reply (None: the provider's default)


@dataclass
class Usage:
    input_tokens: int = 0  # uncached input tokens
    output_tokens: int = 0  # includes reasoning tokens, as billed
    cached_input_tokens: int = 0  # cache reads
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those cached for an hour (Anthropic bills them 2x input, not 1.25x)
    reasoning_tokens: int = 0  # informational: already inside output_tokens
    estimated: bool = False  # the provider reported no usage: the counts are the adapter's estimate (estimated_usage)

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens


@dataclass
class ChatResult:
    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str  # the model that answered, as the provider reports it
    request_id: str = ""
    latency_ms: int = 0
    ttft_ms: int | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    provider_cost: Any = None  # Decimal when the provider reports one (OpenRouter usage.cost)

    def __post_init__(self) -> None:
        # A tool called with no input streams no JSON at all (Anthropic, and Claude through OpenRouter): "{}", as
        # OpenAI and a non-streamed call give, so a client's json.loads(arguments) works.
        for call in self.tool_calls:
            function = call.get("function")
            if isinstance(function, dict) and not function.get("arguments"):
                function["arguments"] = "{}"


@dataclass
class StreamEvent:
    """A streamed reply: `delta` events carry text; exactly one final `done` event carries the result."""

    type: str  # "delta" | "done"
    text: str = ""
    result: ChatResult | None = None


class Adapter(Protocol):
    def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]: ...


def estimate_input_tokens(request: ChatRequest) -> int:
    """The request's system prompt, messages (with their tool calls) and images, estimated; at least 1."""
    return max(1, estimate_tokens(request.system) + sum(content_tokens(m) for m in request.messages))


def estimated_usage(request: ChatRequest, text: str, tool_calls: list[dict[str, Any]], reported: Usage | None = None) -> Usage:
    """What a call used when its provider reported nothing, or not all (a completed stream without usage, a stream
    broken mid-reply): counted from the request and the text generated, and marked so, rather than billed as 0 and $0.
    What the provider did report before a stream broke (`reported`: Anthropic's input and cache counts) is kept."""
    output = content_tokens(ChatMessage(role="assistant", content=text, tool_calls=tuple(tool_calls)))
    if reported is not None:
        return replace(reported, output_tokens=max(reported.output_tokens, output), estimated=True)
    return Usage(input_tokens=estimate_input_tokens(request), output_tokens=output, estimated=True)

"""Wire formats of the simulated providers: reply computation, bodies, stream events, error bodies.

Pure functions, no I/O. ``app.py`` decides *what* happens (routing, auth, faults); this module decides
*what it looks like on the wire* for each provider ("anthropic", "openai", "openrouter").
See /work/shared/PROVIDER-NOTES.md for the formats being imitated.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

ANTHROPIC = "anthropic"
OPENAI = "openai"
OPENROUTER = "openrouter"
PROVIDERS = (ANTHROPIC, OPENAI, OPENROUTER)

# Current Claude models that reject `temperature` outright (400 invalid_request_error).
ANTHROPIC_NO_TEMPERATURE = frozenset({"claude-opus-4-8", "claude-opus-5", "claude-opus-5-5", "claude-sonnet-5-5"})

ANTHROPIC_CONTEXT_WINDOW = 200_000
OPENAI_CONTEXT_WINDOW = 128_000

# OpenRouter cost model of the simulator (USD per token).
OPENROUTER_PROMPT_PRICE = 1e-6
OPENROUTER_COMPLETION_PRICE = 2e-6

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    return _dumps(obj).encode()


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{random.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def is_reasoning_model(model: str) -> bool:
    """OpenAI o-series (o1, o3, o4-mini...) and gpt-5*: reasoning tokens, no max_tokens/temperature.

    OpenRouter ids carry a vendor prefix ("openai/o3"): the part after the last "/" is what counts."""
    model = model.rsplit("/", 1)[-1]
    return model.startswith("o") or model.startswith("gpt-5")


# ---------------------------------------------------------------------------------------------
# Request inspection
# ---------------------------------------------------------------------------------------------


def _chars(x: Any) -> int:
    """Characters of message content: strings, lists of blocks/parts, tool inputs/arguments."""
    if x is None:
        return 0
    if isinstance(x, str):
        return len(x)
    if isinstance(x, list):
        return sum(_chars(i) for i in x)
    if isinstance(x, dict):
        if isinstance(x.get("text"), str):
            return len(x["text"])
        n = 0
        if "content" in x:
            n += _chars(x["content"])
        if "input" in x:  # anthropic tool_use
            n += len(_dumps(x["input"]))
        if "arguments" in x:  # openai function call
            n += _chars(x["arguments"])
        if "function" in x:
            n += _chars(x["function"])
        if "tool_calls" in x:
            n += _chars(x["tool_calls"])
        return n
    return len(str(x))


def input_tokens(body: dict) -> int:
    """ceil(characters of system + all messages / 4), at least 1."""
    n = _chars(body.get("system"))
    for m in body.get("messages") or ():
        n += _chars(m)
    return max(1, math.ceil(n / 4))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, str):
                parts.append(b)
            elif isinstance(b, dict) and b.get("type") in ("text", "input_text") and isinstance(b.get("text"), str):
                parts.append(b["text"])
        return " ".join(parts)
    return ""


def last_user_text(body: dict) -> tuple[str, bool]:
    """(text of the last user message, whether that message is the last message of the request)."""
    messages = body.get("messages") or []
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content")), i == len(messages) - 1
    return "", False


def has_cache_control(body: dict) -> bool:
    if "cache_control" in body:
        return True
    blocks: list = []
    if isinstance(body.get("system"), list):
        blocks.extend(body["system"])
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            if "cache_control" in m:
                return True
            if isinstance(m.get("content"), list):
                blocks.extend(m["content"])
    for t in body.get("tools") or ():
        blocks.append(t)
    return any(isinstance(b, dict) and "cache_control" in b for b in blocks)


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return "tool"
    if isinstance(tool.get("function"), dict):  # openai
        return str(tool["function"].get("name") or "tool")
    return str(tool.get("name") or "tool")


def merge_usage(base: dict, override: dict | None) -> dict:
    if not override:
        return base
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# The reply
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    provider: str
    model: str
    words: list[str]
    finish: str  # provider-native: end_turn/max_tokens/stop_sequence/tool_use/refusal | stop/length/tool_calls/content_filter
    stop_sequence: str | None = None
    tool_name: str | None = None
    tool_id: str | None = None
    refusal: bool = False  # OpenAI / OpenRouter: the text goes in `refusal`, `content` is null
    usage: dict = field(default_factory=dict)
    id: str = ""
    created: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def deltas(self) -> list[str]:
        """Text deltas whose concatenation equals ``text``."""
        return [w if i == 0 else " " + w for i, w in enumerate(self.words)]


def _openai_usage(provider: str, model: str, prompt: int, output: int, override: dict | None) -> dict:
    reasoning = 2 * output if is_reasoning_model(model) else 0
    completion = output + reasoning
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if override:
        usage = merge_usage(usage, override)
        if "total_tokens" not in override:
            usage["total_tokens"] = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
    if provider == OPENROUTER:
        p, c = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        pc, cc = p * OPENROUTER_PROMPT_PRICE, c * OPENROUTER_COMPLETION_PRICE
        computed = {
            "cost": round(pc + cc, 12),
            "is_byok": False,
            "cost_details": {
                "upstream_inference_cost": None,
                "upstream_inference_prompt_cost": round(pc, 12),
                "upstream_inference_completions_cost": round(cc, 12),
            },
        }
        for k, v in computed.items():
            if not override or k not in override:
                usage[k] = v
    return usage


def build_reply(provider: str, body: dict, *, fault: str | None = None, usage_override: dict | None = None) -> Reply:
    """Compute the deterministic reply for a (validated) request body."""
    model = str(body.get("model") or (body.get("models") or ["unknown"])[0])
    text, user_is_last = last_user_text(body)
    tools = body.get("tools") or []
    anthropic = provider == ANTHROPIC

    tool_name = None
    if tools and user_is_last and "weather" in text.lower():
        tool_name = _tool_name(tools[0])

    if tool_name is not None:
        words: list[str] = []
        finish = "tool_use" if anthropic else "tool_calls"
        stop_seq = None
        output = max(1, math.ceil((len(tool_name) + 2) / 4))
    else:
        words = f"Simulated reply from {model}: {text}".split()
        finish = "end_turn" if anthropic else "stop"
        stop_seq = None
        if anthropic:
            limit = body.get("max_tokens")
            stops = body.get("stop_sequences") or []
        else:
            limit = body.get("max_completion_tokens")
            if limit is None:
                limit = body.get("max_tokens")
            stops = body.get("stop") or []
            if isinstance(stops, str):
                stops = [stops]
        cut = None
        if stops:
            stop_set = set(stops)
            for i, w in enumerate(words):
                if w in stop_set:
                    cut = i
                    break
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 and len(words) > limit and (
            cut is None or cut > limit
        ):
            words = words[:limit]
            finish = "max_tokens" if anthropic else "length"
        elif cut is not None:
            stop_seq = words[cut]
            words = words[:cut]
            finish = "stop_sequence" if anthropic else "stop"
        if fault == "content_filter":
            words = words[: max(1, len(words) // 2)]
            finish = "refusal" if anthropic else "content_filter"
            stop_seq = None
        if fault == "refusal":  # a model declining: OpenAI's `refusal` field (structured outputs), Anthropic's stop reason
            words = "I'm sorry, but I can't help with that.".split()
            finish = "refusal" if anthropic else "stop"
            stop_seq = None
        output = len(words)

    prompt = input_tokens(body)
    if anthropic:
        cache_read = prompt // 2 if has_cache_control(body) else 0
        usage = {
            "input_tokens": prompt - cache_read,
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read,
        }
        usage = merge_usage(usage, usage_override)
        rid = new_id("msg_")
    else:
        usage = _openai_usage(provider, model, prompt, output, usage_override)
        rid = new_id("gen-" if provider == OPENROUTER else "chatcmpl-")
    return Reply(
        provider=provider,
        model=model,
        words=words,
        finish=finish,
        stop_sequence=stop_seq,
        tool_name=tool_name,
        tool_id=(new_id("toolu_") if anthropic else new_id("call_")) if tool_name else None,
        refusal=fault == "refusal" and not anthropic,
        usage=usage,
        id=rid,
        created=int(time.time()),
    )


# ---------------------------------------------------------------------------------------------
# Non-streamed bodies
# ---------------------------------------------------------------------------------------------


def anthropic_message(r: Reply) -> dict:
    if r.tool_name:
        content = [{"type": "tool_use", "id": r.tool_id, "name": r.tool_name, "input": {}}]
    else:
        content = [{"type": "text", "text": r.text}]
    return {
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": r.finish,
        "stop_sequence": r.stop_sequence,
        "usage": r.usage,
    }


def openai_completion(r: Reply) -> dict:
    if r.tool_name:
        message = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
            "tool_calls": [
                {"id": r.tool_id, "type": "function", "function": {"name": r.tool_name, "arguments": "{}"}}
            ],
        }
    else:
        message = {"role": "assistant", "content": None if r.refusal else r.text, "refusal": r.text if r.refusal else None, "annotations": []}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": r.finish}
    body = {
        "id": r.id,
        "object": "chat.completion",
        "created": r.created,
        "model": r.model,
        "choices": [choice],
        "usage": r.usage,
    }
    if r.provider == OPENROUTER:
        choice["native_finish_reason"] = r.finish
        body["provider"] = "Simulator"
    else:
        body["service_tier"] = "default"
        body["system_fingerprint"] = "fp_simulator"
    return body


def reply_body(r: Reply) -> dict:
    return anthropic_message(r) if r.provider == ANTHROPIC else openai_completion(r)


# ---------------------------------------------------------------------------------------------
# Streams: a list of encoded SSE events; ``split`` is the index after half of the content deltas
# (where stream_cut / stream_error strike), ``tail`` the events that complete the stream.
# ---------------------------------------------------------------------------------------------


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def _data(data: dict) -> bytes:
    return b"data: " + dumps(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"
OPENROUTER_COMMENT = b": OPENROUTER PROCESSING\n\n"


@dataclass
class Stream:
    head: list[bytes]  # up to and including the first half of the deltas
    tail: list[bytes]  # the rest, through the terminating event
    error: bytes  # the mid-stream error event (stream_error)


def anthropic_stream(r: Reply) -> Stream:
    u = r.usage
    start_usage = {
        "input_tokens": u.get("input_tokens", 0),
        "output_tokens": 1,
        "cache_creation_input_tokens": u.get("cache_creation_input_tokens", 0),
        "cache_read_input_tokens": u.get("cache_read_input_tokens", 0),
    }
    if "cache_creation" in u:  # the writes by cache lifetime, as Anthropic reports them
        start_usage["cache_creation"] = u["cache_creation"]
    msg = {
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events = [_event("message_start", {"type": "message_start", "message": msg})]
    if r.tool_name:
        block = {"type": "tool_use", "id": r.tool_id, "name": r.tool_name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": ""}]  # as Anthropic streams a call with no input: no JSON
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": d} for d in r.deltas()]
    events.append(_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
    events.append(_event("ping", {"type": "ping"}))
    delta_events = [_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas]
    half = len(delta_events) // 2
    head = events + delta_events[:half]
    tail = delta_events[half:]
    tail.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    final_usage = {
        "input_tokens": u.get("input_tokens", 0),
        "cache_creation_input_tokens": u.get("cache_creation_input_tokens", 0),
        "cache_read_input_tokens": u.get("cache_read_input_tokens", 0),
        "output_tokens": u.get("output_tokens", 0),
    }
    tail.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": r.finish, "stop_sequence": r.stop_sequence},
                "usage": final_usage,
            },
        )
    )
    tail.append(_event("message_stop", {"type": "message_stop"}))
    err = _event(
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": new_id("req_")},
    )
    return Stream(head, tail, err)


def openai_stream(r: Reply, include_usage: bool) -> Stream:
    openrouter = r.provider == OPENROUTER
    include_usage = include_usage or openrouter
    base: dict = {"id": r.id, "object": "chat.completion.chunk", "created": r.created, "model": r.model}
    if openrouter:
        base["provider"] = "Simulator"
    else:
        base["system_fingerprint"] = "fp_simulator"

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        c = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if openrouter:
            c["native_finish_reason"] = finish
        d = {**base, "choices": [c]}
        if include_usage:
            d["usage"] = None
        return _data(d)

    events = [OPENROUTER_COMMENT] if openrouter else []
    first: dict = {"role": "assistant", "content": "" if not r.tool_name else None}
    if not openrouter:
        first["refusal"] = None
    events.append(chunk(first))
    if r.tool_name:
        deltas = [
            chunk({"tool_calls": [{"index": 0, "id": r.tool_id, "type": "function", "function": {"name": r.tool_name, "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        ]
    else:
        deltas = [chunk({"refusal" if r.refusal else "content": d}) for d in r.deltas()]
    half = len(deltas) // 2
    head = events + deltas[:half]
    tail = deltas[half:]
    tail.append(chunk({}, r.finish))
    if include_usage:
        tail.append(_data({**base, "choices": [], "usage": r.usage}))
    tail.append(DONE)
    if openrouter:
        err = _data({"error": {"code": 502, "message": "Provider returned error: upstream connection lost", "metadata": {}}})
    else:
        err = _data(
            {
                "error": {
                    "message": "The server had an error while processing your request. Sorry about that!",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )
    return Stream(head, tail, err)


def reply_stream(r: Reply, body: dict) -> Stream:
    if r.provider == ANTHROPIC:
        return anthropic_stream(r)
    so = body.get("stream_options")
    return openai_stream(r, bool(isinstance(so, dict) and so.get("include_usage")))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

ERROR_KINDS = (
    "rate_limit",
    "insufficient_quota",
    "overloaded",
    "server_error",
    "unavailable",
    "auth",
    "permission",
    "bad_request",
    "not_found",
    "context_too_long",
)
BEHAVIOUR_KINDS = ("content_filter", "refusal", "timeout", "drop", "invalid_json", "stream_cut", "stream_error", "latency", "usage")
FAULT_KINDS = ERROR_KINDS + BEHAVIOUR_KINDS

# kind -> (status, error.type, message)
_ANTHROPIC_ERRORS = {
    "rate_limit": (429, "rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute. Please try again later."),
    "insufficient_quota": (400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
    "unavailable": (503, "api_error", "Service unavailable"),
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "permission": (403, "permission_error", "Your API key does not have permission to use the specified resource."),
    "bad_request": (400, "invalid_request_error", "messages: Input should be a valid list"),
    "not_found": (404, "not_found_error", "model: {model}"),
    "context_too_long": (400, "invalid_request_error", "prompt is too long: {tokens} tokens > {window} maximum"),
}

# kind -> (status, error.type, code, param, message)
_OPENAI_ERRORS = {
    "rate_limit": (429, "requests", "rate_limit_exceeded", None, "Rate limit reached for {model} in organization org-simulator on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms."),
    "insufficient_quota": (429, "insufficient_quota", "insufficient_quota", None, "You exceeded your current quota, please check your plan and billing details."),
    "overloaded": (503, "server_error", None, None, "That model is currently overloaded with other requests. You can retry your request."),
    "server_error": (500, "server_error", None, None, "The server had an error while processing your request. Sorry about that!"),
    "unavailable": (503, "server_error", None, None, "Service Unavailable"),
    "auth": (401, "invalid_request_error", "invalid_api_key", None, "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."),
    "permission": (403, "invalid_request_error", "permission_denied", None, "You are not allowed to sample from this model"),
    "bad_request": (400, "invalid_request_error", None, "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."),
    "not_found": (404, "invalid_request_error", "model_not_found", None, "The model `{model}` does not exist or you do not have access to it."),
    "context_too_long": (400, "invalid_request_error", "context_length_exceeded", "messages", "This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."),
}

# kind -> (status, message)
_OPENROUTER_ERRORS = {
    "rate_limit": (429, "Rate limit exceeded: {model} is temporarily rate-limited upstream. Please retry shortly."),
    "insufficient_quota": (402, "Insufficient credits. This account never purchased credits. Make sure your key is on the correct account or org, and if so, purchase more at https://openrouter.ai/settings/credits"),
    "overloaded": (503, "No instances available: {model} is overloaded"),
    "server_error": (500, "Internal Server Error"),
    "unavailable": (503, "Service Unavailable"),
    "auth": (401, "User not found."),
    "permission": (403, "This key is not allowed to use {model}"),
    "bad_request": (400, "Input required: specify \"prompt\" or \"messages\""),
    "not_found": (404, "No endpoints found for {model}."),
    "context_too_long": (400, "This endpoint's maximum context length is {window} tokens. However, you requested about {tokens} tokens. Please reduce the length of either one, or use the \"middle-out\" transform to compress your prompt automatically."),
}


def error_body(provider: str, kind: str, *, model: str = "", tokens: int = 0, message: str | None = None) -> tuple[int, dict]:
    """(status, body) of a provider's real error for a fault kind."""
    if provider == ANTHROPIC:
        status, etype, msg = _ANTHROPIC_ERRORS[kind]
        window = ANTHROPIC_CONTEXT_WINDOW
    elif provider == OPENAI:
        status, etype, code, param, msg = _OPENAI_ERRORS[kind]
        window = OPENAI_CONTEXT_WINDOW
    else:
        status, msg = _OPENROUTER_ERRORS[kind]
        window = OPENAI_CONTEXT_WINDOW
    if message is None:
        message = msg.format(model=model, tokens=window + max(tokens, 1), window=window)
    if provider == ANTHROPIC:
        return status, anthropic_error(etype, message)
    if provider == OPENAI:
        return status, openai_error(message, etype, code, param)
    if kind == "context_too_long":
        # The brief's contract: a string code, so OpenAI and OpenRouter can be classified alike.
        return status, {
            "error": {
                "code": "context_length_exceeded",
                "message": message,
                "metadata": {"provider_name": "Simulator", "raw": openai_error(message, "invalid_request_error", "context_length_exceeded", "messages")},
            }
        }
    return status, openrouter_error(status, message)


def anthropic_error(etype: str, message: str) -> dict:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": new_id("req_")}


def openai_error(message: str, etype: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def openrouter_error(status: int, message: str, metadata: dict | None = None) -> dict:
    return {"error": {"code": status, "message": message, "metadata": metadata or {}}}


def invalid_request(provider: str, message: str, *, code: str | None = None, param: str | None = None, status: int = 400) -> tuple[int, dict]:
    if provider == ANTHROPIC:
        etype = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(status, "invalid_request_error")
        return status, anthropic_error(etype, message)
    if provider == OPENAI:
        return status, openai_error(message, "invalid_request_error", code, param)
    return status, openrouter_error(status, message)


# ---------------------------------------------------------------------------------------------
# Validation faithful to the real APIs (None = valid)
# ---------------------------------------------------------------------------------------------


def validate(provider: str, body: dict, *, count_tokens: bool = False) -> tuple[int, dict] | None:
    if provider == ANTHROPIC:
        required = ("model", "messages") if count_tokens else ("model", "max_tokens", "messages")
        for f in required:
            if f not in body or body[f] is None:
                return invalid_request(provider, f"{f}: Field required")
        if not isinstance(body["messages"], list):
            return invalid_request(provider, "messages: Input should be a valid list")
        if not count_tokens:
            mt = body["max_tokens"]
            if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
                return invalid_request(provider, "max_tokens: Input should be greater than or equal to 1")
        if "temperature" in body and body["model"] in ANTHROPIC_NO_TEMPERATURE:
            return invalid_request(provider, f"`temperature` is deprecated for this model ({body['model']}).")
        t = body.get("temperature")
        if isinstance(t, (int, float)) and not 0 <= t <= 1:
            return invalid_request(provider, "temperature: Input should be less than or equal to 1")
        for sequence in body.get("stop_sequences") or []:
            if not str(sequence).strip():
                return invalid_request(provider, "stop_sequences: each stop sequence must contain non-whitespace")
        return None

    model = body.get("model")
    if provider == OPENROUTER:
        if not model and not body.get("models"):
            return invalid_request(provider, "No models provided")
    elif not model:
        return invalid_request(provider, "you must provide a model parameter", code="missing_required_parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        if provider == OPENROUTER:
            return invalid_request(provider, 'Input required: specify "prompt" or "messages"')
        return invalid_request(provider, "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages")
    if provider == OPENAI and is_reasoning_model(str(model)):
        if body.get("max_tokens") is not None:
            return invalid_request(
                provider,
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                code="unsupported_parameter",
                param="max_tokens",
            )
        if body.get("stop") is not None:
            return invalid_request(
                provider, "Unsupported parameter: 'stop' is not supported with this model.",
                code="unsupported_parameter", param="stop",
            )
        t = body.get("temperature")
        if t is not None and t != 1:
            return invalid_request(
                provider,
                f"Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported.",
                code="unsupported_value",
                param="temperature",
            )
    return None

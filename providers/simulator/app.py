"""Provider simulator: a raw ASGI app imitating the Anthropic Messages API, OpenAI Chat Completions and
OpenRouter's variant, with injectable faults. Used for failover drills, load tests and as the test
suite's stand-in for the providers (the official SDKs talk to it unchanged as their base_url).

Routes
    POST /anthropic/v1/messages                      (Anthropic SDK base_url: {url}/anthropic)
    POST /anthropic/v1/messages/count_tokens         -> {"input_tokens": N}
    POST /openai/v1/chat/completions                 (OpenAI SDK base_url: {url}/openai/v1)
    POST /openrouter/api/v1/chat/completions         (base_url: {url}/openrouter/api/v1)
    GET  /openrouter/api/v1/generation?id=GEN_ID     -> {"data": {id, model, total_cost, native_tokens_*}}
    POST /_control/faults (rule) -> 201 {"id"}; GET /_control/faults; DELETE /_control/faults[/ID]
    GET|DELETE /_control/requests; POST /_control/reset; GET /_control/health

Faults apply to the two generation endpoints (messages / chat completions) only, after authentication
(bad keys are still 401/403) and before request validation. Rules are tried in the order added; the
first matching (provider, model — "*" or an fnmatch pattern), non-spent rule whose random draw
(``rate``) fires applies and consumes one of its ``count``. ``stream_error`` on a non-streaming
request answers like ``server_error``; ``stream_cut`` on a non-streaming request is a ``drop``.

How ``drop`` really drops: uvicorn answers 500 when an ASGI app raises before
``http.response.start``, so that cannot be used. ``server.py`` runs uvicorn with a subclass of its
HTTP protocol that puts the connection's asyncio transport into the ASGI scope as
``scope["extensions"]["simulator.transport"]``. ``drop`` calls ``transport.abort()`` (socket closed,
nothing written: the client sees no status line) and ``stream_cut`` calls ``transport.close()`` after
the first half of the stream (what was written is flushed, then FIN with no terminating chunk). The
app then waits for uvicorn to notice the disconnect, so uvicorn neither answers nor logs an error.
Under another ASGI server (no such extension) those two faults raise instead.

State lives in the ``SimulatorApp`` instance and is only touched from the server's event loop
(control requests go through the same loop), so no locks are needed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import OrderedDict, deque
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs

from . import wire
from .wire import ANTHROPIC, ANTHROPIC_NO_TEMPERATURE, FAULT_KINDS, OPENAI, OPENROUTER, PROVIDERS  # noqa: F401

TRANSPORT_EXTENSION = "simulator.transport"
MAX_RECORDED = 1000
MAX_GENERATIONS = 10_000
DEFAULT_TIMEOUT_MS = 30_000

_GENERATE = "generate"
_COUNT_TOKENS = "count_tokens"
_GENERATION = "generation"

ROUTES: dict[str, tuple[str, str, str]] = {
    # path -> (method, provider, endpoint)
    "/anthropic/v1/messages": ("POST", ANTHROPIC, _GENERATE),
    "/anthropic/v1/messages/count_tokens": ("POST", ANTHROPIC, _COUNT_TOKENS),
    "/openai/v1/chat/completions": ("POST", OPENAI, _GENERATE),
    "/openrouter/api/v1/chat/completions": ("POST", OPENROUTER, _GENERATE),
    "/openrouter/api/v1/generation": ("GET", OPENROUTER, _GENERATION),
}

_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class FaultRuleError(ValueError):
    pass


def normalize_rule(rule: dict) -> dict:
    """Validate a fault rule and fill in defaults. Raises FaultRuleError."""
    if not isinstance(rule, dict):
        raise FaultRuleError("rule must be a JSON object")
    kind = rule.get("fault")
    if kind not in FAULT_KINDS:
        raise FaultRuleError(f"fault must be one of {', '.join(FAULT_KINDS)}")
    provider = rule.get("provider") or "*"
    if provider != "*" and provider not in PROVIDERS:
        raise FaultRuleError(f"provider must be '*' or one of {', '.join(PROVIDERS)}")
    model = rule.get("model") or "*"
    if not isinstance(model, str):
        raise FaultRuleError("model must be a string")
    try:
        rate = float(1.0 if rule.get("rate") is None else rule["rate"])
        count = None if rule.get("count") is None else int(rule["count"])
        latency_ms = float(rule.get("latency_ms") or 0)
        chunk_delay_ms = float(rule.get("chunk_delay_ms") or 0)
        retry_after = None if rule.get("retry_after") is None else float(rule["retry_after"])
    except (TypeError, ValueError) as exc:
        raise FaultRuleError(f"bad numeric field: {exc}") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultRuleError("rate must be between 0 and 1")
    if count is not None and count < 0:
        raise FaultRuleError("count must be >= 0 or null")
    if latency_ms < 0 or chunk_delay_ms < 0 or (retry_after is not None and retry_after < 0):
        raise FaultRuleError("latency_ms, chunk_delay_ms and retry_after must be >= 0")
    usage = rule.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise FaultRuleError("usage must be an object")
    if kind == "timeout" and not latency_ms:
        latency_ms = DEFAULT_TIMEOUT_MS
    return {
        "provider": provider,
        "model": model,
        "fault": kind,
        "rate": rate,
        "count": count,
        "latency_ms": latency_ms,
        "chunk_delay_ms": chunk_delay_ms,
        "retry_after": retry_after,
        "usage": usage,
        "fired": 0,
    }


def _headers_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw:
        key, val = k.decode("latin-1").lower(), v.decode("latin-1")
        out[key] = f"{out[key]}, {val}" if key in out else val
    return out


def _api_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


def _retry_headers(retry_after: float | None) -> list[tuple[bytes, bytes]]:
    if retry_after is None:
        return []
    secs = int(retry_after) if retry_after == int(retry_after) else int(retry_after) + 1
    return [(b"retry-after", str(secs).encode()), (b"retry-after-ms", str(int(retry_after * 1000)).encode())]


class SimulatorApp:
    """The ASGI application. One instance = one independent simulator state."""

    def __init__(self, seed: int | None = None) -> None:
        self.rules: list[dict] = []
        self.recorded: deque[dict] = deque(maxlen=MAX_RECORDED)
        self.generations: OrderedDict[str, dict] = OrderedDict()
        self.rng = random.Random(seed)
        self._next_rule_id = 1

    # -- state API (also usable in-process) ---------------------------------------------------

    def add_fault(self, rule: dict) -> int:
        r = normalize_rule(rule)
        r["id"] = self._next_rule_id
        self._next_rule_id += 1
        self.rules.append(r)
        return r["id"]

    def clear_faults(self) -> int:
        n = len(self.rules)
        self.rules = []
        return n

    def reset(self) -> None:
        self.rules = []
        self.recorded.clear()

    def match_fault(self, provider: str, model: str) -> dict | None:
        for rule in self.rules:
            if rule["provider"] != "*" and rule["provider"] != provider:
                continue
            m = rule["model"]
            if m != "*" and m != model and not (("*" in m or "?" in m or "[" in m) and fnmatchcase(model, m)):
                continue
            if rule["count"] is not None and rule["fired"] >= rule["count"]:
                continue
            if rule["rate"] < 1.0 and self.rng.random() >= rule["rate"]:
                continue
            rule["fired"] += 1
            return rule
        return None

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        stype = scope["type"]
        if stype == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if stype != "http":
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        method = scope["method"]
        route = ROUTES.get(path)
        if route is not None:
            want, provider, endpoint = route
            if method != want:
                status, body = wire.invalid_request(provider, f"Method {method} not allowed", status=405)
                return await _send_json(send, 405, body)
            return await self._provider(scope, receive, send, path, provider, endpoint)
        if path.startswith("/_control/"):
            return await self._control(scope, receive, send, path, method)
        for provider in PROVIDERS:
            if path.startswith(f"/{provider}/"):
                status, body = wire.invalid_request(provider, f"Not found: {method} {path}", status=404)
                return await _send_json(send, 404, body)
        return await _send_json(send, 404, {"error": f"Not found: {method} {path}"})

    # -- provider endpoints ---------------------------------------------------------------------

    async def _provider(self, scope, receive, send, path, provider, endpoint) -> None:
        raw = await _read_body(receive)
        if raw is None:
            return
        headers = _headers_dict(scope["headers"])
        body: Any = None
        bad_json = False
        if endpoint != _GENERATION:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                bad_json = True
                body = raw.decode("utf-8", "replace")
        entry = {"provider": provider, "method": scope["method"], "path": path, "headers": headers, "body": body}
        if scope.get("query_string"):
            entry["query"] = scope["query_string"].decode("latin-1")
        self.recorded.append(entry)

        key = _api_key(headers)
        if key is None or key.startswith("bad-"):
            status, err = wire.error_body(provider, "auth")
            if provider == ANTHROPIC and key is None:
                err["error"]["message"] = "x-api-key header is required"
            elif provider == OPENAI and key is None:
                err["error"]["message"] = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            elif provider == OPENROUTER and key is None:
                err["error"]["message"] = "No auth credentials found"
            return await _send_json(send, status, err, _id_headers(provider))
        if key.startswith("forbidden-"):
            status, err = wire.error_body(provider, "permission", model=str((body or {}).get("model", "")) if isinstance(body, dict) else "")
            return await _send_json(send, status, err, _id_headers(provider))

        if endpoint == _GENERATION:
            return await self._generation(scope, send)
        if bad_json or not isinstance(body, dict):
            msg = "There was an error parsing the body" if provider == ANTHROPIC else "We could not parse the JSON body of your request."
            status, err = wire.invalid_request(provider, msg)
            return await _send_json(send, status, err, _id_headers(provider))
        if endpoint == _COUNT_TOKENS:
            invalid = wire.validate(provider, body, count_tokens=True)
            if invalid:
                return await _send_json(send, invalid[0], invalid[1], _id_headers(provider))
            return await _send_json(send, 200, {"input_tokens": wire.input_tokens(body)}, _id_headers(provider))
        return await self._generate(scope, receive, send, provider, body)

    async def _generate(self, scope, receive, send, provider: str, body: dict) -> None:
        model = str(body.get("model") or (body.get("models") or [""])[0])
        stream = body.get("stream") is True
        rule = self.match_fault(provider, model) if self.rules else None
        kind = rule["fault"] if rule else None

        if rule and rule["latency_ms"]:
            if await _sleep_unless_disconnected(receive, rule["latency_ms"] / 1000):
                return

        if kind == "stream_error" and not stream:
            kind = "server_error"
        if kind in wire.ERROR_KINDS:
            status, err = wire.error_body(provider, kind, model=model, tokens=wire.input_tokens(body))
            extra = _id_headers(provider) + _retry_headers(rule["retry_after"])
            return await _send_json(send, status, err, extra)
        if kind == "drop" or (kind == "stream_cut" and not stream):
            return await _drop(scope, receive)
        if kind == "invalid_json":
            payload = b'{"id": "broken", "choices": [ {"message": '
            await send({"type": "http.response.start", "status": 200, "headers": [_JSON, (b"content-length", str(len(payload)).encode()), *_id_headers(provider)]})
            return await send({"type": "http.response.body", "body": payload})

        invalid = wire.validate(provider, body)
        if invalid:
            return await _send_json(send, invalid[0], invalid[1], _id_headers(provider))

        reply = wire.build_reply(provider, body, fault=kind, usage_override=rule["usage"] if rule else None)
        headers = _id_headers(provider)
        if provider == OPENROUTER:
            headers.append((b"x-generation-id", reply.id.encode()))
            self._store_generation(reply, stream)
        if not stream:
            return await _send_json(send, 200, wire.reply_body(reply), headers)

        events = wire.reply_stream(reply, body)
        delay = (rule["chunk_delay_ms"] / 1000) if rule else 0.0
        transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
        await send({"type": "http.response.start", "status": 200, "headers": _SSE + headers})
        if not await _send_events(send, events.head, delay, transport):
            return
        if kind == "stream_cut":
            return await _cut(scope, receive)
        if kind == "stream_error":
            if delay:
                await asyncio.sleep(delay)
            return await send({"type": "http.response.body", "body": events.error, "more_body": False})
        if not await _send_events(send, events.tail, delay, transport, first_delay=bool(delay and events.head)):
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _store_generation(self, reply: wire.Reply, streamed: bool) -> None:
        u = reply.usage
        self.generations[reply.id] = {
            "id": reply.id,
            "model": reply.model,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reply.created)),
            "total_cost": u.get("cost", 0.0),
            "tokens_prompt": u.get("prompt_tokens", 0),
            "tokens_completion": u.get("completion_tokens", 0),
            "native_tokens_prompt": u.get("prompt_tokens", 0),
            "native_tokens_completion": u.get("completion_tokens", 0),
            "native_tokens_reasoning": (u.get("completion_tokens_details") or {}).get("reasoning_tokens", 0),
            "native_tokens_cached": (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            "finish_reason": reply.finish,
            "native_finish_reason": reply.finish,
            "provider_name": "Simulator",
            "streamed": streamed,
            "is_byok": False,
        }
        if len(self.generations) > MAX_GENERATIONS:
            self.generations.popitem(last=False)

    async def _generation(self, scope, send) -> None:
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        gen_id = (qs.get("id") or [""])[0]
        gen = self.generations.get(gen_id)
        if gen is None:
            return await _send_json(send, 404, wire.openrouter_error(404, f"Generation {gen_id} not found"))
        return await _send_json(send, 200, {"data": gen})

    # -- control endpoints ----------------------------------------------------------------------

    async def _control(self, scope, receive, send, path: str, method: str) -> None:
        raw = await _read_body(receive)
        if raw is None:
            return
        if path == "/_control/health" and method == "GET":
            return await _send_json(send, 200, {"status": "ok"})
        if path == "/_control/faults":
            if method == "POST":
                try:
                    rule = json.loads(raw or b"null")
                    rule_id = self.add_fault(rule)
                except ValueError as exc:  # also FaultRuleError
                    return await _send_json(send, 400, {"error": str(exc)})
                return await _send_json(send, 201, {"id": rule_id})
            if method == "GET":
                return await _send_json(send, 200, {"faults": [_public_rule(r) for r in self.rules]})
            if method == "DELETE":
                return await _send_json(send, 200, {"deleted": self.clear_faults()})
        if path.startswith("/_control/faults/") and method == "DELETE":
            try:
                rule_id = int(path.rsplit("/", 1)[1])
            except ValueError:
                rule_id = -1
            before = len(self.rules)
            self.rules = [r for r in self.rules if r["id"] != rule_id]
            if len(self.rules) == before:
                return await _send_json(send, 404, {"error": "no such rule"})
            return await _send_json(send, 200, {"deleted": 1})
        if path == "/_control/requests":
            if method == "GET":
                return await _send_json(send, 200, {"requests": list(self.recorded)})
            if method == "DELETE":
                n = len(self.recorded)
                self.recorded.clear()
                return await _send_json(send, 200, {"deleted": n})
        if path == "/_control/reset" and method == "POST":
            self.reset()
            return await _send_json(send, 200, {"status": "reset"})
        return await _send_json(send, 404, {"error": f"Not found: {method} {path}"})


def _public_rule(r: dict) -> dict:
    out = dict(r)
    out["remaining"] = None if r["count"] is None else max(0, r["count"] - r["fired"])
    return out


def _id_headers(provider: str) -> list[tuple[bytes, bytes]]:
    if provider == ANTHROPIC:
        return [(b"request-id", wire.new_id("req_").encode())]
    return [(b"x-request-id", wire.new_id("req_").encode())]


async def _read_body(receive) -> bytes | None:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        return None
    body = msg.get("body", b"")
    if not msg.get("more_body"):
        return body
    chunks = [body]
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def _send_json(send, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = wire.dumps(obj)
    headers = [_JSON, (b"content-length", str(len(payload)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _send_events(send, events: list[bytes], delay: float, transport, first_delay: bool = False) -> bool:
    """Send SSE events (all at once without a delay). False if the client went away."""
    if not events:
        return True
    if not delay:
        await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
        return True
    for i, ev in enumerate(events):
        if i or first_delay:
            await asyncio.sleep(delay)
        if transport is not None and transport.is_closing():
            return False
        await send({"type": "http.response.body", "body": ev, "more_body": True})
    return True


async def _sleep_unless_disconnected(receive, seconds: float) -> bool:
    """Sleep; True if the client disconnected meanwhile (the request body has been read already)."""
    task = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result().get("type") == "http.disconnect"
    task.cancel()
    return False


async def _wait_disconnect(receive, timeout: float = 5.0) -> None:
    try:
        await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        pass


def _transport(scope):
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if transport is None:
        raise RuntimeError("drop/stream_cut need the simulator's uvicorn protocol (providers.simulator.server)")
    return transport


async def _drop(scope, receive) -> None:
    """Close the connection without writing a single byte of response."""
    _transport(scope).abort()
    await _wait_disconnect(receive)


async def _cut(scope, receive) -> None:
    """Flush what was sent, then close: a chunked response without its terminating chunk."""
    _transport(scope).close()
    await _wait_disconnect(receive)


app = SimulatorApp()

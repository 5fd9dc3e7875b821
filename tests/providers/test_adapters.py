"""Each adapter through its real SDK against the provider simulator (loopback HTTP, no mocks)."""

from decimal import Decimal

import pytest

from providers.adapters import get_adapter
from providers.errors import ErrorKind, ProviderError
from providers.types import ChatMessage, ChatRequest, FinishReason

MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini", "openrouter": "openai/gpt-4o-mini"}
PROVIDERS = list(MODELS)


def adapter(simulator, kind, key="sk-test-key"):
    base_url = {"anthropic": simulator.anthropic_base_url, "openai": simulator.openai_base_url, "openrouter": simulator.openrouter_base_url}[kind]
    return get_adapter(kind, api_key=key, base_url=base_url)


def request(kind, text="hello there, how are you", **kwargs):
    return ChatRequest(model=MODELS[kind], messages=[ChatMessage("user", text)], system="Be brief.", max_tokens=kwargs.pop("max_tokens", 100), **kwargs)


def collect(events):
    events = list(events)
    assert events[-1].type == "done" and all(e.type == "delta" for e in events[:-1])
    return "".join(e.text for e in events[:-1]), events[-1].result


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_returns_a_normalized_plain_reply(simulator, kind):
    result = adapter(simulator, kind).complete(request(kind))
    assert result.text == f"Simulated reply from {MODELS[kind]}: hello there, how are you"
    assert result.finish_reason == FinishReason.STOP
    assert result.usage.input_tokens > 0 and result.usage.output_tokens == len(result.text.split())
    assert result.model == MODELS[kind]
    assert result.request_id
    assert result.latency_ms >= 0 and result.ttft_ms is not None


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_reassembles_a_streamed_reply_with_its_usage(simulator, kind):
    plain = adapter(simulator, kind).complete(request(kind))
    text, result = collect(adapter(simulator, kind).stream(request(kind)))
    assert text == plain.text == result.text
    assert result.usage == plain.usage
    assert result.finish_reason == FinishReason.STOP
    assert result.ttft_ms is not None and result.request_id
    assert not result.usage.estimated


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_normalizes_a_length_finish(simulator, kind):
    result = adapter(simulator, kind).complete(request(kind, max_tokens=3))
    assert result.finish_reason == FinishReason.LENGTH
    assert result.usage.output_tokens == 3
    _, streamed = collect(adapter(simulator, kind).stream(request(kind, max_tokens=3)))
    assert streamed.finish_reason == FinishReason.LENGTH


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_normalizes_a_content_filter_finish(simulator, kind):
    simulator.add_fault(provider=kind, fault="content_filter")
    assert adapter(simulator, kind).complete(request(kind)).finish_reason == FinishReason.CONTENT_FILTER


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_refusal_reaches_the_client_as_text_with_a_content_filter_finish(simulator, kind):
    # OpenAI and OpenRouter put a declining model's words in `refusal` (content null); Anthropic stops with `refusal`.
    simulator.add_fault(provider=kind, fault="refusal")
    result = adapter(simulator, kind).complete(request(kind))
    text, streamed = collect(adapter(simulator, kind).stream(request(kind)))
    assert result.text == text == streamed.text == "I'm sorry, but I can't help with that."
    assert result.finish_reason == streamed.finish_reason == FinishReason.CONTENT_FILTER


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_returns_tool_calls(simulator, kind):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}}]
    result = adapter(simulator, kind).complete(request(kind, text="what is the weather", tools=tools))
    _, streamed = collect(adapter(simulator, kind).stream(request(kind, text="what is the weather", tools=tools)))
    for answer in (result, streamed):
        assert answer.finish_reason == FinishReason.TOOL_CALLS
        assert answer.tool_calls[0]["function"]["name"] == "get_weather"
        # A call with no input: Anthropic streams no JSON for it; the client still gets an object to json.loads.
        assert answer.tool_calls[0]["function"]["arguments"] == "{}"


def test_it_normalizes_anthropic_cache_usage(simulator):
    simulator.add_fault(provider="anthropic", fault="usage", usage={"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50, "output_tokens": 7})
    usage = adapter(simulator, "anthropic").complete(request("anthropic")).usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens, usage.output_tokens) == (10, 100, 50, 7)
    assert usage.total_input_tokens == 160


def test_it_reads_which_anthropic_cache_writes_were_for_an_hour(simulator):
    reported = {"input_tokens": 10, "output_tokens": 10, "cache_creation_input_tokens": 10_000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 8_000}}
    simulator.add_fault(provider="anthropic", fault="usage", usage=reported)
    usage = adapter(simulator, "anthropic").complete(request("anthropic")).usage
    simulator.add_fault(provider="anthropic", fault="usage", usage=reported)
    _, streamed = collect(adapter(simulator, "anthropic").stream(request("anthropic")))
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (10_000, 8_000)
    assert (streamed.usage.cache_write_tokens, streamed.usage.cache_write_1h_tokens) == (10_000, 8_000)


@pytest.mark.parametrize("kind", ["openai", "openrouter"])
def test_it_normalizes_openai_cached_and_reasoning_usage(simulator, kind):
    simulator.add_fault(provider=kind, fault="usage", usage={
        "prompt_tokens": 150, "completion_tokens": 30, "total_tokens": 180,
        "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 20},
    })
    usage = adapter(simulator, kind).complete(request(kind)).usage
    # cached tokens are inside prompt_tokens; reasoning tokens inside completion_tokens (billed as output)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens) == (50, 100, 30, 20)


def test_it_keeps_openrouters_reported_cost_and_sends_attribution(simulator):
    result = adapter(simulator, "openrouter").complete(request("openrouter"))
    expected = Decimal(str(result.usage.input_tokens * 1e-6 + result.usage.output_tokens * 2e-6))
    assert result.provider_cost is not None and abs(result.provider_cost - expected) < Decimal("1e-12")
    assert result.request_id.startswith("gen-")
    _, streamed = collect(adapter(simulator, "openrouter").stream(request("openrouter")))
    assert streamed.provider_cost == result.provider_cost
    headers = simulator.requests()[-1]["headers"]
    assert headers["http-referer"] and headers["x-title"] == "AgencyHub"
    assert headers["authorization"] == "Bearer sk-test-key"


def test_anthropic_sends_temperature_in_the_body_and_omits_it_where_refused(simulator):
    adapter(simulator, "anthropic").complete(request("anthropic", temperature=0.2))
    assert simulator.requests()[-1]["body"]["temperature"] == 0.2
    refused = ChatRequest(model="claude-opus-4-8", messages=[ChatMessage("user", "hi")], max_tokens=50, temperature=0.2, supports_temperature=False)
    assert adapter(simulator, "anthropic").complete(refused).text
    assert "temperature" not in simulator.requests()[-1]["body"]


def test_openai_uses_max_completion_tokens_for_reasoning_models(simulator):
    o_request = ChatRequest(model="o4-mini", messages=[ChatMessage("user", "hi")], max_tokens=50, temperature=0.5, supports_temperature=False)
    result = adapter(simulator, "openai").complete(o_request)
    body = simulator.requests()[-1]["body"]
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body and "temperature" not in body
    assert result.usage.reasoning_tokens > 0


def test_sdk_retries_are_off(simulator):
    simulator.add_fault(provider="openai", fault="server_error")
    with pytest.raises(ProviderError):
        adapter(simulator, "openai").complete(request("openai"))
    assert len(simulator.requests()) == 1


FAULTS = [
    # fault, expected kind, retryable
    ("rate_limit", ErrorKind.RATE_LIMITED, True),
    ("server_error", ErrorKind.SERVER_ERROR, True),
    ("unavailable", ErrorKind.OVERLOADED, True),
    ("drop", ErrorKind.CONNECTION, True),
    ("invalid_json", ErrorKind.INVALID_RESPONSE, True),
    ("auth", ErrorKind.AUTHENTICATION, False),
    ("permission", ErrorKind.PERMISSION, False),
    ("bad_request", ErrorKind.BAD_REQUEST, False),
    ("not_found", ErrorKind.NOT_FOUND, False),
    ("context_too_long", ErrorKind.CONTEXT_TOO_LONG, False),
    ("insufficient_quota", ErrorKind.INSUFFICIENT_QUOTA, False),
]


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("fault,expected,retryable", FAULTS)
def test_it_maps_each_fault_to_a_project_error(simulator, kind, fault, expected, retryable):
    simulator.add_fault(provider=kind, fault=fault, retry_after=7 if fault == "rate_limit" else None)
    with pytest.raises(ProviderError) as caught:
        adapter(simulator, kind).complete(request(kind))
    assert caught.value.kind == expected, caught.value
    assert caught.value.retryable is retryable
    if fault == "rate_limit":
        assert caught.value.retry_after == 7
    if fault in ("auth", "permission"):
        assert caught.value.credential_rejected


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_maps_overloaded(simulator, kind):
    simulator.add_fault(provider=kind, fault="overloaded")
    with pytest.raises(ProviderError) as caught:
        adapter(simulator, kind).complete(request(kind))
    assert caught.value.kind == ErrorKind.OVERLOADED and caught.value.retryable
    if kind == "anthropic":
        assert caught.value.status == 529


@pytest.mark.parametrize("kind", PROVIDERS)
def test_it_maps_a_timeout(simulator, kind, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    simulator.add_fault(provider=kind, fault="timeout", latency_ms=3000)
    with pytest.raises(ProviderError) as caught:
        adapter(simulator, kind).complete(request(kind))
    assert caught.value.kind == ErrorKind.TIMEOUT and caught.value.retryable


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("fault", ["stream_cut", "stream_error"])
def test_a_broken_stream_raises_after_the_deltas_it_delivered(simulator, kind, fault):
    simulator.add_fault(provider=kind, fault=fault)
    received = []
    with pytest.raises(ProviderError) as caught:
        for event in adapter(simulator, kind).stream(request(kind, text="one two three four five six seven eight")):
            received.append(event)
    assert received and all(e.type == "delta" for e in received)
    assert caught.value.retryable
    if fault == "stream_cut":
        assert caught.value.kind == ErrorKind.CONNECTION
    elif kind == "anthropic":
        assert caught.value.kind == ErrorKind.OVERLOADED


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_stream_that_fails_before_the_first_byte_raises_before_any_delta(simulator, kind):
    simulator.add_fault(provider=kind, fault="rate_limit", retry_after=2)
    stream = adapter(simulator, kind).stream(request(kind))
    with pytest.raises(ProviderError) as caught:
        next(stream)
    assert caught.value.kind == ErrorKind.RATE_LIMITED and caught.value.retry_after == 2


def test_the_sandbox_answers_without_network():
    sandbox = get_adapter("sandbox", api_key="", base_url="")
    req = ChatRequest(model="sandbox-economy", messages=[ChatMessage("user", "ping")])
    result = sandbox.complete(req)
    text, streamed = collect(sandbox.stream(req))
    assert "ping" in result.text and text == result.text == streamed.text
    assert result.usage.output_tokens == len(result.text.split()) == streamed.usage.output_tokens


@pytest.fixture
def odd_server():
    """A loopback server that answers every POST with `server.events` as SSE if set, else `server.reply` as JSON with
    `server.status` (200 unless set) and `server.headers`."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if server.events is not None:
                body = "".join(f"event: {e.get('type', 'chunk')}\ndata: {json.dumps(e)}\n\n" for e in server.events).encode()
                body += b"data: [DONE]\n\n"
                content_type = "text/event-stream"
            else:
                body, content_type = json.dumps(server.reply).encode(), "application/json"
            self.send_response(server.status)
            for name, value in server.headers.items():
                self.send_header(name, value)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.events, server.status, server.headers = None, 200, {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def odd_adapter(server, kind):
    return get_adapter(kind, api_key="k", base_url=f"http://127.0.0.1:{server.server_port}" + ("" if kind == "anthropic" else "/v1"))


WRONG_SHAPES = {
    "openai": [
        {"choices": []}, {"choices": [{"message": None}]}, {"id": "x"}, ["not", "an", "object"],
        {"choices": [{"message": {"content": 42}}]},
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "many"}},
    ],
    "anthropic": [
        {"content": None}, {"content": [{"type": "text"}]}, {"id": "x"}, ["not", "an", "object"],
        {"content": [{"type": "text", "text": ["a", "list"]}]},
        {"content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": "many"}},
    ],
}


@pytest.mark.parametrize("kind,reply", [(k, r) for k in PROVIDERS for r in WRONG_SHAPES["anthropic" if k == "anthropic" else "openai"]])
def test_a_reply_of_the_wrong_shape_is_an_invalid_response(odd_server, kind, reply):
    odd_server.reply = reply
    with pytest.raises(ProviderError) as caught:
        odd_adapter(odd_server, kind).complete(request(kind))
    assert caught.value.kind == ErrorKind.INVALID_RESPONSE and caught.value.retryable


FIRST_CHUNK = {
    "openai": {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
    "anthropic": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
}
BAD_CHUNKS = {
    "openai": [{"id": "c1", "choices": "oops"}, {"id": "c1", "choices": [{"index": 0, "delta": {"content": 7}}]}],
    "anthropic": [{"type": "content_block_delta", "index": 0},
                  {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 7}}],
}


@pytest.mark.parametrize("kind,bad", [(k, b) for k in PROVIDERS for b in range(2)])
def test_a_streamed_chunk_of_the_wrong_shape_is_an_invalid_response(odd_server, kind, bad):
    family = "anthropic" if kind == "anthropic" else "openai"
    odd_server.events = [FIRST_CHUNK[family], BAD_CHUNKS[family][bad]]
    received = []
    with pytest.raises(ProviderError) as caught:
        for event in odd_adapter(odd_server, kind).stream(request(kind)):
            received.append(event)
    assert [e.text for e in received] == ["Hi"]
    assert caught.value.kind == ErrorKind.INVALID_RESPONSE


MODERATION = {"code": 403, "message": "openai/gpt-4o-mini requires moderation on OpenAI. Your input was flagged for \"harassment\"."}


@pytest.mark.parametrize("metadata", [{"reasons": ["harassment"], "provider_name": "OpenAI"}, {"flagged_input": "you are..."}])
def test_an_openrouter_moderation_refusal_is_content_filtered_and_keeps_the_key(odd_server, metadata):
    odd_server.status, odd_server.reply = 403, {"error": {**MODERATION, "metadata": metadata}}
    with pytest.raises(ProviderError) as caught:
        odd_adapter(odd_server, "openrouter").complete(request("openrouter"))
    assert caught.value.kind == ErrorKind.CONTENT_FILTERED and not caught.value.credential_rejected


def test_an_openrouter_moderation_refusal_mid_stream_is_content_filtered(odd_server):
    odd_server.events = [FIRST_CHUNK["openai"], {"error": {**MODERATION, "metadata": {"reasons": ["harassment"]}}}]
    with pytest.raises(ProviderError) as caught:
        list(odd_adapter(odd_server, "openrouter").stream(request("openrouter")))
    assert caught.value.kind == ErrorKind.CONTENT_FILTERED and not caught.value.credential_rejected


def test_anthropic_input_plus_max_tokens_over_the_window_is_context_too_long(odd_server):
    odd_server.status = 400
    odd_server.reply = {"type": "error", "error": {"type": "invalid_request_error", "message": (
        "input length and `max_tokens` exceed context limit: 190000 + 64000 > 200000, decrease input length or "
        "`max_tokens` and try again")}}
    with pytest.raises(ProviderError) as caught:
        odd_adapter(odd_server, "anthropic").complete(request("anthropic"))
    assert caught.value.kind == ErrorKind.CONTEXT_TOO_LONG


def test_anthropic_gets_temperature_clamped_to_its_range(simulator):
    adapter(simulator, "anthropic").complete(request("anthropic", temperature=1.7))
    assert simulator.requests()[-1]["body"]["temperature"] == 1.0
    adapter(simulator, "openai").complete(request("openai", temperature=1.7))
    assert simulator.requests()[-1]["body"]["temperature"] == 1.7


def test_openai_reasoning_models_get_no_stop(simulator):
    reasoning = ChatRequest(model="o4-mini", messages=[ChatMessage("user", "hi")], stop=["END"], supports_temperature=False)
    assert adapter(simulator, "openai").complete(reasoning).text
    assert "stop" not in simulator.requests()[-1]["body"]
    adapter(simulator, "openai").complete(request("openai", stop=["END"]))
    assert simulator.requests()[-1]["body"]["stop"] == ["END"]
    # OpenRouter passes stop on to the models that take it (and drops it for the others itself)
    adapter(simulator, "openrouter").complete(request("openrouter", stop=["END"], supports_temperature=False))
    assert simulator.requests()[-1]["body"]["stop"] == ["END"]


def test_anthropic_gets_no_whitespace_only_stop_sequences(simulator):
    adapter(simulator, "anthropic").complete(request("anthropic", stop=["\n", " \t", "END"]))
    assert simulator.requests()[-1]["body"]["stop_sequences"] == ["END"]
    adapter(simulator, "anthropic").complete(request("anthropic", stop=["\n"]))
    assert "stop_sequences" not in simulator.requests()[-1]["body"]


@pytest.mark.parametrize("error,expected", [
    ({"code": 429, "message": "Rate limit exceeded upstream", "metadata": {"provider_name": "Together"}}, ErrorKind.RATE_LIMITED),
    ({"code": 402, "message": "Insufficient credits", "metadata": {}}, ErrorKind.INSUFFICIENT_QUOTA),
    ({"code": 502, "message": "Provider returned error", "metadata": {"raw": "upstream connection lost"}}, ErrorKind.SERVER_ERROR),
    ({**MODERATION, "metadata": {"reasons": ["harassment"]}}, ErrorKind.CONTENT_FILTERED),
    ({"code": 401, "message": "Upstream key rejected"}, ErrorKind.SERVER_ERROR),
])
def test_an_openrouter_error_in_a_200_body_is_classified_by_its_code(odd_server, error, expected):
    odd_server.reply, odd_server.headers = {"error": error}, {"retry-after": "3"}
    with pytest.raises(ProviderError) as caught:
        odd_adapter(odd_server, "openrouter").complete(request("openrouter"))
    assert caught.value.kind == expected, caught.value
    assert not caught.value.credential_rejected  # the key was accepted
    assert caught.value.retry_after == 3


NO_USAGE_STREAMS = {
    "openai": [
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hello there, "}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "how are you today?"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ],
    "anthropic": [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there, "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "how are you today?"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ],
}


@pytest.mark.parametrize("kind", PROVIDERS)
def test_a_stream_without_usage_is_estimated_and_marked_so(odd_server, kind):
    odd_server.events = NO_USAGE_STREAMS["anthropic" if kind == "anthropic" else "openai"]
    text, result = collect(odd_adapter(odd_server, kind).stream(request(kind)))
    assert text == "Hello there, how are you today?"
    usage = result.usage
    assert usage.estimated
    assert usage.output_tokens == 8  # 31 characters, about 4 a token
    assert usage.input_tokens == 9  # "Be brief." and "hello there, how are you": 33 characters

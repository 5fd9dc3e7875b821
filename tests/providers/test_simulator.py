"""The provider simulator, exercised through the real anthropic / openai SDKs (and raw HTTP)."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from urllib.parse import urlsplit

import anthropic
import httpx2
import openai
import pytest

from providers.simulator.wire import ANTHROPIC_NO_TEMPERATURE

CLAUDE = "claude-sonnet-4-6"
GPT = "gpt-4o-mini"
ROUTER_MODEL = "anthropic/claude-sonnet-4.6"
PROMPT = "hello there my simulated friend"


@pytest.fixture
def claude(simulator):
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=simulator.anthropic_base_url, max_retries=0, timeout=10)


@pytest.fixture
def oai(simulator):
    return openai.OpenAI(api_key="sk-test", base_url=simulator.openai_base_url, max_retries=0, timeout=10)


@pytest.fixture
def router(simulator):
    return openai.OpenAI(api_key="sk-or-test", base_url=simulator.openrouter_base_url, max_retries=0, timeout=10)


def _user(text=PROMPT):
    return [{"role": "user", "content": text}]


def _expected(model, text=PROMPT):
    return f"Simulated reply from {model}: {text}"


def _post(simulator, path, body, headers=None, timeout=10):
    h = {"authorization": "Bearer k", **(headers or {})}
    return httpx2.post(simulator.url + path, json=body, headers=h, timeout=timeout)


# --------------------------------------------------------------------------------------------- anthropic


def test_anthropic_plain_reply(simulator, claude):
    raw = claude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, system="be brief", messages=_user()
    )
    msg = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert msg.id.startswith("msg_")
    assert msg.model == CLAUDE and msg.role == "assistant" and msg.type == "message"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == _expected(CLAUDE)
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    chars = len("be brief") + len(PROMPT)
    assert msg.usage.input_tokens == math.ceil(chars / 4)
    assert msg.usage.output_tokens == len(_expected(CLAUDE).split())
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0

    (rec,) = simulator.requests()
    assert rec["provider"] == "anthropic" and rec["path"] == "/anthropic/v1/messages"
    assert rec["headers"]["authorization"] == "Bearer sk-ant-test"
    assert rec["body"]["model"] == CLAUDE and rec["body"]["max_tokens"] == 100


def test_anthropic_blocks_and_streaming_match(claude):
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "question"}]},
    ]
    plain = claude.messages.create(model=CLAUDE, max_tokens=100, messages=messages)
    assert plain.content[0].text == _expected(CLAUDE, "second question")

    events = list(claude.messages.create(model=CLAUDE, max_tokens=100, messages=messages, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.input_tokens == plain.usage.input_tokens
    assert events[0].message.usage.output_tokens == 1
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert len(deltas) == len(plain.content[0].text.split())
    assert "".join(deltas) == plain.content[0].text
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == plain.usage.output_tokens

    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=messages) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_anthropic_stream_has_ping_and_event_lines(simulator):
    resp = _post(simulator, "/anthropic/v1/messages", {"model": CLAUDE, "max_tokens": 50, "messages": _user(), "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert "event: ping\n" in resp.text
    blocks = [b for b in resp.text.split("\n\n") if b.strip()]
    assert all(b.startswith("event: ") for b in blocks)


def test_anthropic_max_tokens_and_stop_sequences(claude):
    msg = claude.messages.create(model=CLAUDE, max_tokens=3, messages=_user())
    assert msg.content[0].text == "Simulated reply from"
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3

    msg = claude.messages.create(model=CLAUDE, max_tokens=100, messages=_user(), stop_sequences=["my"])
    assert msg.content[0].text == _expected(CLAUDE, "hello there")
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "my"


def test_anthropic_cache_control_reports_cache_reads(claude):
    system = [{"type": "text", "text": "x" * 400, "cache_control": {"type": "ephemeral"}}]
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, system=system, messages=_user())
    total = math.ceil((400 + len(PROMPT)) / 4)
    assert msg.usage.cache_read_input_tokens == total // 2
    assert msg.usage.input_tokens == total - total // 2


def test_anthropic_tool_use(claude):
    tools = [{"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {}}}]
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, tools=tools, messages=_user("what is the weather in Paris"))
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {}
    assert block.id.startswith("toolu_")

    with claude.messages.stream(model=CLAUDE, max_tokens=100, tools=tools, messages=_user("weather?")) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].name == "get_weather"

    # After the tool result, it answers in text.
    follow = claude.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=tools,
        messages=[
            {"role": "user", "content": "what is the weather"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": block.id, "name": block.name, "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
        ],
    )
    assert follow.stop_reason == "end_turn"


def test_anthropic_validation(simulator, claude):
    for missing in ("model", "max_tokens", "messages"):
        body = {"model": CLAUDE, "max_tokens": 10, "messages": _user()}
        del body[missing]
        resp = _post(simulator, "/anthropic/v1/messages", body)
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "invalid_request_error"
        assert missing in resp.json()["error"]["message"]

    no_temp = sorted(ANTHROPIC_NO_TEMPERATURE)[0]
    assert {"claude-opus-4-8", "claude-opus-5", "claude-opus-5-5", "claude-sonnet-5-5"} <= ANTHROPIC_NO_TEMPERATURE
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(model=no_temp, max_tokens=10, messages=_user(), extra_body={"temperature": 0.2})
    assert exc.value.type == "invalid_request_error" and "temperature" in str(exc.value)
    ok = claude.messages.create(model=CLAUDE, max_tokens=10, messages=_user(), extra_body={"temperature": 0.2})
    assert ok.stop_reason == "end_turn"
    # As the real API: temperature is 0..1 (OpenAI's is 0..2), and a stop sequence must hold more than whitespace.
    for extra, words in (({"temperature": 1.5}, "less than or equal to 1"), ({"stop_sequences": ["\n"]}, "non-whitespace")):
        with pytest.raises(anthropic.BadRequestError) as exc:
            claude.messages.create(model=CLAUDE, max_tokens=10, messages=_user(), extra_body=extra)
        assert words in str(exc.value)


def test_anthropic_count_tokens(claude):
    result = claude.messages.count_tokens(model=CLAUDE, system="sys", messages=_user())
    assert result.input_tokens == math.ceil((3 + len(PROMPT)) / 4)


# --------------------------------------------------------------------------------------------- openai


def test_openai_plain_reply(simulator, oai):
    raw = oai.chat.completions.with_raw_response.create(
        model=GPT, messages=[{"role": "system", "content": "sys"}, *_user()]
    )
    c = raw.parse()
    assert raw.headers["x-request-id"]
    assert c.id.startswith("chatcmpl-") and c.object == "chat.completion" and c.model == GPT
    (choice,) = c.choices
    assert choice.message.role == "assistant" and choice.message.content == _expected(GPT)
    assert choice.finish_reason == "stop"
    assert c.usage.prompt_tokens == math.ceil((3 + len(PROMPT)) / 4)
    assert c.usage.completion_tokens == len(_expected(GPT).split())
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    assert c.usage.prompt_tokens_details.cached_tokens == 0
    assert c.usage.completion_tokens_details.reasoning_tokens == 0
    (rec,) = simulator.requests()
    assert rec["provider"] == "openai" and rec["path"] == "/openai/v1/chat/completions"
    assert rec["headers"]["authorization"] == "Bearer sk-test"


def test_openai_stream(oai):
    plain = oai.chat.completions.create(model=GPT, messages=_user())
    chunks = list(oai.chat.completions.create(model=GPT, messages=_user(), stream=True, stream_options={"include_usage": True}))
    assert len({(c.id, c.model, c.created, c.object) for c in chunks}) == 1
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens

    no_usage = list(oai.chat.completions.create(model=GPT, messages=_user(), stream=True))
    assert all(c.usage is None for c in no_usage) and no_usage[-1].choices[0].finish_reason == "stop"


def test_openai_length_and_stop(oai):
    c = oai.chat.completions.create(model=GPT, messages=_user(), max_completion_tokens=2)
    assert c.choices[0].message.content == "Simulated reply" and c.choices[0].finish_reason == "length"
    c = oai.chat.completions.create(model=GPT, messages=_user(), max_tokens=4)
    assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 4
    c = oai.chat.completions.create(model=GPT, messages=_user(), stop=["there"])
    assert c.choices[0].message.content == _expected(GPT, "hello") and c.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["o3", "o4-mini", "gpt-5", "gpt-5-mini"])
def test_openai_reasoning_models(oai, model):
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=model, messages=_user(), max_tokens=10)
    assert exc.value.code == "unsupported_parameter" and "max_completion_tokens" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=model, messages=_user(), temperature=0.2)
    assert exc.value.code == "unsupported_value"
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=model, messages=_user(), stop=["END"])
    assert exc.value.code == "unsupported_parameter" and exc.value.param == "stop"
    c = oai.chat.completions.create(model=model, messages=_user(), temperature=1, max_completion_tokens=100)
    out = len(_expected(model).split())
    assert c.usage.completion_tokens_details.reasoning_tokens == 2 * out
    assert c.usage.completion_tokens == 3 * out


def test_openai_tool_calls(oai):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
    c = oai.chat.completions.create(model=GPT, messages=_user("weather in Rome?"), tools=tools)
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.function.arguments == "{}"

    chunks = list(oai.chat.completions.create(model=GPT, messages=_user("weather in Rome?"), tools=tools, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    no_tools = oai.chat.completions.create(model=GPT, messages=_user("weather in Rome?"))
    assert no_tools.choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------------------------- openrouter


def test_openrouter_plain_reply_and_generation(simulator, router):
    raw = router.chat.completions.with_raw_response.create(
        model=ROUTER_MODEL, messages=_user(), extra_headers={"HTTP-Referer": "https://x", "X-Title": "t"}
    )
    c = raw.parse()
    assert c.id.startswith("gen-") and raw.headers["x-generation-id"] == c.id
    assert c.choices[0].message.content == _expected(ROUTER_MODEL)
    u = c.usage
    assert u.cost == pytest.approx(u.prompt_tokens * 1e-6 + u.completion_tokens * 2e-6)
    assert isinstance(u.cost, float) and u.cost_details is not None

    gen = httpx2.get(f"{simulator.openrouter_base_url}/generation", params={"id": c.id}, headers={"authorization": "Bearer k"})
    assert gen.status_code == 200
    data = gen.json()["data"]
    assert data["id"] == c.id and data["model"] == ROUTER_MODEL
    assert data["total_cost"] == pytest.approx(u.cost)
    assert data["native_tokens_prompt"] == u.prompt_tokens and data["native_tokens_completion"] == u.completion_tokens
    missing = httpx2.get(f"{simulator.openrouter_base_url}/generation", params={"id": "gen-nope"}, headers={"authorization": "Bearer k"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    rec = simulator.requests()[0]
    assert rec["provider"] == "openrouter" and rec["headers"]["x-title"] == "t"


def test_openrouter_stream_always_has_usage(simulator, router):
    chunks = list(router.chat.completions.create(model=ROUTER_MODEL, messages=_user(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == _expected(ROUTER_MODEL)
    assert chunks[-1].usage is not None and chunks[-1].usage.cost > 0
    assert chunks[-1].id.startswith("gen-")

    resp = _post(simulator, "/openrouter/api/v1/chat/completions", {"model": ROUTER_MODEL, "messages": _user(), "stream": True})
    assert resp.text.startswith(": OPENROUTER PROCESSING\n\n")
    assert resp.text.rstrip().endswith("data: [DONE]")
    assert resp.headers["x-generation-id"].startswith("gen-")


# --------------------------------------------------------------------------------------------- auth


def test_auth(simulator):
    for base, path in (("anthropic", "/anthropic/v1/messages"), ("openai", "/openai/v1/chat/completions")):
        body = {"model": "m", "max_tokens": 5, "messages": _user()}
        assert httpx2.post(simulator.url + path, json=body).status_code == 401
        assert httpx2.post(simulator.url + path, json=body, headers={"x-api-key": "good"}).status_code == 200
    with pytest.raises(anthropic.AuthenticationError) as exc:
        anthropic.Anthropic(api_key="bad-key", base_url=simulator.anthropic_base_url, max_retries=0).messages.create(
            model=CLAUDE, max_tokens=5, messages=_user()
        )
    assert exc.value.type == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic.Anthropic(api_key="forbidden-key", base_url=simulator.anthropic_base_url, max_retries=0).messages.create(
            model=CLAUDE, max_tokens=5, messages=_user()
        )
    with pytest.raises(openai.AuthenticationError) as exc:
        openai.OpenAI(api_key="bad-key", base_url=simulator.openai_base_url, max_retries=0).chat.completions.create(
            model=GPT, messages=_user()
        )
    assert exc.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(api_key="forbidden-x", base_url=simulator.openrouter_base_url, max_retries=0).chat.completions.create(
            model=GPT, messages=_user()
        )
    with pytest.raises(openai.AuthenticationError) as exc:
        openai.OpenAI(api_key="bad-x", base_url=simulator.openrouter_base_url, max_retries=0).chat.completions.create(
            model=GPT, messages=_user()
        )
    assert exc.value.body["code"] == 401


# --------------------------------------------------------------------------------------------- error faults

ANTHROPIC_ERRORS = {
    "rate_limit": (429, anthropic.RateLimitError, "rate_limit_error"),
    "insufficient_quota": (400, anthropic.BadRequestError, "invalid_request_error"),
    "overloaded": (529, anthropic.OverloadedError, "overloaded_error"),
    "server_error": (500, anthropic.InternalServerError, "api_error"),
    "unavailable": (503, anthropic.ServiceUnavailableError, "api_error"),
    "auth": (401, anthropic.AuthenticationError, "authentication_error"),
    "permission": (403, anthropic.PermissionDeniedError, "permission_error"),
    "bad_request": (400, anthropic.BadRequestError, "invalid_request_error"),
    "not_found": (404, anthropic.NotFoundError, "not_found_error"),
    "context_too_long": (400, anthropic.BadRequestError, "invalid_request_error"),
}


@pytest.mark.parametrize("kind", list(ANTHROPIC_ERRORS))
def test_anthropic_error_faults(simulator, claude, kind):
    status, exc_class, etype = ANTHROPIC_ERRORS[kind]
    simulator.add_fault(provider="anthropic", fault=kind, retry_after=3)
    with pytest.raises(exc_class) as exc:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=_user())
    err = exc.value
    assert err.status_code == status and err.type == etype
    assert err.body["type"] == "error" and err.body["error"]["type"] == etype
    assert err.response.headers["retry-after"] == "3" and err.response.headers["retry-after-ms"] == "3000"
    if kind == "insufficient_quota":
        assert "credit balance is too low" in err.body["error"]["message"]
    if kind == "context_too_long":
        assert err.body["error"]["message"].startswith("prompt is too long:")
        assert "maximum" in err.body["error"]["message"]


OPENAI_ERRORS = {
    "rate_limit": (429, openai.RateLimitError, "rate_limit_exceeded"),
    "insufficient_quota": (429, openai.RateLimitError, "insufficient_quota"),
    "overloaded": (503, openai.InternalServerError, None),
    "server_error": (500, openai.InternalServerError, None),
    "unavailable": (503, openai.InternalServerError, None),
    "auth": (401, openai.AuthenticationError, "invalid_api_key"),
    "permission": (403, openai.PermissionDeniedError, None),
    "bad_request": (400, openai.BadRequestError, None),
    "not_found": (404, openai.NotFoundError, "model_not_found"),
    "context_too_long": (400, openai.BadRequestError, "context_length_exceeded"),
}


@pytest.mark.parametrize("kind", list(OPENAI_ERRORS))
def test_openai_error_faults(simulator, oai, kind):
    status, exc_class, code = OPENAI_ERRORS[kind]
    simulator.add_fault(provider="openai", model=GPT, fault=kind)
    with pytest.raises(exc_class) as exc:
        oai.chat.completions.create(model=GPT, messages=_user())
    err = exc.value
    assert err.status_code == status
    assert set(err.body) == {"message", "type", "param", "code"}
    if code is not None:
        assert err.code == code
    if kind == "rate_limit":
        assert err.type == "requests" and "retry-after" not in err.response.headers


OPENROUTER_STATUS = {
    "rate_limit": 429,
    "insufficient_quota": 402,
    "overloaded": 503,
    "server_error": 500,
    "unavailable": 503,
    "auth": 401,
    "permission": 403,
    "bad_request": 400,
    "not_found": 404,
    "context_too_long": 400,
}


@pytest.mark.parametrize("kind", list(OPENROUTER_STATUS))
def test_openrouter_error_faults(simulator, router, kind):
    simulator.add_fault(provider="openrouter", fault=kind, retry_after=1.5)
    with pytest.raises(openai.APIStatusError) as exc:
        router.chat.completions.create(model=ROUTER_MODEL, messages=_user())
    err = exc.value
    assert err.status_code == OPENROUTER_STATUS[kind]
    assert err.body["message"]
    if kind == "context_too_long":
        assert err.body["code"] == "context_length_exceeded"
    else:
        assert err.body["code"] == OPENROUTER_STATUS[kind] and "metadata" in err.body
    assert err.response.headers["retry-after"] == "2" and err.response.headers["retry-after-ms"] == "1500"


def test_rate_limit_retry_after_is_honoured_by_sdk_retries(simulator):
    simulator.add_fault(provider="openai", fault="rate_limit", count=1, retry_after=0.2)
    client = openai.OpenAI(api_key="k", base_url=simulator.openai_base_url, max_retries=1)
    start = time.monotonic()
    c = client.chat.completions.create(model=GPT, messages=_user())
    assert c.choices[0].finish_reason == "stop"
    assert time.monotonic() - start >= 0.2
    assert len(simulator.requests()) == 2


# --------------------------------------------------------------------------------------------- rule matching


def test_rule_matching_count_rate_provider_model(simulator, claude, oai):
    simulator.add_fault(provider="anthropic", model="claude-other", fault="overloaded")
    simulator.add_fault(provider="openai", fault="overloaded", rate=0)
    simulator.add_fault(provider="anthropic", model="claude-*", fault="overloaded", count=2)
    assert claude.messages.create(model="gpt-like", max_tokens=5, messages=_user())  # no model match
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            claude.messages.create(model=CLAUDE, max_tokens=5, messages=_user())
    assert claude.messages.create(model=CLAUDE, max_tokens=5, messages=_user())  # spent
    assert oai.chat.completions.create(model=GPT, messages=_user())  # rate 0
    faults = simulator.faults()
    assert [f["fired"] for f in faults] == [0, 0, 2] and faults[2]["remaining"] == 0

    simulator.clear_faults()
    simulator.add_fault(fault="server_error", rate=0.5)
    outcomes = []
    for _ in range(40):
        try:
            oai.chat.completions.create(model=GPT, messages=_user())
            outcomes.append(True)
        except openai.InternalServerError:
            outcomes.append(False)
    assert 0 < sum(outcomes) < 40


def test_control_api(simulator):
    bad = httpx2.post(simulator.url + "/_control/faults", json={"fault": "nonsense"})
    assert bad.status_code == 400
    ok = httpx2.post(simulator.url + "/_control/faults", json={"fault": "overloaded"})
    assert ok.status_code == 201 and isinstance(ok.json()["id"], int)
    assert httpx2.get(simulator.url + "/_control/health").status_code == 200
    assert httpx2.delete(simulator.url + f"/_control/faults/{ok.json()['id']}").status_code == 200
    assert simulator.faults() == []
    for i in range(1005):
        simulator_client = httpx2.Client() if i == 0 else simulator_client
        simulator_client.post(simulator.openai_base_url + "/chat/completions", json={"model": GPT, "messages": _user(str(i))}, headers={"authorization": "Bearer k"})
    simulator_client.close()
    reqs = simulator.requests()
    assert len(reqs) == 1000 and reqs[-1]["body"]["messages"][0]["content"] == "1004"
    simulator.clear_requests()
    assert simulator.requests() == []


# --------------------------------------------------------------------------------------------- behaviour faults


def test_content_filter(simulator, claude, oai):
    simulator.add_fault(fault="content_filter")
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, messages=_user())
    full = _expected(CLAUDE).split()
    assert msg.stop_reason == "refusal" and msg.content[0].text == " ".join(full[: len(full) // 2])
    c = oai.chat.completions.create(model=GPT, messages=_user())
    assert c.choices[0].finish_reason == "content_filter" and c.choices[0].message.content
    chunks = list(oai.chat.completions.create(model=GPT, messages=_user(), stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=_user()) as stream:
        assert stream.get_final_message().stop_reason == "refusal"


def test_timeout(simulator):
    simulator.add_fault(provider="anthropic", fault="timeout")  # default latency 30 s
    client = anthropic.Anthropic(api_key="k", base_url=simulator.anthropic_base_url, max_retries=0, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model=CLAUDE, max_tokens=5, messages=_user())
    assert time.monotonic() - start < 5
    simulator.add_fault(provider="openai", fault="timeout", latency_ms=1000)
    client = openai.OpenAI(api_key="k", base_url=simulator.openai_base_url, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=GPT, messages=_user())
    # A patient client gets a normal answer.
    client = openai.OpenAI(api_key="k", base_url=simulator.openai_base_url, max_retries=0, timeout=5)
    assert client.chat.completions.create(model=GPT, messages=_user()).choices[0].finish_reason == "stop"


def test_latency_and_chunk_delay(simulator, oai, claude):
    simulator.add_fault(provider="openai", fault="latency", latency_ms=300)
    start = time.monotonic()
    oai.chat.completions.create(model=GPT, messages=_user())
    assert time.monotonic() - start >= 0.3

    simulator.add_fault(provider="anthropic", fault="latency", chunk_delay_ms=30)
    stamps = []
    for event in claude.messages.create(model=CLAUDE, max_tokens=100, messages=_user(), stream=True):
        if event.type == "content_block_delta":
            stamps.append(time.monotonic())
    assert len(stamps) == len(_expected(CLAUDE).split())
    assert stamps[-1] - stamps[0] >= 0.025 * (len(stamps) - 1)


def _raw_exchange(url: str, path: str, body: dict, timeout: float = 5) -> bytes:
    """Send one HTTP/1.1 request on a plain socket, return every byte received until the server closes."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + payload)
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    return received


def test_drop_sends_nothing(simulator, claude, oai):
    simulator.add_fault(fault="drop")
    assert _raw_exchange(simulator.url, "/openai/v1/chat/completions", {"model": GPT, "messages": _user()}) == b""
    with pytest.raises(anthropic.APIConnectionError):
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=_user())
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model=GPT, messages=_user())
    with pytest.raises(httpx2.RemoteProtocolError):
        _post(simulator, "/openrouter/api/v1/chat/completions", {"model": ROUTER_MODEL, "messages": _user()})
    simulator.reset()
    assert oai.chat.completions.create(model=GPT, messages=_user())  # the server is fine afterwards


def test_invalid_json(simulator, claude, oai):
    simulator.add_fault(fault="invalid_json")
    resp = _post(simulator, "/openai/v1/chat/completions", {"model": GPT, "messages": _user()})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)
    with pytest.raises(json.JSONDecodeError):
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=_user())
    with pytest.raises(json.JSONDecodeError):
        oai.chat.completions.create(model=GPT, messages=_user())


def test_request_body_that_is_not_json(simulator):
    resp = httpx2.post(simulator.openai_base_url + "/chat/completions", content=b"{nope", headers={"authorization": "Bearer k"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert simulator.requests()[0]["body"] == "{nope"


def test_stream_cut(simulator, claude, oai):
    simulator.add_fault(fault="stream_cut")
    n_words = len(_expected(CLAUDE).split())
    got = []
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        for event in claude.messages.create(model=CLAUDE, max_tokens=100, messages=_user(), stream=True):
            if event.type == "content_block_delta":
                got.append(event.delta.text)
            assert event.type != "message_stop"
    assert len(got) == n_words // 2

    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model=GPT, messages=_user(), stream=True):
            got.append(chunk)
    assert 1 < len(got) < len(_expected(GPT).split())

    raw = _raw_exchange(simulator.url, "/openrouter/api/v1/chat/completions", {"model": ROUTER_MODEL, "messages": _user(), "stream": True})
    assert raw.startswith(b"HTTP/1.1 200") and b"[DONE]" not in raw and not raw.endswith(b"0\r\n\r\n")

    # non-streaming: a drop
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model=GPT, messages=_user())


def test_stream_error(simulator, claude, oai, router):
    simulator.add_fault(fault="stream_error")
    got = []
    with pytest.raises(anthropic.APIStatusError) as exc:
        for event in claude.messages.create(model=CLAUDE, max_tokens=100, messages=_user(), stream=True):
            if event.type == "content_block_delta":
                got.append(event.delta.text)
    assert exc.value.status_code == 200 and exc.value.type == "overloaded_error"
    assert len(got) == len(_expected(CLAUDE).split()) // 2

    with pytest.raises(openai.APIError) as exc:
        list(oai.chat.completions.create(model=GPT, messages=_user(), stream=True))
    assert not isinstance(exc.value, openai.APIStatusError) and exc.value.body["type"] == "server_error"

    with pytest.raises(openai.APIError) as exc:
        list(router.chat.completions.create(model=ROUTER_MODEL, messages=_user(), stream=True))
    assert exc.value.body["code"] == 502

    with pytest.raises(openai.InternalServerError):  # non-streaming: a server error
        oai.chat.completions.create(model=GPT, messages=_user())


def test_usage_override(simulator, claude, oai, router):
    simulator.add_fault(provider="anthropic", fault="usage", usage={"cache_read_input_tokens": 700, "cache_creation_input_tokens": 50, "input_tokens": 3})
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, messages=_user())
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (3, 700, 50)
    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=_user()) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 700 and final.usage.input_tokens == 3

    simulator.add_fault(provider="openai", fault="usage", usage={"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": 800}, "completion_tokens_details": {"reasoning_tokens": 42}})
    c = oai.chat.completions.create(model=GPT, messages=_user())
    assert c.usage.prompt_tokens == 1000 and c.usage.prompt_tokens_details.cached_tokens == 800
    assert c.usage.completion_tokens_details.reasoning_tokens == 42
    assert c.usage.total_tokens == 1000 + c.usage.completion_tokens

    simulator.add_fault(provider="openrouter", fault="usage", usage={"prompt_tokens": 1000, "completion_tokens": 10})
    c = router.chat.completions.create(model=ROUTER_MODEL, messages=_user())
    assert c.usage.cost == pytest.approx(1000e-6 + 10 * 2e-6)


# --------------------------------------------------------------------------------------------- load


def test_thousand_concurrent_connections(simulator):
    """1,000 simultaneous connections, each held 300 ms by latency: all answered, concurrently."""
    simulator.add_fault(provider="openai", fault="latency", latency_ms=300)
    parts = urlsplit(simulator.url)
    payload = json.dumps({"model": GPT, "messages": _user()}).encode()
    head = (
        f"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def one():
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(head + payload)
        data = await reader.read()
        writer.close()
        return data.split(b"\r\n", 1)[0]

    async def main():
        return await asyncio.gather(*(one() for _ in range(1000)))

    start = time.monotonic()
    statuses = asyncio.run(main())
    elapsed = time.monotonic() - start
    assert statuses == [b"HTTP/1.1 200 OK"] * 1000
    assert elapsed < 10, elapsed

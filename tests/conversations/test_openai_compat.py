"""The official `openai` SDK, unchanged, as a client of /v1/chat/completions on a live server."""

from decimal import Decimal

import openai
import pytest

from billing.models import UsageRecord
from conversations.models import Conversation, Message
from providers.models import LLMModel
from providers.catalog import catalog_load
from providers.services import credential_set, provider_configure
from routing.models import RoutingPolicy
from tests.conversations.conftest import chain_target
from tenants.services import tenant_create


@pytest.fixture
def sdk(live_server, transactional_db, simulator):
    catalog_load()
    for kind, url in (("anthropic", simulator.anthropic_base_url), ("openai", simulator.openai_base_url)):
        provider_configure(kind=kind, base_url=url)
        credential_set(kind=kind, key=f"sk-agency-{kind}", label="agency")
    tenant, issued = tenant_create(slug="sdk", name="SDK client")
    RoutingPolicy.objects.create(
        name="SDK", tenant=tenant,
        default_target=chain_target("Economy chain", [("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini")]),
    )
    return openai.OpenAI(api_key=issued.raw, base_url=f"{live_server.url}/v1", max_retries=0)


def test_request_metadata_reaches_metadata_rules_and_is_stored_with_the_message(sdk):
    from routing.models import RoutingRule, RoutingTarget

    policy = RoutingPolicy.objects.get(name="SDK")
    sales = RoutingTarget.objects.create(name="Sales", model=LLMModel.objects.get(model_id="gpt-4o-mini", provider__kind="openai"))
    RoutingRule.objects.create(policy=policy, position=1, name="Sales", target=sales, metadata_equals={"channel": "sales"})
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "a quote please"}], metadata={"channel": "sales"})
    assert raw.parse().model == "gpt-4o-mini" and raw.headers["x-agencyhub-route-reason"] == "rule 'Sales' -> Sales"
    assert Message.objects.get(role="user").metadata == {"channel": "sales"}
    with pytest.raises(openai.BadRequestError, match="metadata"):
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}], metadata={"channel": 5})


def test_the_openai_sdk_gets_a_completion_with_routing_headers(sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello sdk"}], user="visitor-1",
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Simulated reply from claude-haiku-4-5: hello sdk"
    assert completion.model == "claude-haiku-4-5" and completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 0
    assert raw.headers["x-agencyhub-provider"] == "anthropic"
    assert raw.headers["x-agencyhub-route-reason"] == "default -> Economy chain"
    record = UsageRecord.objects.get()
    assert Decimal(raw.headers["x-agencyhub-cost"]) == record.cost
    cost = raw.http_response.json()["usage"]["cost"]
    assert isinstance(cost, float) and Decimal(str(cost)) == record.cost  # a number, as OpenRouter sends it
    # grouped by `user`: a second call lands in the same conversation
    sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "again"}], user="visitor-1")
    conversation = Conversation.objects.get()
    assert conversation.external_user_id == "visitor-1" and conversation.messages.count() == 4


def test_the_openai_sdk_streams_with_usage(sdk, simulator):
    simulator.add_fault(provider="anthropic", fault="overloaded")  # fails over before the first byte
    stream = sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "stream me"}], stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Simulated reply from gpt-4o-mini: stream me"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == len(text.split())
    reply = Message.objects.get(role="assistant")
    assert reply.status == "completed" and reply.content == text and reply.provider_kind == "openai"
    assert reply.route_reason == "default -> Economy chain; answered by fallback openai:gpt-4o-mini"


def test_a_named_model_that_fails_is_answered_by_the_default_and_the_headers_say_so(sdk, simulator):
    simulator.add_fault(provider="openai", fault="unavailable")
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "pick me"}])
    assert raw.parse().model == "claude-haiku-4-5"
    assert raw.headers["x-agencyhub-route-reason"] == "requested model gpt-4o-mini; answered by fallback anthropic:claude-haiku-4-5"
    stream = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "pick me"}], stream=True)
    assert stream.headers["x-agencyhub-route-reason"].endswith("; answered by fallback anthropic:claude-haiku-4-5")
    assert stream.headers["x-agencyhub-model"] == "claude-haiku-4-5"


def test_the_openai_sdk_can_name_a_catalogue_model(sdk):
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "pick me"}])
    assert completion.model == "gpt-4o-mini"


def test_errors_reach_the_sdk_as_its_own_exceptions(sdk, simulator):
    with pytest.raises(openai.NotFoundError) as bad:  # as OpenAI answers an unknown model: 404 model_not_found
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["code"] == "model_not_found"
    # A catalogue model that no key of this client's can call (no OpenRouter key here) is not silently replaced
    # by the policy's default: GET /v1/models does not list it either.
    with pytest.raises(openai.NotFoundError) as unavailable_model:
        sdk.chat.completions.create(model="anthropic/claude-haiku-4.5", messages=[{"role": "user", "content": "x"}])
    assert unavailable_model.value.body["code"] == "model_not_found" and "not available to this client" in unavailable_model.value.body["message"]
    assert "anthropic/claude-haiku-4.5" not in {m.id for m in sdk.models.list()}
    assert not simulator.requests()
    # A model whose only key is disabled for now (a 401) is still the client's: the policy's default answers meanwhile.
    from providers.models import Credential
    from tenants.config_cache import config_changed

    Credential.objects.filter(provider__kind="openai").update(is_enabled=False)
    config_changed()
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]).model == "claude-haiku-4-5"
    Credential.objects.filter(provider__kind="openai").update(is_enabled=True)
    config_changed()
    with pytest.raises(openai.BadRequestError) as invalid:
        sdk.chat.completions.create(model="auto", messages=[])
    assert "messages" in invalid.value.body["message"]
    simulator.add_fault(fault="overloaded")
    with pytest.raises(openai.InternalServerError) as unavailable:
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "anyone?"}])
    assert unavailable.value.status_code == 503
    assert Message.objects.filter(role="user", content="anyone?").exists()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="ahk_wrong", base_url=str(sdk.base_url), max_retries=0).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}]
        )


# --- images ------------------------------------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
PHOTO_URL = "https://example.com/photos/receipt.jpg"


def _vision_message(text="What is on this receipt?"):
    return {"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": PHOTO_URL, "detail": "low"}},
    ]}


def _generation_bodies(simulator, provider):
    return [r["body"] for r in simulator.requests() if r["provider"] == provider and r["path"].endswith(("messages", "completions"))]


def test_the_openai_sdk_sends_images_each_provider_gets_them_in_its_own_format(sdk, simulator):
    completion = sdk.chat.completions.create(model="auto", messages=[_vision_message()])
    assert completion.choices[0].message.content == "Simulated reply from claude-haiku-4-5: What is on this receipt?"
    (anthropic_body,) = _generation_bodies(simulator, "anthropic")
    assert anthropic_body["messages"][-1]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": PHOTO_URL}},
        {"type": "text", "text": "What is on this receipt?"},
    ]
    user = Message.objects.get(role="user")
    assert user.content == "What is on this receipt?"
    assert user.images[0]["media_type"] == "image/png" and len(user.images[0]["sha256"]) == 64
    assert user.images[1] == {"url": PHOTO_URL} and PNG not in str(user.images)  # the client resends its context: no data kept

    simulator.add_fault(provider="anthropic", fault="overloaded")  # the fallback gets the same images, OpenAI's way
    stream = sdk.chat.completions.create(model="auto", messages=[_vision_message("And this one?")], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).endswith("And this one?")
    (openai_body,) = _generation_bodies(simulator, "openai")
    assert openai_body["messages"][-1]["content"] == [
        {"type": "text", "text": "And this one?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": PHOTO_URL, "detail": "low"}},
    ]


def test_images_are_never_sent_to_a_model_that_cannot_see_them(sdk, simulator):
    haiku = LLMModel.objects.get(provider__kind="anthropic", model_id="claude-haiku-4-5")
    haiku.capabilities = ["tools"]  # text only, for this test
    haiku.save()
    sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "text is fine"}])
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=[_vision_message()])
    assert raw.headers["x-agencyhub-provider"] == "openai"
    assert [r["provider"] for r in simulator.requests()] == ["anthropic", "openai"]
    reply = Message.objects.get(role="assistant", provider_kind="openai")
    assert reply.route_decision["excluded"] == {"anthropic:claude-haiku-4-5": "no vision"}


@pytest.mark.parametrize("part, field, says", [
    ({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}, "messages[0].content[1].image_url.url",
     "image/png"),
    ({"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}, "messages[0].content[1].image_url.url", "http"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}, "messages[0].content[1].image_url.url",
     "data URL"),
    ({"type": "image_url", "image_url": {"url": PHOTO_URL, "detail": "max"}}, "messages[0].content[1].image_url.detail", "auto"),
    ({"type": "image_url", "image_url": {}}, "messages[0].content[1].image_url.url", "required"),
    ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "messages[0].content[1]", "image_url"),
])
def test_a_bad_image_part_answers_400_naming_it(sdk, simulator, part, field, says):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": [{"type": "text", "text": "see"}, part]}])
    assert field in bad.value.body["message"] and says in bad.value.body["message"]
    assert simulator.requests() == []


def test_images_are_refused_outside_user_messages(sdk, simulator):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="auto", messages=[
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": PHOTO_URL}}]},
            {"role": "user", "content": "hi"},
        ])
    assert "messages[0].content[0]" in bad.value.body["message"] and "user messages" in bad.value.body["message"]


# --- tool calls and their results -----------------------------------------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}}


def _tool_round(sdk):
    """The SDK's tool loop: ask, get a tool call, send its result back with the call."""
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = sdk.chat.completions.create(model="auto", messages=[question], tools=[WEATHER_TOOL])
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    called = {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]}
    result = {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}
    return call, [question, called, result]


def test_a_tool_result_goes_back_to_the_provider_with_the_call_it_answers(sdk, simulator):
    call, messages = _tool_round(sdk)
    simulator.clear_requests()
    answer = sdk.chat.completions.create(model="auto", messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.tool_calls is None
    (anthropic_body,) = _generation_bodies(simulator, "anthropic")
    assert anthropic_body["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C and sunny"}]},
    ]
    stored = Message.objects.filter(role="user").order_by("created_at").last()
    assert stored.content == f"[tool result {call.id}]\n18 C and sunny"

    simulator.add_fault(provider="anthropic", fault="overloaded")  # the fallback gets the same turns, OpenAI's way
    sdk.chat.completions.create(model="auto", messages=[*messages, {"role": "user", "content": "Thanks!"}], tools=[WEATHER_TOOL])
    (openai_body,) = _generation_bodies(simulator, "openai")
    assert openai_body["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
        {"role": "user", "content": "Thanks!"},
    ]


def test_without_tool_definitions_the_tool_turns_go_as_text(sdk, simulator):
    call, messages = _tool_round(sdk)
    simulator.clear_requests()
    sdk.chat.completions.create(model="auto", messages=messages)  # no `tools`: Anthropic would refuse tool blocks
    (body,) = _generation_bodies(simulator, "anthropic")
    assert body["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": f"[tool call {call.id}: get_weather({{}})]"},
        {"role": "user", "content": f"[tool result {call.id}]\n18 C and sunny"},
    ]


@pytest.mark.parametrize("messages, field", [
    ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_nope", "content": "x"}], "messages[1].tool_call_id"),
    ([{"role": "user", "content": "hi"},
      {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "user", "content": "never answered"}], "messages[1].tool_calls"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "x"}], "messages[1].tool_calls[0]"),
])
def test_tool_turns_out_of_order_answer_400_naming_the_message(sdk, simulator, messages, field):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="auto", messages=messages, tools=[WEATHER_TOOL])
    assert field in bad.value.body["message"]
    assert simulator.requests() == []


# --- /v1/models ------------------------------------------------------------------------------------------------------


def test_the_sdk_lists_auto_and_the_models_this_key_can_reach(sdk):
    other, _ = tenant_create(slug="other", name="Other client")
    credential_set(kind="openrouter", key="sk-or-other-tenant", label="theirs", tenant=other)  # not ours to use
    LLMModel.objects.filter(provider__kind="openai", model_id="gpt-4.1-nano").update(is_enabled=False)
    models = {m.id: m for m in sdk.models.list()}
    assert next(iter(models)) == "auto" and models["auto"].owned_by == "agencyhub"
    assert models["gpt-4o-mini"].owned_by == "openai" and models["claude-haiku-4-5"].owned_by == "anthropic"
    assert models["claude-haiku-4-5"].agencyhub["tier"] == "economy" and "vision" in models["claude-haiku-4-5"].agencyhub["capabilities"]
    assert "gpt-4.1-nano" not in models  # disabled
    assert not any(m.owned_by == "openrouter" for m in models.values())  # only another tenant holds a key
    assert not any(m.owned_by == "sandbox" for m in models.values())
    assert sdk.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    for missing in ("anthropic/claude-haiku-4.5", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as gone:
            sdk.models.retrieve(missing)
        assert gone.value.body["type"] == "not_found_error" and missing in gone.value.body["message"]


# --- sampling settings and response_format ---------------------------------------------------------------------------

LEAD_SCHEMA = {"name": "lead", "schema": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}}


def test_sampling_settings_and_json_output_reach_each_provider_as_it_takes_them(sdk, simulator):
    options = {"top_p": 0.9, "seed": 7, "presence_penalty": 0.5, "response_format": {"type": "json_schema", "json_schema": LEAD_SCHEMA}}
    sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "my email is a@b.c"}], **options)
    (anthropic_body,) = _generation_bodies(simulator, "anthropic")
    assert not {"top_p", "seed", "presence_penalty", "response_format"} & set(anthropic_body)  # Anthropic has none of them
    assert anthropic_body["system"].startswith("Answer with one JSON object and nothing else")
    assert '"required":["email"]' in anthropic_body["system"]

    simulator.add_fault(provider="anthropic", fault="overloaded")
    sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "again"}], **options)
    (openai_body,) = _generation_bodies(simulator, "openai")
    assert openai_body["top_p"] == 0.9 and openai_body["seed"] == 7 and openai_body["presence_penalty"] == 0.5
    assert openai_body["response_format"] == {"type": "json_schema", "json_schema": LEAD_SCHEMA}

    simulator.clear_requests()  # a reasoning model refuses sampling settings: they are left out, the format stays
    sdk.chat.completions.create(model="gpt-5-mini", messages=[{"role": "user", "content": "json please"}],
                                top_p=0.5, response_format={"type": "json_object"})
    (reasoning_body,) = _generation_bodies(simulator, "openai")
    assert "top_p" not in reasoning_body and reasoning_body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("options, field", [
    ({"top_p": 1.5}, "top_p"),
    ({"seed": "seven"}, "seed"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format.json_schema.name"),
])
def test_bad_generation_settings_answer_400_naming_them(sdk, simulator, options, field):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}], **options)
    assert field in bad.value.body["message"]
    assert bad.value.param == field  # the SDK reads the field from OpenAI's `param`
    assert simulator.requests() == []


def test_tool_choice_reaches_each_provider_in_its_own_shape(sdk, simulator):
    named = {"type": "function", "function": {"name": "get_weather"}}
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    sdk.chat.completions.create(model="auto", messages=question, tools=[WEATHER_TOOL], tool_choice=named)
    assert _generation_bodies(simulator, "anthropic")[0]["tool_choice"] == {"type": "tool", "name": "get_weather"}
    simulator.add_fault(provider="anthropic", fault="overloaded")
    sdk.chat.completions.create(model="auto", messages=question, tools=[WEATHER_TOOL], tool_choice="required")
    assert _generation_bodies(simulator, "anthropic")[1]["tool_choice"] == {"type": "any"}
    assert _generation_bodies(simulator, "openai")[0]["tool_choice"] == "required"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="auto", messages=question, tools=[WEATHER_TOOL],
                                    tool_choice={"type": "function", "function": {"name": "get_stock_price"}})
    assert "tool_choice.function.name" in bad.value.body["message"]


def test_parallel_tool_calls_off_reaches_each_provider_in_its_own_shape(sdk, simulator):
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    sdk.chat.completions.create(model="auto", messages=question, tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert _generation_bodies(simulator, "anthropic")[0]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    simulator.add_fault(provider="anthropic", fault="overloaded")
    sdk.chat.completions.create(model="auto", messages=question, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False)
    assert _generation_bodies(simulator, "anthropic")[1]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert _generation_bodies(simulator, "openai")[0]["parallel_tool_calls"] is False
    sdk.chat.completions.create(model="auto", messages=question, tools=[WEATHER_TOOL])  # not asked: not sent
    assert "parallel_tool_calls" not in _generation_bodies(simulator, "openai")[1]


def test_a_request_the_provider_refuses_reaches_the_sdk_as_a_bad_request(sdk, simulator):
    simulator.add_fault(provider="anthropic", fault="bad_request")
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "see my image"}], stream=stream)
        assert bad.value.body["code"] == "request_rejected" and "messages: Input should be a valid list" in bad.value.body["message"]
    assert [r["provider"] for r in simulator.requests()] == ["anthropic", "anthropic"]  # no failover: the request is the problem


@pytest.mark.parametrize("options, field", [
    ({"tools": [{"type": "function", "function": "get_weather"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "function": {"name": "get weather!"}}]}, "tools[0].function.name"),
    ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice"),
    ({"tools": [WEATHER_TOOL], "tool_choice": ["auto"]}, "tool_choice"),
    ({"tools": [WEATHER_TOOL], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"functions": [WEATHER_TOOL["function"]]}, "functions"),
    ({"function_call": "auto"}, "functions"),
])
def test_malformed_tools_answer_400_not_500(sdk, simulator, options, field):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}], **options)
    assert bad.value.body["message"].startswith(field)
    assert simulator.requests() == []


def test_tool_ids_made_elsewhere_are_mapped_for_anthropic_the_same_in_call_and_result(sdk, simulator):
    call = {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    sdk.chat.completions.create(model="auto", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "-3 C"},
    ])
    (body,) = _generation_bodies(simulator, "anthropic")
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "functions_get_weather_0", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert body["messages"][2]["content"][0]["tool_use_id"] == "functions_get_weather_0"


def test_a_streamed_reply_that_only_calls_tools_starts_with_the_role_and_names_who_answered(sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=[WEATHER_TOOL], stream=True)
    assert raw.headers["x-agencyhub-provider"] == "anthropic" and raw.headers["x-agencyhub-model"] == "claude-haiku-4-5"
    assert raw.headers["x-agencyhub-message-id"] and raw.headers["x-agencyhub-conversation-id"]
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    with sdk.chat.completions.stream(model="auto", messages=[{"role": "user", "content": "weather in Rome?"}],
                                     tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant" and message.tool_calls
    # the SDK's own accumulated message goes back in the history as it is
    history = [{"role": "user", "content": "weather in Rome?"}, message.model_dump(exclude_none=True, exclude={"parsed"}),
               *({"role": "tool", "tool_call_id": call.id, "content": "20 C"} for call in message.tool_calls)]
    assert sdk.chat.completions.create(model="auto", messages=history, tools=[WEATHER_TOOL]).choices[0].finish_reason == "stop"


def test_an_assistant_prefill_is_not_stored_as_the_users_message(sdk):
    sdk.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": "Name a colour"}, {"role": "assistant", "content": "The colour is"}])
    assert list(Message.objects.filter(role="user").values_list("content", flat=True)) == ["Name a colour"]

"""The official `openai` SDK, unchanged, as a client of /v1/chat/completions on a live server."""

from decimal import Decimal

import openai
import pytest

from billing.models import UsageRecord
from conversations.models import Conversation, Message
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


def test_the_openai_sdk_can_name_a_catalogue_model(sdk):
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "pick me"}])
    assert completion.model == "gpt-4o-mini"


def test_errors_reach_the_sdk_as_its_own_exceptions(sdk, simulator):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["code"] == "model_not_found"
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

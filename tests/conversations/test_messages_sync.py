from decimal import Decimal

import pytest

from billing.models import UsageRecord
from conversations.models import Message
from providers.models import Credential, LLMModel, price_for
from providers.types import Usage
from routing.models import RoutingRule
from tests.conversations.conftest import chain_target, post_message


def test_it_answers_a_sync_message_with_model_usage_and_cost(api_client, conversation_id, simulator):
    response = post_message(api_client, conversation_id, "Hello there")
    assert response.status_code == 201
    reply = response.json()
    assert reply["status"] == "completed"
    assert reply["content"] == "Simulated reply from claude-haiku-4-5: Hello there"
    assert reply["model"] == "claude-haiku-4-5" and reply["provider"] == "anthropic"
    assert reply["usage"]["output_tokens"] == len(reply["content"].split())
    record = UsageRecord.objects.get(message_id=reply["id"])
    haiku = LLMModel.objects.get(model_id="claude-haiku-4-5", provider__kind="anthropic")
    expected = price_for(haiku).cost(Usage(input_tokens=record.input_tokens, output_tokens=record.output_tokens))
    assert Decimal(reply["cost"]) == record.cost == expected > 0
    assert record.ownership == "agency" and str(record.conversation_id) == conversation_id
    assert reply["user_message"]["content"] == "Hello there"
    # The assistant's instructions are the system prompt; the model got the conversation so far.
    body = simulator.requests()[-1]["body"]
    assert body["messages"][-1]["content"] == "Hello there"


def test_one_hour_cache_writes_are_billed_at_twice_the_input_rate(api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="usage", usage={
        "input_tokens": 10, "output_tokens": 10, "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 10_000}})
    reply = post_message(api_client, conversation_id, "Hello there").json()
    record = UsageRecord.objects.get(message_id=reply["id"])
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == (10_000, 10_000)
    rates = record.price.rates_for(10_010)
    assert record.cost == (10 * rates["input"] + 10 * rates["output"] + 10_000 * 2 * rates["input"]) / 1_000_000
    assert record.cost > record.price.cost(Usage(input_tokens=10, output_tokens=10, cache_write_tokens=10_000))


def test_it_sends_earlier_turns_and_the_instructions(api_client, conversation_id, simulator, tenant):
    tenant.assistants.filter(is_default=True).update(instructions="You are Acme's support bot.")
    post_message(api_client, conversation_id, "first question")
    post_message(api_client, conversation_id, "second question")
    body = simulator.requests()[-1]["body"]
    assert body["system"] == "You are Acme's support bot."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == "first question"


def test_it_totals_the_conversation(api_client, conversation_id):
    costs = [Decimal(post_message(api_client, conversation_id, f"q{i}").json()["cost"]) for i in range(2)]
    detail = api_client.get(f"/api/v1/conversations/{conversation_id}").json()
    assert len(detail["messages"]) == 4
    assert Decimal(detail["totals"]["cost"]) == sum(costs)
    assert detail["totals"]["total_tokens"] == sum(r.total_tokens for r in UsageRecord.objects.all())


@pytest.mark.parametrize("fault", ["rate_limit", "overloaded", "server_error", "drop", "invalid_json"])
def test_it_fails_over_to_the_next_candidate(api_client, conversation_id, simulator, fault):
    simulator.add_fault(provider="anthropic", fault=fault)
    response = post_message(api_client, conversation_id)
    assert response.status_code == 201
    reply = response.json()
    assert reply["model"] == "gpt-4o-mini" and reply["provider"] == "openai"
    attempts = reply["route"]["attempts"]
    assert [a["outcome"] for a in attempts][-1] == "ok" and attempts[0]["candidate"].startswith("anthropic:")
    assert attempts[0]["outcome"] != "ok"
    assert UsageRecord.objects.filter(message_id=reply["id"]).count() == 1


def test_it_fails_over_on_a_timeout(api_client, conversation_id, simulator, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5
    simulator.add_fault(provider="anthropic", fault="timeout", latency_ms=5000)
    reply = post_message(api_client, conversation_id).json()
    assert reply["provider"] == "openai"
    assert reply["route"]["attempts"][0]["outcome"] == "timeout"


def test_when_every_candidate_fails_the_message_is_kept_and_the_reply_failed(api_client, conversation_id, simulator):
    simulator.add_fault(fault="overloaded")
    response = post_message(api_client, conversation_id, "are you there?")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "providers_failed" and error["type"] and error["message"]
    assert response["Retry-After"]
    user_message = Message.objects.get(role="user")
    assert user_message.content == "are you there?"
    reply = user_message.reply
    assert reply.status == "failed" and len(reply.route_decision["attempts"]) == 3
    assert "overloaded" in reply.error_detail
    assert not UsageRecord.objects.exists()


def test_a_permanent_error_answers_502(api_client, conversation_id, simulator):
    simulator.add_fault(fault="server_error")
    response = post_message(api_client, conversation_id)
    assert response.status_code == 502 and response.json()["error"]["code"] == "providers_failed"


def test_a_request_the_provider_refuses_answers_400_with_its_reason_not_a_retry_hint(api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="server_error", count=1)  # fails over...
    simulator.add_fault(provider="openai", fault="bad_request", count=2)  # ...to a provider that refuses the request
    response = post_message(api_client, conversation_id, "hello", headers={"Idempotency-Key": "refused-1"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "request_rejected" and error["type"] == "invalid_request_error"
    assert "Invalid 'messages': empty array" in error["message"]
    reply = Message.objects.get(role="user", content="hello").reply
    assert reply.status == "failed" and reply.error_code == "request_rejected"
    assert [a["outcome"] for a in reply.route_decision["attempts"]] == ["server_error", "bad_request"]  # the chain stopped there
    replay = post_message(api_client, conversation_id, "hello", headers={"Idempotency-Key": "refused-1"})
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "request_rejected"


def test_a_rejected_key_disables_its_credential_and_fails_over(api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="auth")
    reply = post_message(api_client, conversation_id).json()
    assert reply["provider"] == "openai"
    credential = Credential.objects.get(provider__kind="anthropic")
    assert credential.is_enabled is False and "authentication" in credential.last_error


def test_when_every_key_is_rejected_the_client_is_told_so_not_to_retry(api_client, conversation_id, simulator):
    simulator.add_fault(fault="auth")
    response = post_message(api_client, conversation_id)
    assert response.status_code == 502 and response.json()["error"]["code"] == "provider_key_rejected"
    assert "disabled" in response.json()["error"]["message"]
    after = post_message(api_client, conversation_id, "again")
    assert after.status_code == 503 and after.json()["error"]["code"] == "no_route"
    assert "provider keys disabled" in after.json()["error"]["message"] and "agency" in after.json()["error"]["message"]


def test_idempotent_retries_return_the_first_result_and_call_the_provider_once(api_client, conversation_id, simulator):
    first = post_message(api_client, conversation_id, "once", headers={"Idempotency-Key": "abc-123"})
    again = post_message(api_client, conversation_id, "once", headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and first.json()["content"] == again.json()["content"]
    assert len(simulator.requests()) == 1
    assert Message.objects.filter(role="user").count() == 1 and UsageRecord.objects.count() == 1


def test_context_is_trimmed_to_the_models_window_oldest_first(api_client, conversation_id, simulator, tenant):
    LLMModel.objects.filter(model_id="claude-haiku-4-5").update(context_window=1200)
    tenant.assistants.filter(is_default=True).update(instructions="SYSTEM PROMPT", default_max_tokens=100)
    for i in range(6):
        post_message(api_client, conversation_id, f"turn {i} " + "x" * 600)
    body = simulator.requests()[-1]["body"]
    assert body["system"] == "SYSTEM PROMPT"
    contents = [m["content"] for m in body["messages"]]
    assert contents[-1].startswith("turn 5") and not any(c.startswith("turn 0") for c in contents)
    assert body["messages"][0]["role"] == "user"
    assert sum(len(c) for c in contents) // 4 < 1200


def test_feedback_is_stored_and_can_be_changed(api_client, conversation_id):
    reply_id = post_message(api_client, conversation_id).json()["id"]
    response = api_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": 1, "comment": "great"}, format="json")
    assert response.status_code == 201 and response.json()["rating"] == 1
    api_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": -1}, format="json")
    assert Message.objects.get(pk=reply_id).feedback.rating == -1
    bad = api_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": 5}, format="json")
    assert bad.status_code == 400 and "rating" in bad.json()["error"]["message"]


def test_every_attempt_is_logged_the_answering_one_with_the_reply(api_client, conversation_id, simulator):
    from providers.models import AttemptLog

    simulator.add_fault(provider="anthropic", fault="overloaded")  # the primary fails: logged at once; the backup's success with the reply
    reply = post_message(api_client, conversation_id, "log me").json()
    rows = list(AttemptLog.objects.order_by("pk").values_list("provider_kind", "outcome"))
    assert reply["status"] == "completed" and reply["provider"] == "openai"
    assert rows == [("anthropic", "overloaded"), ("openai", "ok")]


# --- images --------------------------------------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SCREENSHOT = {"url": f"data:image/png;base64,{PNG}", "detail": "high"}


def test_a_screenshot_goes_with_its_message_and_with_the_later_turns(api_client, conversation_id, simulator):
    response = post_message(api_client, conversation_id, "Why do I get this error?", images=[SCREENSHOT])
    assert response.status_code == 201
    shown = response.json()["user_message"]["images"]
    assert shown[0]["media_type"] == "image/png" and len(shown[0]["sha256"]) == 64 and PNG not in str(shown)
    image_block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert simulator.requests()[-1]["body"]["messages"][-1]["content"] == [
        image_block, {"type": "text", "text": "Why do I get this error?"}]
    post_message(api_client, conversation_id, "And how do I fix it?")  # the screenshot stays in the context
    first_turn = simulator.requests()[-1]["body"]["messages"][0]
    assert first_turn["content"] == [image_block, {"type": "text", "text": "Why do I get this error?"}]
    assert Message.objects.get(content="Why do I get this error?").images == [SCREENSHOT]


def test_an_image_alone_is_a_message_and_a_bad_one_is_named(api_client, conversation_id, simulator):
    assert post_message(api_client, conversation_id, "", images=["https://example.com/a.png"]).status_code == 201
    assert simulator.requests()[-1]["body"]["messages"][-1]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]
    bad = post_message(api_client, conversation_id, "look", images=[SCREENSHOT, {"url": "data:image/tiff;base64,AAAA"}])
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("images[1].url: images must be one of")
    empty = post_message(api_client, conversation_id, "  ")
    assert empty.status_code == 400 and empty.json()["error"]["message"].startswith("content: must not be empty")
    assert Message.objects.filter(role="user").count() == 1  # nothing stored for the refused ones


def test_an_async_reply_sees_the_stored_images(api_client, conversation_id, simulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_message(api_client, conversation_id, "Read this receipt", images=[SCREENSHOT], mode="async")
    assert response.status_code == 202
    assert Message.objects.get(pk=response.json()["id"]).status == "completed"
    assert simulator.requests()[-1]["body"]["messages"][-1]["content"][0]["source"]["data"] == PNG


def test_a_screenshots_rule_routes_image_messages_and_only_them(api_client, conversation_id, policy, simulator):
    RoutingRule.objects.create(policy=policy, position=1, name="Screenshots", needs_vision=True,
                               target=chain_target("Vision", [("openai", "gpt-4o")]))
    text = post_message(api_client, conversation_id, "plain text").json()
    seen = post_message(api_client, conversation_id, "and this?", images=[SCREENSHOT]).json()
    assert text["model"] == "claude-haiku-4-5" and text["route"]["reason"].startswith("default")
    assert seen["model"] == "gpt-4o" and seen["route"]["reason"] == "rule 'Screenshots' -> Vision"


JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q=="


def test_inline_images_are_checked_by_their_bytes(api_client, conversation_id, simulator):
    mislabelled = post_message(api_client, conversation_id, "photo", images=[f"data:image/png;base64,{JPEG}"])
    assert mislabelled.status_code == 201  # a JPEG declared as PNG goes as what it is (Anthropic refuses a wrong type)
    source = simulator.requests()[-1]["body"]["messages"][-1]["content"][0]["source"]
    assert source["media_type"] == "image/jpeg" and source["data"] == JPEG
    for data, says in (("aGVsbG8gd29ybGQh", "is not a image/png"), ("iVBORw0KGgo=x", "not valid base64")):
        bad = post_message(api_client, conversation_id, "photo", images=[f"data:image/png;base64,{data}"])
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("images[0].url") and says in bad.json()["error"]["message"]


def test_the_images_of_a_refused_turn_are_not_sent_again(api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="bad_request", count=1)  # e.g. an image the provider cannot read
    assert post_message(api_client, conversation_id, "what is this?", images=[SCREENSHOT]).status_code == 400
    assert post_message(api_client, conversation_id, "sorry, try without it").status_code == 201
    turns = simulator.requests()[-1]["body"]["messages"]
    assert turns == [{"role": "user", "content": "what is this?\n\nsorry, try without it"}]

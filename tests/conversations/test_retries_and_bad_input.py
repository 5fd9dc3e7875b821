"""Retries with an Idempotency-Key (the first answer, whatever it was, in the same shape) and bodies that must
answer 400, never 500: unpaired surrogates, deep nesting, odd option types, out-of-range dates."""

import json

import pytest

from billing.models import UsageRecord
from conversations.models import Message
from tests.conversations.conftest import post_message

V1 = "/v1/chat/completions"


def v1(client, body: dict | None = None, headers: dict | None = None, **fields):
    payload = body if body is not None else {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields}
    return client.post(V1, payload, format="json", headers=headers or {})


def raw_json(client, path: str, text: str):
    """A body json.dumps would refuse to write (a lone surrogate) or nest too deeply for it, sent as it is."""
    return client.generic("POST", path, text.encode("utf-8"), content_type="application/json")


def error(response) -> dict:
    return response.json()["error"]


# --- Idempotency-Key: one key, one message ----------------------------------------------------------------


def test_a_key_reused_for_other_text_answers_422_and_calls_no_provider(api_client, conversation_id, simulator):
    key = {"Idempotency-Key": "k-1"}
    assert post_message(api_client, conversation_id, "first", headers=key).status_code == 201
    other = post_message(api_client, conversation_id, "second", headers=key)
    assert other.status_code == 422 and error(other)["code"] == "idempotency_key_reused"
    assert len(simulator.requests()) == 1 and Message.objects.filter(role="user").count() == 1


def test_a_key_reused_in_another_conversation_answers_422(api_client, conversation_id):
    key = {"Idempotency-Key": "k-2"}
    post_message(api_client, conversation_id, "same text", headers=key)
    elsewhere = api_client.post("/api/v1/conversations", {}, format="json").json()["id"]
    response = post_message(api_client, elsewhere, "same text", headers=key)
    assert response.status_code == 422 and "another conversation" in error(response)["message"]


def test_a_key_longer_than_can_be_stored_is_refused_not_cut(api_client, conversation_id):
    response = post_message(api_client, conversation_id, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400 and "Idempotency-Key" in error(response)["message"]
    assert not Message.objects.exists()


# --- a retry gets the first answer, in the same shape --------------------------------------------------------


def test_a_retry_of_a_request_over_budget_answers_429_again_with_retry_after(api_client, conversation_id, tenant):
    tenant.daily_token_budget = 10
    tenant.save()
    first = post_message(api_client, conversation_id, "hello", headers={"Idempotency-Key": "b-1"})
    again = post_message(api_client, conversation_id, "hello", headers={"Idempotency-Key": "b-1"})
    assert first.status_code == again.status_code == 429
    assert error(again)["code"] == "budget_exceeded" and error(again)["message"] == error(first)["message"]
    assert 0 < int(again["Retry-After"]) <= int(first["Retry-After"])


def test_a_retry_when_every_provider_was_overloaded_answers_503_again_without_internals(api_client, conversation_id, simulator):
    for provider in ("anthropic", "openai", "openrouter"):
        simulator.add_fault(provider=provider, fault="overloaded")
    first = post_message(api_client, conversation_id, "hello", headers={"Idempotency-Key": "o-1"})
    again = post_message(api_client, conversation_id, "hello", headers={"Idempotency-Key": "o-1"})
    assert first.status_code == again.status_code == 503
    assert error(again) == error(first) and "anthropic:" not in error(again)["message"]
    assert again["Retry-After"]


def test_a_retry_of_an_unknown_model_answers_404_again(api_client, policy):
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    first = v1(api_client, body, headers={"Idempotency-Key": "m-1"})
    again = v1(api_client, body, headers={"Idempotency-Key": "m-1"})
    assert first.status_code == again.status_code == 404
    assert error(first)["code"] == error(again)["code"] == "model_not_found"
    assert error(first)["type"] == "invalid_request_error"


def test_a_retry_of_a_streamed_post_is_a_stream_of_the_stored_reply(api_client, conversation_id, simulator):
    from tests.conversations.conftest import sse_events

    key = {"Idempotency-Key": "s-1"}
    first = sse_events(post_message(api_client, conversation_id, "stream me", mode="stream", headers=key))
    again_response = post_message(api_client, conversation_id, "stream me", mode="stream", headers=key)
    assert again_response["Content-Type"].startswith("text/event-stream")
    again = sse_events(again_response)
    assert [e for e, _ in again] == ["message", "start", "delta", "done"]
    text = "".join(d["text"] for e, d in first if e == "delta")
    assert again[2][1]["text"] == text and again[3][1]["id"] == first[-1][1]["id"] and again[3][1]["content"] == text
    assert len(simulator.requests()) == 1


def test_a_retry_of_a_streamed_v1_call_is_a_stream_the_sdk_can_read(api_client, policy, simulator):
    body = {"model": "auto", "messages": [{"role": "user", "content": "stream me"}], "stream": True,
            "stream_options": {"include_usage": True}}

    def chunks(response):
        assert response["Content-Type"].startswith("text/event-stream")
        lines = [line[6:] for line in b"".join(response.streaming_content).decode().split("\n") if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        return [json.loads(line) for line in lines[:-1]]

    first = chunks(v1(api_client, body, headers={"Idempotency-Key": "s-2"}))
    again = chunks(v1(api_client, body, headers={"Idempotency-Key": "s-2"}))

    def text(events):
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])

    assert text(again) == text(first) != ""
    assert again[0]["choices"][0]["delta"]["role"] == "assistant" and again[0]["id"] == first[0]["id"]
    assert again[-1]["usage"] == first[-1]["usage"] and again[-1]["model"] == first[-1]["model"] == "claude-haiku-4-5"
    assert again[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert len(simulator.requests()) == 1 and UsageRecord.objects.count() == 1


# --- the budget reservation is what can be spent ---------------------------------------------------------


def test_a_huge_max_tokens_reserves_only_what_the_models_can_write(api_client, policy, tenant):
    tenant.daily_token_budget = 200_000
    tenant.save()
    response = v1(api_client, max_tokens=10**12)  # claude-haiku-4-5 writes at most 64,000
    assert response.status_code == 200, response.content


# --- 400, never 500 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"model":"auto","messages":[{"role":"user","content":"a\\ud800b"}]}', "messages[0].content"),
        ('{"model":"auto","messages":[{"role":"system","content":"\\udfff"},{"role":"user","content":"hi"}]}', "messages[0].content"),
        ('{"model":"auto","messages":[{"role":"user","content":"hi"}],"user":"\\ud800"}', "user"),
        ('{"model":"auto\\ud800","messages":[{"role":"user","content":"hi"}]}', "model"),
        ('{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"\\ud800"}]}]}', "messages[0].content[0]"),
    ],
)
def test_v1_refuses_unpaired_surrogates_naming_the_field(api_client, policy, body, field):
    response = raw_json(api_client, V1, body)
    assert response.status_code == 400 and error(response)["message"].startswith(f"{field}:")
    assert not Message.objects.exists()


def test_rest_refuses_unpaired_surrogates_in_metadata(api_client, conversation_id):
    body = '{"content":"hi","metadata":{"a":"\\ud800"}}'
    response = raw_json(api_client, f"/api/v1/conversations/{conversation_id}/messages", body)
    assert response.status_code == 400 and "metadata" in error(response)["message"]
    created = raw_json(api_client, "/api/v1/conversations", '{"metadata":{"k\\ud800":1}}')
    assert created.status_code == 400 and "metadata" in error(created)["message"]


def test_bodies_nested_too_deeply_answer_400(api_client, conversation_id, policy):
    deep = "[" * 50_000 + "]" * 50_000
    assert raw_json(api_client, V1, deep).status_code == 400
    metadata = '{"content":"hi","metadata":{"a":' + '{"b":' * 900 + "1" + "}" * 900 + "}}"
    response = raw_json(api_client, f"/api/v1/conversations/{conversation_id}/messages", metadata)
    assert response.status_code == 400 and "nested" in error(response)["message"]


@pytest.mark.parametrize(
    "fields, field",
    [({"stream": True, "stream_options": "x"}, "stream_options"), ({"stream": True, "stream_options": [1]}, "stream_options"),
     ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": ["a", ""]}, "stop"), ({"seed": 10**30}, "seed")],
)
def test_v1_option_types_are_checked(api_client, policy, fields, field):
    response = v1(api_client, **fields)
    assert response.status_code == 400 and error(response)["message"].startswith(f"{field}:")


def test_max_tokens_applies_when_max_completion_tokens_is_null(api_client, policy, simulator):
    assert v1(api_client, max_completion_tokens=None, max_tokens=5).status_code == 200
    assert simulator.requests()[-1]["body"]["max_tokens"] == 5


@pytest.mark.parametrize("query", ["to=0001-01-05", "from=9999-12-31&to=0001-01-01", "to=bad"])
def test_usage_dates_out_of_range_answer_400(api_client, query):
    response = api_client.get(f"/api/v1/usage?{query}")
    assert response.status_code == 400 and error(response)["code"] == "invalid_field"


def test_djangos_own_400s_use_the_error_shape_on_the_api(api_client, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    response = api_client.get("/api/v1/usage", HTTP_HOST="evil.example")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert error(response)["code"] == "bad_request"


# --- a reply whose server process died -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "stream"])
def test_a_reply_stranded_by_a_killed_server_is_marked_interrupted_and_a_retry_with_its_key_answers_it(
        api_client, conversation_id, tenant, settings, simulator, mode):
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Conversation
    from conversations.services import message_post
    from conversations.tasks import fail_interrupted_replies

    # The request stored the message and claimed its reply, then its process was SIGKILLed: nothing else happened.
    posted = message_post(tenant=tenant, conversation=Conversation.objects.get(pk=conversation_id), content="anyone there?",
                          mode=mode, idempotency_key="killed-1")
    reply_id = posted.reply.pk
    assert fail_interrupted_replies() == 0  # inside its lease the request may still be running
    Message.objects.filter(pk=reply_id).update(started_at=timezone.now() - timedelta(seconds=settings.REPLY_LEASE_SECONDS + 1))
    assert fail_interrupted_replies() == 1
    shown = api_client.get(f"/api/v1/messages/{reply_id}").json()
    assert shown["status"] == "failed" and shown["error"]["code"] == "interrupted"
    assert "same Idempotency-Key" in shown["error"]["message"]
    assert fail_interrupted_replies() == 0

    retried = post_message(api_client, conversation_id, "anyone there?", headers={"Idempotency-Key": "killed-1"}, mode=mode)
    assert retried.status_code in (200, 201)
    reply = Message.objects.get(pk=reply_id)
    assert reply.status == "completed" and reply.error_code == "" and reply.content.endswith("anyone there?")
    assert UsageRecord.objects.filter(message_id=reply_id).count() == 1 and len(simulator.requests()) == 1
    assert Message.objects.filter(role="user").count() == 1

from decimal import Decimal

import pytest

from billing.models import UsageRecord
from conversations.models import Message
from tests.conversations.conftest import post_message, sse_events

LONG = "one two three four five six seven eight nine ten"


def test_it_streams_deltas_then_a_final_event_with_model_usage_and_cost(api_client, conversation_id):
    response = post_message(api_client, conversation_id, LONG, mode="stream")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "message" and kinds[1] == "start" and kinds[-1] == "done"
    text = "".join(data["text"] for kind, data in events if kind == "delta")
    done = events[-1][1]
    assert text == done["content"] == f"Simulated reply from claude-haiku-4-5: {LONG}"
    assert done["model"] == "claude-haiku-4-5" and done["usage"]["output_tokens"] > 0 and done["cost"]
    stored = Message.objects.get(pk=done["id"])
    assert stored.status == "completed" and stored.content == text
    assert UsageRecord.objects.get(message_id=stored.pk).usage_estimated is False


@pytest.mark.parametrize("fault", ["overloaded", "rate_limit", "drop"])
def test_a_failure_before_the_first_delta_fails_over_silently(api_client, conversation_id, simulator, fault):
    simulator.add_fault(provider="anthropic", fault=fault)
    events = sse_events(post_message(api_client, conversation_id, LONG, mode="stream"))
    assert "error" not in [kind for kind, _ in events]
    assert events[1][1]["provider"] == "openai"
    text = "".join(data["text"] for kind, data in events if kind == "delta")
    assert text == f"Simulated reply from gpt-4o-mini: {LONG}"  # nothing from the failed provider leaked
    assert events[-1][1]["route"]["attempts"][0]["outcome"] != "ok"


@pytest.mark.parametrize("fault", ["stream_cut", "stream_error"])
def test_a_failure_after_the_first_delta_ends_the_stream_with_an_error_event(api_client, conversation_id, simulator, fault):
    simulator.add_fault(provider="anthropic", fault=fault)
    events = sse_events(post_message(api_client, conversation_id, LONG, mode="stream"))
    kinds = [kind for kind, _ in events]
    assert "delta" in kinds and kinds[-1] == "error" and "done" not in kinds
    error = events[-1][1]
    assert error["error"]["code"] == "stream_interrupted"
    stored = Message.objects.get(pk=error["message"]["id"])
    assert stored.status == "failed"
    assert stored.content == "".join(data["text"] for kind, data in events if kind == "delta")
    assert len(simulator.requests()) == 1  # no silent retry that would duplicate text
    assert Message.objects.get(role="user").content == LONG
    # The provider bills what it generated before the break: metered on an estimate, marked so.
    record = UsageRecord.objects.get(message_id=stored.pk)
    assert record.model_name == "claude-haiku-4-5" and record.input_tokens > 0 and record.output_tokens > 0 and record.cost > 0
    assert stored.cost == record.cost and stored.route_decision["usage_estimated"] is True and record.usage_estimated
    totals = api_client.get(f"/api/v1/conversations/{conversation_id}").json()["totals"]
    assert Decimal(totals["cost"]) == record.cost


def test_a_broken_anthropic_stream_bills_the_input_it_reported_before_the_break(api_client, conversation_id, simulator):
    reported = {"input_tokens": 20_000, "cache_read_input_tokens": 100_000, "cache_creation_input_tokens": 5_000}
    simulator.add_fault(provider="anthropic", fault="stream_cut", usage=reported)
    events = sse_events(post_message(api_client, conversation_id, LONG, mode="stream"))
    assert events[-1][0] == "error"

    record = UsageRecord.objects.get(message_id=events[-1][1]["message"]["id"])
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_tokens) == (20_000, 100_000, 5_000)
    assert record.output_tokens > 0 and record.usage_estimated  # the output is still counted from the text received
    shown = api_client.get(f"/api/v1/messages/{record.message_id}").json()  # the reply says what its cost counts
    assert (shown["usage"]["input_tokens"], shown["usage"]["cached_input_tokens"], shown["usage"]["cache_write_tokens"]) == (
        20_000, 100_000, 5_000)
    assert shown["cost"] == float(record.cost) or Decimal(str(shown["cost"])) == record.cost
    assert shown["latency_ms"] is not None


def test_when_every_candidate_fails_before_streaming_it_answers_an_error_status(api_client, conversation_id, simulator):
    simulator.add_fault(fault="overloaded")
    response = post_message(api_client, conversation_id, LONG, mode="stream")
    assert response.status_code == 503 and response.json()["error"]["code"] == "providers_failed"
    assert Message.objects.get(role="assistant").status == "failed"


def test_a_client_disconnecting_mid_stream_still_gets_the_reply_stored(api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="latency", chunk_delay_ms=20)
    response = post_message(api_client, conversation_id, LONG, mode="stream")
    # The response's own iterator: closing it is what a WSGI server does when the client goes away.
    stream = response._iterator
    received = [next(stream) for _ in range(3)]  # message, start, first delta
    assert b"event: delta" in received[-1]
    stream.close()
    reply = Message.objects.get(role="assistant")
    assert reply.status == "completed"
    assert reply.content == f"Simulated reply from claude-haiku-4-5: {LONG}"
    assert UsageRecord.objects.filter(message_id=reply.pk).count() == 1


def test_a_client_asking_for_event_streams_gets_one(api_client, conversation_id):
    response = api_client.post(f"/api/v1/conversations/{conversation_id}/messages", {"content": "hi", "mode": "stream"},
                               format="json", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert b"event: done" in b"".join(response.streaming_content)
    response2 = api_client.post("/v1/chat/completions", {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                                format="json", HTTP_ACCEPT="text/event-stream")
    assert response2.status_code == 200 and b"data: [DONE]" in b"".join(response2.streaming_content)


def test_a_stream_longer_than_the_lease_keeps_its_claim_on_the_reply(api_client, conversation_id, simulator, settings):
    """While a stream runs past REPLY_LEASE_SECONDS, neither a same-key retry nor the sweeper takes its reply: the
    claim is renewed every third of the lease. Without that, a retry made a second provider call."""
    from conversations.services import _claim
    from conversations.sweeper import interrupted_replies_fail

    settings.REPLY_LEASE_SECONDS = 0.6
    simulator.add_fault(provider="anthropic", fault="latency", chunk_delay_ms=150)
    response = post_message(api_client, conversation_id, LONG, mode="stream", headers={"Idempotency-Key": "long-stream"})
    stream = response._iterator
    received = b""
    while received.count(b"event: delta") < 8:  # well past the lease (8 deltas at 150 ms)
        received += next(stream)
    reply = Message.objects.get(role="assistant")
    assert reply.status == "running"
    assert interrupted_replies_fail() == 0
    assert _claim(reply.pk) is False  # what a retry with the same key does first
    rest = b"".join(stream)
    assert b"event: done" in rest
    reply.refresh_from_db()
    assert reply.status == "completed" and UsageRecord.objects.filter(message_id=reply.pk).count() == 1
    assert len([r for r in simulator.requests() if r["path"].endswith("/messages")]) == 1

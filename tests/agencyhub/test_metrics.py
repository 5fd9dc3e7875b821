"""/metrics: Prometheus text, from counters kept at the ledger and attempt choke points, breakers and budgets."""

import re
import time
from decimal import Decimal

import pytest
import redis
from django.db.models import Sum

from billing.models import UsageRecord
from providers.breaker import breaker
from providers.metrics import ATTEMPTS_KEY, field, metrics_attempt_record, metrics_read, metrics_usage_record
from providers.models import Credential, LLMModel
from providers.state import shared_state
from tests.chat_fixtures import post_message

pytestmark = pytest.mark.django_db


def sample(text: str, name: str, **labels) -> float | None:
    """The value of the sample `name{labels...}` (labels matched as a subset), or None."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_it_counts_a_chat_call(client, api_client, tenant, conversation_id, django_capture_on_commit_callbacks):
    tenant.daily_token_budget = 1_000_000
    tenant.save(update_fields=["daily_token_budget"])
    with django_capture_on_commit_callbacks(execute=True):
        assert post_message(api_client, conversation_id, "Hello there").status_code == 201
        assert post_message(api_client, conversation_id, "And again").status_code == 201

    response = client.get("/metrics")

    text = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    ledger = UsageRecord.objects.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost"))
    labels = {"provider": "anthropic", "model": "claude-haiku-4-5"}
    assert sample(text, "agencyhub_llm_calls_total", **labels) == 2
    assert sample(text, "agencyhub_llm_tokens_total", kind="input", **labels) == ledger["i"] > 0
    assert sample(text, "agencyhub_llm_tokens_total", kind="output", **labels) == ledger["o"] > 0
    assert Decimal(re.search(r'agencyhub_llm_cost_usd_total\{provider="anthropic",model="claude-haiku-4-5"\} (\S+)', text).group(1)) == ledger["c"]
    assert sample(text, "agencyhub_llm_latency_seconds_count", **labels) == 2
    assert sample(text, "agencyhub_llm_latency_seconds_bucket", le="+Inf", **labels) == 2
    assert sample(text, "agencyhub_provider_attempts_total", outcome="ok", **labels) == 2
    assert sample(text, "agencyhub_tenant_budget_tokens", tenant="acme") == 1_000_000
    assert sample(text, "agencyhub_tenant_budget_used_tokens", tenant="acme") == ledger["i"] + ledger["o"]
    assert sample(text, "agencyhub_shared_state_up") == 1
    assert "# TYPE agencyhub_llm_latency_seconds histogram" in text


def test_it_counts_errors_and_shows_open_circuits(client, api_client, conversation_id, simulator):
    simulator.add_fault(provider="anthropic", fault="overloaded", count=1)
    assert post_message(api_client, conversation_id, "Hello").status_code == 201  # answered by the next in the chain
    openai_key = Credential.objects.get(provider__kind="openai")
    breaker().force_open(openai_key.pk, LLMModel.objects.get(provider__kind="openai", model_id="gpt-4o-mini").pk, 30)

    text = client.get("/metrics").content.decode()

    assert sample(text, "agencyhub_provider_errors_total", provider="anthropic", model="claude-haiku-4-5", kind="overloaded") == 1
    assert sample(text, "agencyhub_circuit_not_closed", provider="openai", model="gpt-4o-mini", credential="agency", state="open") == 1


def test_it_asks_for_the_token_when_one_is_set(client, settings, db):
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_a_counter_write_never_fails_the_call_when_redis_is_down(monkeypatch, client, db):
    state = shared_state()

    def down(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Redis is down")

    monkeypatch.setattr(state, "hincr_many", down)
    monkeypatch.setattr(state, "read_hashes", down)
    metrics_usage_record(provider="openai", model="gpt-4o-mini", tokens={"input": 3}, cost=Decimal("0.01"), latency_ms=5)

    text = client.get("/metrics").content.decode()
    assert sample(text, "agencyhub_shared_state_up") == 0


def test_both_state_backends_add_up_hash_counters():
    from providers.state import MemoryState

    for state in (MemoryState(), shared_state()):
        state.hincr_many({"m:a": {"x": 2, "y": 1}, "m:b": {"x": 5}})
        state.hincr_many({"m:a": {"x": 3}})
        assert state.read_hashes(["m:a", "m:b", "m:none"]) == [{"x": "5", "y": "1"}, {"x": "5"}, {}]


def test_counts_are_added_up_in_the_process_and_written_in_one_go():
    """A chat call makes no Redis call for its counters: they are added up here and written by the flusher thread
    (every FLUSH_SECONDS) or by the next read in this process."""
    for _ in range(3):
        metrics_attempt_record(provider="openai", model="gpt-4o-mini", outcome="ok")
    _, attempts = metrics_read()
    assert attempts[field("openai", "gpt-4o-mini", "ok")] == "3"
    metrics_attempt_record(provider="openai", model="gpt-4o-mini", outcome="ok")
    # Without a read, the flusher thread writes it: wait for it (bounded), never read our own buffer.
    key = field("openai", "gpt-4o-mini", "ok")
    for _ in range(100):
        if shared_state().read_hashes([ATTEMPTS_KEY])[0].get(key) == "4":
            break
        time.sleep(0.05)
    assert shared_state().read_hashes([ATTEMPTS_KEY])[0].get(key) == "4"


def test_a_read_waits_for_a_write_the_flusher_has_in_progress(monkeypatch):
    """The flusher thread takes the pending counts, then writes them. A read that comes in between must not miss
    them: it finds nothing pending, so it has to wait for that write, not read the shared state without it."""
    import threading

    from providers import metrics

    state = shared_state()
    write = state.hincr_many
    writing, go = threading.Event(), threading.Event()

    def slow_write(increments):
        writing.set()
        go.wait(5)
        write(increments)

    monkeypatch.setattr(state, "hincr_many", slow_write)
    metrics_attempt_record(provider="openai", model="gpt-4o-mini", outcome="ok")
    flusher = threading.Thread(target=metrics.metrics_flush)
    flusher.start()
    assert writing.wait(5)  # the counts are taken and on their way
    read: list = []
    reader = threading.Thread(target=lambda: read.append(metrics_read()))
    reader.start()
    reader.join(0.3)  # without the fix the read is done by now, without the count
    go.set()
    flusher.join(5)
    reader.join(5)
    assert read and read[0][1].get(field("openai", "gpt-4o-mini", "ok")) == "1"

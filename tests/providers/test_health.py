"""Attempts: the breaker, the AttemptLog, rejected credentials (disabled, flagged, staff alerted once), the health
figures, and the health probes against the provider simulator."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from providers import health
from providers.breaker import breaker
from providers.catalog import catalog_load
from providers.errors import ErrorKind, ProviderError
from providers.health import attempt_record, health_overview, health_summary, percentile_cont
from providers.models import AttemptLog, Credential, LLMModel
from providers.services import credential_set, provider_configure
from providers.state import shared_state
from providers.tasks import (
    BEAT_SCHEDULE,
    PROBE_TASK,
    probe_providers,
    probe_targets,
    register_probe_models,
    unregister_probe_models,
)


@pytest.fixture(autouse=True)
def isolated_state(settings):
    settings.SHARED_STATE_PREFIX = f"test:{uuid.uuid4().hex[:10]}:"
    shared_state().flush()
    yield shared_state()
    shared_state().flush()


@pytest.fixture
def catalog(db):
    catalog_load()


@pytest.fixture
def openai(simulator, catalog):
    provider_configure(kind="openai", base_url=simulator.openai_base_url)
    return credential_set(kind="openai", key="sk-agency-openai", label="agency")


def llm(kind: str, model_id: str) -> LLMModel:
    return LLMModel.objects.select_related("provider").get(provider__kind=kind, model_id=model_id)


def overloaded() -> ProviderError:
    return ProviderError(ErrorKind.OVERLOADED, "Overloaded", status=529)


def rejected() -> ProviderError:
    return ProviderError(ErrorKind.AUTHENTICATION, "invalid x-api-key", status=401)


# ----------------------------------------------------------------------------------------------- attempt_record

def test_a_success_is_logged_and_feeds_the_breaker(openai):
    model = llm("openai", "gpt-4o-mini")
    row = attempt_record(credential=openai, model=model, outcome="ok", latency_ms=120, error=None, tenant_id=42)
    row.refresh_from_db()
    assert (row.provider_kind, row.model_id, row.credential_id, row.tenant_id) == ("openai", model.pk, openai.pk, 42)
    assert (row.outcome, row.error_kind, row.status_code, row.latency_ms, row.is_probe) == ("ok", "", None, 120, False)
    assert breaker().latency_ms(openai.pk, model.pk) == pytest.approx(120)
    openai.refresh_from_db()
    assert openai.last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(openai):
    from datetime import timedelta

    from providers.health import LAST_USED_RESOLUTION

    model = llm("openai", "gpt-4o-mini")
    attempt_record(credential=openai, model=model, outcome="ok", latency_ms=10)
    first = Credential.objects.get(pk=openai.pk).last_used_at
    attempt_record(credential=Credential.objects.get(pk=openai.pk), model=model, outcome="ok", latency_ms=10)
    assert Credential.objects.get(pk=openai.pk).last_used_at == first  # within the minute: no write

    stale = Credential.objects.get(pk=openai.pk)
    stale.last_used_at = first - LAST_USED_RESOLUTION - timedelta(seconds=1)
    attempt_record(credential=stale, model=model, outcome="ok", latency_ms=10)
    assert Credential.objects.get(pk=openai.pk).last_used_at > first


def test_failures_are_logged_and_open_the_circuit(openai):
    model = llm("openai", "gpt-4o-mini")
    for _ in range(5):
        attempt_record(credential=openai, model=model, outcome="overloaded", latency_ms=30, error=overloaded(), tenant_id=None)
    rows = AttemptLog.objects.filter(model=model)
    assert rows.count() == 5 and set(rows.values_list("error_kind", "status_code")) == {("overloaded", 529)}
    assert breaker().allow(openai.pk, model.pk).allowed is False
    openai.refresh_from_db()
    assert openai.is_enabled and openai.last_error.startswith("overloaded")


def test_a_request_error_is_logged_but_not_held_against_the_provider(openai):
    model = llm("openai", "gpt-4o-mini")
    for _ in range(10):
        attempt_record(credential=openai, model=model, outcome="context_too_long", latency_ms=5,
                       error=ProviderError(ErrorKind.CONTEXT_TOO_LONG, "too long", status=400), tenant_id=1)
    assert AttemptLog.objects.filter(outcome="context_too_long").count() == 10
    assert breaker().state(openai.pk, model.pk) == "closed"


def test_retry_after_becomes_a_cool_down(openai):
    model = llm("openai", "gpt-4o-mini")
    attempt_record(credential=openai, model=model, outcome="rate_limited", latency_ms=5,
                   error=ProviderError(ErrorKind.RATE_LIMITED, "slow down", status=429, retry_after=7), tenant_id=1)
    admission = breaker().allow(openai.pk, model.pk)
    assert not admission.allowed and 0 < admission.retry_in <= 7


# ----------------------------------------------------------------------------------------------- rejected credentials

def test_a_401_disables_the_credential_flags_it_and_alerts_staff_once(openai, settings, mailoutbox,
                                                                        django_capture_on_commit_callbacks):
    settings.STAFF_ALERT_EMAILS = ["ops@agency.example"]
    model = llm("openai", "gpt-4o-mini")
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):  # several calls in flight see the same 401
            attempt_record(credential=openai, model=model, outcome="authentication", latency_ms=10, error=rejected(),
                           tenant_id=None)
    openai.refresh_from_db()
    assert openai.is_enabled is False and openai.needs_attention is True
    assert "HTTP 401" in openai.disabled_reason and "invalid x-api-key" in openai.disabled_reason
    assert openai.disabled_at is not None
    assert Credential.objects.usable().filter(pk=openai.pk).exists() is False
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@agency.example"]
    assert "disabled" in mail.subject and "openai" in mail.subject
    assert "HTTP 401" in mail.body and "sk-agency-openai" not in mail.body  # never the key itself
    assert breaker().state(openai.pk, model.pk) == "closed"  # the credential is disabled instead
    assert AttemptLog.objects.filter(outcome="authentication").count() == 3


def test_each_disablement_alerts_again(openai, settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.STAFF_ALERT_EMAILS = []
    settings.ADMINS = [("Ops", "admins@agency.example")]
    model = llm("openai", "gpt-4o-mini")
    with django_capture_on_commit_callbacks(execute=True):
        attempt_record(credential=openai, model=model, outcome="authentication", latency_ms=10, error=rejected(), tenant_id=None)
    credential = credential_set(kind="openai", key="sk-agency-openai-2", label="agency")  # staff fix the key
    assert credential.is_enabled
    with django_capture_on_commit_callbacks(execute=True):
        attempt_record(credential=credential, model=model, outcome="permission", latency_ms=10,
                       error=ProviderError(ErrorKind.PERMISSION, "no access", status=403), tenant_id=None)
    assert [m.to for m in mailoutbox] == [["admins@agency.example"], ["admins@agency.example"]]
    credential.refresh_from_db()
    assert "HTTP 403" in credential.disabled_reason


def test_the_alert_waits_for_the_transaction(openai, settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.STAFF_ALERT_EMAILS = ["ops@agency.example"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        health.credential_record_failure(credential=openai, error=rejected())
    assert len(mailoutbox) == 0 and callbacks  # no network call inside the transaction ...
    for callback in callbacks:
        callback()
    assert [m.to for m in mailoutbox] == [["ops@agency.example"]]  # ... the alert goes once it commits


def test_no_recipients_is_logged_not_raised(openai, settings, mailoutbox, caplog, django_capture_on_commit_callbacks):
    settings.STAFF_ALERT_EMAILS = []
    settings.ADMINS = []
    with django_capture_on_commit_callbacks(execute=True):
        assert health.credential_record_failure(credential=openai, error=rejected()) is True
    assert mailoutbox == [] and "no STAFF_ALERT_EMAILS" in caplog.text


def test_a_broken_mail_backend_does_not_break_the_call(openai, settings, monkeypatch, django_capture_on_commit_callbacks):
    settings.STAFF_ALERT_EMAILS = ["ops@agency.example"]

    def boom(*args, **kwargs):
        raise RuntimeError("smtp is down")

    monkeypatch.setattr(health, "send_mail", boom)
    with django_capture_on_commit_callbacks(execute=True):
        attempt_record(credential=openai, model=llm("openai", "gpt-4o-mini"), outcome="authentication", latency_ms=1,
                       error=rejected(), tenant_id=None)
    openai.refresh_from_db()
    assert openai.is_enabled is False


# ----------------------------------------------------------------------------------------------- health figures

@pytest.fixture
def known_attempts(openai, catalog):
    """gpt-4o-mini in the last hour: 100 ok (1..100 ms), 5 overloaded, 5 bad requests; plus older rows."""
    now = timezone.now()
    mini, nano = llm("openai", "gpt-4o-mini"), llm("openai", "gpt-4.1-nano")

    def row(model, outcome, latency, age, probe=False):
        return AttemptLog(provider_kind="openai", model=model, credential=openai, outcome=outcome,
                          error_kind="" if outcome == "ok" else outcome, latency_ms=latency, is_probe=probe,
                          created_at=now - age)

    rows = [row(mini, "ok", ms, timedelta(minutes=ms % 50)) for ms in range(1, 101)]
    rows += [row(mini, "overloaded", 3000, timedelta(minutes=5)) for _ in range(5)]
    rows += [row(mini, "bad_request", 10, timedelta(minutes=5)) for _ in range(5)]
    rows += [row(mini, "ok", 10_000, timedelta(hours=3)) for _ in range(10)]  # only in the last day
    rows += [row(mini, "ok", 1, timedelta(days=2))]  # in neither window
    rows += [row(nano, "timeout", 60_000, timedelta(minutes=1), probe=True), row(nano, "ok", 200, timedelta(minutes=2), probe=True)]
    AttemptLog.objects.bulk_create(rows)
    return now


def by_model(summary: list[dict]) -> dict[str, dict]:
    return {r["model"]: r for r in summary}


def test_health_summary_over_the_last_hour(known_attempts):
    figures = by_model(health_summary(timedelta(hours=1), now=known_attempts))
    mini = figures["gpt-4o-mini"]
    assert mini["provider"] == "openai"
    assert (mini["requests"], mini["ok"], mini["errors"]) == (110, 100, 10)
    assert mini["error_rate"] == pytest.approx(10 / 110, abs=1e-6)
    assert mini["availability"] == pytest.approx(100 / 105, abs=1e-6)  # bad requests say nothing about the provider
    assert mini["latency_p50_ms"] == pytest.approx(50.5)
    assert mini["latency_p95_ms"] == pytest.approx(95.05)
    nano = figures["gpt-4.1-nano"]
    assert (nano["requests"], nano["errors"], nano["availability"], nano["latency_p50_ms"]) == (2, 1, 0.5, 200)


def test_health_summary_over_the_last_day(known_attempts):
    mini = by_model(health_summary(timedelta(days=1), now=known_attempts))["gpt-4o-mini"]
    assert (mini["requests"], mini["ok"]) == (120, 110)
    latencies = sorted(list(range(1, 101)) + [10_000] * 10)
    assert mini["latency_p50_ms"] == pytest.approx(percentile_cont(latencies, 0.5))
    assert mini["latency_p95_ms"] == pytest.approx(10_000)


def test_health_summary_without_probes(known_attempts):
    figures = by_model(health_summary(timedelta(hours=1), now=known_attempts, include_probes=False))
    assert "gpt-4.1-nano" not in figures and figures["gpt-4o-mini"]["requests"] == 110


def test_the_portable_fallback_gives_the_same_figures(known_attempts, monkeypatch):
    expected = health_summary(timedelta(hours=1), now=known_attempts)
    monkeypatch.setattr(health, "connection", type("FakeConnection", (), {"vendor": "sqlite"})())
    assert health_summary(timedelta(hours=1), now=known_attempts) == expected


def test_health_overview_has_both_windows(known_attempts):
    overview = health_overview(now=known_attempts)
    assert set(overview) == {"last_hour", "last_day"}
    assert by_model(overview["last_day"])["gpt-4o-mini"]["requests"] == 120


def test_percentile_cont_matches_postgresql():
    assert percentile_cont([], 0.5) is None
    assert percentile_cont([7], 0.95) == 7
    assert percentile_cont([1, 2, 3, 4], 0.5) == 2.5
    assert percentile_cont(list(range(1, 101)), 0.95) == pytest.approx(95.05)


def test_health_summary_is_one_query_on_postgresql(known_attempts, django_assert_max_num_queries):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with django_assert_max_num_queries(1):
        health_summary(timedelta(days=1), now=known_attempts)


# ----------------------------------------------------------------------------------------------- probes

def probe_requests(simulator) -> list[dict]:
    return [r for r in simulator.requests() if r["provider"] == "openai"]


def test_probes_send_a_minimal_request_and_record_it(openai, simulator, settings):
    settings.PROBE_MODELS_PER_CREDENTIAL = 2
    report = probe_providers()
    assert (report["probed"], report["ok"], report["failed"]) == (2, 2, 0)
    sent = probe_requests(simulator)
    assert len(sent) == 2
    for request in sent:
        body = request["body"]
        assert body["messages"] == [{"role": "user", "content": "ping"}]
        assert body.get("max_tokens", body.get("max_completion_tokens")) == 1
    rows = AttemptLog.objects.filter(is_probe=True)
    assert rows.count() == 2 and set(rows.values_list("outcome", flat=True)) == {"ok"}
    assert set(rows.values_list("credential_id", flat=True)) == {openai.pk}
    openai.refresh_from_db()
    assert openai.last_used_at is None  # a probe is not a use of the key


def test_probes_pick_the_cheapest_models_unless_a_hook_names_others(openai, simulator, settings):
    settings.PROBE_MODELS_PER_CREDENTIAL = 1
    [cheapest] = [t.model.model_id for t in probe_targets()]
    o3 = llm("openai", "o3")
    assert cheapest != "o3"

    def policies_use_o3(credential):
        return [o3.pk]

    register_probe_models(policies_use_o3)
    try:
        assert [t.model.model_id for t in probe_targets()] == ["o3"]
    finally:
        unregister_probe_models(policies_use_o3)


def test_failing_probes_open_the_circuit_and_a_half_open_probe_closes_it(openai, simulator, settings):
    settings.PROBE_MODELS_PER_CREDENTIAL = 1
    settings.BREAKER_FAILURE_THRESHOLD = 2
    [target] = probe_targets()
    simulator.add_fault(provider="openai", fault="overloaded")
    assert probe_providers()["failed"] == 1
    assert probe_providers()["failed"] == 1
    cb = breaker()
    assert cb.state(openai.pk, target.model.pk) == "open"
    # While open, the probes leave the provider alone.
    calls = len(probe_requests(simulator))
    report = probe_providers()
    assert report["probed"] == 0 and report["skipped"] >= 1
    assert len(probe_requests(simulator)) == calls
    # The cool-down ends (forced here), the provider is back: the probe is the half-open probe, and closes it.
    simulator.clear_faults()
    cb.force_open(openai.pk, target.model.pk, 0)
    assert cb.state(openai.pk, target.model.pk) == "half_open"
    report = probe_providers()
    assert report["ok"] >= 1
    assert cb.state(openai.pk, target.model.pk) == "closed"
    assert AttemptLog.objects.filter(is_probe=True, outcome="overloaded").count() == 2


def test_a_half_open_circuit_is_probed_even_beyond_the_model_limit(openai, simulator, settings):
    settings.PROBE_MODELS_PER_CREDENTIAL = 1
    o3 = llm("openai", "o3")
    breaker().force_open(openai.pk, o3.pk, 0)
    assert "o3" in [t.model.model_id for t in probe_targets()]
    probe_providers()
    assert breaker().state(openai.pk, o3.pk) == "closed"


def test_a_probe_rejected_with_401_disables_the_credential(simulator, catalog, settings, mailoutbox,
                                                           django_capture_on_commit_callbacks):
    settings.STAFF_ALERT_EMAILS = ["ops@agency.example"]
    settings.PROBE_MODELS_PER_CREDENTIAL = 2
    provider_configure(kind="openai", base_url=simulator.openai_base_url)
    bad = credential_set(kind="openai", key="bad-revoked-key", label="revoked")
    with django_capture_on_commit_callbacks(execute=True):
        report = probe_providers()
    assert report["failed"] == 2
    bad.refresh_from_db()
    assert bad.is_enabled is False and bad.needs_attention
    assert len(mailoutbox) == 1
    assert probe_providers()["probed"] == 0  # a disabled credential is not probed


def test_only_one_probe_run_at_a_time(openai, simulator):
    from providers.tasks import LOCK_KEY

    shared_state().set(LOCK_KEY, "another-worker", ttl=60)
    assert probe_providers().get("locked") is True
    assert probe_requests(simulator) == []


def test_the_beat_schedule_names_the_registered_task():
    from agencyhub.celery import app

    entry = BEAT_SCHEDULE["probe-providers"]
    assert entry["task"] == PROBE_TASK
    app.loader.import_default_modules()
    assert PROBE_TASK in app.tasks

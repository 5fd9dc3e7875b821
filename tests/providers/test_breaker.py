"""The circuit breaker: states, thresholds, cool-downs, what counts — on both backends — and across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from providers.breaker import Admission, CircuitBreaker, breaker
from providers.errors import ErrorKind, ProviderError
from providers.state import MemoryState, RedisState, shared_state
from tests.providers.test_state import BACKENDS, make_state, needs_redis

ROOT = Path(__file__).resolve().parents[2]
CRED, MODEL = 11, 22


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
def cb(request, clock):
    state = make_state(request.param)
    state.flush()
    yield CircuitBreaker(state=state, clock=clock)
    state.flush()


def overloaded() -> ProviderError:
    return ProviderError(ErrorKind.OVERLOADED, "Overloaded", status=529)


def fail(cb: CircuitBreaker, times: int = 1, error: ProviderError | None = None, *, step: float = 0.1, clock=None):
    for _ in range(times):
        cb.record_failure(CRED, MODEL, error or overloaded(), 50)
        if clock is not None:
            clock.advance(step)


# ----------------------------------------------------------------------------------------------- closed -> open

def test_a_new_circuit_is_closed(cb):
    admission = cb.allow(CRED, MODEL)
    assert admission == Admission(True, "closed", "circuit closed", None)
    assert cb.state(CRED, MODEL) == "closed"


def test_opens_after_consecutive_failures(cb, clock):
    fail(cb, 4, clock=clock)
    assert cb.allow(CRED, MODEL).allowed and cb.state(CRED, MODEL) == "closed"
    fail(cb, 1, clock=clock)
    admission = cb.allow(CRED, MODEL)
    assert not admission.allowed
    assert admission.state == "open" and admission.reason == "circuit open"
    assert 0 < admission.retry_in <= 30


def test_a_success_resets_the_consecutive_count(cb, clock):
    fail(cb, 4, clock=clock)
    cb.record_success(CRED, MODEL, 100)
    fail(cb, 4, clock=clock)
    assert cb.state(CRED, MODEL) == "closed"


def test_opens_on_failure_rate_over_the_window(cb, clock, settings):
    settings.BREAKER_FAILURE_THRESHOLD = 100  # only the rate can open it here
    for _ in range(4):  # 9 calls, 4 failures: under the minimum number of calls
        cb.record_success(CRED, MODEL, 100)
        fail(cb, 1)
        clock.advance(1)
    cb.record_success(CRED, MODEL, 100)
    assert cb.state(CRED, MODEL) == "closed"
    fail(cb, 1)  # 10 calls, 5 failures: 50 %
    assert cb.state(CRED, MODEL) == "open"


def test_failure_rate_below_the_threshold_stays_closed(cb, clock, settings):
    settings.BREAKER_FAILURE_THRESHOLD = 100
    for _ in range(30):
        cb.record_success(CRED, MODEL, 100)
        cb.record_success(CRED, MODEL, 100)
        fail(cb, 1)  # 33 %
        clock.advance(0.5)
    assert cb.state(CRED, MODEL) == "closed"


def test_old_failures_leave_the_window(cb, clock, settings):
    settings.BREAKER_FAILURE_THRESHOLD = 100
    fail(cb, 9, clock=clock)  # 9 of 9 calls failed, but fewer than 10 calls
    clock.advance(120)  # the window is 60 s: those failures are forgotten
    for _ in range(5):
        cb.record_success(CRED, MODEL, 100)
    fail(cb, 4)
    assert cb.state(CRED, MODEL) == "closed"  # 4 of 9 calls in the window


# ----------------------------------------------------------------------------------------------- what counts

@pytest.mark.parametrize("kind", [ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_TOO_LONG, ErrorKind.CONTENT_FILTERED,
                                  ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION, ErrorKind.NOT_FOUND])
def test_permanent_errors_do_not_count_against_the_provider(cb, clock, kind):
    fail(cb, 20, ProviderError(kind, "about the request", status=400), clock=clock)
    assert cb.state(CRED, MODEL) == "closed"
    assert cb.allow(CRED, MODEL).allowed


@pytest.mark.parametrize("kind", [ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.SERVER_ERROR,
                                  ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.INVALID_RESPONSE])
def test_retryable_errors_and_timeouts_count(cb, clock, kind):
    fail(cb, 5, ProviderError(kind, "provider trouble"), clock=clock)
    assert cb.state(CRED, MODEL) == "open"


def test_permanent_errors_do_not_break_a_failure_streak_either(cb, clock):
    fail(cb, 3, clock=clock)
    fail(cb, 3, ProviderError(ErrorKind.BAD_REQUEST, "bad"), clock=clock)
    fail(cb, 2, clock=clock)
    assert cb.state(CRED, MODEL) == "open"


# ----------------------------------------------------------------------------------------------- retry-after

def test_retry_after_is_a_cool_down_for_that_credential_and_model(cb, clock):
    cb.record_failure(CRED, MODEL, ProviderError(ErrorKind.RATE_LIMITED, "slow down", status=429, retry_after=7), 20)
    admission = cb.allow(CRED, MODEL)
    assert not admission.allowed and admission.state == "cooling_down"
    assert admission.retry_in == pytest.approx(7)
    assert cb.allow(CRED, MODEL + 1).allowed and cb.allow(CRED + 1, MODEL).allowed  # only that pair
    clock.advance(6.9)
    assert not cb.allow(CRED, MODEL).allowed
    clock.advance(0.2)
    assert cb.allow(CRED, MODEL) == Admission(True, "closed", "circuit closed", None)


def test_retry_after_is_capped(cb, clock, settings):
    settings.BREAKER_MAX_COOLDOWN_SECONDS = 60
    cb.record_failure(CRED, MODEL, ProviderError(ErrorKind.RATE_LIMITED, "go away", retry_after=86_400), 20)
    assert cb.allow(CRED, MODEL).retry_in == pytest.approx(60)
    clock.advance(60.1)
    assert cb.allow(CRED, MODEL).allowed


def test_an_out_of_quota_key_rests_instead_of_being_called_first_every_time(cb, clock, settings):
    settings.BREAKER_QUOTA_COOLDOWN_SECONDS = 120
    cb.record_failure(CRED, MODEL, ProviderError(ErrorKind.INSUFFICIENT_QUOTA, "You exceeded your current quota", status=429), 20)
    admission = cb.allow(CRED, MODEL)
    assert not admission.allowed and admission.state == "cooling_down" and admission.retry_in == pytest.approx(120)
    clock.advance(120.1)
    assert cb.allow(CRED, MODEL) == Admission(True, "closed", "circuit closed", None)  # not counted toward opening it


def test_an_open_circuit_reports_the_longer_of_open_and_cool_down(cb, clock):
    fail(cb, 4)
    cb.record_failure(CRED, MODEL, ProviderError(ErrorKind.RATE_LIMITED, "x", retry_after=100), 20)
    admission = cb.allow(CRED, MODEL)
    assert admission.state == "open" and admission.retry_in == pytest.approx(100)


# ----------------------------------------------------------------------------------------------- half-open

def open_then_wait(cb, clock):
    fail(cb, 5)
    clock.advance(30.01)


def test_after_the_cool_down_exactly_one_probe_is_admitted(cb, clock):
    open_then_wait(cb, clock)
    assert cb.state(CRED, MODEL) == "half_open"
    first = cb.allow(CRED, MODEL)
    assert first.allowed and first.probe and first.state == "half_open"
    for _ in range(5):
        other = cb.allow(CRED, MODEL)
        assert not other.allowed and other.state == "half_open" and not other.probe


def test_a_successful_probe_closes_the_circuit(cb, clock):
    open_then_wait(cb, clock)
    assert cb.allow(CRED, MODEL).probe
    cb.record_success(CRED, MODEL, 80)
    assert cb.state(CRED, MODEL) == "closed"
    fail(cb, 4)  # the counters were reset
    assert cb.allow(CRED, MODEL).allowed


def test_a_failed_probe_reopens_for_another_cool_down(cb, clock):
    open_then_wait(cb, clock)
    assert cb.allow(CRED, MODEL).probe
    fail(cb, 1)
    admission = cb.allow(CRED, MODEL)
    assert admission.state == "open" and admission.retry_in == pytest.approx(30)
    clock.advance(30.01)
    assert cb.allow(CRED, MODEL).probe


def test_a_lost_probe_lapses(cb, clock, settings):
    settings.BREAKER_PROBE_LEASE_SECONDS = 10
    open_then_wait(cb, clock)
    assert cb.allow(CRED, MODEL).probe  # ... and the prober dies
    clock.advance(5)
    assert not cb.allow(CRED, MODEL).allowed
    clock.advance(5.01)
    assert cb.allow(CRED, MODEL).probe


def test_a_neutral_probe_outcome_frees_the_slot(cb, clock):
    open_then_wait(cb, clock)
    assert cb.allow(CRED, MODEL).probe
    cb.record_failure(CRED, MODEL, ProviderError(ErrorKind.CONTEXT_TOO_LONG, "too long"), 10)
    assert cb.allow(CRED, MODEL).probe


def test_the_open_duration_is_a_setting(cb, clock, settings):
    settings.BREAKER_OPEN_SECONDS = 2
    settings.BREAKER_FAILURE_THRESHOLD = 2
    fail(cb, 2)
    assert not cb.allow(CRED, MODEL).allowed
    clock.advance(2.01)
    assert cb.allow(CRED, MODEL).probe


# ----------------------------------------------------------------------------------------------- staff, drills, dashboard

def test_force_open_and_reset(cb, clock):
    cb.force_open(CRED, MODEL, 45)
    admission = cb.allow(CRED, MODEL)
    assert admission.state == "open" and admission.retry_in == pytest.approx(45)
    cb.reset(CRED, MODEL)
    assert cb.allow(CRED, MODEL).allowed and cb.state(CRED, MODEL) == "closed"


def test_force_open_for_zero_seconds_is_half_open(cb):
    cb.force_open(CRED, MODEL, 0)
    assert cb.allow(CRED, MODEL).probe


def test_open_circuits_lists_what_is_not_closed(cb, clock):
    fail(cb, 5)
    cb.force_open(1, 2, 10)
    cb.record_failure(3, 4, ProviderError(ErrorKind.RATE_LIMITED, "x", retry_after=9), 1)
    cb.record_success(5, 6, 100)  # closed: not listed
    listed = {(c["credential_id"], c["model_id"]): c for c in cb.open_circuits()}
    assert set(listed) == {(CRED, MODEL), (1, 2), (3, 4)}
    assert listed[(1, 2)]["state"] == "open" and listed[(1, 2)]["retry_in"] == pytest.approx(10)
    assert listed[(3, 4)]["state"] == "cooling_down"
    assert listed[(CRED, MODEL)]["consecutive_failures"] == 5
    clock.advance(30.01)
    assert {c["state"] for c in cb.open_circuits() if c["credential_id"] == CRED} == {"half_open"}


def test_latency_is_an_ewma_of_successes(cb, settings):
    settings.BREAKER_LATENCY_ALPHA = 0.5
    assert cb.latency_ms(CRED, MODEL) is None
    cb.record_success(CRED, MODEL, 100)
    assert cb.latency_ms(CRED, MODEL) == pytest.approx(100)
    cb.record_success(CRED, MODEL, 200)
    assert cb.latency_ms(CRED, MODEL) == pytest.approx(150)
    fail(cb, 1)  # failures do not move it
    assert cb.latency_ms(CRED, MODEL) == pytest.approx(150)


def test_an_unreachable_state_fails_open():
    cb = CircuitBreaker(state=RedisState("redis://127.0.0.1:1/0", prefix="nowhere:"))
    admission = cb.allow(CRED, MODEL)
    assert admission.allowed and admission.state == "unknown"
    assert cb.record_failure(CRED, MODEL, overloaded(), 10) is None
    assert cb.latency_ms(CRED, MODEL) is None


def test_the_module_breaker_uses_the_configured_shared_state(settings):
    settings.SHARED_STATE_PREFIX = f"test:{uuid.uuid4().hex[:10]}:"
    try:
        cb = breaker()
        assert cb is breaker()
        cb.force_open(CRED, MODEL, 30)
        assert shared_state().keys("cb:*") == [f"cb:{CRED}:{MODEL}"]
        expected = RedisState if settings.REDIS_URL else MemoryState
        assert isinstance(shared_state(), expected)
    finally:
        shared_state().flush()


# ----------------------------------------------------------------------------------------------- across processes

CHILD = r"""
import json, os, sys, time
from django.conf import settings  # DJANGO_SETTINGS_MODULE is set; the breaker needs no app registry
settings.SHARED_STATE_PREFIX = os.environ["TEST_STATE_PREFIX"]
from providers.breaker import CircuitBreaker
from providers.errors import ErrorKind, ProviderError

offset = float(os.environ.get("CLOCK_OFFSET", "0"))
cb = CircuitBreaker(clock=lambda: time.time() + offset)
command, cred, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start_at = float(os.environ.get("START_AT", "0"))
while time.time() < start_at:  # line up concurrent callers
    time.sleep(0.001)
if command == "fail":
    for _ in range(int(sys.argv[4])):
        cb.record_failure(cred, model, ProviderError(ErrorKind.OVERLOADED, "Overloaded", status=529), 40)
elif command == "succeed":
    cb.record_success(cred, model, 40)
admission = cb.allow(cred, model) if command == "allow" else None
print(json.dumps({
    "pid": os.getpid(), "state": cb.state(cred, model),
    "allowed": admission.allowed if admission else None, "probe": admission.probe if admission else None,
}))
"""


def spawn(prefix: str, *args, clock_offset: float = 0.0, start_at: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "agencyhub.settings", "REDIS_URL": settings.REDIS_URL,
           "TEST_STATE_PREFIX": prefix, "CLOCK_OFFSET": str(clock_offset), "START_AT": str(start_at),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@needs_redis
def test_the_breaker_is_shared_across_processes():
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    state = RedisState(settings.REDIS_URL, prefix)
    try:
        # Process A: five overloaded answers open the circuit.
        assert result(spawn(prefix, "fail", CRED, MODEL, 5))["state"] == "open"
        # Process B (another interpreter): skips the candidate without calling it.
        seen = result(spawn(prefix, "allow", CRED, MODEL))
        assert seen["allowed"] is False and seen["state"] == "open"
        # After the cool-down (their clocks 31 s ahead), six processes race for the half-open probe: one wins.
        start = time.time() + 3.0
        racers = [spawn(prefix, "allow", CRED, MODEL, clock_offset=31, start_at=start) for _ in range(6)]
        outcomes = [result(p) for p in racers]
        assert sum(o["allowed"] for o in outcomes) == 1
        assert sum(bool(o["probe"]) for o in outcomes) == 1
        assert all(o["state"] == "half_open" for o in outcomes)
        # The winner's probe succeeds (in yet another process): everyone sees the circuit closed.
        assert result(spawn(prefix, "succeed", CRED, MODEL, clock_offset=31))["state"] == "closed"
        after = result(spawn(prefix, "allow", CRED, MODEL, clock_offset=32))
        assert after["allowed"] is True and after["state"] == "closed"
        # And in this process too.
        assert CircuitBreaker(state=state, clock=lambda: time.time() + 32).allow(CRED, MODEL).allowed
    finally:
        state.flush()

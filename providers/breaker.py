"""Circuit breaker per (credential, model), shared by every process through `providers.state.shared_state()`.

States (see docs/failover.md):
- closed: calls go through. Counted failures open it: `BREAKER_FAILURE_THRESHOLD` in a row, or a failure rate
  of at least `BREAKER_FAILURE_RATE` over at least `BREAKER_MIN_CALLS` calls within `BREAKER_WINDOW_SECONDS`.
- open: skipped without calling the provider, for `BREAKER_OPEN_SECONDS`.
- half_open: after the cool-down, exactly one caller (any process) is admitted as the probe; the others are still
  skipped. A successful probe closes the circuit (counters reset); a failed probe re-opens it for another cool-down.
  If the prober dies, its claim lapses after `BREAKER_PROBE_LEASE_SECONDS`.
- cooling_down: a retry-after from the provider (e.g. a 429 with `retry-after: 7`) is honoured as a cool-down for
  that credential and model, capped at `BREAKER_MAX_COOLDOWN_SECONDS`, whatever the circuit's state.

Only retryable errors (rate limited, overloaded, 5xx, timeout, connection, invalid response) count against the
provider. Errors about the request (bad request, context too long, content filtered) and credential errors
(401/403: the credential is disabled instead) are neutral.

If the shared state cannot be reached, `allow()` fails open (admits the call) and recording is skipped: an
outage of Redis must not take every provider down with it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from providers.errors import ErrorKind, ProviderError
from providers.state import FAILURE, NEUTRAL, SUCCESS, UNAVAILABLE, BreakerPolicy, SharedState, breaker_view, shared_state

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN, COOLING_DOWN = "closed", "open", "half_open", "cooling_down"

REASONS = {
    "": "circuit closed",
    "probe": "half-open probe",
    "open": "circuit open",
    "cooldown": "cooling down (provider asked to retry later)",
    "probe_in_flight": "half-open: another caller is probing",
}

KEY_PREFIX = "cb:"
_KEY_RE = re.compile(r"^cb:(\d+):(\d+)$")


@dataclass(frozen=True)
class Admission:
    allowed: bool
    state: str  # closed | open | half_open | cooling_down | unknown (shared state unreachable)
    reason: str
    retry_in: float | None = None  # seconds until the candidate may be tried again, when skipped
    probe: bool = False  # this caller holds the half-open probe slot


def counts_as_failure(error: ProviderError) -> bool:
    """Only failures that say something about the provider's health count against its circuit."""
    return error.retryable


def _setting(name: str, default):
    return getattr(settings, name, default)


class CircuitBreaker:
    def __init__(self, state: SharedState | None = None, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self.clock = clock

    # ---------------------------------------------------------------------------------------------- config
    @property
    def state_backend(self) -> SharedState:
        return self._state if self._state is not None else shared_state()

    @staticmethod
    def key(credential_id: int, model_id: int) -> str:
        return f"{KEY_PREFIX}{int(credential_id)}:{int(model_id)}"

    @staticmethod
    def policy() -> BreakerPolicy:
        return BreakerPolicy(
            failure_threshold=int(_setting("BREAKER_FAILURE_THRESHOLD", 5)),
            window_seconds=float(_setting("BREAKER_WINDOW_SECONDS", 60)),
            min_calls=int(_setting("BREAKER_MIN_CALLS", 10)),
            failure_rate=float(_setting("BREAKER_FAILURE_RATE", 0.5)),
            open_seconds=float(_setting("BREAKER_OPEN_SECONDS", 30)),
            latency_alpha=float(_setting("BREAKER_LATENCY_ALPHA", 0.3)),
            key_ttl_seconds=int(_setting("BREAKER_STATE_TTL_SECONDS", 86_400)),
        )

    @staticmethod
    def probe_lease() -> float:
        default = float(getattr(settings, "PROVIDER_TIMEOUT_SECONDS", 60)) + 5
        return float(_setting("BREAKER_PROBE_LEASE_SECONDS", default))

    @staticmethod
    def max_cooldown() -> float:
        return float(_setting("BREAKER_MAX_COOLDOWN_SECONDS", 300))

    # ---------------------------------------------------------------------------------------------- admission
    def allow(self, credential_id: int, model_id: int) -> Admission:
        """May this candidate be called now? One round trip (a Lua script) in Redis.

        In half-open state, a True answer means this caller holds the probe slot: it must report the outcome
        (record_success / record_failure) or the slot lapses after the probe lease."""
        try:
            view = self.state_backend.breaker_admit(self.key(credential_id, model_id), self.clock(), self.probe_lease())
        except UNAVAILABLE as exc:
            log.warning("breaker state unavailable, admitting the call: %s", exc, extra={"throttle": True})
            return Admission(True, "unknown", "breaker state unavailable")
        return Admission(view.allowed, view.state, REASONS.get(view.code, view.code),
                         None if view.allowed else view.retry_in, probe=view.code == "probe")

    # ---------------------------------------------------------------------------------------------- outcomes
    def _record(self, credential_id: int, model_id: int, outcome: str, latency_ms: float, retry_after: float) -> str | None:
        try:
            before, after = self.state_backend.breaker_record(
                self.key(credential_id, model_id), self.clock(), outcome, latency_ms, retry_after, self.policy())
        except UNAVAILABLE as exc:
            log.warning("breaker state unavailable, outcome not recorded: %s", exc, extra={"throttle": True})
            return None
        if before != after:
            log.warning("circuit credential=%s model=%s: %s -> %s", credential_id, model_id, before, after)
        return after

    def record_success(self, credential_id: int, model_id: int, latency_ms: float) -> str | None:
        """Returns the circuit state after the outcome (None if the shared state was unreachable)."""
        return self._record(credential_id, model_id, SUCCESS, max(0.0, float(latency_ms or 0)), 0.0)

    def record_failure(self, credential_id: int, model_id: int, error: ProviderError, latency_ms: float = 0) -> str | None:
        wait = error.retry_after
        if not wait and error.kind == ErrorKind.INSUFFICIENT_QUOTA:
            # Out of credits or quota does not pass in seconds: rest the key instead of calling it first every time.
            wait = float(_setting("BREAKER_QUOTA_COOLDOWN_SECONDS", 300))
        retry_after = min(float(wait or 0), self.max_cooldown())
        outcome = FAILURE if counts_as_failure(error) else NEUTRAL
        return self._record(credential_id, model_id, outcome, max(0.0, float(latency_ms or 0)), max(0.0, retry_after))

    # ---------------------------------------------------------------------------------------------- reading
    def state(self, credential_id: int, model_id: int) -> str:
        h = self.state_backend.read_hashes([self.key(credential_id, model_id)])[0]
        return breaker_view(h, self.clock()).state

    def latency_ms(self, credential_id: int, model_id: int) -> float | None:
        """EWMA of recent successful latencies (ms), or None when nothing succeeded recently."""
        try:
            value = self.state_backend.hget(self.key(credential_id, model_id), "lat")
        except UNAVAILABLE:
            return None
        return float(value) if value else None

    def open_circuits(self) -> list[dict]:
        """Every (credential, model) not plainly closed: open, half-open or cooling down. For the dashboard."""
        state = self.state_backend
        keys = sorted(k for k in state.keys(KEY_PREFIX + "*") if _KEY_RE.match(k))
        now = self.clock()
        out = []
        for key, h in zip(keys, state.read_hashes(keys), strict=True):
            view = breaker_view(h, now)
            if view.state == CLOSED:
                continue
            credential_id, model_id = (int(g) for g in _KEY_RE.match(key).groups())
            out.append({
                "credential_id": credential_id, "model_id": model_id, "state": view.state,
                "reason": REASONS.get(view.code, view.code),
                "retry_in": round(view.retry_in, 3) if view.retry_in is not None else None,
                "consecutive_failures": int(float(h.get("cf") or 0)),
            })
        return out

    # ---------------------------------------------------------------------------------------------- staff / drills
    def force_open(self, credential_id: int, model_id: int, seconds: float) -> None:
        """Open the circuit for `seconds` (then half-open as usual)."""
        self.state_backend.hset(self.key(credential_id, model_id),
                                {"st": OPEN, "ou": f"{self.clock() + float(seconds):.6f}", "pu": "0"},
                                ttl=max(float(seconds) + 60, self.policy().key_ttl_seconds))

    def reset(self, credential_id: int, model_id: int) -> None:
        """Forget everything about this circuit: closed, no cool-down, no counters, no latency."""
        self.state_backend.delete(self.key(credential_id, model_id))


_breaker: CircuitBreaker | None = None


def breaker() -> CircuitBreaker:
    """The process-wide breaker over `shared_state()` (settings are read on each call)."""
    global _breaker
    if _breaker is None:
        _breaker = CircuitBreaker()
    return _breaker

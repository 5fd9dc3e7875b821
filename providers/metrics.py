"""Cheap Prometheus counters in the shared state, written at the two choke points every call passes through:
`billing.services.usage_record_count` (tokens, cost, latency of billed calls) and `providers.health.attempt_record`
(attempts and errors by outcome). `/metrics` (agencyhub.metrics) reads and renders them at scrape time.

Increments are added up in this process and written by a background thread every `FLUSH_SECONDS`, in one
pipelined round trip of HINCRBYs, so a chat call makes no Redis call for its counters; reading (`metrics_read`)
writes this process's pending counts first. A process that dies without exiting loses at most that second of
counts (they are counters for a dashboard, not the ledger; the ledger is written with the reply). Counters are
never worth a failed call: if the shared state cannot be reached the counts are logged and dropped.

Layout: hash `metrics:usage`, field `<provider>|<model>|<name>`; hash `metrics:attempts`, field
`<provider>|<model>|<outcome>`. Money is counted in 1e-8 USD (integers, no float drift), latency in ms.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal

from providers.state import UNAVAILABLE, shared_state

log = logging.getLogger(__name__)

USAGE_KEY = "metrics:usage"
ATTEMPTS_KEY = "metrics:attempts"
SEP = "|"
COST_UNIT = Decimal("0.00000001")
TOKEN_KINDS = ("input", "output", "cached_input", "cache_write", "reasoning")
# Histogram buckets (upper bounds, ms) for call latency; the last bucket is +Inf.
LATENCY_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)


def field(provider: str, model: str, name: str) -> str:
    return f"{provider}{SEP}{model}{SEP}{name}"


def split_field(value: str) -> tuple[str, str, str]:
    provider, rest = value.split(SEP, 1)
    model, name = rest.rsplit(SEP, 1)
    return provider, model, name


def latency_bucket(latency_ms: int) -> str:
    """The name of the (non-cumulative) bucket a latency falls in: `le_<ms>` or `le_inf`."""
    index = bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)
    return f"le_{LATENCY_BUCKETS_MS[index]}" if index < len(LATENCY_BUCKETS_MS) else "le_inf"


FLUSH_SECONDS = 1.0


class _Pending:
    """This process's counts not yet written, and the thread that writes them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, Counter] = {}
        self.flusher_pid: int | None = None

    def add(self, increments: Mapping[str, Mapping[str, int]]) -> None:
        with self.lock:
            for key, fields in increments.items():
                self.counts.setdefault(key, Counter()).update(fields)
            if self.flusher_pid != os.getpid():  # first count in this process (or in a forked child)
                self.flusher_pid = os.getpid()
                threading.Thread(target=self._run, name="metrics-flusher", daemon=True).start()

    def take(self) -> dict[str, Counter]:
        with self.lock:
            counts, self.counts = self.counts, {}
        return counts

    def _run(self) -> None:
        pid = os.getpid()
        while self.flusher_pid == pid:
            time.sleep(FLUSH_SECONDS)
            metrics_flush()


_pending = _Pending()
_flushing = threading.Lock()
"""Held while counts are taken and written: a flush (a reader's, say) that starts while the flusher thread is
writing waits for that write, instead of finding nothing pending and reading the shared state without it."""


def metrics_flush() -> None:
    """Write this process's pending counts now (the flusher does it every FLUSH_SECONDS, and at exit)."""
    with _flushing:
        counts = _pending.take()
        if not counts:
            return
        try:
            shared_state().hincr_many({key: dict(fields) for key, fields in counts.items()})
        except UNAVAILABLE as exc:
            log.warning("metrics not recorded (shared state unavailable): %s", exc, extra={"throttle": True})


atexit.register(metrics_flush)


def metrics_pending_drop() -> None:
    """Forget this process's pending counts (tests: counts of one test must not reach the next one's state). Waits
    for a write in progress, which would otherwise land after the caller reset the shared state."""
    with _flushing:
        _pending.take()


def metrics_usage_record(*, provider: str, model: str, tokens: Mapping[str, int], cost: Decimal, latency_ms: int) -> None:
    """Count one billed call."""
    latency_ms = max(0, int(latency_ms or 0))
    fields = {
        field(provider, model, "calls"): 1,
        field(provider, model, "cost_e8"): int((cost or Decimal(0)) / COST_UNIT),
        field(provider, model, "latency_ms_sum"): latency_ms,
        field(provider, model, latency_bucket(latency_ms)): 1,
    }
    for kind in TOKEN_KINDS:
        if tokens.get(kind):
            fields[field(provider, model, f"tokens_{kind}")] = int(tokens[kind])
    _pending.add({USAGE_KEY: fields})


def metrics_attempt_record(*, provider: str, model: str, outcome: str) -> None:
    """Count one attempt (a routed call or a probe) by its outcome: "ok" or the error kind."""
    _pending.add({ATTEMPTS_KEY: {field(provider, model, outcome or "unknown"): 1}})


def metrics_read() -> tuple[dict[str, str], dict[str, str]]:
    """(usage fields, attempt fields), after writing this process's pending counts. Raises what the shared state
    raises when unreachable."""
    metrics_flush()
    usage, attempts = shared_state().read_hashes([USAGE_KEY, ATTEMPTS_KEY])
    return usage, attempts

"""Cheap Prometheus counters in the shared state, written at the two choke points every call passes through:
`billing.services.usage_record_append` (tokens, cost, latency of billed calls) and `providers.health.attempt_record`
(attempts and errors by outcome). `/metrics` (agencyhub.metrics) reads and renders them at scrape time.

Each write is one pipelined round trip of HINCRBYs into one hash. Counters are never worth a failed call: if the
shared state cannot be reached the increment is logged and dropped.

Layout: hash `metrics:usage`, field `<provider>|<model>|<name>`; hash `metrics:attempts`, field
`<provider>|<model>|<outcome>`. Money is counted in 1e-8 USD (integers, no float drift), latency in ms.
"""

from __future__ import annotations

import bisect
import logging
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


def _write(increments: Mapping[str, Mapping[str, int]]) -> None:
    try:
        shared_state().hincr_many(increments)
    except UNAVAILABLE as exc:
        log.warning("metrics not recorded (shared state unavailable): %s", exc)


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
    _write({USAGE_KEY: fields})


def metrics_attempt_record(*, provider: str, model: str, outcome: str) -> None:
    """Count one attempt (a routed call or a probe) by its outcome: "ok" or the error kind."""
    _write({ATTEMPTS_KEY: {field(provider, model, outcome or "unknown"): 1}})


def metrics_read() -> tuple[dict[str, str], dict[str, str]]:
    """(usage fields, attempt fields), one round trip. Raises what the shared state raises when unreachable."""
    usage, attempts = shared_state().read_hashes([USAGE_KEY, ATTEMPTS_KEY])
    return usage, attempts

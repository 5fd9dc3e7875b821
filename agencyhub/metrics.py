"""`GET /metrics`: Prometheus text exposition (format 0.0.4), rendered at scrape time from

- the counters that `usage_record_count` and `attempt_record` keep in the shared state (providers.metrics):
  billed calls, tokens, cost, latency histogram, attempts and errors per provider and model;
- the circuit breakers that are not closed (providers.breaker);
- today's budget use of every active tenant with a daily budget (billing.budget), one MGET for all of them.

Open by default; with METRICS_TOKEN set, scrapers send `Authorization: Bearer <token>`. Names: docs/admin.md.
"""

from __future__ import annotations

import hmac
import logging
from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from billing.budget import budget_usage_many
from providers.health import circuits_not_closed
from providers.metrics import COST_UNIT, LATENCY_BUCKETS_MS, TOKEN_KINDS, metrics_read, split_field
from providers.state import UNAVAILABLE
from tenants.models import Tenant

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, object]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[str, dict, object]]) -> None:
        """One metric family: HELP, TYPE, then (suffix, labels, value) samples. Written even when empty."""
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            self.lines.append(f"{name}{suffix}{_labels(labels)} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _seconds(ms: int) -> str:
    return format(Decimal(ms) / 1000, "f")


def _usage_families(out: Exposition, usage: dict[str, str]) -> None:
    series: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for key, value in usage.items():
        provider, model, name = split_field(key)
        series[(provider, model)][name] = int(value)
    ordered = sorted(series.items())

    out.family("agencyhub_llm_calls_total", "counter", "Billed provider calls (ledger rows).", [
        ("", {"provider": p, "model": m}, c.get("calls", 0)) for (p, m), c in ordered])
    out.family("agencyhub_llm_tokens_total", "counter", "Billed tokens by kind.", [
        ("", {"provider": p, "model": m, "kind": kind}, c.get(f"tokens_{kind}", 0))
        for (p, m), c in ordered for kind in TOKEN_KINDS])
    out.family("agencyhub_llm_cost_usd_total", "counter", "Provider cost at list price (USD).", [
        ("", {"provider": p, "model": m}, format(c.get("cost_e8", 0) * COST_UNIT, "f")) for (p, m), c in ordered])
    samples: list[tuple[str, dict, object]] = []
    for (p, m), c in ordered:
        cumulative = 0
        for bound in LATENCY_BUCKETS_MS:
            cumulative += c.get(f"le_{bound}", 0)
            samples.append(("_bucket", {"provider": p, "model": m, "le": _seconds(bound)}, cumulative))
        cumulative += c.get("le_inf", 0)
        samples.append(("_bucket", {"provider": p, "model": m, "le": "+Inf"}, cumulative))
        samples.append(("_sum", {"provider": p, "model": m}, _seconds(c.get("latency_ms_sum", 0))))
        samples.append(("_count", {"provider": p, "model": m}, cumulative))
    out.family("agencyhub_llm_latency_seconds", "histogram", "Latency of billed calls.", samples)


def _attempt_families(out: Exposition, attempts: dict[str, str]) -> None:
    rows = sorted((split_field(key), int(value)) for key, value in attempts.items())
    out.family("agencyhub_provider_attempts_total", "counter", "Provider calls tried (routed and probes) by outcome.", [
        ("", {"provider": p, "model": m, "outcome": o}, n) for (p, m, o), n in rows])
    out.family("agencyhub_provider_errors_total", "counter", "Failed provider calls by error kind.", [
        ("", {"provider": p, "model": m, "kind": o}, n) for (p, m, o), n in rows if o != "ok"])


def _breaker_family(out: Exposition) -> None:
    samples = [
        ("", {"provider": c["provider"], "model": c["model"], "credential": c["credential"], "state": c["state"]}, 1)
        for c in circuits_not_closed()
    ]
    out.family("agencyhub_circuit_not_closed", "gauge",
               "1 for each (credential, model) circuit that is open, half-open or cooling down.", samples)


def _budget_families(out: Exposition) -> None:
    tenants = list(Tenant.objects.filter(is_active=True, daily_token_budget__isnull=False)
                   .only("pk", "slug", "timezone", "daily_token_budget").order_by("slug"))
    usage = budget_usage_many(tenants)
    out.family("agencyhub_tenant_budget_tokens", "gauge", "Daily token budget.", [
        ("", {"tenant": t.slug}, t.daily_token_budget) for t in tenants])
    out.family("agencyhub_tenant_budget_used_tokens", "gauge", "Tokens used today (settled), tenant's time zone.", [
        ("", {"tenant": t.slug}, usage[t.pk][0]) for t in tenants])
    out.family("agencyhub_tenant_budget_reserved_tokens", "gauge", "Tokens reserved by calls in flight.", [
        ("", {"tenant": t.slug}, usage[t.pk][1]) for t in tenants])
    out.family("agencyhub_tenant_budget_used_ratio", "gauge", "Share of today's budget used (settled / budget).", [
        ("", {"tenant": t.slug}, round(usage[t.pk][0] / t.daily_token_budget, 6) if t.daily_token_budget else 0)
        for t in tenants])


def metrics_render() -> str:
    out = Exposition()
    try:
        usage, attempts = metrics_read()
        _usage_families(out, usage)
        _attempt_families(out, attempts)
        _breaker_family(out)
        _budget_families(out)
        up = 1
    except UNAVAILABLE as exc:  # the database figures alone would mislead: say the state is down instead
        log.warning("/metrics: shared state unavailable: %s", exc)
        up = 0
    out.family("agencyhub_shared_state_up", "gauge", "1 when the shared state (Redis) answered this scrape.", [("", {}, up)])
    return out.text()


def _authorized(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE)

"""What a call's outcome means: for its credential (last error, disabling a rejected key and alerting staff), for the
circuit breaker (providers.breaker), and for the health figures (AttemptLog rows, `health_summary`).

The executor (routing) and the health probes (providers.tasks) call `attempt_record` once per attempt.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from providers.breaker import breaker
from providers.errors import ErrorKind, ProviderError
from providers.metrics import metrics_attempt_record
from providers.models import AttemptLog, Credential, LLMModel
from tenants.config_cache import config_changed

log = logging.getLogger(__name__)

OK = "ok"
# Errors about the request itself: they say nothing about whether the provider is up.
REQUEST_ERRORS = frozenset({ErrorKind.BAD_REQUEST.value, ErrorKind.CONTEXT_TOO_LONG.value, ErrorKind.CONTENT_FILTERED.value})


# --------------------------------------------------------------------------------------------- credentials

# last_used_at is a hint for staff (like an API key's): written at most this often per credential, so a busy
# credential does not cost a committed UPDATE per call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def credential_record_success(*, credential: Credential) -> None:
    now = timezone.now()
    if credential.last_used_at is None or now - credential.last_used_at > LAST_USED_RESOLUTION:
        Credential.objects.filter(pk=credential.pk).update(last_used_at=now)
        credential.last_used_at = now


def credential_record_failure(*, credential: Credential, error: ProviderError) -> bool:
    """Keep the last error; a rejected key (401/403) disables the credential so no call uses it again.

    Returns True when this call is the one that disabled it (a conditional update: of many processes seeing the
    401 at once, exactly one wins); that one flags the credential for staff and sends the alert."""
    now = timezone.now()
    message = f"{error.kind.value}: {error.message}"[:2000]
    updates: dict = {"last_error": message, "last_error_at": now}
    disabled = False
    if error.credential_rejected:
        status = f"HTTP {error.status}" if error.status else error.kind.value
        reason = f"The provider rejected this key ({status}) on {now:%Y-%m-%d %H:%M:%S} UTC: {error.message}"[:2000]
        disabled = bool(Credential.objects.filter(pk=credential.pk, is_enabled=True).update(
            **updates, is_enabled=False, needs_attention=True, disabled_reason=reason, disabled_at=now,
        ))
        if disabled:
            log.warning("credential %s disabled: the provider rejected it (%s)", credential.pk, error.kind.value)
            credential.is_enabled, credential.needs_attention, credential.disabled_reason = False, True, reason
            config_changed()  # a queryset update sends no signal: tell the configuration cache (usable credentials)
            # The alert is a network call: after the surrounding transaction (if any) commits, never inside it.
            pk = credential.pk
            transaction.on_commit(lambda: credential_alert_disabled(credential_id=pk), robust=True)
            return True
    Credential.objects.filter(pk=credential.pk).update(**updates)
    return disabled


def staff_alert_recipients() -> list[str]:
    explicit = list(getattr(settings, "STAFF_ALERT_EMAILS", []) or [])
    return explicit or [email for _, email in getattr(settings, "ADMINS", [])]


def credential_alert_disabled(*, credential_id: int) -> bool:
    """Email staff that a credential was disabled. Never raises: an alert failure is logged, not propagated."""
    credential = Credential.objects.select_related("provider", "tenant").filter(pk=credential_id).first()
    if credential is None:
        return False
    recipients = staff_alert_recipients()
    if not recipients:
        log.error("credential %s was disabled but no STAFF_ALERT_EMAILS / ADMINS are configured to alert", credential_id)
        return False
    owner = f"client {credential.tenant.slug}" if credential.tenant_id else "the agency"
    subject = f"[AgencyHub] Provider credential disabled: {credential.provider.kind} / {credential.label}"
    body = (
        f"The {credential.provider.kind} credential \"{credential.label}\" (key ending {credential.key_last4}, owned by {owner}) "
        f"was disabled automatically.\n\nWhy: {credential.disabled_reason}\n\n"
        "Calls no longer use it; routing fails over to the other credentials in each chain.\n"
        f"Fix the key, then re-enable it and clear \"needs attention\" in the admin: /admin/providers/credential/{credential.pk}/change/\n"
    )
    sender = getattr(settings, "SERVER_EMAIL", None) or settings.DEFAULT_FROM_EMAIL
    try:
        sent = send_mail(subject, body, sender, recipients, fail_silently=True)
    except Exception:  # noqa: BLE001 - fail_silently does not cover every backend error; an alert never breaks a call
        log.exception("could not send the alert for disabled credential %s", credential_id)
        return False
    if not sent:
        log.error("the alert for disabled credential %s was not sent", credential_id)
    return bool(sent)


# --------------------------------------------------------------------------------------------- attempts

def attempt_record(
    *,
    credential: Credential,
    model: LLMModel,
    outcome: str,
    latency_ms: int,
    error: ProviderError | None = None,
    tenant_id: int | None = None,
    probe: bool = False,
    save: bool = True,
) -> AttemptLog:
    """Record one attempt: feed the circuit breaker, count it for /metrics, append an AttemptLog row, update the
    credential (and on a 401/403 disable it, flag it for staff and alert them once).

    `save=False` returns the row unsaved, for the caller to write with `attempt_logs_write` in a transaction it
    commits anyway (the chat engine writes a successful attempt with the reply: one commit fewer)."""
    latency_ms = max(0, int(latency_ms or 0))
    cb = breaker()
    if outcome == OK:
        cb.record_success(credential.pk, model.pk, latency_ms)
        if not probe:  # a probe is not a use of the key
            credential_record_success(credential=credential)
    else:
        if error is None:
            try:
                kind = ErrorKind(outcome)
            except ValueError:
                kind = ErrorKind.INVALID_RESPONSE
            error = ProviderError(kind, outcome)
        cb.record_failure(credential.pk, model.pk, error, latency_ms)
        credential_record_failure(credential=credential, error=error)
    metrics_attempt_record(provider=model.provider.kind, model=model.model_id, outcome=outcome)
    row = AttemptLog(
        provider_kind=model.provider.kind,
        model=model,
        credential=credential,
        tenant_id=tenant_id,
        outcome=outcome,
        error_kind="" if outcome == OK else (error.kind.value if error is not None else outcome),
        status_code=None if error is None else error.status,
        latency_ms=min(latency_ms, 2**31 - 1),
        is_probe=probe,
    )
    if save:
        row.save(force_insert=True)
    return row


def attempt_logs_write(rows: list[AttemptLog]) -> None:
    """Write attempt rows recorded with save=False."""
    if rows:
        AttemptLog.objects.bulk_create(rows)


# --------------------------------------------------------------------------------------------- circuits

def circuits_not_closed() -> list[dict]:
    """`breaker().open_circuits()` with names for people: provider, credential label, owner, model id. Two queries
    (credentials, models) however many circuits. For the admin, the dashboard and /metrics."""
    circuits = breaker().open_circuits()
    if not circuits:
        return []
    credentials = {
        c.pk: c for c in Credential.objects.filter(pk__in={c["credential_id"] for c in circuits}).select_related("provider", "tenant")
    }
    models = {m.pk: m for m in LLMModel.objects.filter(pk__in={c["model_id"] for c in circuits}).select_related("provider")}
    out = []
    for circuit in circuits:
        credential, model = credentials.get(circuit["credential_id"]), models.get(circuit["model_id"])
        out.append({
            **circuit,
            "provider": (credential.provider.kind if credential else model.provider.kind if model else ""),
            "credential": credential.label if credential else f"#{circuit['credential_id']} (deleted)",
            "owner": (credential.tenant.slug if credential.tenant_id else "agency") if credential else "",
            "model": model.model_id if model else f"#{circuit['model_id']}",
        })
    return sorted(out, key=lambda c: (c["provider"], c["credential"], c["model"]))


# --------------------------------------------------------------------------------------------- health figures

def _row(provider: str, model_id: int, name: str, requests: int, errors: int, request_errors: int,
         p50: float | None, p95: float | None) -> dict:
    ok = requests - errors
    judged = requests - request_errors  # attempts whose outcome says something about the provider
    return {
        "provider": provider,
        "model_id": model_id,
        "model": name,
        "requests": requests,
        "ok": ok,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
        "availability": round(ok / judged, 6) if judged else None,
        "latency_p50_ms": None if p50 is None else round(float(p50), 2),
        "latency_p95_ms": None if p95 is None else round(float(p95), 2),
    }


def percentile_cont(sorted_values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont (linear interpolation between the closest ranks)."""
    if not sorted_values:
        return None
    pos = fraction * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


_SUMMARY_SQL = """
SELECT a.provider_kind, a.model_id, m.model_id,
       COUNT(*),
       COUNT(*) FILTER (WHERE a.outcome <> 'ok'),
       COUNT(*) FILTER (WHERE a.outcome = ANY(%s)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms) FILTER (WHERE a.outcome = 'ok'),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) FILTER (WHERE a.outcome = 'ok')
FROM providers_attemptlog a
JOIN providers_llmmodel m ON m.id = a.model_id
WHERE a.created_at >= %s AND a.created_at <= %s {probe_filter}
GROUP BY a.provider_kind, a.model_id, m.model_id
ORDER BY a.provider_kind, m.model_id
"""


def health_summary(window: timedelta, *, now: datetime | None = None, include_probes: bool = True) -> list[dict]:
    """Per provider and model over the last `window`: requests, ok, errors, error_rate (share of attempts that
    failed, any reason), availability (share of ok among attempts that say something about the provider, i.e.
    leaving out errors about the request itself: bad request, context too long, content filtered), and latency
    p50 / p95 of the ok attempts (ms, percentile_cont). One aggregate query on PostgreSQL."""
    end = now or timezone.now()
    start = end - window
    if connection.vendor == "postgresql":
        sql = _SUMMARY_SQL.format(probe_filter="" if include_probes else "AND NOT a.is_probe")
        with connection.cursor() as cursor:
            cursor.execute(sql, [sorted(REQUEST_ERRORS), start, end])
            return [_row(*row) for row in cursor.fetchall()]
    # Portable fallback (SQLite for `make run`): fine for a demo's volumes.
    rows = AttemptLog.objects.filter(created_at__gte=start, created_at__lte=end)
    if not include_probes:
        rows = rows.filter(is_probe=False)
    groups: dict[tuple, dict] = defaultdict(lambda: {"n": 0, "err": 0, "req_err": 0, "lat": []})
    for kind, model_pk, name, outcome, latency in rows.values_list(
        "provider_kind", "model_id", "model__model_id", "outcome", "latency_ms",
    ).iterator():
        g = groups[(kind, name, model_pk)]
        g["n"] += 1
        if outcome == OK:
            g["lat"].append(latency)
        else:
            g["err"] += 1
            g["req_err"] += outcome in REQUEST_ERRORS
    out = []
    for (kind, name, model_pk), g in sorted(groups.items()):
        lat = sorted(g["lat"])
        out.append(_row(kind, model_pk, name, g["n"], g["err"], g["req_err"], percentile_cont(lat, 0.5), percentile_cont(lat, 0.95)))
    return out


def health_overview(*, now: datetime | None = None) -> dict[str, list[dict]]:
    """The two windows the dashboard shows."""
    return {"last_hour": health_summary(timedelta(hours=1), now=now), "last_day": health_summary(timedelta(days=1), now=now)}

"""Health probes: a Celery beat task sends a minimal request ("ping", max_tokens 1) to each enabled credential and a
few of its provider's models, and records each outcome like any attempt (circuit breaker + AttemptLog), so circuits
recover (or open) and the health figures move even when no client is talking.

Which models: the ones a hook says are in use (`register_probe_models`: routing registers the models its policies
reference — providers cannot import routing), else the cheapest enabled models of the provider; at most
PROBE_MODELS_PER_CREDENTIAL (default 3) per credential, plus any model whose circuit for that credential is not
closed (half-open circuits are probed here: the probe claims the single half-open slot through `allow()`).
Circuits that are open (still in their cool-down) or cooling down after a retry-after are left alone.

The database is read before and written after the network calls; no transaction is open while a provider is called.

Beat wiring: BEAT_SCHEDULE below is the entry; settings copy it as CELERY_BEAT_SCHEDULE (see docs/failover.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from providers.adapters import adapter_for_credential
from providers.breaker import breaker
from providers.crypto import DecryptionError
from providers.errors import ErrorKind, ProviderError
from providers.health import attempt_record
from providers.models import Credential, LLMModel, ModelPrice
from providers.state import UNAVAILABLE, shared_state
from providers.types import ChatMessage, ChatRequest
from tenants.config_cache import config_scope

log = logging.getLogger(__name__)

PROBE_TASK = "providers.probe_providers"
PROBE_INTERVAL_SECONDS = 60
PROBE_PROMPT = "ping"
LOCK_KEY = "probe:lock"

# Copy into settings as CELERY_BEAT_SCHEDULE (do not import this module from settings: it imports models).
BEAT_SCHEDULE = {
    "probe-providers": {
        "task": PROBE_TASK,
        "schedule": float(PROBE_INTERVAL_SECONDS),
        "options": {"expires": PROBE_INTERVAL_SECONDS - 5},  # a probe run that waited past the next one is dropped
    },
}

# Hooks: callables (credential) -> iterable of LLMModel pks to probe first (e.g. the models routing policies use).
ProbeModelSelector = Callable[[Credential], Iterable[int]]
_selectors: list[ProbeModelSelector] = []


def register_probe_models(selector: ProbeModelSelector) -> ProbeModelSelector:
    """Register a hook naming the models worth probing for a credential (usable as a decorator)."""
    if selector not in _selectors:
        _selectors.append(selector)
    return selector


def unregister_probe_models(selector: ProbeModelSelector) -> None:
    if selector in _selectors:
        _selectors.remove(selector)


@dataclass
class ProbeTarget:
    credential: Credential
    model: LLMModel


def _price_keys(models: list[LLMModel]) -> dict[int, Decimal]:
    """Current input + output price per MTok of each model (Infinity when none is in force), in one query."""
    now = timezone.now()
    best: dict[int, tuple] = {}
    for model_id, valid_from, inp, out in ModelPrice.objects.filter(
        model__in=models, valid_from__lte=now,
    ).values_list("model_id", "valid_from", "input_per_mtok", "output_per_mtok"):
        if model_id not in best or valid_from > best[model_id][0]:
            best[model_id] = (valid_from, inp + out)
    return {m.pk: best[m.pk][1] if m.pk in best else Decimal("Infinity") for m in models}


def probe_targets() -> list[ProbeTarget]:
    """Which (credential, model) pairs to probe now. One configuration scope for the run, so that hooks read the
    routing configuration once, not once per credential."""
    with config_scope():
        return _probe_targets()


def _probe_targets() -> list[ProbeTarget]:
    per_credential = int(getattr(settings, "PROBE_MODELS_PER_CREDENTIAL", 3))
    credentials = Credential.objects.usable().select_related("provider", "tenant").order_by("pk")
    if not getattr(settings, "PROBE_BYOK_CREDENTIALS", True):
        credentials = credentials.agency()
    credentials = list(credentials)
    models = list(LLMModel.objects.filter(is_enabled=True, provider__is_enabled=True).select_related("provider"))
    by_provider: dict[int, list[LLMModel]] = {}
    prices = _price_keys(models)
    for model in sorted(models, key=lambda m: (prices[m.pk], m.model_id)):
        by_provider.setdefault(model.provider_id, []).append(model)
    try:
        not_closed = {(c["credential_id"], c["model_id"]) for c in breaker().open_circuits()}
    except UNAVAILABLE:
        not_closed = set()
    targets = []
    for credential in credentials:
        candidates = by_provider.get(credential.provider_id, [])
        by_pk = {m.pk: m for m in candidates}
        wanted: list[LLMModel] = []  # named by a hook (the models routing can use): every one is probed
        for selector in _selectors:
            try:
                pks = list(selector(credential))
            except Exception:  # noqa: BLE001 - a broken hook must not stop the probes
                log.exception("probe model selector %r failed", selector)
                continue
            wanted += [by_pk[pk] for pk in pks if pk in by_pk and by_pk[pk] not in wanted]
        # then the cheapest others up to `per_credential`, and any whose circuit is not closed
        picked = wanted + [m for m in candidates if m not in wanted][: max(0, per_credential - len(wanted))]
        picked += [m for m in candidates if (credential.pk, m.pk) in not_closed and m not in picked]
        targets += [ProbeTarget(credential, m) for m in picked]
    return targets


UNREADABLE = ProviderError(ErrorKind.INVALID_RESPONSE, "this process cannot decrypt the key (FIELD_ENCRYPTION_KEYS)")
"""_call's error for a key this process cannot decrypt: reported, never recorded against the credential."""


def _probe_request(model: LLMModel) -> ChatRequest:
    return ChatRequest(model=model.model_id, messages=[ChatMessage("user", PROBE_PROMPT)], max_tokens=1,
                       supports_temperature=model.supports_temperature)


def _call(target: ProbeTarget) -> tuple[ProbeTarget, ProviderError | None, int]:
    """Network only (runs in a worker thread): no database access here."""
    started = time.perf_counter()
    try:
        adapter = adapter_for_credential(target.credential)
        adapter.complete(_probe_request(target.model))
        error = None
    except ProviderError as exc:
        error = exc
    except DecryptionError as exc:
        # This worker's FIELD_ENCRYPTION_KEYS cannot read the key: a local misconfiguration, not a rejected key. Not
        # recorded (an authentication failure would disable a good key for every process; a failure, open its circuit).
        log.error("probe: credential %s cannot be decrypted here (check FIELD_ENCRYPTION_KEYS): %s", target.credential.pk, exc)
        error = UNREADABLE
    except Exception as exc:  # noqa: BLE001 - an adapter bug is reported as an invalid response, not a crash of the run
        log.exception("probe of %s / %s raised", target.credential.pk, target.model.model_id)
        error = ProviderError(ErrorKind.INVALID_RESPONSE, f"probe raised {type(exc).__name__}")
    return target, error, int((time.perf_counter() - started) * 1000)


def run_probes(targets: list[ProbeTarget]) -> dict:
    """Probe the targets the breaker admits; record each outcome. Returns a JSON-able report."""
    cb = breaker()
    admitted, results = [], []
    skipped = 0
    for target in targets:
        admission = cb.allow(target.credential.pk, target.model.pk)
        if admission.allowed:
            admitted.append(target)
        else:
            skipped += 1
            results.append({"credential_id": target.credential.pk, "model": target.model.model_id,
                            "provider": target.model.provider.kind, "outcome": "skipped", "state": admission.state,
                            "retry_in": admission.retry_in})
    workers = max(1, min(int(getattr(settings, "PROBE_CONCURRENCY", 8)), len(admitted) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        outcomes = list(pool.map(_call, admitted))
    ok = failed = 0
    for target, error, latency in outcomes:  # back on this thread: database writes, no network
        if error is UNREADABLE:
            failed += 1
            results.append({"credential_id": target.credential.pk, "model": target.model.model_id,
                            "provider": target.model.provider.kind, "outcome": "unreadable_key", "latency_ms": 0})
            continue
        outcome = "ok" if error is None else error.kind.value
        attempt_record(credential=target.credential, model=target.model, outcome=outcome, latency_ms=latency,
                       error=error, tenant_id=target.credential.tenant_id, probe=True)
        ok += error is None
        failed += error is not None
        results.append({"credential_id": target.credential.pk, "model": target.model.model_id,
                        "provider": target.model.provider.kind, "outcome": outcome, "latency_ms": latency,
                        "state": cb.state(target.credential.pk, target.model.pk)})
    return {"probed": len(admitted), "ok": ok, "failed": failed, "skipped": skipped, "results": results}


@shared_task(name=PROBE_TASK, ignore_result=True)
def probe_providers() -> dict:
    """Beat task. One run at a time across every worker (a lock in the shared state)."""
    lock_ttl = float(getattr(settings, "PROBE_LOCK_SECONDS", PROBE_INTERVAL_SECONDS * 2))
    state = shared_state()
    token = f"{time.time():.6f}"
    try:
        if not state.set(LOCK_KEY, token, ttl=lock_ttl, nx=True):
            log.info("probe_providers: another run is in progress")
            return {"probed": 0, "ok": 0, "failed": 0, "skipped": 0, "results": [], "locked": True}
    except UNAVAILABLE as exc:
        log.warning("probe_providers: shared state unavailable (%s); probing without the lock", exc)
        token = None
    try:
        report = run_probes(probe_targets())
    finally:
        try:
            if token is not None and state.get(LOCK_KEY) == token:
                state.delete(LOCK_KEY)
        except UNAVAILABLE:
            pass
    log.info("probe_providers: %s probed, %s ok, %s failed, %s skipped",
             report["probed"], report["ok"], report["failed"], report["skipped"])
    return report

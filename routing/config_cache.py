"""A per-process cache of the routing configuration, so that planning a message does not re-read what is the
same for every message of a tenant: its policy and rules, the targets' models, the tier lists, the usable
credentials, the calibrated thresholds.

Consistency: every save or delete of a model the planner reads (providers, credentials, models, prices,
policies, rules, targets, fallbacks, calibrations) drops this process's entries at once and, when its
transaction commits, replaces a random version token in the shared state (Redis). `plan_route` reads the token once per message (one GET) and uses this process's entries only if
they were built under the same token. Entries also expire after `MAX_AGE_SECONDS`, which bounds what a change
made without signals (a queryset `update()`; call `routing_config_changed()` after one) or a price whose
`valid_from` has just arrived can leave stale.

Outside `planning()` (drills, the dashboard, the shell) nothing is cached: each call reads the database.
Cached values are shared between threads: the planner caches tuples, not lists, and the model instances in them
are read-only by convention.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.db import transaction

from providers.state import shared_state

log = logging.getLogger(__name__)

VERSION_KEY = "routing:config-version"
MAX_AGE_SECONDS = 60.0
T = TypeVar("T")

_store: dict = {"token": None, "born": 0.0, "entries": {}}
_scope = threading.local()


def _token() -> str | None:
    try:
        state = shared_state()
        token = state.get(VERSION_KEY)
        if token is None:
            state.set(VERSION_KEY, uuid.uuid4().hex, nx=True)
            token = state.get(VERSION_KEY)
        return token
    except Exception:  # the shared state is down: plan from the database
        log.warning("routing config cache: shared state unavailable, not caching", exc_info=True)
        return None


def _entries() -> dict | None:
    global _store
    token = _token()
    if token is None:
        return None
    store = _store
    if store["token"] != token or time.monotonic() - store["born"] > MAX_AGE_SECONDS:
        store = {"token": token, "born": time.monotonic(), "entries": {}}
        _store = store  # rebinding is atomic: a thread still holding the old dict finishes with it
    return store["entries"]


@contextmanager
def planning() -> Iterator[None]:
    """Within this block (one message's planning), `memo` serves entries built under the current version."""
    outer = getattr(_scope, "entries", None)
    _scope.entries = _entries() if outer is None else outer
    try:
        yield
    finally:
        _scope.entries = outer


def memo(key: Hashable, build: Callable[[], T]) -> T:
    entries = getattr(_scope, "entries", None)
    if entries is None:
        return build()
    try:
        return entries[key]
    except KeyError:
        value = entries[key] = build()
        return value


def _forget_local() -> None:
    global _store
    _store = {"token": None, "born": 0.0, "entries": {}}


def _publish() -> None:
    _forget_local()
    try:
        shared_state().set(VERSION_KEY, uuid.uuid4().hex)
    except Exception:
        log.warning("routing config cache: could not publish a configuration change", exc_info=True)


def routing_config_changed(**_signal_kwargs) -> None:
    """Invalidate every process's cached routing configuration (a signal receiver; call it after bulk updates).

    This process forgets its entries at once (no I/O); the new token is published to Redis when the transaction
    commits (at once outside one), so no network call is made inside a database transaction and no other
    process can re-read the old rows under the new token."""
    _forget_local()
    transaction.on_commit(_publish)


def connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    from providers.models import Credential, LLMModel, ModelPrice, Provider
    from providers.signals import credential_disabled
    from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback

    for model in (Provider, Credential, LLMModel, ModelPrice, RoutingPolicy, RoutingRule, RoutingTarget, TargetFallback,
                  ComplexityCalibration):
        for signal in (post_save, post_delete):
            signal.connect(routing_config_changed, sender=model, dispatch_uid=f"routing-config-{model.__name__}-{signal}")
    credential_disabled.connect(routing_config_changed, dispatch_uid="routing-config-credential-disabled")

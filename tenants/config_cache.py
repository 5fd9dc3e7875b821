"""A per-process cache of the configuration that every chat request reads and staff rarely change: API keys and
their tenants, assistants and key scopes, and the routing configuration (routing.planner). Each app's
AppConfig.ready watches the models it caches. Without it, a chat request re-reads the same rows each time.

Consistency: a save or delete of a watched model (`watch`) drops this process's entries at once and, when its
transaction commits, replaces a random version token in the shared cache (Django's cache: Redis when REDIS_URL is
set). `config_scope()` reads the token once (one GET) and serves this process's entries only if they were built
under the same token. So a change made in the admin, a command or another process is seen by the next request
everywhere. Entries also expire after `MAX_AGE_SECONDS`, which bounds what a change made without signals (a
queryset `update()`; call `config_changed()` after one) can leave stale.

Outside a scope (the admin, commands, the shell) `memo` reads the database every time. The API opens one scope
per request (agencyhub.middleware.ConfigScopeMiddleware); the planner opens one per message.

Cached values are shared between threads: cache tuples, not lists, and treat the model instances as read-only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.core.cache import cache
from django.db import models, transaction

log = logging.getLogger(__name__)

VERSION_KEY = "agencyhub:config-version"
MAX_AGE_SECONDS = 60.0
T = TypeVar("T")

_store: dict = {"token": None, "born": 0.0, "entries": {}}
_scope = threading.local()


def config_version() -> str | None:
    """The shared version token (created on first use); None if the shared cache is down (then nothing is cached)."""
    try:
        token = cache.get(VERSION_KEY)
        if token is None:
            cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            token = cache.get(VERSION_KEY)
        return token
    except Exception as exc:  # noqa: BLE001 - any cache backend error: serve uncached
        log.warning("config cache: shared cache unavailable, not caching (%s: %s)", type(exc).__name__, exc, extra={"throttle": True})
        return None


def _entries() -> dict | None:
    global _store
    token = config_version()
    if token is None:
        return None
    store = _store
    if store["token"] != token or time.monotonic() - store["born"] > MAX_AGE_SECONDS:
        store = {"token": token, "born": time.monotonic(), "entries": {}}
        _store = store  # rebinding is atomic: a thread still holding the old dict finishes with it
    return store["entries"]


@contextmanager
def config_scope() -> Iterator[None]:
    """Within this block `memo` serves entries built under the current version. Nested scopes share the outer one."""
    outer = getattr(_scope, "entries", None)
    _scope.entries = _entries() if outer is None else outer
    try:
        yield
    finally:
        _scope.entries = outer


def memo(key: Hashable, build: Callable[[], T], *, cache_none: bool = True) -> T:
    """`build()`, cached under `key` inside a scope. `cache_none=False` for keys a client chooses (an unknown API key
    must not take a cache entry: a flood of random keys would grow the cache without bound)."""
    entries = getattr(_scope, "entries", None)
    if entries is None:
        return build()
    try:
        return entries[key]
    except KeyError:
        value = build()
        if value is not None or cache_none:
            entries[key] = value
        return value


def forget_local() -> None:
    """Drop this process's entries (no I/O). Tests call it between tests."""
    global _store
    _store = {"token": None, "born": 0.0, "entries": {}}


def _publish() -> None:
    forget_local()
    try:
        cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception as exc:  # noqa: BLE001 - the change is saved; other processes see it when their cache expires
        log.warning("config cache: could not publish a configuration change (%s: %s)", type(exc).__name__, exc,
                    extra={"throttle": True})


def config_changed(**_signal_kwargs) -> None:
    """Invalidate every process's cached configuration (a signal receiver; call it after bulk updates).

    This process forgets its entries at once (no I/O); the new token is published when the transaction commits (at
    once outside one), so no network call is made inside a database transaction and no other process can re-read
    the old rows under the new token."""
    forget_local()
    transaction.on_commit(_publish)


def watch(*watched: type[models.Model]) -> None:
    """Invalidate on every save and delete of these models (call from an AppConfig.ready)."""
    from django.db.models.signals import post_delete, post_save

    for model in watched:
        for signal in (post_save, post_delete):
            signal.connect(config_changed, sender=model, dispatch_uid=f"config-cache-{model._meta.label}-{signal}")

"""The psycopg pool's health check, made once per idle spell instead of once per checkout.

With CONN_HEALTH_CHECKS on, Django's pool runs `ConnectionPool.check_connection` (a round trip to PostgreSQL) every
time a thread takes a connection. A chat request takes one twice (it hands its connection back while the provider
answers), so that was two extra round trips on every message (about 0.2 ms of CPU and 0.3 ms of latency). Here a
connection handed back less than `RECENTLY_USED_SECONDS` ago is taken as it is: it worked a moment ago. One that sat
idle longer is probed, and replaced if dead, as before. A connection that breaks in that moment (PostgreSQL restarted)
fails its next statement instead: the API answers that request with a 503 (agencyhub.exceptions) and the pool replaces
the connection when it comes back broken.

Django builds the pool itself and always passes its own `check`, so this check is swapped in when the pool's first
connection is made (`install`, on `connection_created`). If psycopg_pool ever stops having the attribute, the swap is
skipped and every checkout is probed, as Django does: slower, never less safe.
"""

from __future__ import annotations

import time
import weakref

from psycopg import Connection
from psycopg_pool import ConnectionPool

RECENTLY_USED_SECONDS = 2.0

_returned_at: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()


def mark_returned(conn: Connection) -> None:
    """The pool's `reset` callback: runs as a connection goes back to the pool."""
    _returned_at[conn] = time.monotonic()


def check_unless_recently_used(conn: Connection) -> None:
    """The pool's `check` callback: raises if a connection idle for a while no longer answers."""
    returned = _returned_at.get(conn)
    if returned is not None and time.monotonic() - returned < RECENTLY_USED_SECONDS:
        return
    ConnectionPool.check_connection(conn)


def pool_options(max_size: int) -> dict:
    """OPTIONS["pool"] for settings.DATABASES."""
    return {"min_size": min(2, max_size), "max_size": max_size, "timeout": 30, "reset": mark_returned}


def install(sender, connection, **kwargs) -> None:
    """`connection_created` receiver: give a Django-built pool this check instead of probing every checkout."""
    pool = getattr(connection, "pool", None)
    if pool is not None and getattr(pool, "_check", None) is ConnectionPool.check_connection:
        pool._check = check_unless_recently_used

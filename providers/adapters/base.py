"""What every adapter shares: a timer, SDK client caching, timeouts."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import httpx2
from django.conf import settings

from providers.errors import ErrorKind, ProviderError

T = TypeVar("T")


class Clock:
    """Latency and time to first token, in whole milliseconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_token: float | None = None

    def mark_first_token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    @property
    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first_token is None else int((self.first_token - self.start) * 1000)


def text_of(value: Any) -> str:
    """Message text as the provider sent it; anything but a string (or nothing) is a malformed reply."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"text is a {type(value).__name__}, not a string")
    return value


MALFORMED = (KeyError, IndexError, TypeError, AttributeError, ValueError)
"""What reading a reply (or a streamed chunk) of the wrong shape raises; `malformed()` turns it into an error."""


def malformed(what: str, exc: Exception, request_id: str = "") -> ProviderError:
    """A retryable invalid response: the provider answered, but not in the shape its API documents."""
    return ProviderError(ErrorKind.INVALID_RESPONSE, f"the provider sent {what} of the wrong shape ({exc!r})",
                         request_id=request_id)


def sdk_timeout() -> httpx2.Timeout:
    # Explicit timeouts: the SDK defaults (600 s read) would hold a failover hostage.
    return httpx2.Timeout(settings.PROVIDER_TIMEOUT_SECONDS, connect=settings.PROVIDER_CONNECT_TIMEOUT_SECONDS)


def timeout_key() -> tuple[float, float]:
    return (settings.PROVIDER_TIMEOUT_SECONDS, settings.PROVIDER_CONNECT_TIMEOUT_SECONDS)


class ClientCache:
    """SDK clients are expensive to build (each owns a connection pool): keep one per (base_url, key)."""

    def __init__(self, size: int = 256) -> None:
        self._clients: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: tuple, build: Callable[[], T]) -> T:
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client  # type: ignore[return-value]
        client = build()
        with self._lock:
            self._clients[key] = client
            while len(self._clients) > self._size:
                self._clients.popitem(last=False)
        return client

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()


clients = ClientCache()

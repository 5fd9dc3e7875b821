"""Logging filters, wired in settings.LOGGING.

An outage of Redis or of a provider makes every request log the same warning: thousands of lines (with tracebacks)
that bury everything else. A log call that can repeat like that says so with `extra={"throttle": True}`; the
filter then lets one record per call site through every `interval` seconds and adds to the next one how many it
held back. Other records pass untouched."""

from __future__ import annotations

import logging
import threading
import time


class RepeatThrottle(logging.Filter):
    def __init__(self, interval: float = 30.0, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = float(interval)
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[float, int]] = {}  # call site -> (last logged at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "throttle", False):
            return True
        site = (record.pathname, record.lineno)
        now = self.clock()
        with self._lock:
            logged_at, held = self._seen.get(site, (None, 0))
            if logged_at is not None and now - logged_at < self.interval:
                self._seen[site] = (logged_at, held + 1)
                return False
            self._seen[site] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - logged_at:.0f} s not logged]"
        return True

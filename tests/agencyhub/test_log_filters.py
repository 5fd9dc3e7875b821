"""The repeat throttle keeps an outage from flooding the log: one record per call site per interval, with a count."""

import logging
import logging.config

from agencyhub.log_filters import RepeatThrottle


def _record(lineno: int, throttle: bool = True, msg: str = "shared state unavailable: %s") -> logging.LogRecord:
    record = logging.LogRecord("providers.breaker", logging.WARNING, "/app/providers/breaker.py", lineno, msg, ("down",), None)
    if throttle:
        record.throttle = True
    return record


def test_one_record_per_call_site_per_interval_then_the_count_of_those_held_back():
    now = [100.0]
    repeats = RepeatThrottle(interval=30, clock=lambda: now[0])
    assert repeats.filter(_record(112))
    now[0] = 101.0
    assert not repeats.filter(_record(112))
    assert not repeats.filter(_record(112))
    assert repeats.filter(_record(123)), "another call site has its own allowance"
    now[0] = 131.0
    later = _record(112)
    assert repeats.filter(later)
    assert later.getMessage() == "shared state unavailable: down [2 more like this in the last 31 s not logged]"
    now[0] = 162.0
    quiet = _record(112)
    assert repeats.filter(quiet) and "more like this" not in quiet.getMessage()


def test_records_not_marked_always_pass():
    repeats = RepeatThrottle(interval=30, clock=lambda: 0.0)
    assert all(repeats.filter(_record(7, throttle=False)) for _ in range(5))


def test_the_console_handler_is_wired_with_it():
    from django.conf import settings

    assert settings.LOGGING["handlers"]["console"]["filters"] == ["repeats"]
    logging.config.dictConfig(settings.LOGGING)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    assert any(isinstance(f, RepeatThrottle) for f in handler.filters)

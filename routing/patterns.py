"""Rule patterns (`RoutingRule.pattern`): regular expressions staff write, run on every client message.

They run on RE2 (google-re2), whose matching takes time linear in the text whatever the pattern: with Python's `re`,
a pattern such as `(a+)+$` took seconds on a 24-character message, doubling with each character more, and a client
chooses the message. RE2 has no backreferences or lookarounds; a pattern that needs them is refused when saved.
Matching ignores case.
"""

from __future__ import annotations

import functools
import logging

import re2

log = logging.getLogger(__name__)


class PatternError(ValueError):
    pass


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a bad pattern is our PatternError, not a line on stderr
    return options


_OPTIONS = _options()


@functools.lru_cache(maxsize=1024)
def pattern_compile(pattern: str):
    """The compiled pattern, or PatternError saying why RE2 cannot take it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        raise PatternError(reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)) from None


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether `text` contains a match. A stored pattern RE2 cannot take (saved before the check) never matches."""
    try:
        return pattern_compile(pattern).search(text) is not None
    except PatternError as exc:
        log.warning("routing rule pattern %r cannot be used: %s", pattern, exc)
        return False

"""The scorer's score distribution on its training prompts (percentiles 1..99, scripts/score_quantiles.py).

A rule that sends "about N % of messages to premium" needs a threshold before the tenant has traffic to
calibrate on: the training distribution's (100 - N)th percentile is that threshold.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

QUANTILES_PATH = Path(__file__).with_name("score_quantiles.json")
FALLBACK_THRESHOLD = 0.5


@cache
def _percentiles() -> tuple[float, ...]:
    try:
        return tuple(json.loads(QUANTILES_PATH.read_text())["percentiles"])
    except (OSError, ValueError, KeyError):
        return ()


def share_threshold(share_percent: int) -> float:
    """The score above which about `share_percent` % of the training prompts lie."""
    percentiles = _percentiles()
    if not percentiles or share_percent is None:
        return FALLBACK_THRESHOLD
    rank = min(99, max(1, 100 - int(share_percent)))
    return percentiles[rank - 1]

"""Router metrics exactly as ../shared/routing-benchmark/README.md (and the RouteLLM paper) define them.

Pure Python on purpose: the management commands and the tests use these without numpy.

For a share ``c = k / n`` of prompts sent to the strong model (the top ``k`` by score),
``accuracy(k) = (sum of strong_correct over the routed prompts + weak_correct over the rest) / n``;
``PGR(k) = (accuracy(k) - accuracy(0)) / (accuracy(n) - accuracy(0))``;
APGR is the trapezoid area under PGR over every prompt (``k = 0 .. n``);
CPT(x) is the smallest ``c`` with ``PGR >= x``.

Ties: prompts with equal scores are routed "in expectation" — within a tied block the recovered gain
grows linearly, which is the mean over every order of breaking the tie. So a constant scorer gets
exactly the random-router figure (0.5) instead of whatever the input order happens to give, and the
result never depends on row order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

FAMILIES: tuple[str, ...] = ("gsm8k", "mmlu", "all")


def _pgr_curve(scores: Sequence[float], weak: Sequence[int], strong: Sequence[int]) -> list[float]:
    """PGR(k) for k = 0..n (``n + 1`` points); NaNs if the strong model recovers no gap."""
    n = len(scores)
    if not (n == len(weak) == len(strong)):
        raise ValueError("scores, weak and strong must have the same length")
    if n == 0:
        raise ValueError("no prompts")
    gains = [int(s) - int(w) for w, s in zip(weak, strong)]
    total_gap = sum(gains)  # n * (accuracy(1) - accuracy(0))
    if total_gap == 0:
        return [math.nan] * (n + 1)
    order = sorted(range(n), key=lambda i: -scores[i])  # stable; ties resolved below
    curve = [0.0]
    cumulative = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        block = j - i + 1
        block_gain = sum(gains[order[m]] for m in range(i, j + 1))
        for step in range(1, block + 1):  # expected gain after routing `step` of the tied block
            curve.append((cumulative + block_gain * step / block) / total_gap)
        cumulative += block_gain
        i = j + 1
    return curve


def apgr(scores: Sequence[float], weak: Sequence[int], strong: Sequence[int]) -> float:
    """Average performance gap recovered: area under PGR(c), c in [0, 1], trapezoids over every prompt."""
    curve = _pgr_curve(scores, weak, strong)
    n = len(curve) - 1
    return sum((curve[k - 1] + curve[k]) / 2.0 for k in range(1, n + 1)) / n


def cpt(scores: Sequence[float], weak: Sequence[int], strong: Sequence[int], x: float) -> float:
    """Call-performance threshold: the smallest share c of strong-model calls with PGR(c) >= x.

    ``x`` is a fraction (0.5 for CPT(50%)). The tiny tolerance absorbs float error in tie blocks.
    """
    curve = _pgr_curve(scores, weak, strong)
    n = len(curve) - 1
    for k, value in enumerate(curve):
        if value >= x - 1e-12:
            return k / n
    return math.nan  # only when the gap is zero (curve is NaN) — PGR(1) is 1 otherwise


def family_of(source: str) -> str:
    """`gsm8k` or `mmlu` from a benchmark `source` value (`mmlu:<subject>`, also `MMLU/<subject>`, `gsm8k-test`, ...);
    other sources pass through as their first word."""
    name = source.strip().lower()
    for family in FAMILIES[:-1]:  # not "all", the pooled bucket: a source "allergy" is not it
        if name.startswith(family):
            return family
    return re.split(r"[:/ ]", name, maxsplit=1)[0]


_TRUE, _FALSE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no"}


def label_of(value: object) -> int:
    """A 0 / 1 correctness label from a CSV cell: 0, 1, 0.0, 1.0, true / false or yes / no (any case)."""
    if value is None:
        raise ValueError("a row has missing cells")  # a short CSV row: DictReader fills the missing cells with None
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ValueError(f"weak_correct / strong_correct must be 0 or 1 (got {value!r})")


def summarize(scores: Sequence[float], weak: Sequence[int], strong: Sequence[int]) -> dict[str, float]:
    return {
        "n": len(scores),
        "apgr": apgr(scores, weak, strong),
        "cpt50": cpt(scores, weak, strong, 0.5),
        "cpt80": cpt(scores, weak, strong, 0.8),
    }


def report(rows: Iterable[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """APGR / CPT(50%) / CPT(80%) by `gsm8k`, `mmlu` and `all` (pooled).

    Each row needs ``source``, ``score``, ``weak_correct`` and ``strong_correct``. A family with no rows
    is left out (``all`` is always there if any row is).
    """
    groups: dict[str, tuple[list[float], list[int], list[int]]] = {}
    for row in rows:
        family = family_of(str(row["source"]))
        weak, strong = label_of(row["weak_correct"]), label_of(row["strong_correct"])
        try:
            score = float(row["score"])  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("a row has missing cells") from None
        if not math.isfinite(score):
            raise ValueError(f"score must be finite (got {score})")
        for key in dict.fromkeys((family, "all")):  # a source spelt "all" is counted once, not twice
            bucket = groups.setdefault(key, ([], [], []))
            bucket[0].append(score)
            bucket[1].append(weak)
            bucket[2].append(strong)
    ordered = [key for key in FAMILIES if key in groups] + sorted(k for k in groups if k not in FAMILIES)
    return {key: summarize(*groups[key]) for key in ordered}

#!/usr/bin/env python
"""Per-prompt latency of the complexity scorer on one core, over every prompt of the benchmark CSV.

    .venv/bin/python bench/scorer_latency.py [--data PATH] [--limit N]

Pins itself to one CPU, loads the artefact first (load time is reported apart: it happens once per
process), warms up, then times each prompt alone. Prints p50/p95/p99/max in ms as JSON on stdout and
a table on stderr, for the scorer and for the length-only baseline. The spec: p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routing.complexity import ComplexityScorer  # noqa: E402  (pure Python, no Django needed)

DEFAULT_DATA = REPO.parent / "shared" / "routing-benchmark" / "train.csv"
WARM_UP = 300


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def time_each(fn: Callable[[str], float], prompts: list[str]) -> dict[str, float]:
    for prompt in prompts[:WARM_UP]:
        fn(prompt)
    clock = time.perf_counter_ns
    samples = []
    for prompt in prompts:
        start = clock()
        fn(prompt)
        samples.append((clock() - start) / 1e6)
    samples.sort()
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 50), 4),
        "p95_ms": round(percentile(samples, 95), 4),
        "p99_ms": round(percentile(samples, 99), 4),
        "max_ms": round(samples[-1], 4),
        "mean_ms": round(sum(samples) / len(samples), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts (0 = all)")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"no benchmark data at {args.data}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the spec says
    csv.field_size_limit(2**31 - 1)
    with args.data.open(newline="", encoding="utf-8") as handle:
        prompts = [row["prompt"] for row in csv.DictReader(handle)]
    if args.limit:
        prompts = prompts[: args.limit]

    started = time.perf_counter()
    scorer = ComplexityScorer.load()
    load_ms = (time.perf_counter() - started) * 1000

    results = {
        "prompts": len(prompts),
        "longest_prompt_chars": max(len(p) for p in prompts),
        "artefact_load_ms": round(load_ms, 1),
        "scorer": time_each(scorer.score, prompts),
        "length_only": time_each(lambda p: float(len(p)), prompts),
    }
    print(f"{len(prompts)} prompts, one core; artefact loaded once in {load_ms:.0f} ms", file=sys.stderr)
    print(f"{'router':12s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}", file=sys.stderr)
    for name in ("scorer", "length_only"):
        r = results[name]
        print(f"{name:12s} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} {r['p99_ms']:8.3f} {r['max_ms']:8.3f}", file=sys.stderr)
    verdict = "ok" if results["scorer"]["p99_ms"] < 5.0 else "OVER BUDGET"
    print(f"p99 budget 5 ms: {verdict}", file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

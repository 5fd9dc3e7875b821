"""`manage.py evaluate_router LABELS.csv [--scores SCORES.csv]` — APGR and CPT by gsm8k, mmlu and all."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from routing.complexity import get_scorer
from routing.complexity.metrics import report
from routing.management.commands.score_prompts import read_rows

LABEL_COLUMNS = ("source", "prompt", "weak_correct", "strong_correct")


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)  # JSON has no NaN


class Command(BaseCommand):
    help = (
        "Evaluate the complexity scorer (or the scores of --scores) on a labelled CSV "
        "(source,prompt,weak_correct,strong_correct). Prints JSON: {gsm8k|mmlu|all: {apgr, cpt50, cpt80, n}}."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("labels", type=Path, help="CSV with source,prompt,weak_correct,strong_correct")
        parser.add_argument(
            "--scores",
            type=Path,
            help="CSV with a 'score' column, one row per label row in the same order (e.g. from score_prompts); "
            "its 'prompt' column, if any, must match",
        )

    def handle(self, *args: Any, labels: Path, scores: Path | None, **options: Any) -> None:
        rows = list(read_rows(labels, LABEL_COLUMNS))
        if not rows:
            raise CommandError(f"{labels} has no rows")
        values = self._given_scores(scores, rows) if scores else get_scorer().score_many(r["prompt"] for r in rows)
        try:
            result = report({**row, "score": value} for row, value in zip(rows, values))
        except ValueError as exc:
            raise CommandError(f"bad label value in {labels}: {exc}") from exc
        out = {
            family: {"apgr": _clean(m["apgr"]), "cpt50": _clean(m["cpt50"]), "cpt80": _clean(m["cpt80"]), "n": m["n"]}
            for family, m in result.items()
        }
        self.stderr.write(f"{'family':8s} {'n':>7s} {'APGR':>7s} {'CPT50':>7s} {'CPT80':>7s}")
        for family, m in out.items():
            cells = [f"{m[k]:7.3f}" if m[k] is not None else f"{'-':>7s}" for k in ("apgr", "cpt50", "cpt80")]
            self.stderr.write(f"{family:8s} {m['n']:7d} " + " ".join(cells))
        self.stdout.write(json.dumps(out))

    def _given_scores(self, path: Path, rows: list[dict[str, str]]) -> list[float]:
        given = list(read_rows(path, ("score",)))
        if len(given) != len(rows):
            raise CommandError(f"{path} has {len(given)} rows but the labels have {len(rows)}")
        out = []
        for number, (label, row) in enumerate(zip(rows, given), start=2):
            if "prompt" in row and row["prompt"] != label["prompt"]:
                raise CommandError(f"{path} line {number}: prompt differs from the labels' row (rows must be in the same order)")
            try:
                value = float(row["score"])
            except (TypeError, ValueError) as exc:
                raise CommandError(f"{path} line {number}: score {row['score']!r} is not a number") from exc
            if not math.isfinite(value):
                raise CommandError(f"{path} line {number}: score {row['score']!r} is not a finite number")
            out.append(value)
        return out

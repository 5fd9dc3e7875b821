#!/usr/bin/env python
"""Write routing/complexity/score_quantiles.json: the complexity scores' percentiles 1..99 over the training
prompts. Share-based routing rules ("send about N % to premium") use them as their threshold until the
tenant's own traffic has been calibrated (conversations.tasks.calibrate_complexity).

    .venv/bin/python scripts/score_quantiles.py [../shared/routing-benchmark/train.csv]

Run it again after scripts/train_scorer.py rebuilds the model.
"""

import csv
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencyhub.settings")


def main() -> int:
    import django

    django.setup()
    from routing.complexity import score
    from routing.complexity.quantiles import QUANTILES_PATH

    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "routing-benchmark" / "train.csv"
    with source.open(newline="") as handle:
        scores = sorted(score(row["prompt"]) for row in csv.DictReader(handle))
    if not scores:
        sys.exit(f"no prompts in {source}")
    percentiles = [round(scores[min(len(scores) - 1, len(scores) * p // 100)], 6) for p in range(1, 100)]
    QUANTILES_PATH.write_text(json.dumps({"source": source.name, "prompts": len(scores), "percentiles": percentiles}) + "\n")
    print(f"{len(scores)} prompts -> {QUANTILES_PATH.relative_to(ROOT)} (p50 {percentiles[49]}, p80 {percentiles[79]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

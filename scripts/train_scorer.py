#!/usr/bin/env python
"""Rebuild the complexity scorer's artefact (routing/complexity/model.json.gz) from the benchmark CSV.

    .venv/bin/python scripts/train_scorer.py [--data train.csv] [--folds 3] [--out PATH] [--oof-scores PATH]

1. Validates with grouped cross-validation: each fold holds out whole MMLU subjects (about 1/k of the
   rows, never a subject seen in training) and 1/k of GSM8K — with the default k = 3 that is "a third
   of GSM8K and ~14 unseen subjects", the shape of the held-back evaluation. Prints APGR / CPT(50%) /
   CPT(80%) by gsm8k, mmlu and all for the blend, each of its parts, prompt length and a random router.
2. Trains on every row and writes the artefact.

Deterministic: fixed seeds, single-threaded fits, sorted inputs; same CSV → same bytes.
Training needs numpy, scikit-learn and wordllama (its bundled embeddings; pinned in requirements.txt);
serving needs none of them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One thread: fits are reproducible to the bit, and the machine has two cores anyway.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from routing.complexity import FORMAT, MODEL_PATH, ComplexityScorer  # noqa: E402
from routing.complexity.features import DENSE_FEATURE_NAMES, clip, extract  # noqa: E402
from routing.complexity.metrics import family_of, report  # noqa: E402
from routing.complexity.pieces import PieceTokenizer  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "routing-benchmark" / "train.csv"
SEED = 0
# Weights of the three pairs' gains by kind of prompt (chosen on held-out APGR; see docs/routing-scorer.md).
# The embedding pair helps on multiple-choice questions (unseen MMLU subjects) but not on open maths
# questions (0.54 alone on GSM8K), so there it counts for nothing.
BLEND = {
    "multiple_choice": {"trees": 1 / 3, "linear": 1 / 3, "embedding": 1 / 3},
    "open": {"trees": 0.5, "linear": 0.5, "embedding": 0.0},
}
PAIRS = ("trees", "linear", "embedding")
IS_MCQ = DENSE_FEATURE_NAMES.index("is_mcq")
MIN_DF = 3  # a token must appear in >= 3 training prompts: rarer ones are mostly subject trivia
LINEAR_C = 0.1  # strong L2 regularisation: held-out subjects punish memorised vocabulary
EMBEDDING_C = 0.1
# WordLlama's pretrained word-piece embeddings (MIT), read from the installed package; nothing is downloaded.
EMBEDDINGS = ("wordllama", "tokenizers/l2_supercat_tokenizer_config.json", "weights/l2_supercat_256.safetensors")
TREE_PARAMS: dict[str, Any] = dict(
    max_depth=3, learning_rate=0.05, max_iter=200, min_samples_leaf=50, early_stopping=False, random_state=SEED
)


@dataclass
class Dataset:
    sources: list[str]
    prompts: list[str]
    weak: np.ndarray
    strong: np.ndarray
    dense: np.ndarray
    tokens: list[set[str]]
    embedded: np.ndarray  # mean word-piece embedding of each prompt


@dataclass
class Embeddings:
    pieces: list[str]  # in id order
    vectors: np.ndarray  # one row per piece

    @classmethod
    def load(cls) -> "Embeddings":
        import importlib.util

        from safetensors.numpy import load_file

        spec = importlib.util.find_spec(EMBEDDINGS[0])
        if spec is None or spec.origin is None:
            raise SystemExit("wordllama is not installed: pip install -r requirements.txt")
        base = Path(spec.origin).parent
        vocabulary = json.loads((base / EMBEDDINGS[1]).read_text(encoding="utf-8"))["model"]["vocab"]
        pieces = [""] * len(vocabulary)
        for piece, index in vocabulary.items():
            pieces[index] = piece
        vectors = load_file(str(base / EMBEDDINGS[2]))["embedding.weight"].astype(np.float64)
        return cls(pieces, vectors)

    def mean(self, tokenizer: PieceTokenizer, prompt: str) -> np.ndarray:
        return self.vectors[tokenizer.ids(clip(prompt))].mean(axis=0)


def load(path: Path, embeddings: Embeddings | None = None) -> Dataset:
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    extracted = [extract(r["prompt"]) for r in rows]
    embeddings = embeddings or Embeddings.load()
    tokenizer = PieceTokenizer(embeddings.pieces)
    return Dataset(
        sources=[r["source"] for r in rows],
        prompts=[r["prompt"] for r in rows],
        weak=np.array([int(r["weak_correct"]) for r in rows]),
        strong=np.array([int(r["strong_correct"]) for r in rows]),
        dense=np.array([e[0] for e in extracted], dtype=float),
        tokens=[e[1] for e in extracted],
        embedded=np.array([embeddings.mean(tokenizer, r["prompt"]) for r in rows]),
    )


def assign_folds(sources: list[str], k: int, seed: int = SEED) -> np.ndarray:
    """Fold per row: whole MMLU subjects balanced by row count, GSM8K split evenly at random."""
    counts = Counter(s for s in sources if family_of(s) != "gsm8k")
    load_per_fold = [0] * k
    subject_fold: dict[str, int] = {}
    for subject in sorted(counts, key=lambda s: (-counts[s], s)):  # biggest first, greedy balance
        fold = min(range(k), key=lambda f: (load_per_fold[f], f))
        subject_fold[subject] = fold
        load_per_fold[fold] += counts[subject]
    others = [i for i, s in enumerate(sources) if s not in subject_fold]
    random.Random(seed).shuffle(others)
    row_fold = {i: j % k for j, i in enumerate(others)}
    return np.array([subject_fold.get(s, row_fold.get(i, 0)) for i, s in enumerate(sources)])


# --- the two model pairs -------------------------------------------------------------------------


def fit_trees(dense: np.ndarray, y: np.ndarray) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(**TREE_PARAMS).fit(dense, y)


def export_trees(model: HistGradientBoostingClassifier) -> dict[str, Any]:
    trees = []
    for (predictor,) in model._predictors:  # binary classification: one tree per iteration
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            {
                "feature": [-1 if is_leaf else int(f) for f, is_leaf in zip(nodes["feature_idx"], leaf)],
                "threshold": [0.0 if is_leaf else float(t) for t, is_leaf in zip(nodes["num_threshold"], leaf)],
                "left": [int(v) for v in nodes["left"]],
                "right": [int(v) for v in nodes["right"]],
                "value": [round(float(v), 7) if is_leaf else 0.0 for v, is_leaf in zip(nodes["value"], leaf)],
            }
        )
    return {"baseline": float(np.ravel(model._baseline_prediction)[0]), "trees": trees}


@dataclass
class LinearPair:
    vocabulary: list[str]
    mean: np.ndarray
    scale: np.ndarray
    models: dict[str, LogisticRegression]

    def matrix(self, data: Dataset, rows: np.ndarray) -> sparse.csr_matrix:
        index = {t: j for j, t in enumerate(self.vocabulary)}
        indptr, indices, values = [0], [], []
        for i in rows:
            cols = sorted(index[t] for t in data.tokens[i] if t in index)
            weight = 1.0 / np.sqrt(len(cols)) if cols else 0.0  # L2-normalised presence, as served
            indices.extend(cols)
            values.extend([weight] * len(cols))
            indptr.append(len(indices))
        tokens = sparse.csr_matrix((values, indices, indptr), shape=(len(rows), len(self.vocabulary)))
        dense = (data.dense[rows] - self.mean) / self.scale
        return sparse.hstack([tokens, sparse.csr_matrix(dense)]).tocsr()

    def gain(self, data: Dataset, rows: np.ndarray) -> np.ndarray:
        x = self.matrix(data, rows)
        return self.models["strong"].predict_proba(x)[:, 1] - self.models["weak"].predict_proba(x)[:, 1]


def fit_linear(data: Dataset, rows: np.ndarray) -> LinearPair:
    df = Counter(t for i in rows for t in data.tokens[i])
    vocabulary = sorted(t for t, n in df.items() if n >= MIN_DF)
    mean = data.dense[rows].mean(axis=0)
    scale = data.dense[rows].std(axis=0)
    scale[scale == 0] = 1.0
    pair = LinearPair(vocabulary, mean, scale, {})
    x = pair.matrix(data, rows)
    for name, y in (("strong", data.strong), ("weak", data.weak)):
        pair.models[name] = LogisticRegression(C=LINEAR_C, max_iter=5000, solver="lbfgs").fit(x, y[rows])
    return pair


def export_linear(pair: LinearPair, name: str) -> dict[str, Any]:
    model = pair.models[name]
    coef = model.coef_.ravel()
    n_tokens = len(pair.vocabulary)
    token_w, dense_w = coef[:n_tokens], coef[n_tokens:]
    # Fold the standardisation into the weights: w·(x - mean)/scale = (w/scale)·x - w·mean/scale.
    dense_folded = dense_w / pair.scale
    bias = float(model.intercept_[0] - np.dot(dense_w, pair.mean / pair.scale))
    return {
        "bias": bias,
        "dense": [float(f"{w:.6g}") for w in dense_folded],
        "tokens": {t: float(f"{w:.4g}") for t, w in zip(pair.vocabulary, token_w)},
    }


def tree_gain(data: Dataset, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    strong = fit_trees(data.dense[train], data.strong[train])
    weak = fit_trees(data.dense[train], data.weak[train])
    return strong.predict_proba(data.dense[test])[:, 1] - weak.predict_proba(data.dense[test])[:, 1]


def fit_embedding(data: Dataset, rows: np.ndarray) -> dict[str, LogisticRegression]:
    x = data.embedded[rows]
    return {
        name: LogisticRegression(C=EMBEDDING_C, max_iter=5000, solver="lbfgs").fit(x, y[rows])
        for name, y in (("strong", data.strong), ("weak", data.weak))
    }


def embedding_gain(models: dict[str, LogisticRegression], data: Dataset, rows: np.ndarray) -> np.ndarray:
    x = data.embedded[rows]
    return models["strong"].predict_proba(x)[:, 1] - models["weak"].predict_proba(x)[:, 1]


def export_embedding(models: dict[str, LogisticRegression], embeddings: Embeddings) -> dict[str, Any]:
    """One number per piece and model: the piece's embedding · the model's weights (see _Embedding)."""
    out: dict[str, Any] = {"pieces": embeddings.pieces, "bias": {}}
    for name, model in models.items():
        out[name] = [float(f"{v:.6g}") for v in embeddings.vectors @ model.coef_.ravel()]
        out["bias"][name] = float(model.intercept_[0])
    return out


def blend(gains: dict[str, np.ndarray], data: Dataset, rows: np.ndarray) -> np.ndarray:
    weights = {kind: sum(BLEND[kind][name] * gains[name] for name in PAIRS) for kind in BLEND}
    return np.where(data.dense[rows, IS_MCQ] > 0.5, weights["multiple_choice"], weights["open"])


def held_out_gain(data: Dataset, train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Each pair's gain on `test`, trained on `train` only."""
    return {
        "trees": tree_gain(data, train, test),
        "linear": fit_linear(data, train).gain(data, test),
        "embedding": embedding_gain(fit_embedding(data, train), data, test),
    }


# --- validation ------------------------------------------------------------------------------------


def cross_validate(data: Dataset, k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Out-of-fold scores of every candidate, and the fold of each row."""
    folds = assign_folds(data.sources, k)
    n = len(data.prompts)
    rng = np.random.RandomState(SEED)
    candidates = {name: np.zeros(n) for name in ("blend", *PAIRS, "length", "random")}
    for fold in range(k):
        train, test = np.where(folds != fold)[0], np.where(folds == fold)[0]
        gains = held_out_gain(data, train, test)
        for name, gain in gains.items():
            candidates[name][test] = gain
        candidates["blend"][test] = blend(gains, data, test)
        candidates["length"][test] = [len(data.prompts[i]) for i in test]
        candidates["random"][test] = rng.rand(len(test))
        held_out = sorted({data.sources[i] for i in test if family_of(data.sources[i]) != "gsm8k"})
        print(f"fold {fold}: {len(test)} rows held out, {len(held_out)} MMLU subjects: {', '.join(s[5:] for s in held_out)}", file=sys.stderr)
    return candidates, folds


def fold_reports(data: Dataset, scores: np.ndarray, folds: np.ndarray) -> list[dict[str, dict[str, float]]]:
    out = []
    for fold in sorted(set(folds.tolist())):
        rows = np.where(folds == fold)[0]
        out.append(
            report(
                {"source": data.sources[i], "score": scores[i], "weak_correct": data.weak[i], "strong_correct": data.strong[i]}
                for i in rows
            )
        )
    return out


def summarise(reports: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean and spread over folds: each fold is one 'unseen subjects + unseen GSM8K' evaluation."""
    summary: dict[str, dict[str, float]] = {}
    for family in ("gsm8k", "mmlu", "all"):
        for metric in ("apgr", "cpt50", "cpt80"):
            values = np.array([r[family][metric] for r in reports])
            summary.setdefault(family, {})[metric] = round(float(values.mean()), 4)
            if metric == "apgr":
                summary[family]["apgr_sd"] = round(float(values.std()), 4)
    return summary


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"{'scorer':8s} | {'family':6s} | {'APGR':>13s} | {'CPT50':>6s} | {'CPT80':>6s}")
    for name, summary in results.items():
        for family, m in summary.items():
            apgr_text = f"{m['apgr']:.3f} ± {m['apgr_sd']:.3f}"
            print(f"{name:8s} | {family:6s} | {apgr_text:>13s} | {m['cpt50']:6.3f} | {m['cpt80']:6.3f}")


# --- artefact --------------------------------------------------------------------------------------


def train_artefact(
    data: Dataset, embeddings: Embeddings, validation: dict[str, Any], check_rows: int = 500
) -> tuple[dict[str, Any], np.ndarray]:
    """Fit on every row; return the artefact and the numpy models' gains on the first rows (for the check)."""
    rows = np.arange(len(data.prompts))
    pair = fit_linear(data, rows)
    trees = {name: fit_trees(data.dense, y) for name, y in (("strong", data.strong), ("weak", data.weak))}
    embedding = fit_embedding(data, rows)
    check = rows[:check_rows]
    tree_ref = trees["strong"].predict_proba(data.dense[check])[:, 1] - trees["weak"].predict_proba(data.dense[check])[:, 1]
    reference = blend(
        {"trees": tree_ref, "linear": pair.gain(data, check), "embedding": embedding_gain(embedding, data, check)},
        data,
        check,
    )
    spec = {
        "format": FORMAT,
        "dense_features": list(DENSE_FEATURE_NAMES),
        "blend": BLEND,
        "trees": {name: export_trees(model) for name, model in trees.items()},
        "linear": {"strong": export_linear(pair, "strong"), "weak": export_linear(pair, "weak")},
        "embedding": export_embedding(embedding, embeddings),
        "meta": {
            "trained_on_rows": len(rows),
            "tree_params": dict(TREE_PARAMS),
            "linear_c": LINEAR_C,
            "embedding_c": EMBEDDING_C,
            "embeddings": "wordllama l2_supercat_256 (MIT)",
            "min_df": MIN_DF,
            "vocabulary": len(pair.vocabulary),
            "validation": validation,
        },
    }
    return spec, reference


def write_artefact(spec: dict[str, Any], path: Path) -> None:
    payload = json.dumps(spec, separators=(",", ":"), sort_keys=True).encode("utf-8")
    # mtime=0 and no file name in the header: the same model gives the same bytes.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(payload)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="benchmark CSV (source,prompt,weak_correct,strong_correct)")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds (default 3: a third of GSM8K each)")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="where to write the artefact")
    parser.add_argument("--oof-scores", type=Path, help="also write the out-of-fold blend scores (source,prompt,score)")
    parser.add_argument("--no-validate", action="store_true", help="skip cross-validation (faster)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.exists():
        print(f"no training data at {args.data}", file=sys.stderr)
        return 2
    embeddings = Embeddings.load()
    data = load(args.data, embeddings)
    print(f"{len(data.prompts)} prompts from {args.data}", file=sys.stderr)
    validation: dict[str, Any] = {}
    if not args.no_validate:
        candidates, folds = cross_validate(data, args.folds)
        results = {name: summarise(fold_reports(data, scores, folds)) for name, scores in candidates.items()}
        print(f"held-out validation, {args.folds} folds (whole MMLU subjects + 1/{args.folds} of GSM8K each), mean over folds:")
        print_table(results)
        validation = {"folds": args.folds, "results": results}
        if args.oof_scores:
            with args.oof_scores.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["source", "prompt", "score"])
                for source, prompt, value in zip(data.sources, data.prompts, candidates["blend"]):
                    writer.writerow([source, prompt, f"{0.5 + 0.5 * value:.6f}"])
    spec, reference = train_artefact(data, embeddings, validation)
    write_artefact(spec, args.out)
    # The served pure-Python scorer must agree with the numpy models (only weight rounding differs).
    scorer = ComplexityScorer(spec)
    served = np.array([scorer.expected_gain(p) for p in data.prompts[: len(reference)]])
    drift = float(np.abs(served - reference).max())
    size_kib = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kib:.0f} KiB, {spec['meta']['vocabulary']} tokens); max served-vs-numpy difference {drift:.1e}", file=sys.stderr)
    if drift > 1e-3:
        print("served scorer disagrees with the trained models", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

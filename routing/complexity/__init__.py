"""The complexity scorer: how likely a message is to need the premium model.

``score(prompt)`` returns a float in [0, 1]: ``0.5 + (P(strong right) - P(weak right)) / 2``, the
expected accuracy gain of the strong model mapped onto [0, 1]. Higher means "route to premium".
It is a blend of three small models trained offline by ``scripts/train_scorer.py`` from
``../shared/routing-benchmark/train.csv`` (see docs/routing-scorer.md):

- gradient-boosted trees on the hand-made features of ``features.dense_features``;
- a logistic regression on word / bigram presence plus the same hand-made features;
- a logistic regression on the mean of the prompt's word-piece embeddings (``pieces``; WordLlama's
  pretrained embeddings, which also know words the training prompts never used).

Each is a pair (one predicts the strong model's correctness, one the weak model's); the difference is
the expected gain. Pure Python at run time: the artefact (model.json.gz) is loaded once, lazily, and
cached; no network, nothing downloaded.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .features import DENSE_FEATURE_NAMES, clip, extract
from .pieces import PieceTokenizer, words

__all__ = ["ComplexityScorer", "MODEL_PATH", "score", "get_scorer"]

MODEL_PATH = Path(__file__).with_name("model.json.gz")
FORMAT = "agencyhub-complexity-scorer/2"
_IS_MCQ = DENSE_FEATURE_NAMES.index("is_mcq")


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    z = math.exp(value)
    return z / (1.0 + z)


class _Trees:
    """A boosted tree ensemble exported from scikit-learn: ``raw = baseline + sum(leaf values)``.

    Each tree is flat parallel lists (feature, threshold, left, right, value); a node with feature -1
    is a leaf. Going left means ``x[feature] <= threshold``, as in scikit-learn.

    At load the ensemble is compiled to one Python function: each tree becomes a nested conditional
    expression, so scoring runs no interpreter loop over nodes (about a third of the time of walking the
    lists). The source is built only from ``int`` and ``float`` values of the artefact, never from its
    text, and the leaves are added in the same order as the walk, so the sum is the same to the bit
    (``walk`` is kept as the reference, and tests compare the two).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.baseline: float = float(spec["baseline"])
        self.trees: list[tuple[list[int], list[float], list[int], list[int], list[float]]] = [
            (t["feature"], t["threshold"], t["left"], t["right"], t["value"]) for t in spec["trees"]
        ]
        self.raw = self._compile()

    def walk(self, x: Sequence[float]) -> float:
        total = self.baseline
        for feature, threshold, left, right, value in self.trees:
            node = 0
            while feature[node] >= 0:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
            total += value[node]
        return total

    def _compile(self) -> Callable[[Sequence[float]], float]:
        def number(value: Any) -> str:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("complexity model has a non-finite threshold or leaf; run scripts/train_scorer.py")
            return repr(value)

        def expression(tree: tuple, node: int) -> str:
            feature, threshold, left, right, value = tree
            if int(feature[node]) < 0:
                return number(value[node])
            return (f"({expression(tree, int(left[node]))} if x[{int(feature[node])}] <= {number(threshold[node])} "
                    f"else {expression(tree, int(right[node]))})")

        lines = ["def raw(x):", f"    total = {number(self.baseline)}"]
        lines += [f"    total += {expression(tree, 0)}" for tree in self.trees]
        lines.append("    return total")
        namespace: dict[str, Any] = {}
        exec(compile("\n".join(lines), "<complexity trees>", "exec"), {"__builtins__": {}}, namespace)  # noqa: S102
        return namespace["raw"]


class _Linear:
    """Logistic regression over L2-normalised token presence plus standardised dense features.

    The standardisation is folded into ``dense`` / ``bias`` at training time, so serving is one dot
    product. ``tokens`` maps a token to its weight; unknown tokens count for nothing.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.bias: float = float(spec["bias"])
        self.dense: list[float] = [float(w) for w in spec["dense"]]
        self.tokens: dict[str, float] = spec["tokens"]

    def raw(self, x: Sequence[float], known: Sequence[str]) -> float:
        total = self.bias + sum(w * v for w, v in zip(self.dense, x))
        if known:
            weights = self.tokens
            total += sum(weights[t] for t in known) / math.sqrt(len(known))
        return total


class _Embedding:
    """A logistic regression pair on the mean of the prompt's word-piece embeddings.

    A linear model of a mean is the mean of a linear model: ``w · mean(e) = mean(w · e)``. So the
    artefact keeps, per piece, the dot product of its embedding with each model's weights (two numbers,
    not 256), and serving averages those over the prompt's pieces. Words are cut into pieces once and
    remembered (a bounded cache), so a common word costs one dictionary lookup.
    """

    _CACHE_LIMIT = 100_000
    _CACHE_WORD_CHARS = 64

    def __init__(self, spec: dict[str, Any]) -> None:
        self.tokenizer = PieceTokenizer(spec["pieces"])
        self.bias = (float(spec["bias"]["strong"]), float(spec["bias"]["weak"]))
        strong, weak = [float(v) for v in spec["strong"]], [float(v) for v in spec["weak"]]
        if not len(strong) == len(weak) == len(self.tokenizer.index):
            raise ValueError("complexity model's piece weights do not match its pieces; run scripts/train_scorer.py")
        if not all(map(math.isfinite, strong + weak)):
            raise ValueError("complexity model has a non-finite piece weight; run scripts/train_scorer.py")
        self.weights = list(zip(strong, weak))
        self._words: dict[str, tuple[float, float, int]] = {}

    def _word(self, word: str) -> tuple[float, float, int]:
        known = self._words.get(word)
        if known is None:
            strong = weak = 0.0
            ids = self.tokenizer.word_ids(word)
            for piece in ids:
                s, w = self.weights[piece]
                strong += s
                weak += w
            known = (strong, weak, len(ids))
            if len(word) > self._CACHE_WORD_CHARS:  # a pasted blob, not a word: do not let it fill the cache
                return known
            if len(self._words) >= self._CACHE_LIMIT:
                self._words.clear()
            self._words[word] = known
        return known

    def raw(self, text: str) -> tuple[float, float]:
        """The two models' logits (strong, weak) for `text`."""
        strong, weak = self.weights[self.tokenizer.bos]
        count = 1
        for word in words(text):
            s, w, n = self._word(word)
            strong += s
            weak += w
            count += n
        return self.bias[0] + strong / count, self.bias[1] + weak / count


class ComplexityScorer:
    """Scores prompts with a trained artefact; thread-safe after construction (read-only state)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if spec.get("format") != FORMAT:
            raise ValueError(f"unknown complexity model format {spec.get('format')!r}")
        if tuple(spec["dense_features"]) != DENSE_FEATURE_NAMES:
            # Features changed in code without retraining: scoring would silently be wrong.
            raise ValueError("complexity model was trained on other features; run scripts/train_scorer.py")
        self.meta: dict[str, Any] = spec.get("meta", {})
        # Weights of the three pairs' gains (trees, linear, embedding) for multiple-choice and for open
        # prompts, chosen on held-out APGR.
        self.blend: dict[bool, dict[str, float]] = {
            kind == "multiple_choice": {k: float(spec["blend"][kind][k]) for k in ("trees", "linear", "embedding")}
            for kind in ("multiple_choice", "open")
        }
        self._trees = {k: _Trees(spec["trees"][k]) for k in ("strong", "weak")}
        self._linear = {k: _Linear(spec["linear"][k]) for k in ("strong", "weak")}
        self._embedding = _Embedding(spec["embedding"])
        # Every token either model knows (both share one vocabulary).
        self._vocabulary = frozenset(self._linear["strong"].tokens)

    @classmethod
    def load(cls, path: Path | str = MODEL_PATH) -> "ComplexityScorer":
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return cls(json.load(handle))

    def expected_gain(self, prompt: str) -> float:
        """P(strong right) - P(weak right), in [-1, 1]."""
        dense, tokens = extract(prompt)
        known = sorted(tokens & self._vocabulary)  # sorted: float sums in a fixed order → deterministic
        tree_gain = _sigmoid(self._trees["strong"].raw(dense)) - _sigmoid(self._trees["weak"].raw(dense))
        linear_gain = _sigmoid(self._linear["strong"].raw(dense, known)) - _sigmoid(
            self._linear["weak"].raw(dense, known)
        )
        blend = self.blend[dense[_IS_MCQ] > 0.5]
        gain = blend["trees"] * tree_gain + blend["linear"] * linear_gain
        if blend["embedding"]:
            strong, weak = self._embedding.raw(clip(prompt))
            gain += blend["embedding"] * (_sigmoid(strong) - _sigmoid(weak))
        return gain

    def score(self, prompt: str) -> float:
        """Complexity score in [0, 1]; higher = more likely to need the strong model."""
        return 0.5 + 0.5 * self.expected_gain(prompt)

    def score_many(self, prompts: Iterable[str]) -> list[float]:
        return [self.score(p) for p in prompts]


_scorer: ComplexityScorer | None = None
_lock = threading.Lock()


def get_scorer() -> ComplexityScorer:
    """The scorer for the shipped artefact, loaded on first use and cached for the process."""
    global _scorer
    if _scorer is None:
        with _lock:
            if _scorer is None:
                _scorer = ComplexityScorer.load()
    return _scorer


def score(prompt: str) -> float:
    """Complexity score of one message in [0, 1] (see module docstring)."""
    return get_scorer().score(prompt)

"""Feature extraction for the complexity scorer — the ONE implementation used by training and serving.

Pure Python (``re`` and ``math`` only) so the runtime scorer needs no numpy, and so the training script
(scripts/train_scorer.py) and the server can never compute features differently.

Two kinds of features:
- ``dense_features``: a fixed-order vector of hand-made cues — the prompt family (maths word problem vs
  multiple choice), lengths, numbers, maths notation, multi-step wording, negations ("NOT", "EXCEPT"),
  answer-option structure ("True, True", "I and II only", numeric options), passages to read.
- ``tokens``: a set of lower-cased words and word bigrams (stem and options kept apart), looked up in a
  learned vocabulary; words never seen in training simply contribute nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

# "\nA. text" … "\nD. text" then "Answer:" — the multiple-choice layout (MMLU style). Also accept
# "A)" and lower-case letters, which real chat messages use.
_OPTION_RE = re.compile(r"^\s*\(?([A-Ha-h])[.)]\s+(.*)$")
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_NUMBER_RE = re.compile(r"(?<![A-Za-z])[-−]?\$?\d+(?:[.,]\d+)*%?")
_MATH_SYMBOL_RE = re.compile(r"[=+*/^<>≤≥×÷√∑∫π]|\\[a-z]+|\b(?:log|sin|cos|tan|lim|mod)\b")
_SENTENCE_RE = re.compile(r"[.!?]+(?:\s|$)")
_NEGATION_RE = re.compile(r"\b(?:NOT|EXCEPT|LEAST|FALSE|INCORRECT|NEVER)\b")
_STATEMENT_RE = re.compile(r"\b(?:Statement|Scenario)\s*[12]\s*\|")
_ROMAN_RE = re.compile(r"\b(?:I{1,3}|IV|V)\b(?:,| and| only)")
_PAIR_OPTION_RE = re.compile(r"^(?:true|false|wrong|not wrong|yes|no)\s*,\s*(?:true|false|wrong|not wrong|yes|no)$", re.I)
_ALL_NONE_RE = re.compile(r"\b(?:all|none|both|neither) of the (?:above|following)\b", re.I)
_PASSAGE_RE = re.compile(r"refers? to the following|following (?:passage|excerpt|information|text|poem|quote)", re.I)
# Word sets counted over the lower-cased stem words (set look-ups: a big regex alternation was the
# slowest part of the scorer). Multi-step wording in maths word problems: each usually adds a step.
_STEP_WORDS = frozenset(
    "each every per total twice half times remaining left fewer percent average ratio after then if profit "
    "discount rate difference respectively altogether instead except".split()
)
_STEP_BIGRAMS = frozenset({("more", "than"), ("less", "than"), ("how", "many"), ("how", "much")})
_NEGATION_WORDS = frozenset("not except least false incorrect never cannot neither".split())
_QUESTION_WORDS = frozenset("which what how why when who where calculate find compute determine evaluate solve".split())

# Longer messages keep their head and tail only: the latency budget (p99 < 5 ms) must hold for a pasted
# document too, and the question (and any answer options) sits at the end. The longest benchmark prompt
# is ~3,700 characters, so training never sees the cut; the full length still feeds `log_chars`.
MAX_CHARS = 4_000
_HEAD_CHARS = 1_000


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt split into its question stem and (if it is multiple choice) the answer options."""

    text: str
    stem: str
    options: tuple[str, ...]
    length: int  # of the whole prompt, before any cut

    @cached_property
    def stem_words(self) -> list[str]:
        """Lower-cased words of the stem, numbers as "0" (shared by the dense features and the tokens)."""
        return _words(self.stem)

    @property
    def is_multiple_choice(self) -> bool:
        return len(self.options) >= 2


def clip(prompt: str) -> str:
    """The part of a prompt that is read: all of it, or its head and tail if it is longer than MAX_CHARS."""
    prompt = prompt or ""
    return prompt if len(prompt) <= MAX_CHARS else prompt[:_HEAD_CHARS] + "\n" + prompt[-(MAX_CHARS - _HEAD_CHARS) :]


def parse(prompt: str) -> ParsedPrompt:
    """Split off trailing answer options ("A. …" lines, optionally followed by "Answer:")."""
    prompt = prompt or ""
    text = clip(prompt)
    lines = text.rstrip().split("\n")
    if lines and lines[-1].strip().lower().rstrip(":") == "answer":
        lines = lines[:-1]
    options: list[str] = []
    cut = len(lines)
    # Walk up from the end while lines look like consecutive options (…, C., B., A.).
    for index in range(len(lines) - 1, -1, -1):
        match = _OPTION_RE.match(lines[index])
        if not match:
            if lines[index].strip() == "" and not options:
                continue
            break
        options.append(match.group(2).strip())
        cut = index
        if match.group(1).upper() == "A":
            break
    if len(options) < 2:
        return ParsedPrompt(text=text, stem=text.strip(), options=(), length=len(prompt))
    options.reverse()
    return ParsedPrompt(text=text, stem="\n".join(lines[:cut]).strip(), options=tuple(options), length=len(prompt))


def _log1p(value: float) -> float:
    return math.log1p(max(value, 0.0))


def _is_numeric_option(option: str) -> bool:
    stripped = option.replace(",", "").replace("$", "").replace("%", "").strip()
    return bool(stripped) and bool(re.fullmatch(r"[-−]?\d+(?:\.\d+)?(?:\s*[a-zA-Z/^\d ]{0,12})?", stripped))


# The order of this tuple is the order of the dense vector; the artefact stores the names and the
# loader checks them, so adding a feature without retraining fails loudly instead of silently.
DENSE_FEATURE_NAMES: tuple[str, ...] = (
    "is_mcq",
    "is_open",
    "log_chars",
    "log_stem_words",
    "log_option_chars",
    "option_len_spread",
    "numeric_options",
    "pair_options",
    "roman_options",
    "all_none_option",
    "statement_pairs",
    "passage",
    "numbers",
    "numbers_per_100_words",
    "math_symbols",
    "step_words",
    "sentences",
    "negation_caps",
    "negation_words",
    "question_words",
    "long_words",
    "capitalised_words",
    "open_log_chars",
    "open_numbers",
    "open_step_words",
    "open_sentences",
    "open_decimals_fractions",
    "open_big_numbers",
)


def dense_features(parsed: ParsedPrompt) -> list[float]:
    """Hand-made difficulty cues, in DENSE_FEATURE_NAMES order. Counts are log-scaled to tame outliers."""
    stem = parsed.stem
    words = stem.split()
    n_words = len(words)
    options = parsed.options
    mcq = 1.0 if parsed.is_multiple_choice else 0.0
    option_lengths = [len(o) for o in options] or [0]
    numbers = _NUMBER_RE.findall(stem)
    math_symbols = len(_MATH_SYMBOL_RE.findall(parsed.text))
    lower_words = parsed.stem_words
    steps = (
        sum(1 for w in lower_words if w in _STEP_WORDS)
        + sum(1 for pair in zip(lower_words, lower_words[1:]) if pair in _STEP_BIGRAMS)
        + stem.count("%")
    )
    sentences = len(_SENTENCE_RE.findall(stem)) or 1
    long_words = sum(1 for w in words if len(w.strip(".,;:?!()\"'")) >= 10)
    capitalised = sum(1 for w in words[1:] if w[:1].isupper())
    decimals_fractions = sum(1 for n in numbers if "." in n or "%" in n) + stem.count("/")
    big_numbers = sum(1 for n in numbers if len(re.sub(r"\D", "", n)) >= 4)
    is_open = 1.0 - mcq
    vector = [
        mcq,
        is_open,
        _log1p(parsed.length),
        _log1p(n_words),
        _log1p(sum(option_lengths)) * mcq,
        (max(option_lengths) - min(option_lengths)) / (1.0 + sum(option_lengths) / len(option_lengths)) * mcq,
        (sum(1 for o in options if _is_numeric_option(o)) / len(options)) if options else 0.0,
        (sum(1 for o in options if _PAIR_OPTION_RE.match(o)) / len(options)) if options else 0.0,
        (sum(1 for o in options if _ROMAN_RE.search(o)) / len(options)) if options else 0.0,
        1.0 if any(_ALL_NONE_RE.search(o) for o in options) else 0.0,
        1.0 if _STATEMENT_RE.search(stem) else 0.0,
        1.0 if _PASSAGE_RE.search(stem) else 0.0,
        _log1p(len(numbers)),
        min(len(numbers) * 100.0 / (n_words + 1), 50.0) / 10.0,
        _log1p(math_symbols),
        _log1p(steps),
        _log1p(sentences),
        _log1p(len(_NEGATION_RE.findall(stem))),
        _log1p(sum(1 for w in lower_words if w in _NEGATION_WORDS)),
        _log1p(sum(1 for w in lower_words if w in _QUESTION_WORDS)),
        long_words / (n_words + 1),
        capitalised / (n_words + 1),
        # Open (non multiple-choice) prompts — maths word problems — get their own copies of the
        # cues, so a linear model can weigh "one more number" differently in each family.
        _log1p(parsed.length) * is_open,
        _log1p(len(numbers)) * is_open,
        _log1p(steps) * is_open,
        _log1p(sentences) * is_open,
        _log1p(decimals_fractions) * is_open,
        _log1p(big_numbers) * is_open,
    ]
    return vector


def _words(text: str) -> list[str]:
    return ["0" if w[0].isdigit() else w for w in _WORD_RE.findall(text.lower())]


def tokens(parsed: ParsedPrompt) -> set[str]:
    """Word unigrams and bigrams of the stem (``w:`` / ``b:``) and unigrams of the options (``o:``).

    Numbers collapse to "0" (the value rarely matters, the presence does). Options are kept apart
    from the stem because "none of the above" as an answer means something else than in a question.
    """
    stem_words = parsed.stem_words
    out = {"w:" + w for w in stem_words}
    out.update("b:" + a + "_" + b for a, b in zip(stem_words, stem_words[1:]))
    for option in parsed.options:
        out.update("o:" + w for w in _words(option))
    return out


def extract(prompt: str) -> tuple[list[float], set[str]]:
    """Dense hand-made features and sparse tokens of one prompt."""
    parsed = parse(prompt)
    return dense_features(parsed), tokens(parsed)

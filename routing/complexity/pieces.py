"""Word pieces: a prompt as a sequence of ids in a fixed subword vocabulary (pure Python).

The embedding pair of the scorer (``routing.complexity``) averages one learnt number per piece, so it
needs the prompt cut into the pieces of the vocabulary it was trained on: WordLlama's 32,000 pieces (the
Llama-2 vocabulary, "▁" marks a space). Training (``scripts/train_scorer.py``) and serving both cut with
this module, so the two cannot drift apart.

The cut is SentencePiece's normalisation (a leading "▁", spaces as "▁") followed by a greedy
longest-match of each word against the vocabulary, with UTF-8 byte pieces (``<0x0A>``) for anything the
vocabulary lacks. That is not byte-for-byte what the Llama BPE merges would produce, but it is close,
deterministic and needs no tokenizer library; what matters is that training and serving agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

BOS = "<s>"
_SPACE = "▁"
# A word: any run of "▁" with the non-space characters after it (or a trailing run of "▁" alone).
_WORD_RE = re.compile(f"{_SPACE}*[^{_SPACE}]+|{_SPACE}+")


def words(text: str) -> list[str]:
    """SentencePiece-normalised words of `text`: "a b" -> ["▁a", "▁b"]."""
    return _WORD_RE.findall(_SPACE + text.replace(" ", _SPACE))


class PieceTokenizer:
    """Greedy longest-match over a vocabulary given as its pieces in id order."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self.index: dict[str, int] = {piece: i for i, piece in enumerate(pieces)}
        missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in self.index]
        if missing or BOS not in self.index:
            raise ValueError("piece vocabulary lacks its byte pieces or <s>; run scripts/train_scorer.py")
        self.bos = self.index[BOS]
        self._bytes = [self.index[f"<0x{b:02X}>"] for b in range(256)]
        # Every prefix of every piece -> the piece's id if the prefix is itself a piece, else -1. The longest match
        # at a position is found by growing the candidate one character at a time until it is no piece's prefix:
        # a few lookups per piece cut, however long the word (random letters, base64, CJK runs without spaces).
        self._prefixes: dict[str, int] = {}
        for piece in pieces:
            for end in range(1, len(piece)):
                self._prefixes.setdefault(piece[:end], -1)
        self._prefixes.update(self.index)
        self._char_bytes: dict[str, list[int]] = {}

    def word_ids(self, word: str) -> list[int]:
        prefixes, ids, start, size = self._prefixes, [], 0, len(word)
        while start < size:
            best, best_end, end = -1, start, start + 1
            while end <= size:
                piece = prefixes.get(word[start:end])
                if piece is None:
                    break
                if piece >= 0:
                    best, best_end = piece, end
                end += 1
            if best >= 0:
                ids.append(best)
                start = best_end
            else:  # not in the vocabulary, not even as one character: its UTF-8 bytes
                ids.extend(self._byte_ids(word[start]))
                start += 1
        return ids

    def _byte_ids(self, char: str) -> list[int]:
        known = self._char_bytes.get(char)
        if known is None:
            known = [self._bytes[b] for b in char.encode("utf-8", "surrogatepass")]
            if len(self._char_bytes) < 100_000:
                self._char_bytes[char] = known
        return known

    def ids(self, text: str) -> list[int]:
        """The piece ids of `text`, after <s> (as the embeddings were trained to see it)."""
        out = [self.bos]
        for word in words(text):
            out.extend(self.word_ids(word))
        return out

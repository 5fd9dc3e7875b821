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
        # Longest piece by first character: most characters start no multi-character piece (CJK, symbols), so a
        # long unspaced run costs one lookup per character instead of one per possible piece length.
        self._longest: dict[str, int] = {}
        for piece in pieces:
            if piece and len(piece) > self._longest.get(piece[0], 0):
                self._longest[piece[0]] = len(piece)

    def word_ids(self, word: str) -> list[int]:
        index, longest, ids, start = self.index, self._longest, [], 0
        while start < len(word):
            for end in range(min(len(word), start + longest.get(word[start], 0)), start, -1):
                piece = index.get(word[start:end])
                if piece is not None:
                    ids.append(piece)
                    start = end
                    break
            else:  # not in the vocabulary, not even as one character: its UTF-8 bytes
                ids.extend(self._bytes[b] for b in word[start].encode("utf-8", "surrogatepass"))
                start += 1
        return ids

    def ids(self, text: str) -> list[int]:
        """The piece ids of `text`, after <s> (as the embeddings were trained to see it)."""
        out = [self.bos]
        for word in words(text):
            out.extend(self.word_ids(word))
        return out

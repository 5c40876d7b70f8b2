"""Text with a map back to the text it was made from, so captions can point at what the user wrote.

Every character of a `Normalized` text knows the span of input it came from: a copied character its
own one-character span, every character of a rewrite (`$3.50` → `three dollars and fifty cents`) the
whole token it replaced. Spans never go backwards, so an output span maps to (start of its first
character's source, end of its last one's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalized:
    """Normalised text and, per character, the [start, end) span of the input it came from."""

    text: str
    starts: np.ndarray  # int64: input offset where output character i's source begins
    ends: np.ndarray  # int64: input offset where it ends (exclusive)
    source_length: int  # length of the input text

    @classmethod
    def identity(cls, text: str) -> Normalized:
        """Text unchanged: character i came from character i."""
        n = len(text)
        return cls(text, np.arange(n, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64), n)

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The input span [start, end) that the output span [start, end) was made from.

        An empty output span maps to an empty input span at the source of the character after it.
        """
        n = len(self.text)
        if not 0 <= start <= end <= n:
            raise ValueError(f"span {start}:{end} is outside 0:{n}")
        if start == end:
            at = int(self.starts[start]) if start < n else self.source_length
            return at, at
        return int(self.starts[start]), int(self.ends[end - 1])

    def then(self, outer: Normalized) -> Normalized:
        """The map of `outer` (made from this text) composed with this one: outer's text → our input."""
        if outer.source_length != len(self.text):
            raise ValueError("outer was not made from this text")
        starts = np.append(self.starts, self.source_length)[outer.starts]  # a source at the end: the end
        last = np.maximum(outer.ends - 1, 0)
        ends = self.ends[last] if len(self.ends) else np.zeros(len(outer.text), np.int64)
        ends = np.where(outer.starts >= outer.ends, starts, ends)  # inserted characters have no span
        return Normalized(outer.text, starts, ends, self.source_length)


class Builder:
    """Assembles a `Normalized` piece by piece, left to right over the input.

    Pieces are remembered as (output length, input start, input end, copied?) and turned into the
    per-character map in one vectorised step at `build`, so appending costs the same for any length.
    """

    def __init__(self, source_length: int) -> None:
        self._parts: list[str] = []
        self._lengths: list[int] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._copied: list[bool] = []
        self._source_length = source_length

    def copy(self, text: str, start: int) -> None:
        """Append input characters [start, start + len(text)) unchanged."""
        if text:
            self._add(text, start, start + len(text), True)

    def replace(self, text: str, start: int, end: int) -> None:
        """Append `text` as the spoken form of input [start, end) (empty `text` drops it)."""
        if text:
            self._add(text, start, end, False)

    def insert(self, text: str, at: int) -> None:
        """Append `text` that has no source of its own (a separating space), placed at input `at`."""
        self.replace(text, at, at)

    def _add(self, text: str, start: int, end: int, copied: bool) -> None:
        self._parts.append(text)
        self._lengths.append(len(text))
        self._starts.append(start)
        self._ends.append(end)
        self._copied.append(copied)

    def last_char(self) -> str:
        """The last character appended so far, or "" at the start."""
        return self._parts[-1][-1] if self._parts else ""

    def build(self) -> Normalized:
        lengths = np.array(self._lengths, dtype=np.int64)
        total = int(lengths.sum())
        seg_starts = np.repeat(np.array(self._starts, dtype=np.int64), lengths)
        copied = np.repeat(np.array(self._copied, dtype=bool), lengths)
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)  # output offset where each piece begins
        within = np.arange(total, dtype=np.int64) - first
        starts = np.where(copied, seg_starts + within, seg_starts)
        ends = np.where(copied, starts + 1, np.repeat(np.array(self._ends, dtype=np.int64), lengths))
        return Normalized("".join(self._parts), starts, ends, self._source_length)

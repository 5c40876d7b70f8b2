"""Text with a map back to the text it was made from, so captions can point at what the user wrote.

Every character of a `Normalized` text knows the span of input it came from: a copied character its
own one-character span, every character of a rewrite (`$3.50` → `three dollars and fifty cents`) the
whole token it replaced. Spans never go backwards, so an output span maps to (start of its first
character's source, end of its last one's).

The map is built when it is first read: `normalize()` wants the text alone and never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import numpy as np

_Make = Callable[[], tuple[np.ndarray, np.ndarray]]


class Normalized:
    """Normalised text and, per character, the [start, end) span of the input it came from.

    `starts` (int64: input offset where output character i's source begins) and `ends` (where it ends,
    exclusive) are computed on first use when the text was made by a `Builder`, `identity` or `then`.
    Immutable, like the frozen dataclass it replaces (same constructor and attributes).
    """

    __slots__ = ("_ends", "_make", "_starts", "source_length", "text")

    text: str
    source_length: int  # length of the input text

    def __init__(self, text: str, starts: np.ndarray, ends: np.ndarray, source_length: int) -> None:
        set_ = object.__setattr__
        set_(self, "text", text)
        set_(self, "_starts", starts)
        set_(self, "_ends", ends)
        set_(self, "source_length", source_length)
        set_(self, "_make", None)

    @classmethod
    def lazy(cls, text: str, source_length: int, make: _Make) -> Normalized:
        """A text whose map `make()` computes when it is first asked for."""
        made = cls(text, None, None, source_length)  # type: ignore[arg-type]
        object.__setattr__(made, "_make", make)
        return made

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Normalized is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"Normalized(text={self.text!r}, source_length={self.source_length})"

    def _resolve(self) -> None:
        make = self._make
        if make is not None:
            starts, ends = make()
            set_ = object.__setattr__
            set_(self, "_starts", starts)
            set_(self, "_ends", ends)
            set_(self, "_make", None)

    @property
    def starts(self) -> np.ndarray:
        """int64: input offset where output character i's source begins."""
        if self._make is not None:
            self._resolve()
        return self._starts  # type: ignore[return-value]

    @property
    def ends(self) -> np.ndarray:
        """int64: input offset where output character i's source ends (exclusive)."""
        if self._make is not None:
            self._resolve()
        return self._ends  # type: ignore[return-value]

    @classmethod
    def identity(cls, text: str) -> Normalized:
        """Text unchanged: character i came from character i."""
        n = len(text)
        return cls.lazy(text, n, lambda: (np.arange(n, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64)))

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

        def make() -> tuple[np.ndarray, np.ndarray]:
            inner_starts, inner_ends, outer_starts, outer_ends = self.starts, self.ends, outer.starts, outer.ends
            starts = np.append(inner_starts, self.source_length)[outer_starts]  # a source at the end: the end
            last = np.maximum(outer_ends - 1, 0)
            ends = inner_ends[last] if len(inner_ends) else np.zeros(len(outer.text), np.int64)
            ends = np.where(outer_starts >= outer_ends, starts, ends)  # inserted characters have no span
            return starts, ends

        return Normalized.lazy(outer.text, self.source_length, make)


class Builder:
    """Assembles a `Normalized` piece by piece, left to right over the input.

    Pieces are remembered as (output length, input start, input end, copied?) and turned into the
    per-character map in a few vectorised steps when the map is first read, so appending costs the same
    for any length and a caller that wants the text alone never builds it.
    """

    __slots__ = ("_parts", "_pieces", "_source_length")

    def __init__(self, source_length: int) -> None:
        self._parts: list[str] = []
        self._pieces: list[tuple[int, int, int, int]] = []
        self._source_length = source_length

    def copy(self, text: str, start: int) -> None:
        """Append input characters [start, start + len(text)) unchanged."""
        if text:
            self._parts.append(text)
            self._pieces.append((len(text), start, start + len(text), 1))

    def replace(self, text: str, start: int, end: int) -> None:
        """Append `text` as the spoken form of input [start, end) (empty `text` drops it)."""
        if text:
            self._parts.append(text)
            self._pieces.append((len(text), start, end, 0))

    def insert(self, text: str, at: int) -> None:
        """Append `text` that has no source of its own (a separating space), placed at input `at`."""
        self.replace(text, at, at)

    def last_char(self) -> str:
        """The last character appended so far, or "" at the start."""
        return self._parts[-1][-1] if self._parts else ""

    def build(self) -> Normalized:
        """The text now; its map when first read (the builder must not be used after this)."""
        pieces = self._pieces

        def make() -> tuple[np.ndarray, np.ndarray]:
            table = np.fromiter(chain.from_iterable(pieces), np.int64, 4 * len(pieces)).reshape(-1, 4)
            lengths, copied = table[:, 0], table[:, 3]
            first = np.cumsum(lengths) - lengths  # output offset where each piece begins
            # a copied piece's characters count up from its start, a rewrite's all have its span
            each_copied = np.repeat(copied, lengths)
            starts = np.repeat(table[:, 1] - first * copied, lengths) + np.arange(len(each_copied)) * each_copied
            ends = np.where(each_copied == 1, starts + 1, np.repeat(table[:, 2], lengths))
            return starts, ends

        return Normalized.lazy("".join(self._parts), self._source_length, make)

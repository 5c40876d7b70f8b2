"""Word timings on the text the client sent: engine timings mapped back through every text step.

An engine times spans of the text it was given: a segment after normalisation ("25" → twenty five),
regex and word lexicon entries, SSML stripping, routing and segmentation. A `WordTimer` keeps, for each
segment of a stream, a per-character map from that text back to the request's own text (or, for text
normalisation left as it is, just where the segment starts in it), and turns the
engine's timings into exactly one `Timing` per word of the request: in order, not overlapping, each word
once. A word is a run of non-space characters with a letter or digit in it ("25", "$3.50", "Dr.",
"don't,"); in Chinese and Japanese every ideograph or kana is a word of its own (punctuation goes with the
character before it). Several engine timings on one word ("twenty" "five" on "25") become one; one engine
timing on several words (espeak-ng's "from the" said as one word, a Japanese word of three characters) is
shared by them in proportion to their length. A word no engine timing reaches (its text was dropped, or
the engine lost step) gets an estimate between its neighbours, marked `estimated`.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from voxgate.core.types import Timing, Timings, shared_edges, word_spans
from voxgate.text.normalize import Normalized, normalize_mapped
from voxgate.text.shown import shown

FALLBACK_WINDOW = 64  # characters past a segment's length searched when its text is not found as it is


def copied_at(a: str, b: str, start: int = 0) -> int:
    """Where `a` sits in `b` copied as it is (most segments), from `start` past white space in `b` before a's
    first character (as `align` reads it), or -1."""
    j = start
    if a and not a[0].isspace():
        while j < len(b) and b[j].isspace():
            j += 1
    return j if b.startswith(a, j) else -1


def _said_on(base: np.ndarray, text: str, starts: list[int], document: str) -> np.ndarray:
    """`base` (each character of the spoken `text`: its place in the `document`, -1 for none) with the letters
    said between a word's last placed letter and the next word's first placed one given to one of the two
    words: a `<sub alias>` longer than its word ("World Wide Web" for "WWW": "WWW" is placed on "World" alone,
    and "Wide Web" would be said in no word's time). To the second when a `<sub` tag opens between them (the
    alias's first words come before its word's placed letters: "the UN" for "UN"), else to the first. Not when
    a word lies between the two (a `<say-as>` reading matches nothing of its word, whose time is then
    estimated between its neighbours)."""
    placed = [i for i in np.flatnonzero(base >= 0).tolist() if not text[i].isspace()]
    out = base
    for a, b in itertools.pairwise(placed):
        if b - a > 1 and bisect_right(starts, int(base[b])) - bisect_right(starts, int(base[a])) <= 1:
            if out is base:
                out = base.copy()
            owner = base[b] if "<sub" in document[int(base[a]) + 1:int(base[b])] else base[a]
            for i in range(a + 1, b):
                if not text[i].isspace():
                    out[i] = owner
    return out


def align(a: str, b: str, start: int = 0) -> np.ndarray:
    """For each character of `a`, the index of the same character in `b` at or after `start`, or -1.

    Copied text (white space squeezed, stripped, cut) is matched in one linear pass; where `a` was
    rewritten (a lexicon entry), the rest is matched with difflib inside a window of `b`.
    """
    j = copied_at(a, b, start)  # what the loop below finds for copied text (it passes white space in `b`)
    if j >= 0:
        return np.arange(j, j + len(a), dtype=np.int64)
    out = np.full(len(a), -1, np.int64)
    i, j = 0, start
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            out[i] = j
            i, j = i + 1, j + 1
        elif a[i].isspace():
            i += 1
        elif b[j].isspace():
            j += 1
        else:
            break
    if i < len(a) and j < len(b):
        rest = a[i:]
        window = b[j:j + 2 * len(rest) + FALLBACK_WINDOW]
        matcher = difflib.SequenceMatcher(None, rest, window, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                out[i + block.a + k] = j + block.b + k
    return out


@dataclass
class _Source:
    """Text normalisation read as one piece (the request's text, a part of it, a dialect's segment),
    where it sits in the request's text, and how far its segments have been matched."""

    norm: Normalized
    base: np.ndarray  # int64: for each character of the source's text, its offset in the request's text
    cursor: int = 0  # characters of the normalised text matched to segments so far
    last: dict[int, int] = field(default_factory=dict)  # word start in the request → its last normalised letter
    # Where the source's text starts in the request's text when normalisation left it as it is (most text):
    # normalised character i is then request character offset + i, and the maps above are not needed. -1: not so.
    offset: int = -1


@dataclass
class _Segment:
    source: _Source
    text: str
    starts: np.ndarray | None = None  # per character of the engine's text: request-text span start, or -1
    ends: np.ndarray | None = None
    norm_index: np.ndarray | None = None  # per character of the engine's text: its normalised character, or -1
    # The engine's text copied from the source's normalised text as it is, from this normalised character, in a
    # source normalisation left as it is (_Source.offset): then character c is request character
    # source.offset + shift + c, and the three maps above are not made. -1: not so.
    shift: int = -1


@dataclass
class WordTimer:
    """The words of one request and when each is said, filled in piece by piece as a stream is read."""

    text: str  # what the client sent
    units: list[tuple[int, int]] = field(default_factory=list, init=False)  # word spans, in order
    _sources: dict[object, _Source] = field(default_factory=dict)
    _segments: dict[int, _Segment] = field(default_factory=dict)
    _search: int = 0  # where the next source is looked for in `text`
    _next: int = 0  # the first word not yet given a timing
    _last_end: float = 0.0  # seconds where the last timed word ends
    _held: dict[int, tuple[float, float, bool]] = field(default_factory=dict)  # word → timing so far
    _complete: set[int] = field(default_factory=set)  # held words whose every character has been heard
    _starts: list[int] = field(default_factory=list)  # of `units`, for bisecting
    _ends: list[int] = field(default_factory=list)
    # Text normalisation left as it is is read by offset (_Source.offset), not through the per-character maps
    # (issue 16: ~60% of the timer's cost on such text); False reads all text through the maps (a test compares)
    by_offset: ClassVar[bool] = True

    @property
    def sources(self) -> dict[object, _Source]:
        """The sources made so far, by key."""
        return self._sources

    @functools.cached_property
    def _view(self) -> str:
        """The request's text as a reader sees it (`shown`, read as an SSML document), made once for the sources
        not found in the text as they are."""
        return shown(self.text, ssml=True)

    def source(self, key: object, text: str, language: str | None, spoken: bool,
               norm: Normalized | None = None) -> _Source:
        """The source `key` (made once): `text`, normalised as the service does (`norm`, when the service
        hands over what it made), placed in the request's text."""
        found = self._sources.get(key)
        if found is not None:
            return found
        at = self.text.find(text, self._search) if text else -1
        spans = word_spans(shown(text, ssml=False))  # (an inline override [word](/ipa/): one word)
        units = self.units
        known_units = len(units)
        if at >= 0:
            base = np.arange(at, at + len(text), dtype=np.int64)
            self._search = at + len(text)
            units += [(s + at, e + at) for s, e in spans] if at else spans
        else:  # not there as it is (SSML: entities, say-as, sub): matched character by character to the
            # document's text as it reads (`shown`: tags blanked, an entity its character, so "AT&amp;T" is one
            # word); the words are the document's, what was not matched (a say-as reading) has no place, and
            # its words are estimated between their neighbours; what was said past a word's matched part (a sub
            # alias) is that word's (`_said_on`)
            view = self._view
            base = align(text, view, self._search)
            known = np.flatnonzero(base >= 0)
            if len(known):
                lo, hi = int(base[known[0]]), int(base[known[-1]]) + 1
                found = word_spans(view[lo:hi], lo)
                units += found
                self._search = hi
                base = _said_on(base, text, [s for s, _ in found], self.text)
        # A source is looked for after where the last one was placed, so its words (in order) follow theirs; the
        # one place they could be out of order is where they meet (checked there, not over every word again)
        if 0 < known_units < len(units) and units[known_units - 1] >= units[known_units]:
            units = self.units = sorted(set(units))
            self._starts, self._ends = [u[0] for u in units], [u[1] for u in units]
        else:
            self._starts += [u[0] for u in units[known_units:]]
            self._ends += [u[1] for u in units[known_units:]]
        if norm is None or norm.source_length != len(text):
            norm = normalize_mapped(text, language, spoken=spoken)
        if self.by_offset and at >= 0 and norm.text == text:
            # Left as it is (a step that changes nothing maps each character to itself: normalize's _chain): no
            # word is read from several (refine), and each word's last letter is its own (take finds it)
            made = self._sources[key] = _Source(norm, base, offset=at)
            return made
        made = self._sources[key] = _Source(refine(norm, text, spans), base)
        norm = made.norm
        if len(norm.text) and len(base) and self.units:  # the last normalised letter said for each word
            letters = np.array([c.isalnum() for c in norm.text]) & (norm.ends > norm.starts)
            at = base[np.minimum(norm.starts, len(base) - 1)]
            k = np.searchsorted(np.array(self._starts), at, side="right") - 1
            ok = letters & (k >= 0)
            ok &= at < np.array(self._ends)[np.maximum(k, 0)]
            for i, unit in zip(np.flatnonzero(ok).tolist(), k[ok].tolist(), strict=True):
                made.last[self._starts[unit]] = i
        return made

    def segment(self, key: int, source: _Source, text: str) -> None:
        """Engine call `key` says `text`, the next stretch of `source`'s normalised text. A key is a call's
        place in the stream, not its segment index: a segment routed into several voices (scripts mixed) is
        one index and several calls."""
        self._segments[key] = _Segment(source, text)

    def prepared(self, key: int, said: str, text: str | None = None) -> None:
        """The engine is given `said` for call `key` (its text with lexicon words applied): matched to the
        source's normalised text now, in stream order. A call not known ahead (a text stream's, whose input
        comes later) is `text`, already normalised: its words are those of the calls' texts joined by a space."""
        seg = self._segments.get(key)
        if seg is None:
            if text is None:
                return
            if not self._sources:  # the first of a text stream's segments: its text is all there is
                self.text = ""
            self.text += (" " if self.text else "") + text
            seg = self._segments[key] = _Segment(self.source(("fed", key), text, None, False), text)
        src = seg.source
        if src.offset >= 0 and said == seg.text and said:  # copied as it is from an unchanged source (most
            # segments): placed by where it starts, as align would find it
            j = copied_at(said, src.norm.text, src.cursor)
            if j >= 0:
                seg.shift, src.cursor = j, j + len(said)
                return
        seg.shift = -1  # through the maps below
        to_norm = align(seg.text, src.norm.text, src.cursor)
        if said != seg.text:
            inner = align(said, seg.text)
            to_norm = np.where(inner >= 0, to_norm[np.maximum(inner, 0)], -1)
        known = np.flatnonzero(to_norm >= 0)
        if len(known):
            src.cursor = int(to_norm[known[-1]]) + 1
        norm_n = len(src.norm.text)
        ok = (to_norm >= 0) & (to_norm < norm_n)
        seg.norm_index = np.where(ok, to_norm, -1)
        safe = np.where(ok, to_norm, 0)
        starts = src.norm.starts[safe] if norm_n else np.zeros(len(said), np.int64)
        ends = src.norm.ends[safe] if norm_n else np.zeros(len(said), np.int64)
        real = ok & (ends > starts)  # inserted characters (a space between words) have no source
        n_base = len(src.base)
        if n_base:
            # (np.minimum and np.maximum: np.clip's Python wrapper checks the bounds' types, half its cost here)
            first = src.base[np.maximum(np.minimum(starts, n_base - 1), 0)]
            last = src.base[np.maximum(np.minimum(ends - 1, n_base - 1), 0)]
            real &= (first >= 0) & (last >= 0)  # a character of the source found nowhere in the request
            seg.starts, seg.ends = np.where(real, first, -1), np.where(real, last + 1, -1)
        else:
            seg.starts = seg.ends = np.full(len(said), -1, np.int64)

    def take(self, key: int, timings: Timings | None, offset: float = 0.0) -> list[Timing]:
        """The word timings that are final once call `key`'s piece is heard, from its engine timings
        (characters of the engine's text, seconds of the piece, which starts `offset` seconds into the
        stream). A word said over several pieces ("twenty | five" cut between two segments) waits for its
        last one; a word no timing reached is estimated between the words around it."""
        seg = self._segments.get(key)
        if seg is None:
            return []
        src = seg.source
        reached = -1  # the furthest normalised character the piece's timings cover
        if seg.shift >= 0:  # character c is request character at + c, normalised character shift + c
            if timings and not self._held:
                words = self._whole_words(src.offset + seg.shift, len(seg.text), timings, offset)
                if words is not None:
                    return words
            if timings:  # (comparisons, not max/min calls: this runs for every word of every piece)
                at, size, hold, top = src.offset + seg.shift, len(seg.text), self._hold, 0
                for t in timings:
                    lo, hi = t.start_char, t.end_char
                    if lo < 0:
                        lo = 0
                    if hi > size:
                        hi = size
                    if lo < hi:
                        hold(at + lo, at + hi, t.start + offset, t.end + offset, t.estimated)
                        if hi > top:
                            top = hi
                if top:
                    reached = seg.shift + top - 1
        elif seg.starts is None or seg.ends is None or seg.norm_index is None:
            return []
        elif timings:
            # Python lists, read a few characters a word: a numpy slice, mask and reduction per word cost ~4x
            starts, ends, covers = seg.starts.tolist(), seg.ends.tolist(), seg.norm_index.tolist()
            size = len(starts)
            for t in timings:
                lo, hi = max(t.start_char, 0), min(t.end_char, size)
                if lo >= hi:
                    continue
                first = min(starts[lo:hi])
                if first >= 0:  # every character has a place in the request's text (most words)
                    self._hold(first, max(ends[lo:hi]), t.start + offset, t.end + offset, t.estimated)
                else:  # without the characters that have none (-1: inserted, or found nowhere)
                    first = min((x for x in starts[lo:hi] if x >= 0), default=-1)
                    if first >= 0:
                        self._hold(first, max(x for x in ends[lo:hi] if x >= 0), t.start + offset, t.end + offset,
                                   t.estimated)
                reached = max(reached, max(covers[lo:hi]))
        units, complete = self.units, self._complete
        if src.offset >= 0:  # a word is complete when its last letter was reached (by offset, in its own text)
            at, text = src.offset, src.norm.text
            for k in self._held:
                if k in complete:
                    continue
                s, e = units[k][0] - at, units[k][1] - 1 - at  # its first and last character in the source's text
                if s < 0 or s >= len(text) or e <= reached:  # not the source's (as below), or reached whole
                    complete.add(k)
                    continue
                while e >= s and not text[e].isalnum():
                    e -= 1
                if e <= reached or e < s:  # (no letter: nothing to wait for)
                    complete.add(k)
        else:
            last = src.last
            for k in self._held:
                if last.get(units[k][0], -1) <= reached:
                    complete.add(k)
        return self._release()

    def _whole_words(self, at: int, size: int, timings: Timings, offset: float) -> list[Timing] | None:
        """`take`'s words when each timing is exactly the next word, from the first not yet timed, and no word
        is held (the engines time the words of their text, and most segments are copied as they are); None
        otherwise, with nothing changed. The same Timings as `_hold` then `_release` make (tested), without
        bisecting for each word, holding it or looking for its last letter: issue 16, a timed espeak-ng
        request's cost, where `take` was ~1% of it."""
        units, k, last_end = self.units, self._next, self._last_end
        count = len(units)
        out: list[Timing] = []
        for t in timings:
            lo, hi = t.start_char, t.end_char
            if k == count or lo < 0 or hi > size:
                return None
            start_char, end_char = units[k]
            if lo + at != start_char or hi + at != end_char:
                return None
            a = t.start + offset  # a word's whole span, as `_hold` shares it to one word: t0 + (t1 - t0) * 1.0
            b = a + ((t.end + offset) - a)
            if last_end > a:  # then as `_release` gives it: from where the word before ends, never ending first
                a = last_end
            if a > b:
                b = a
            out.append(Timing(start_char, end_char, a, b, t.estimated))
            last_end, k = b, k + 1
        self._next, self._last_end = k, last_end
        return out

    def _hold(self, lo: int, hi: int, t0: float, t1: float, estimated: bool) -> None:
        """Engine timing t0–t1 of request text [lo, hi): shared out by the words it reaches, kept until final."""
        first = bisect_right(self._ends, lo)  # the first word ending after lo
        if first < self._next:  # (max and min as comparisons, with the same results, here and below)
            first = self._next
        last = bisect_left(self._starts, hi)  # past the last word starting before hi
        if first >= last:
            return
        held = self._held
        if last - first == 1:  # one word (most timings): the whole span, as shared_edges gives it
            a, b = t0 + (t1 - t0) * 0.0, t0 + (t1 - t0) * 1.0
            old = held.get(first)
            held[first] = (a, b, estimated) if old is None else \
                (a if a < old[0] else old[0], b if b > old[1] else old[1], old[2] and estimated)
            return
        sizes = [self.units[k][1] - self.units[k][0] for k in range(first, last)]
        spans = itertools.pairwise(shared_edges(sizes, t0, t1))
        for k, (a, b) in zip(range(first, last), spans, strict=True):
            old = held.get(k)
            held[k] = (a, b, estimated) if old is None else (min(old[0], a), max(old[1], b), old[2] and estimated)

    def _release(self, final: bool = False) -> list[Timing]:
        """Timings of the words, in order, whose timing is final: complete, or a later word was reached."""
        out: list[Timing] = []
        units, held, complete = self.units, self._held, self._complete
        count, k, last_end = len(units), self._next, self._last_end  # (locals: this runs for every word)
        while k < count:
            found = held.get(k)
            if found is not None:
                if not (final or k in complete or any(j > k for j in held)):
                    break
                del held[k]
                complete.discard(k)
                a, b, estimated = found
                if last_end > a:
                    a = last_end
                if a > b:
                    b = a
                start_char, end_char = units[k]
                out.append(Timing(start_char, end_char, a, b, estimated))
                last_end, k = b, k + 1
            elif later := [j for j in held if j > k]:
                upto = min(later)
                self._next, self._last_end = k, last_end
                out += self._estimate(upto, last_end, max(held[upto][0], last_end))
                k, last_end = self._next, self._last_end
            else:
                break
        self._next, self._last_end = k, last_end
        return out

    def _estimate(self, upto: int, t0: float, t1: float) -> list[Timing]:
        """Estimated timings for the words from the next untimed one up to (not including) `upto`, shared
        out over t0–t1 by their length."""
        ks = list(range(self._next, upto))
        if not ks:
            return []
        edges = shared_edges([self.units[k][1] - self.units[k][0] for k in ks], t0, max(t1, t0))
        out = [Timing(*self.units[k], edges[n], edges[n + 1], True) for n, k in enumerate(ks)]
        self._last_end, self._next = max(t1, t0), upto
        return out

    def finish(self) -> list[Timing]:
        """Every word's timing not given yet, when the stream has ended: held ones as they are, words never
        reached estimated, at zero length, where the last timed word ends."""
        out = self._release(final=True)
        return out + self._estimate(len(self.units), self._last_end, self._last_end)


_NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion trillion point and a minus".split())


def _number_word(word: str) -> bool:
    """A word of a number read aloud ("twenty-five", "point")."""
    parts = word.lower().strip(".,;:!?").split("-")
    return all(p in _NUMBER_WORDS for p in parts)


def _has_digit(text: str, span: tuple[int, int]) -> bool:
    return any(c.isdigit() for c in text[span[0]:span[1]])


def _token(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def refine(norm: Normalized, source: str, units: list[tuple[int, int]] | None = None) -> Normalized:
    """`norm` with words read from several written words at once ("March 3rd" → March third, "7:45 pm" →
    seven forty-five PM, "5 km" → five kilometers) pointed at the written word each one reads: the same
    word where it is written alike, the one word left, or one for one in order when the counts agree.
    `units`: the word spans of `source`, when known."""
    units = word_spans(source) if units is None else units
    if len(units) < 2:
        return norm
    unit_starts = [u[0] for u in units]
    starts, ends = norm.starts.copy(), norm.ends.copy()
    from_start, from_end = norm.starts.tolist(), norm.ends.tolist()
    said = [(m.start(), m.end()) for m in re.finditer(r"\S+", norm.text)]
    n = 0
    changed = False
    while n < len(said):
        a, b = said[n]
        lo, hi = from_start[a], from_end[b - 1]
        m = n + 1
        while m < len(said) and from_start[said[m][0]] == lo:  # read from the same written words
            hi = max(hi, from_end[said[m][1] - 1])
            m += 1
        first = bisect_left(unit_starts, lo)
        inside = [u for u in units[first:bisect_right(unit_starts, hi)] if u[1] <= hi]
        if len(inside) > 1 and m - n > 1:
            words = said[n:m]
            fixed: dict[int, int] = {}  # said word → unit
            for w, (x, y) in enumerate(words):
                for u, (p, q) in enumerate(inside):
                    if u not in fixed.values() and _token(norm.text[x:y]) == _token(source[p:q]):
                        fixed[w] = u
                        break
            marks = [(-1, -1), *sorted(fixed.items()), (len(words), len(inside))]
            plan = dict(fixed)
            for (w0, u0), (w1, u1) in itertools.pairwise(marks):
                free_w, free_u = list(range(w0 + 1, w1)), list(range(u0 + 1, u1))
                if free_w and len(free_u) == 1:
                    plan.update({w: free_u[0] for w in free_w})
                elif free_w and len(free_w) == len(free_u):
                    plan.update(dict(zip(free_w, free_u, strict=True)))
                elif len(free_u) == 2 and _has_digit(source, inside[free_u[0]]) and \
                        not _has_digit(source, inside[free_u[1]]):  # "3.5 kg": the number, then its unit
                    said_words = [norm.text[words[w][0]:words[w][1]] for w in free_w]
                    cut = next((n for n, x in enumerate(said_words) if not _number_word(x)), len(free_w))
                    if 0 < cut < len(free_w):
                        plan.update({w: free_u[0] if n < cut else free_u[1] for n, w in enumerate(free_w)})
            for w, u in plan.items():
                x, y = words[w]
                starts[x:y], ends[x:y] = inside[u][0], inside[u][1]
                changed = True
        n = m
    return Normalized(norm.text, starts, ends, norm.source_length) if changed else norm


"""Incremental text segmenter: a short first clause for fast first audio, then growing sentence groups.

Text may arrive whole or a few characters at a time; a segment is returned only once no continuation
could change it, so any chunking of the same text yields the same segments. Whitespace runs are
collapsed on the way in (a run with a line break becomes "\\n", any other run one space); segments are
otherwise exact slices of the input. Callers should run `normalize()` first.

Sentence ends: `. ! ?` and CJK `。！？．｡` (plus `… ‼ । ؟ ۔`), with any closing quotes or brackets
right after them, and any line break. Clause ends: `, ; : — ― –` and `，、；：،؛`. A non-CJK mark
only counts when followed by whitespace (so not `3.14`, `example.com`, `1,000`, `10:30`); CJK marks
and the em dash count at once. A `.`/`?`/`!` followed by a space and then a lowercase letter does not end
a sentence (`e.g. this`, `5 p.m. today`, `etc. and`, `"Why?" she asked`). A single `.` after a title
(`Mr. Dr. St. vs. e.g.` ...) or a lone capital initial (`J. R. R. Tolkien`, but not `I.`) never ends
one, and `No. 5`, `p. 12`, `approx. 3` do not end before a digit. `etc.`, `Jr.`, `a.m.` end a sentence
only before a non-lowercase word. Pieces without a letter or digit (`...`, `!!!`) never stand alone:
they merge into what follows, or into the buffered group at the end; if nothing is left to merge into
they are dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from voxgate.text.normalize import is_speakable

_SENTENCE_MARKS = ".!?。！？．｡…‼।॥؟۔"
_CLAUSE_MARKS = ",;:—―–，、；：،؛"
_NO_SPACE_MARKS = "。！？．｡—―，、；："  # CJK text puts no space after these; a word—break needs none
_CLOSERS = "\"')]}»›”’」』）】〉》〕〗〙〛｣＂＇］｝"
_OPENERS = "\"'([{«‹“‘「『（【〈《"

_RUN = re.compile(f"[{re.escape(_SENTENCE_MARKS + _CLAUSE_MARKS)}]+")
_CLOSE = re.compile(f"[{re.escape(_CLOSERS)}]+")
_RUN_CHARS = frozenset(_SENTENCE_MARKS + _CLAUSE_MARKS)
_SPECIAL = re.compile(f"[{re.escape(_SENTENCE_MARKS + _CLAUSE_MARKS)}\n]")
# squeeze() in two regex passes, without a Python call per whitespace run, and linear in the text: first every
# run of whitespace that is not a line break becomes one space, then a run of line breaks with single spaces
# between them becomes one "\n" (each try of that pattern looks at most two characters ahead before failing;
# a leading `\s*` would rescan a long blank run from every position of it, quadratic: 40,000 spaces took 6 s).
_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_BLANK_RUN = re.compile(f"[^\\S{_BREAKS}]+")
_BREAK_RUN = re.compile(f" ?(?:[{_BREAKS}] ?)+")

# Words that precede a name or noun, so their "." never ends a sentence.
_TITLES = frozenset(
    "mr mrs ms mx dr prof st mt vs e.g i.e cf rev fr gen col capt lt sgt gov sen rep hon mme mlle".split()
)
# Words whose "." is not an end when a number follows ("No. 5", "p. 12").
_NUMBERED = frozenset("no nos nr vol vols p pp ch chap fig figs art sec op ca approx".split())
_WORD_LOOKBACK = 12  # characters; longer "words" cannot be one of the abbreviations above

_NONE, _CLAUSE, _SENTENCE = 0, 1, 2  # what a run of marks turned out to be


def abbreviation(word: str, following: str = "") -> bool:
    """True when the "." right after `word` (what precedes it, opening marks stripped) marks an abbreviation,
    not a sentence's end: a title before a name ("Dr.", "e.g."), a single capital ("J."), or a numbering word
    when `following` (what comes after the space) starts with a digit ("No. 5"). The segmenter's rule; the
    captions close cues by it too."""
    low = word.lower()
    return (low in _TITLES or (len(word) == 1 and word.isupper() and word != "I")
            or (following[:1].isdigit() and low in _NUMBERED))


@dataclass(frozen=True)
class SegmentPolicy:
    """How text is cut into the pieces an engine synthesizes one at a time."""

    first_clause: bool = True  # make the first segment the first clause, for fast first audio
    first_min_chars: int = 12  # chars; a clause shorter than this stays with what follows ("Oh, hi,")
    grow_to_chars: int = 240  # chars; later segments gather whole sentences up to about this length
    max_chars: int = 400  # chars; hard cap on every segment
    growth: bool = True  # ramp the gathering target up from one sentence instead of starting at grow_to
    grow_from_chars: int = 60  # chars; gathering target of the third segment when growth is on
    grow_factor: int = 2  # the target multiplies by this for each later segment, up to grow_to_chars

    def __post_init__(self) -> None:
        """Reject settings that cannot work."""
        if self.max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        if min(self.first_min_chars, self.grow_to_chars, self.grow_from_chars) < 0:
            raise ValueError("character counts must not be negative")
        if self.grow_factor < 1:
            raise ValueError("grow_factor must be at least 1")


DEFAULT_POLICY = SegmentPolicy()
SENTENCE_POLICY = SegmentPolicy(first_clause=False, growth=False, grow_to_chars=0)  # one sentence each


def squeeze(text: str) -> str:
    """Every whitespace run of `text` collapsed to a line break if it holds one, else to a space."""
    return _BREAK_RUN.sub("\n", _BLANK_RUN.sub(" ", text))


def _is_wide(ch: str) -> bool:
    """True for CJK-width characters, which need no space after a preceding mark."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


class Segmenter:
    """Cuts streamed or whole text into segments; see the module docstring for the rules."""

    def __init__(self, policy: SegmentPolicy = DEFAULT_POLICY) -> None:
        self._policy = policy
        self._count = 0  # segments emitted since construction or the last finish()
        self._reset_stream()

    def _reset_stream(self) -> None:
        """Forget all buffered text (but not how many segments went out)."""
        self._buf = ""  # collapsed text not yet emitted, from the current unit's start on
        self._pos = 0  # every boundary before this index of _buf is decided
        self._start: int | None = None  # first char of the current unit (text not yet handed over)
        self._piece = 0  # start of the current clause, for the merge rule and abbreviation look-back
        self._piece_alnum = False  # current clause holds a letter or digit
        self._unit_alnum = False  # current unit holds a letter or digit
        self._clauses: list[int] = []  # clause ends inside the current unit, for cutting long ones
        self._run = (-1, -1, -1)  # (first mark, run end, closers end) of the last mark run scanned
        self._held = ""  # complete sentences gathered for the next segment
        self._gap = ""  # whitespace seen since the last unit ended
        self._sep = ""  # whitespace between the held group and the current unit
        self._ws_pending = False  # input ended in spaces that a later line break could still absorb
        self._in_break = False  # _buf ends in a line break whose whitespace run may continue
        self._final = False  # end of input: undecided marks resolve as if the text stopped there

    @property
    def pending(self) -> str:
        """Buffered text not yet emitted."""
        unit = self._buf[self._start :] if self._start is not None else ""
        return (self._held + (self._sep if self._held and unit else "") + unit).strip()

    def add(self, text: str) -> list[str]:
        """Feed text; return the segments whose end is now certain."""
        out: list[str] = []
        if text:
            self._ingest(text)
            self._scan(out)
            self._emit_early(out)
            self._compact()
        return out

    def flush(self) -> list[str]:
        """Force out everything buffered, as if the input paused for good."""
        out: list[str] = []
        self._final = True
        self._scan(out)
        self._emit_held(out)
        self._reset_stream()
        return out

    def finish(self) -> list[str]:
        """End of input: return everything left; the segmenter is then fresh again."""
        out = self.flush()
        self._count = 0
        return out

    # -- input ------------------------------------------------------------------------------------

    def _ingest(self, text: str) -> None:
        """Append text with whitespace runs collapsed across chunk borders."""
        if self._in_break:
            text = text.lstrip()  # still the whitespace run that already became "\n"
            if not text:
                return
            self._in_break = False
        elif self._ws_pending:
            text = " " + text
            self._ws_pending = False
        text = squeeze(text)
        if text.endswith(" "):
            # Hold a trailing space back: if a line break follows, the run must become "\n".
            text = text[:-1]
            self._ws_pending = True
        elif text.endswith("\n"):
            self._in_break = True
        self._buf += text

    def _compact(self) -> None:
        """Drop decided text from the buffer so it stays about one unit long."""
        keep = self._start if self._start is not None else self._pos
        if keep <= 0:
            return
        self._buf = self._buf[keep:]
        self._pos -= keep
        self._piece = max(self._piece - keep, 0)
        if self._start is not None:
            self._start -= keep
        self._clauses = [c - keep for c in self._clauses]
        lo, run_end, end = self._run
        self._run = (max(lo - keep, 0), run_end - keep, end - keep) if run_end > keep else (-1, -1, -1)

    # -- scanning ---------------------------------------------------------------------------------

    def _scan(self, out: list[str]) -> None:
        """Decide every boundary the buffered text allows and hand finished units on."""
        buf, cap = self._buf, self._policy.max_chars
        n = len(buf)
        while True:
            start = self._start
            if start is None:
                if self._pos >= n:
                    return
                self._between(buf[self._pos], out)
                continue
            if self._reach() - start > cap:
                self._cut(out)
                continue
            pos = self._pos
            if pos >= n:
                if self._final:
                    self._end_unit(n, out)
                return
            ch = buf[pos]
            if ch == "\n":
                if self._unit_alnum:
                    self._end_unit(pos, out)  # the "\n" itself then closes the group in _between
                else:
                    self._pos += 1  # a line of bare punctuation joins the next line
            elif ch in _RUN_CHARS:
                decided = self._resolve(pos)
                if decided is None:
                    if self._reach() - start > cap:
                        continue
                    return
                self._on_mark(*decided, out)
            else:
                self._skip_plain(pos, min(n, start + cap + 1))

    def _between(self, ch: str, out: list[str]) -> None:
        """Handle one character while no unit is open."""
        if ch == " ":
            self._gap = " "
            self._pos += 1
        elif ch == "\n":
            self._emit_held(out)  # a line break is a hard boundary: never gather across it
            self._gap = ""
            self._pos += 1
        else:
            self._begin(self._pos)

    def _begin(self, i: int) -> None:
        """Open a unit at index i."""
        self._start = self._piece = self._pos = i
        self._piece_alnum = self._unit_alnum = False
        self._clauses = []
        self._sep, self._gap = self._gap, ""

    def _skip_plain(self, pos: int, limit: int) -> None:
        """Advance over ordinary characters, stopping at the next mark, line break or limit."""
        match = _SPECIAL.search(self._buf, pos, limit)
        stop = match.start() if match else limit
        if not self._piece_alnum and is_speakable(self._buf[pos:stop]):
            self._piece_alnum = self._unit_alnum = True  # a clause lies inside its unit
        self._pos = stop

    def _reach(self) -> int:
        """Return a lower bound on where the current unit can end (exclusive)."""
        pos = self._pos
        lo, run_end, end = self._run
        if lo <= pos < run_end:
            return end  # the unit includes the whole mark run and its closers
        if pos < len(self._buf) and not self._buf[pos].isspace():
            return pos + 1
        return pos

    def _scan_run(self, pos: int) -> tuple[int, int]:
        """Return (run end, closers end) for the mark run at pos, resuming an earlier scan."""
        lo, run_end, end = self._run
        if not lo <= pos < run_end:
            lo = run_end = end = pos
        if end == run_end:  # no closer seen yet, so the run itself may still grow
            match = _RUN.match(self._buf, run_end)
            run_end = end = match.end() if match else run_end
        if run_end < len(self._buf):
            match = _CLOSE.match(self._buf, end)
            end = match.end() if match else end
        self._run = (lo, run_end, end)
        return run_end, end

    def _resolve(self, pos: int) -> tuple[int, int] | None:
        """Return (kind, end) for the mark run at pos, or None while more text could change it."""
        buf = self._buf
        n = len(buf)
        run_end, end = self._scan_run(pos)
        if end >= n and not self._final and not self._ws_pending:
            return None
        last = buf[run_end - 1]
        kind = _CLAUSE if last in _CLAUSE_MARKS else _SENTENCE
        if end >= n and not self._final:
            # Whitespace follows for sure; only a sentence end still needs to see the next word.
            return (kind, end) if kind == _CLAUSE else None
        word = self._word_before(pos) if run_end - pos == 1 and last == "." else ""
        if word and abbreviation(word):
            return _NONE, end
        if end >= n:
            return kind, end
        c1 = buf[end]
        if last in _NO_SPACE_MARKS or c1 == "\n" or _is_wide(c1):
            return kind, end
        if c1 != " ":
            return _NONE, end  # 3.14, example.com, 1,000, 10:30
        if kind == _CLAUSE:
            return kind, end
        c2 = buf[end + 1]  # exists: the buffer never ends in a space
        if c2.islower() or abbreviation(word, c2):  # (a title returned above: here, a numbering word)
            return _NONE, end
        return kind, end

    def _word_before(self, pos: int) -> str:
        """Return the word right before pos inside the current clause, or "" if it is long."""
        buf, floor = self._buf, max(self._piece, pos - _WORD_LOOKBACK)
        i = pos
        while i > floor and not buf[i - 1].isspace():
            i -= 1
        if i == pos - _WORD_LOOKBACK and i > self._piece and not buf[i - 1].isspace():
            return ""
        return buf[i:pos].lstrip(_OPENERS)

    def _on_mark(self, kind: int, end: int, out: list[str]) -> None:
        """Act on a decided mark run ending at end."""
        start = self._start
        assert start is not None
        policy = self._policy
        if kind == _SENTENCE and self._unit_alnum and end - start <= policy.max_chars:
            self._end_unit(end, out)
            return
        if kind == _CLAUSE and self._piece_alnum:
            first = policy.first_clause and self._count == 0
            if first and policy.first_min_chars <= end - start <= policy.max_chars:
                self._end_unit(end, out)
                return
            self._clauses.append(end)
            self._piece, self._piece_alnum = end, False
        self._pos = end  # not a boundary (or too long: the next loop turn cuts the unit)

    # -- units, cutting and gathering ---------------------------------------------------------

    def _end_unit(self, end: int, out: list[str]) -> None:
        """Hand the unit ending at end to the gatherer and close it."""
        start = self._start
        assert start is not None
        text = self._buf[start:end].strip()
        if self._unit_alnum:
            self._add_sentence(text, out)
        elif self._held and len(self._held) + len(self._sep) + len(text) <= self._policy.max_chars:
            self._held += self._sep + text  # trailing bare punctuation joins the group before it
        self._start, self._pos, self._gap = None, end, ""

    def _cut(self, out: list[str]) -> None:
        """Emit the head of an over-long unit: at its last clause end, else last space, else hard."""
        buf, start = self._buf, self._start
        assert start is not None
        hi = start + self._policy.max_chars
        cut = next((c for c in reversed(self._clauses) if c <= hi), 0)
        if not cut:
            cut = max(buf.rfind(" ", start + 1, hi + 1), buf.rfind("\n", start + 1, hi + 1))
        if cut <= start:
            cut = hi
            while cut > start + 1 and unicodedata.category(buf[cut])[0] == "M":
                cut -= 1  # keep combining marks with their base character
        head = buf[start:cut].strip()
        self._emit_held(out)  # nothing gathers across a cut, not even a dropped one
        if is_speakable(head):
            self._emit(head, out)
        # else: bare punctuation longer than max_chars cannot merge anywhere; drop it
        self._gap = ""
        if cut < len(buf) and buf[cut].isspace():
            cut += 1
        if cut < len(buf) and not buf[cut].isspace():
            self._begin(cut)
        else:
            self._start, self._pos = None, cut

    def _limit(self) -> int:
        """Return how long the segment being gathered may grow, in chars."""
        policy, k = self._policy, self._count
        if k == 0 or (k == 1 and policy.growth):
            return 0  # the first segments are a single sentence (or the first clause)
        target = policy.grow_to_chars
        if policy.growth:
            target = min(target, policy.grow_from_chars * policy.grow_factor ** min(k - 2, 32))
        return min(target, policy.max_chars)

    def _add_sentence(self, text: str, out: list[str]) -> None:
        """Gather a complete sentence, emitting the group when the next one can no longer fit."""
        if self._held:
            if len(self._held) + len(self._sep) + len(text) <= self._limit():
                self._held += self._sep + text
                text = ""
            else:
                self._emit_held(out)
        if text:
            self._held = text
        if len(self._held) >= self._limit():
            self._emit_held(out)

    def _emit_early(self, out: list[str]) -> None:
        """Emit the held group as soon as the unit being read is sure to overflow it."""
        if self._held and self._start is not None and self._unit_alnum:
            if len(self._held) + len(self._sep) + self._reach() - self._start > self._limit():
                self._emit_held(out)

    def _emit_held(self, out: list[str]) -> None:
        """Emit the gathered group, if any."""
        if self._held:
            self._emit(self._held, out)
            self._held = ""

    def _emit(self, text: str, out: list[str]) -> None:
        """Emit one segment."""
        out.append(text)
        self._count += 1


def split_text(text: str, policy: SegmentPolicy = DEFAULT_POLICY) -> list[str]:
    """Segment a whole text at once."""
    segmenter = Segmenter(policy)
    return segmenter.add(text) + segmenter.finish()


# Words a phrase often starts with: cutting just before one keeps each half a phrase of its own.
_PHRASE_STARTS = frozenset(
    "and but or so because while when where which who that to from at in on for with by of about after "
    "before during every each until unless than as if".split()
)


def cut_at_word(text: str, target: int, min_words: int = 3, reach: int = 14) -> tuple[str, str] | None:
    """`text` cut at a space near `target` characters, leaving at least `min_words` words on each side:
    before a phrase-starting word within `reach` of the target if there is one, else at the nearest
    space. None when the text is too short for that."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if len(spaces) < 2 * min_words - 1:
        return None
    allowed = spaces[min_words - 1 : len(spaces) - min_words + 1]

    def next_word(i: int) -> str:
        return text[i + 1 :].split(" ", 1)[0].strip(",.;:!?\"'").lower()

    phrases = [i for i in allowed if abs(i - target) <= reach and next_word(i) in _PHRASE_STARTS]
    cut = min(phrases or allowed, key=lambda i: abs(i - target))
    return text[:cut], text[cut + 1 :]

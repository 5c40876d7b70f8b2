"""Captions from word timings: the words the client wrote, when each is spoken, grouped into cues and
written as WebVTT or SRT.

The one place every surface gets words from (Kokoro-FastAPI's `timestamps`, the OpenAI SSE word events,
the native API's caption files, `voxgate say --captions`, the web page's read-along). A timing's characters
are offsets into the text the client sent (`SynthesisRequest.text`), its seconds count from the start of the
whole stream; a word's text is that span of the client's text, so "25" stays "25" however it was read.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voxgate.core.types import Pcm, SynthesisRequest, Timing
from voxgate.text.segment import abbreviation
from voxgate.text.shown import PAD, shown

if TYPE_CHECKING:
    from voxgate.core.service import SynthesisService

FORMATS = ("vtt", "srt")
CONTENT_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}
SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？", "．")
CLAUSE_ENDS = (",", ";", ":", "、", "，", "；", "：", "—", "–")
_CLOSERS = "\"'”’»）)]」』】"  # closing quotes and brackets after a word's final punctuation
_OPENERS = "\"'“‘«（([「『【"  # opening ones, which belong to the next word


@dataclass(frozen=True)
class Word:
    """One word of the client's text and when it is spoken."""

    text: str  # as the client wrote it (punctuation attached, white space trimmed)
    start_char: int  # offset of its first character in the client's text
    end_char: int  # offset just past its last character
    start: float  # seconds from the start of the audio
    end: float  # seconds from the start of the audio
    estimated: bool = False  # the engine had no durations: a proportional estimate (a timing's `estimated`)


@dataclass(frozen=True)
class Cue:
    """A caption: some consecutive words, shown from the first's start to the last's end."""

    start: float  # seconds
    end: float  # seconds
    text: str  # the client's text of the words, white space collapsed, lines joined by "\n"
    words: tuple[Word, ...]


@dataclass(frozen=True)
class CuePolicy:
    """How words are grouped into cues (the defaults follow common subtitle practice)."""

    max_chars: int = 42  # columns on one line; a CJK character counts two
    max_lines: int = 2  # lines of one cue
    max_seconds: float = 6.0  # longest a cue stays up
    max_gap: float = 1.5  # seconds of silence between two words that start a new cue


class WordTrack:
    """Words of one request as its chunks arrive: each chunk's timings turned into words of `text`, in
    order, with times that never go back (a cue list built from them is always well ordered)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._shown = shown(text)  # (an SSML document's or inline override's words, at the same offsets)
        self.words: list[Word] = []
        self._last_start = 0.0

    def add(self, timings: Iterable[Timing] | None) -> list[Word]:
        """The words of these timings (also kept in `words`); spans outside the text or with nothing in them
        are skipped."""
        new: list[Word] = []
        for timing in timings or ():
            begin, finish = max(timing.start_char, 0), min(timing.end_char, len(self.text))
            span = self._shown[begin:finish]
            stripped = span.strip()
            if not stripped:
                continue
            begin += len(span) - len(span.lstrip())
            start = max(float(timing.start), self._last_start)
            end = max(float(timing.end), start)
            self._last_start = start
            estimated = bool(getattr(timing, "estimated", False))
            new.append(Word(stripped.replace(PAD, ""), begin, begin + len(stripped), start, end, estimated))
        self.words += new
        return new


def words(text: str, timings: Iterable[Timing] | None) -> list[Word]:
    """The timed words of `text` (see WordTrack)."""
    return WordTrack(text).add(timings)


def width(text: str) -> int:
    """Columns `text` takes on screen: wide (CJK) characters count two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _trailing(text: str, timed: Sequence[Word]) -> list[int]:
    """Where each word's text ends once the punctuation right after it is counted (a CJK full stop or comma
    is no timed word of its own, but it ends its sentence or clause and belongs on the word's cue)."""
    ends = []
    for i, word in enumerate(timed):
        limit = timed[i + 1].start_char if i + 1 < len(timed) else len(text)
        end = word.end_char
        while end < limit and not text[end].isspace() and not text[end].isalnum() and text[end] not in _OPENERS:
            end += 1
        ends.append(end)
    return ends


def wrap(text: str, max_chars: int, max_lines: int = 2) -> list[str] | None:
    """`text` as at most `max_lines` lines of at most `max_chars` columns, as even as can be, broken at spaces
    (text without spaces, as CJK, between any two characters but before punctuation and inside a Latin word or
    number written into it); None if it cannot be."""
    if width(text) <= max_chars:
        return [text]
    if max_lines <= 1:
        return None
    spaced = " " in text
    best: tuple[bool, int, list[str]] | None = None  # (not after a punctuation mark, widest line, lines)
    for at in range(1, len(text)):
        if (text[at] != " ") if spaced else not (text[at].isalnum() and text[at - 1] != " ") or (
                width(text[at - 1]) == 1 and width(text[at]) == 1):  # (inside "3.14", "1,000", "don't")
            continue
        head, tail = text[:at].rstrip(), text[at:].lstrip()
        if not head or not tail or width(head) > max_chars:
            continue
        rest = wrap(tail, max_chars, max_lines - 1)
        if rest is None:
            continue
        key = (not head.endswith(CLAUSE_ENDS + SENTENCE_ENDS), max(map(width, [head, *rest])), [head, *rest])
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best is not None else None


def _abbreviated(word: str, text: str, end: int) -> bool:
    """True when `word`'s final "." (the word ends at `end` in `text`) is an abbreviation's by the segmenter's
    rule: a title or a single capital ("Dr.", "J."), or, on the same line, a numbering word before a number
    ("No. 5") or any word before a lower-case one. Then it ends no sentence, and no cue."""
    if not word.endswith(".") or word.endswith(".."):
        return False
    bare = word[:-1].lstrip(_OPENERS)
    if abbreviation(bare):
        return True
    at = end
    while at < len(text) and (text[at].isspace() or text[at] == PAD):
        if text[at] in "\n\r":  # a line break ends the sentence (the segmenter's rule)
            return False
        at += 1
    following = text[at:at + 1]
    return following.islower() or abbreviation(bare, following)


def cue_text(text: str, start_char: int, end_char: int) -> str:
    """What a cue shows: the client's text (`shown`) from its first word to its last, white space collapsed
    (so CJK stays unspaced and the punctuation between words stays)."""
    return " ".join(text[start_char:end_char].replace(PAD, "").split())


def cues(text: str, timed: Sequence[Word], policy: CuePolicy = CuePolicy()) -> list[Cue]:
    """Words grouped into cues: a sentence's end (not an abbreviation's ".") closes a cue; a cue that would grow
    past the policy's length or duration, or across a long pause, is closed first, at its last clause mark when
    it has one.
    An SSML document's cues show its words, not its markup (`shown`), an inline override its word."""
    text = shown(text)
    ends = _trailing(text, timed)
    groups: list[list[int]] = []  # indexes into `timed`
    current: list[int] = []

    def said(i: int) -> str:
        return text[timed[i].start_char:ends[i]].replace(PAD, "").rstrip(_CLOSERS)

    def fits(group: list[int]) -> bool:
        caption = cue_text(text, timed[group[0]].start_char, ends[group[-1]])
        return (timed[group[-1]].end - timed[group[0]].start <= policy.max_seconds
                and wrap(caption, policy.max_chars, policy.max_lines) is not None)

    for i, word in enumerate(timed):
        if current:
            pause = word.start - timed[current[-1]].end > policy.max_gap
            if pause or not fits([*current, i]):
                cut = max((n for n, j in enumerate(current[:-1]) if said(j).endswith(CLAUSE_ENDS)), default=None)
                if cut is not None and not pause and fits([*current[cut + 1:], i]):
                    groups.append(current[:cut + 1])
                    current = current[cut + 1:]
                else:
                    groups.append(current)
                    current = []
        current.append(i)
        word = said(i)
        if word.endswith(SENTENCE_ENDS) and not _abbreviated(word, text, ends[i]):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    made = []
    for g in groups:
        caption = cue_text(text, timed[g[0]].start_char, ends[g[-1]])
        lines = wrap(caption, policy.max_chars, policy.max_lines) or [caption]  # one word too long stays whole
        made.append(Cue(timed[g[0]].start, max(timed[g[-1]].end, timed[g[0]].start), "\n".join(lines),
                        tuple(timed[j] for j in g)))
    return made


def _stamp(seconds: float, separator: str) -> str:
    ms = max(round(seconds * 1000), 0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _spans(cue_list: Sequence[Cue]) -> list[tuple[int, int]]:
    """Each cue's start and end in whole milliseconds: ends after starts (a zero-length cue gets one
    millisecond), starts never before the previous cue's."""
    spans: list[tuple[int, int]] = []
    last = 0
    for cue in cue_list:
        start = max(round(cue.start * 1000), last)
        end = max(round(cue.end * 1000), start + 1)
        spans.append((start, end))
        last = start
    return spans


def to_vtt(cue_list: Sequence[Cue]) -> str:
    """A WebVTT file (cue text escaped as the format needs)."""
    lines = ["WEBVTT", ""]
    for n, (cue, (start, end)) in enumerate(zip(cue_list, _spans(cue_list), strict=True), 1):
        body = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines += [str(n), f"{_stamp(start / 1000, '.')} --> {_stamp(end / 1000, '.')}", body, ""]
    return "\n".join(lines)


def to_srt(cue_list: Sequence[Cue]) -> str:
    """A SubRip file (an arrow in the text, which would read as a timing line, is shortened)."""
    lines: list[str] = []
    for n, (cue, (start, end)) in enumerate(zip(cue_list, _spans(cue_list), strict=True), 1):
        timing = f"{_stamp(start / 1000, ',')} --> {_stamp(end / 1000, ',')}"
        body = cue.text
        while "-->" in body:  # ("--->" once shortened is "-->" again)
            body = body.replace("-->", "->")
        lines += [str(n), timing, body, ""]
    return "\n".join(lines)


def caption_file(text: str, timed: Sequence[Word], fmt: str, policy: CuePolicy = CuePolicy()) -> str:
    """The caption file of `fmt` ("vtt" or "srt") for these words of `text`; no words, no cues."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown caption format {fmt!r}; known: {', '.join(FORMATS)}")
    grouped = cues(text, timed, policy)
    return to_vtt(grouped) if fmt == "vtt" else to_srt(grouped)


async def synthesize(service: SynthesisService, request: SynthesisRequest) -> tuple[Pcm, list[Word]]:
    """The whole utterance and its words (timings asked for; none when the voice's engine gives none)."""
    track = WordTrack(request.text)
    parts = []
    async with await service.open(request) as stream:
        async for chunk in stream:
            parts.append(chunk.samples)
            track.add(chunk.timings)
        rate = stream.sample_rate
    return Pcm(np.concatenate(parts) if parts else np.zeros(0, np.float32), rate), track.words


__all__ = ["CONTENT_TYPES", "FORMATS", "Cue", "CuePolicy", "Word", "WordTrack", "caption_file", "cues",
           "synthesize", "to_srt", "to_vtt", "width", "words"]

"""Plain data types shared by the core, the dialects, the scheduler and the engines.

A leaf module (numpy only): engines may import it, so a voice and a piece of audio have one type from the
engine up to the encoder. The timing functions here are pure; every step that changes the time axis of
audio (tempo, pitch shift, seam trimming, joining) maps a piece's timings through one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.core.parts import Part


class Segmentation(StrEnum):
    """How text is cut into pieces the engine synthesizes one at a time."""

    FAST_START = "fast_start"  # first clause alone, then sentences grown for efficiency
    SENTENCE = "sentence"  # one sentence per piece
    NONE = "none"  # the whole text as one piece (the engine may still split it)


@dataclass(frozen=True)
class SynthesisRequest:
    """One thing to say, in the terms every dialect converts into.

    `timings` says the client reads word timings (captions, SSE word events, captioned speech, read-along):
    only then does the stream map engine timings onto the text sent (or estimate them for engines without),
    and only then do its chunks carry them; otherwise PcmChunk.timings is None and no event-loop time is
    spent on words nobody reads.
    """

    text: str
    voice: str  # voice id, alias or name, resolved by the voice registry
    language: str | None = None  # BCP-47-ish tag; None = the voice's own language
    speed: float = 1.0  # 1.0 = the voice's natural rate; 2.0 = twice as fast
    pitch: float = 0.0  # semitones
    volume: float = 1.0  # linear gain applied after levelling
    sample_rate: int | None = None  # Hertz of the output; None = the engine's own rate
    segmentation: Segmentation = Segmentation.FAST_START
    segments: tuple[str, ...] | None = None  # text already cut by the dialect; overrides `segmentation`
    seed: int | None = None  # for engines that sample; None = engine default
    engine_options: Mapping[str, Any] = field(default_factory=dict)  # engine knobs; absent = default
    parts: tuple[Part, ...] | None = None  # several parts in order, one slot; overrides text (core/parts.py)
    normalize: bool = True  # numbers, money, dates... written out as read (text/normalize); False: as written
    # The client's audio format (an audio/encoders FORMATS name) when the dialect takes an upstream's own bytes
    # in it (PcmChunk.encoded) as well as PCM: the service then passes them through when nothing changes the
    # audio (SynthesisService.passthrough). None: PCM only.
    output: str | None = None
    timings: bool = False  # the client reads word timings: chunks carry them (core/timemap.py); False: None
    # The dialect sends each chunk's samples on as int16 bytes as they are (a raw pcm or wav response): the
    # workers then make those bytes with the samples, off the event loop (PcmChunk.pcm16). False: none are made.
    int16_chunks: bool = False


@dataclass(frozen=True)
class Reference:
    """What makes a voice a reference voice: registered or cached from reference audio."""

    base_voice: str | None = None  # the installed voice that speaks it (a matched voice), else None
    shift: Mapping[str, Any] | None = None  # Shift.to_dict() moving the base toward the reference; None = none
    speaks: tuple[str, ...] = ()  # language tags its base speaks, which it speaks whatever the reference's
    audio: str | None = None  # path of the reference audio (a voice an engine clones from it)
    transcript: str | None = None  # what the reference audio says, when known
    registered: bool = False  # kept in the voice store (listed), as opposed to...
    transient: bool = False  # ...a reference of the cache: resolvable, never listed


@dataclass(frozen=True)
class VoiceInfo:
    """What an engine says about one of its voices (and what the registry adds for reference voices)."""

    id: str  # stable id, unique across engines, e.g. "en_US-joe-medium" or "en_US-libritts-high@p123"
    name: str  # display name
    engine: str  # engine name, e.g. "piper"
    language: str  # BCP-47-ish tag, e.g. "en-US"
    sample_rate: int  # Hertz of what the engine emits
    model_path: Path | None = None  # the model file, for file-based engines
    speaker: str | None = None  # speaker name inside a multi-speaker model
    speakers: tuple[str, ...] = ()  # every speaker of the model this voice belongs to
    quality: str | None = None  # e.g. "medium"
    languages: tuple[str, ...] = ()  # every language tag it speaks when more than `language` (Kokoro: ja, en)
    family: str | None = None  # the same style across languages (routing keeps it); None = the voice itself
    gender: str | None = None  # "female" / "male" when the engine says
    route_default: bool = False  # routing's measured pick for its language when no voice of it is asked for
    routed: bool = False  # a secondary engine's voice measured better than espeak-ng for its language
    reference: Reference | None = None  # set for voices made from reference audio
    engine_data: Mapping[str, Any] = field(default_factory=dict)  # private to the engine that made it
    upstream: str | None = None  # the upstream server that speaks it (engines/remote); None: a local voice
    # A voice cloned on an upstream (engines/remote/clone.py): its local matched voice, which speaks if the
    # upstream fails before any audio
    fallback: VoiceInfo | None = None
    session_key: str | None = None  # voices with the same key share loaded sessions (a matched voice and its base)

    @property
    def load_key(self) -> str:
        """What loaded sessions are cached under."""
        return self.session_key or self.id

    @property
    def base_voice(self) -> str | None:
        """The installed voice a reference voice is spoken by (None for any other voice)."""
        return self.reference.base_voice if self.reference is not None else None

    @property
    def registered(self) -> bool:
        """True for a voice registered from reference audio."""
        return self.reference is not None and self.reference.registered


@dataclass(frozen=True)
class Timing:
    """When a span of text is spoken in a piece of audio."""

    start_char: int  # offset of the span's first character in the text the audio was made from
    end_char: int  # offset just past its last character
    start: float  # seconds from the start of the audio
    end: float  # seconds from the start of the audio
    estimated: bool = False  # True: the engine could not say, so the time is shared out by word length

    def __init__(self, start_char: int, end_char: int, start: float, end: float, estimated: bool = False) -> None:
        # The fields straight into the instance's dict: the frozen dataclass's own __init__ sets each through
        # object.__setattr__, 570 ns a Timing against 240, and every engine makes one per word, every step that
        # changes time one more (issue 16: espeak-ng's timings within 5% of its ~2 ms a sentence). Still frozen:
        # assignment raises; eq, hash, repr and dataclasses.replace are the dataclass's.
        fields = self.__dict__
        fields["start_char"] = start_char
        fields["end_char"] = end_char
        fields["start"] = start
        fields["end"] = end
        fields["estimated"] = estimated


Timings = tuple[Timing, ...]

# One character of a script written without spaces: each is a word of its own (with the punctuation after it).
_CJK = (r"\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\uac00-\ud7af"
        r"\U00020000-\U0002ffff")
# Opening brackets and quotes (not the ASCII quotes, which also close): before such a character they are its.
_OPEN = "([{“‘«（［｛「『【〔〈《〖〘〚"
# A character of those scripts, with the opening marks before it and the punctuation after it (up to the next
# opening mark); else a run of other non-space characters, up to opening marks that lead into such a character.
_UNIT = re.compile(rf"[{_OPEN}]*[{_CJK}][^\s{_CJK}\w{_OPEN}]*"
                   rf"|(?:[^\s{_CJK}{_OPEN}]|[{_OPEN}]++(?![{_CJK}]))+")  # (possessive: one look past a run)
_ALNUM = re.compile(r"[^\W_]")  # re's \w is str.isalnum() or "_" (CPython's _sre): this is str.isalnum()
_ANY_CJK = re.compile(f"[{_CJK}]")
# Without those scripts a word is a run of non-space characters with a letter or digit in it, found in one match:
# the characters before its first letter or digit (neither a letter, a digit nor space), that one, the rest of the run
_WORD = re.compile(r"(?:[^\w\s]|_)*[^\W_]\S*")
QUIET = 0.02  # of the loudest sample: quieter is silence around speech, for estimated timings


def word_spans(text: str, base: int = 0) -> list[tuple[int, int]]:
    """The [start, end) spans of the words of `text`, moved by `base`: runs of non-space characters with a
    letter or digit in them ("25", "$3.50", "Dr.", "don't,"); every Chinese or Japanese ideograph or kana (and
    Korean Hangul syllable) is a word of its own, with the punctuation that follows it, and the opening brackets
    or quotes before it ("。「あ": "。" ends the word before, "「あ" is one), which a run of other characters
    stops short of."""
    if _ANY_CJK.search(text) is None:  # (most text: each word one match, with no second look for a letter)
        if base:
            return [(m.start() + base, m.end() + base) for m in _WORD.finditer(text)]
        return [m.span() for m in _WORD.finditer(text)]
    return [(m.start() + base, m.end() + base) for m in _UNIT.finditer(text) if _ALNUM.search(m.group())]


def _quiet_edge(x: np.ndarray) -> float:
    """QUIET of the loudest sample of float32 `x` (at least 1e-6): quieter is silence."""
    # = max(|x|), at least 1e-6 (the ufuncs that x.max and x.min call, without their Python wrapper)
    top = max(float(np.maximum.reduce(x, initial=0.0)), -float(np.minimum.reduce(x, initial=0.0)), 1e-6)
    return QUIET * top


def _last_loud(x: np.ndarray, edge: float, block: int) -> int | None:
    """The index of the last sample of `x` louder than `edge`, looked for a block at a time from the end."""
    end = len(x)
    while end > 0:
        loud = np.abs(x[max(end - block, 0):end][::-1]) > edge  # backwards: the first True is the last loud
        back = int(loud.argmax())
        if loud[back]:
            return end - 1 - back
        end = max(end - block, 0)
    return None


def voiced_span(samples: np.ndarray, rate: int, block: int = 4096) -> tuple[float, float]:
    """(start, end) in seconds of the part of `samples` louder than QUIET of the loudest sample; (0, length)
    when none is. Looked for a block at a time from each end, where the sound mostly starts and ends."""
    x = np.asarray(samples, np.float32).reshape(-1)
    edge = _quiet_edge(x)
    for first in range(0, len(x), block):
        loud = np.flatnonzero(np.abs(x[first:first + block]) > edge)
        if len(loud):
            first += int(loud[0])
            break
    else:
        return 0.0, len(x) / rate
    last = _last_loud(x, edge, block)  # a loud sample exists, at `first` or later
    assert last is not None
    return first / rate, (last + 1) / rate


def voiced_end(samples: np.ndarray, rate: int, block: int = 1024) -> float:
    """voiced_span(samples, rate)[1] without looking for the start: where the sound ends (espeak-ng's last
    word lasts until then). A sentence's clip ends in a few hundred samples of silence, so a small block."""
    x = np.asarray(samples, np.float32).reshape(-1)
    last = _last_loud(x, _quiet_edge(x), block)
    return (last + 1) / rate if last is not None else len(x) / rate


def shared_edges(sizes: Sequence[int], t0: float, t1: float) -> list[float]:
    """The edges of t0–t1 shared out by the whole-number `sizes` (a word's characters), `len(sizes) + 1` of
    them from t0: the same float operations, in the same order, as numpy's
    `t0 + (t1 - t0) * concatenate([[0.0], cumsum(sizes) / sum(sizes)])`, whose running sums of whole numbers are
    exact, without the arrays (a few words at a time, for every piece)."""
    total, done = float(sum(sizes)), 0.0
    edges = [t0 + (t1 - t0) * 0.0]
    for size in sizes:
        done += size
        edges.append(t0 + (t1 - t0) * (done / total))
    return edges


def estimate_words(text: str, samples: np.ndarray, rate: int,
                   spans: Sequence[tuple[int, int]] | None = None,
                   weight: Callable[[str], float] | None = None) -> Timings:
    """Timings of the words of `text` (or of `spans`) shared out over the voiced part of `samples` by their
    length in characters (or by `weight`), each marked estimated: for engines that cannot say when a word
    is spoken."""
    words = list(spans) if spans is not None else word_spans(text)
    if not words:
        return ()
    t0, t1 = voiced_span(samples, rate)
    sizes = np.maximum(np.array([weight(text[s:e]) if weight else e - s for s, e in words], float), 1e-3)
    edges = t0 + (t1 - t0) * np.concatenate([[0.0], np.cumsum(sizes) / sizes.sum()])
    return tuple(Timing(s, e, float(edges[n]), float(edges[n + 1]), True) for n, (s, e) in enumerate(words))


@dataclass(frozen=True, eq=False)
class Piece:
    """Mono float32 audio an engine made, with when each part of its text is spoken when the engine knows.

    `timings` is None when the engine cannot say (never estimated); character offsets are into the text
    the engine was given, seconds from the start of `samples`.
    """

    samples: np.ndarray  # float32, shape (n,)
    rate: int  # Hertz
    timings: Timings | None = None
    # An upstream's own bytes in the format its job asked for (SegmentJob.output), passed to the client as
    # they are; `samples` is then empty.
    encoded: bytes | None = None
    # `samples` as little-endian int16 bytes, made where the piece was made (off the event loop) for a client
    # of raw PCM (SynthesisStream); None: not made.
    pcm16: bytes | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Output:
    """The client's audio format a stream's upstream audio passes through in (SynthesisService.passthrough)."""

    format: str  # an audio/encoders FORMATS name, e.g. "mp3"
    rate: int  # Hertz of the client's audio (what raw pcm must be in; other formats say their own)


def as_piece(item: Piece | np.ndarray, rate: int) -> Piece:
    """An engine's output as a Piece: a bare array (an engine of the old interface) has no timings."""
    if isinstance(item, Piece):
        return item
    return Piece(np.asarray(item, dtype=np.float32), rate)


def scale_timings(timings: Timings | None, factor: float) -> Timings | None:
    """Timings of audio stretched uniformly by `factor` (tempo 2.0 is factor 0.5: every time halves)."""
    if timings is None:
        return None
    return tuple(Timing(t.start_char, t.end_char, t.start * factor, t.end * factor, t.estimated) for t in timings)


def offset_timings(timings: Timings | None, seconds: float = 0.0, chars: int = 0) -> Timings | None:
    """Timings moved later by `seconds` of audio and `chars` characters of text."""
    if timings is None:
        return None
    # (Timings made directly, here and in the two functions beside this one: dataclasses.replace looks up the
    # fields on every call, ~4x the cost, and these run for every word of every piece)
    return tuple(Timing(t.start_char + chars, t.end_char + chars, t.start + seconds, t.end + seconds, t.estimated)
                 for t in timings)


def trim_timings(timings: Timings | None, start: float, end: float) -> Timings | None:
    """Timings of the audio between `start` and `end` seconds cut out: moved back by `start` and clamped to
    the kept length, so a span said in trimmed-off silence keeps its place, at zero length, at the edge."""
    if timings is None:
        return None
    length = max(end - start, 0.0)

    def clamp(t: float) -> float:
        return min(max(t - start, 0.0), length)

    return tuple(Timing(t.start_char, t.end_char, clamp(t.start), clamp(t.end), t.estimated) for t in timings)


def with_audio(piece: Piece, samples: np.ndarray, rate: int | None = None) -> Piece:
    """`piece` with new audio on the same time axis (a gain, or a resample to `rate`: seconds are kept)."""
    return Piece(samples, rate or piece.rate, piece.timings)


def stretched(piece: Piece, samples: np.ndarray, rate: int | None = None) -> Piece:
    """`piece` replaced by a uniform time-stretch of it (tempo change, pitch shift that keeps length or
    not): timings scale by the new length over the old."""
    new = Piece(samples, rate or piece.rate)
    factor = new.duration / piece.duration if piece.duration else 1.0
    return Piece(samples, new.rate, scale_timings(piece.timings, factor))


def trimmed(piece: Piece, start: int, end: int) -> Piece:
    """`piece` cut to samples [start, end) (silence trimming): timings move back and clamp to what is kept."""
    start, end = max(start, 0), min(end, len(piece.samples))
    timings = trim_timings(piece.timings, float(start / piece.rate), float(end / piece.rate))
    return Piece(piece.samples[start:end], piece.rate, timings)


def join_pieces(pieces: Sequence[Piece], char_starts: Sequence[int] | None = None) -> Piece:
    """Pieces of one rate end to end: each one's timings move by the audio before it and by its text's start
    in the joined text (`char_starts`, one per piece; None = the pieces share one text). The result has
    timings only when every piece has them, so no span is silently missing."""
    if not pieces:
        raise ValueError("nothing to join")
    rate = pieces[0].rate
    if any(p.rate != rate for p in pieces):
        raise ValueError("pieces of different rates cannot be joined; resample them first")
    starts = list(char_starts) if char_starts is not None else [0] * len(pieces)
    if len(starts) != len(pieces):
        raise ValueError("one character start per piece")
    samples = np.concatenate([p.samples for p in pieces])
    if any(p.timings is None for p in pieces):
        return Piece(samples, rate)
    joined: list[Timing] = []
    offset = 0
    for piece, chars in zip(pieces, starts, strict=True):
        joined += offset_timings(piece.timings, offset / rate, chars) or ()
        offset += len(piece.samples)
    return Piece(samples, rate, tuple(joined))


def merge_timings(parts: Iterable[Timings | None]) -> Timings | None:
    """Timings of several parts already on one time axis, in order; None when any part has none."""
    merged: list[Timing] = []
    for part in parts:
        if part is None:
            return None
        merged += part
    return tuple(merged)


@dataclass(frozen=True)
class PcmChunk:
    """A piece of mono float32 audio in [-1, 1] plus where it came from."""

    samples: np.ndarray  # float32, shape (n,)
    rate: int  # Hertz
    index: int = 0  # position of the text segment this audio belongs to (in request.segments when given)
    text: str = ""  # the text segment that produced it
    # When each span of `text` is spoken: characters within `text`, seconds from the start of the stream
    # (not of this chunk: a resampler may carry a piece's last samples into the next chunk). None = unknown.
    timings: Timings | None = None
    # Audio already in the client's format (an upstream's own bytes, SynthesisRequest.output): the encoder
    # passes it on untouched (Encoder.passthrough); `samples` is then empty.
    encoded: bytes | None = None
    # `samples` as little-endian int16 bytes (int16_bytes), when the worker that made them made these too; an
    # int16 encoder then sends them (Encoder.encode_pcm16). Not an __init__ argument, so dataclasses.replace
    # never carries it over to other samples: SynthesisStream sets it with with_pcm16.
    pcm16: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def with_pcm16(self, data: bytes | None) -> PcmChunk:
        """This chunk with `data`, its samples' int16 bytes (made elsewhere), attached."""
        object.__setattr__(self, "pcm16", data)
        return self

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Pcm:
    """A whole utterance of mono float32 audio."""

    samples: np.ndarray  # float32, shape (n,)
    rate: int  # Hertz

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

"""SynthesisService: the one API every dialect calls; text in, float32 PCM chunks out."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from voxgate.audio.encoders import get_format
from voxgate.audio.pcm import Leveller, calibrate_gain, int16_bytes
from voxgate.audio.resample import Resampler
from voxgate.audio.voiceshift import Shift, apply_shift
from voxgate.core.metrics import Metrics
from voxgate.core.parts import Script, from_ssml
from voxgate.core.routing import Span, route
from voxgate.core.timemap import WordTimer
from voxgate.core.types import (
    Output,
    Pcm,
    PcmChunk,
    Piece,
    Segmentation,
    SynthesisRequest,
    Timing,
    estimate_words,
    stretched,
    trimmed,
)
from voxgate.engines.base import EngineParams, VoiceInfo
from voxgate.errors import EngineFailure, InputTooLong, InvalidInput, Overloaded, VoxgateError
from voxgate.scheduling.backend import Backend, BackendHealth, Chunk, SegmentJob
from voxgate.text import ssml
from voxgate.text.lexicon import Lexicon, strip_inline
from voxgate.text.normalize import Normalized, is_speakable, normalize_mapped
from voxgate.text.segment import DEFAULT_POLICY, SENTENCE_POLICY, SegmentPolicy, cut_at_word, split_text
from voxgate.voices.registry import VoiceRegistry

_LOG = logging.getLogger(__name__)
CALIBRATION_TEXT = "The quick brown fox jumps over the lazy dog. How are you doing today?"
SECONDS_PER_CHAR = 0.065  # typical speech rate, to estimate deadlines of segments not yet spoken
BUSY_FIRST_MAX = 48  # chars: when every worker is busy, a longer first segment is cut at a word...
BUSY_FIRST_CUT = 30  # ...near here, so a newcomer's first audio costs half as much
# ...unless its engine makes it in less than this on one thread (Capabilities.compute_per_second): halving such a
# segment saves under 25 ms of first audio, while the extra engine call and the trimmed seam cost CPU on every busy
# request (hibari, issue 13: a 64-character sentence takes ~30 ms; Piper joe's ~300 ms is still cut).
BUSY_FIRST_CHEAP_S = 0.05
MID_SENTENCE_GAP = 0.04  # seconds of an engine's trailing silence kept where a sentence was cut
# /ready answers 503 once every admission slot has been held without a break for this long: a server
# that could not admit anyone for half a minute should be taken out of a load balancer's rotation.
SATURATED_SECONDS = 30.0

# A segment to speak: its index (the dialect's segment number when it cut the text), its text, its voice,
# and the request or part whose settings (speed, pitch, volume) it is spoken with (None: the request's).
Segment = tuple[int, str, VoiceInfo, "SynthesisRequest | None"]

# The streams opened inside the current request (set by SynthesisService.scope, e.g. per HTTP request or
# WebSocket connection): whatever a dialect does, they are closed when the scope ends.
_SCOPE: ContextVar[weakref.WeakSet[SynthesisStream] | None] = ContextVar("voxgate_stream_scope", default=None)


class _Lease:
    """The admission slot a stream holds, kept apart from the stream so it can be given back when the
    stream is garbage-collected without ever being closed."""

    __slots__ = ("held", "inflight", "loop")

    def __init__(self, inflight: deque[Any]) -> None:
        self.held = False
        self.inflight = inflight  # the stream's running jobs, aborted if the stream is collected
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None


@dataclass(frozen=True)
class Limits:
    """Bounds the service enforces for every dialect."""

    max_input_chars: int = 4096
    max_queue: int = 32  # requests admitted beyond the worker count
    min_speed: float = 0.1
    max_speed: float = 10.0


def post_processing(voice: VoiceInfo, semitones: float = 0.0,
                    tempo: float = 1.0) -> Callable[[Piece], Piece] | None:
    """What runs on the worker after each piece: a matched voice's shift toward its reference, plus a
    request's pitch change and whatever tempo the engine could not do itself, in one Praat pass."""
    data = voice.reference.shift if voice.reference is not None else None
    shift = (Shift.from_dict(data) if data else Shift.identity()).then(semitones, tempo)
    if shift.is_identity:
        return None
    return lambda piece: stretched(piece, apply_shift(piece.samples, piece.rate, shift))


def _trimmed(post: Callable[[Piece], Piece] | None, tail: bool, head: bool) -> Callable[[Piece], Piece]:
    """`post`, then the engine's silence at a seam inside a sentence cut to a short gap: at the end of the
    part before the cut (`tail`) and at the start of the part after it (`head`), since the sentence goes on."""
    def run(piece: Piece) -> Piece:
        piece = post(piece) if post else piece
        x = piece.samples
        loud = np.flatnonzero(np.abs(x) > 0.02 * max(float(np.abs(x).max(initial=0.0)), 1e-6))
        if not len(loud):
            return piece
        gap = int(MID_SENTENCE_GAP * piece.rate)
        start = max(loud[0] - gap, 0) if head else 0
        end = loud[-1] + 1 + gap if tail else len(x)
        return trimmed(piece, start, end)
    return run


def split_speed(speed: float, honoured: tuple[float, float]) -> tuple[float, float]:
    """(the rate the engine is asked for, the tempo change left for post-processing)."""
    engine = min(max(speed, honoured[0]), honoured[1])
    return engine, speed / engine


def _policy(segmentation: Segmentation) -> SegmentPolicy | None:
    if segmentation is Segmentation.SENTENCE:
        return SENTENCE_POLICY
    if segmentation is Segmentation.NONE:
        return None
    return DEFAULT_POLICY


SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？")  # a part after one of these starts a sentence


@dataclass
class Voicing:
    """How one voice speaks its segments of a request: engine knobs, post-processing, level."""

    voice: VoiceInfo
    params: EngineParams
    post: Callable[[Piece], Piece] | None
    volume: float = 1.0  # linear gain after levelling
    leveller: Leveller | None = None  # built from the voice's calibrated gain when its audio first arrives
    fallback: Voicing | None = None  # a cloned upstream voice's local matched voice (voices/registry.py)


class SynthesisStream:
    """Audio of one request, pulled chunk by chunk; closing it early cancels its queued and running work.

    Each segment carries its own voice (language routing may give a mixed-script text several, and a
    request of several parts one per part) and the settings of the request or part it belongs to; the
    output has one rate, `sample_rate`, whatever rates the voices' engines produce.
    """

    def __init__(self, service: SynthesisService, request: SynthesisRequest, voice: VoiceInfo,
                 segments: list[Segment], joined: set[int] | None = None,
                 pauses: dict[int, float] | None = None, said: Sequence[str] = (),
                 mapped: dict[Any, Normalized] | None = None,
                 output: Output | None = None) -> None:
        self.request = request
        # The client's format its upstream's audio passes through in (SynthesisService.passthrough): its
        # jobs ask for it, and pieces that come back in it go out as PcmChunk.encoded, neither levelled nor
        # resampled. A piece that comes back as PCM (a local fallback voice) is handled as any other.
        self.output = output
        self._passed = False  # a piece was passed through (then its words are not timed)
        self._held_encoded: tuple[bytes, int, str] | None = None  # passed bytes sent after a flushed PCM end
        self._pauses = dict(pauses or {})  # SSML breaks: seconds of silence before a segment index
        self._end_pause = self._pauses.pop(len(segments), 0.0)
        self._joined = joined or set()  # segments cut mid-sentence: their trailing silence is trimmed
        self.voice = voice  # the request's own voice (the first segment's, unless routing chose another)
        self.sample_rate = request.sample_rate or voice.sample_rate  # Hertz of every chunk
        self._service = service
        self._voicings: dict[tuple[str, float, float, float], Voicing] = {}
        self._pending: deque[tuple[int, str, Voicing]] = deque(
            (index, text, self._voicing(v, owner)) for index, text, v, owner in segments)
        # The engine's text of the first of them (prepared by open(), which checked it): taken in order by _fill
        self._prepared: deque[str] = deque(said)
        self._inflight: deque[tuple[int, str, SegmentJob, AsyncIterator[Chunk], Voicing]] = deque()
        self._resampler: Resampler | None = None  # built from the rate the engine really emits
        self._levelled: set[SegmentJob] = set()  # jobs whose worker levels their pieces itself (_finishing)
        self._t0 = time.monotonic()
        self._delivered = 0.0  # seconds of audio handed to the client
        self._heard = 0.0  # seconds of engine audio taken in: the time axis of chunk timings (resampling keeps it)
        self._unsent: list[Timing] = []  # word timings of pieces taken in since the last chunk
        # engine timings → the words of the text the client sent; None when the client reads no timings
        # (request.timings): then no timing work is done at all and chunks carry timings=None
        self._timer = WordTimer(request.text) if request.timings else None
        self._mapped = mapped or {}  # open()'s normalised texts with their offset maps, by timer source key
        # The timer knows each engine call by its place in the stream (`_fill` counts them, `_queued`), not by
        # its segment index: the spans a dialect's segment or a text stream's is routed into (scripts mixed,
        # each in its own voice) share one index. For each call in flight: that key (its job's text is what its
        # engine was given).
        self._queued = 0
        self._timed: dict[SegmentJob, int] = {}
        if self._timer is not None:
            for key, (index, text, _v, owner) in enumerate(segments):
                self._timer.segment(key, self._source(index, owner), text)
        self._first_audio: float | None = None  # seconds from admission to first audio
        self._closed = False
        self._lease = _Lease(self._inflight)  # SynthesisService.open/TextStream.feed take the slot

    @property
    def admitted(self) -> bool:
        """True while the stream holds an admission slot (a text stream takes one on its first text)."""
        return self._lease.held

    @admitted.setter
    def admitted(self, value: bool) -> None:
        self._lease.held = value

    def _source(self, index: int, owner: SynthesisRequest | None) -> Any:
        """The text a segment was normalised from (a part's, a dialect's segment, the request's), for timings."""
        request = owner or self.request
        if owner is not None:
            key, text = id(owner), owner.text
        elif request.segments is not None and 0 <= index < len(request.segments):
            key, text = ("segment", index), request.segments[index]
        else:
            key, text = "text", request.text
        assert self._timer is not None  # only asked for when timings are
        voice: VoiceInfo | None = self.voice
        if owner is not None and key not in self._timer.sources:  # resolved once per part
            try:
                voice = self._service.voices.resolve(owner.voice)
            except VoxgateError:
                pass
        return self._timer.source(key, text, reading_language(request, voice), request.normalize,
                                  self._mapped.get(key))

    def _voicing(self, voice: VoiceInfo, owner: SynthesisRequest | None = None) -> Voicing:
        """How `voice` speaks with the settings of `owner` (a part of the request; None: the request)."""
        request = owner or self.request
        key = (voice.id, request.speed, request.pitch, request.volume)
        found = self._voicings.get(key)
        if found is None:
            found = self._voicings[key] = self._new_voicing(voice, request)
        return found

    def _new_voicing(self, voice: VoiceInfo, request: SynthesisRequest) -> Voicing:
        engine_speed, tempo = split_speed(request.speed, self._service.voices.capabilities(voice).speed_range)
        params = EngineParams(
            speed=engine_speed,
            noise_scale=request.engine_options.get("noise_scale"),
            noise_w_scale=request.engine_options.get("noise_w_scale"),
            seed=request.seed,
            timings=request.timings,  # engines find word timings only for a client that reads them
        )
        local = voice.fallback  # a voice cloned on an upstream: its local matched voice
        return Voicing(voice, params, post_processing(voice, request.pitch, tempo), request.volume,
                       fallback=self._new_voicing(local, request) if local else None)

    @property
    def first_audio_latency(self) -> float | None:
        """Seconds from admission to the first chunk, once there was one."""
        return self._first_audio

    def __aiter__(self) -> SynthesisStream:
        return self

    async def __aenter__(self) -> SynthesisStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _fill(self) -> None:
        # The first segment runs alone so it can take the fast solo session; after it, keep the
        # next segments queued so a worker never waits on this stream's consumer.
        depth = 1 if self._first_audio is None else self._service.prefetch
        ahead = sum(len(entry[1]) for entry in self._inflight) * SECONDS_PER_CHAR / self.request.speed
        while self._pending and len(self._inflight) < depth:
            index, text, voicing = self._pending.popleft()
            key, self._queued = self._queued, self._queued + 1  # (the timer's key for this call: see __init__)
            tail, head = index in self._joined, index - 1 in self._joined
            post = _trimmed(voicing.post, tail, head) if tail or head else voicing.post
            # lexicon words and inline overrides applied (by open() already for the segments it planned)
            said = self._prepared.popleft() if self._prepared else self._service.prepare(text, voicing.voice)
            finishing = self._finishing(voicing, post, said)
            if self._timer is not None:
                self._timer.prepared(key, said, text)
            job = SegmentJob(voicing.voice, said, voicing.params, self._t0 + self._delivered + ahead,
                             urgent=self._first_audio is None, post=finishing or post, output=self.output)
            if finishing is not None:
                self._levelled.add(job)
            if voicing.fallback is not None:  # what speaks this segment if its upstream fails before any audio
                spare = voicing.fallback
                job.fallback = (spare.voice, spare.params, _trimmed(spare.post, tail, head) if tail or head
                                else spare.post)
            run = self._service.backend.generate(job)  # queued now: the backend works ahead of the reader
            self._service.metrics.segments.labels(voicing.voice.engine).inc()
            if self._timer is not None:
                self._timed[job] = key
            self._inflight.append((index, text, job, run, voicing))
            ahead += len(text) * SECONDS_PER_CHAR / self.request.speed

    def _finishing(self, voicing: Voicing, post: Callable[[Piece], Piece] | None,
                   said: str) -> Callable[[Piece], Piece] | None:
        """`post`, then what the loop would do to each piece alone, on the worker that made it as it is made
        (issue 13: the event loop then only forwards it): when words are timed and the engine could not time
        them, their estimate over `said` (the engine's text), from the piece as the engine made it (as
        `_take_timings` does); levelling; and when the dialect sends int16 as it comes (request.int16_chunks)
        and the piece is at the stream's rate, its int16 bytes. None (the loop levels, as always) unless the
        voice's gain is known already, its backend runs `post` per piece in this process, nothing is passed
        through and no fallback voice may speak instead. Resampling stays on the loop: its filter's state runs
        across the stream's segments, which workers make at once."""
        if self.output is not None or voicing.fallback is not None:
            return None
        per_piece = getattr(self._service.backend, "posts_per_piece", None)
        if per_piece is None or not per_piece(voicing.voice):
            return None
        leveller = voicing.leveller
        if leveller is None:
            gain = self._service.known_gain(voicing.voice)
            if gain is None:  # measured when its first audio arrives (SynthesisService.gain)
                return None
            leveller = voicing.leveller = Leveller(gain * voicing.volume)
        rate = self.sample_rate if self.request.int16_chunks else 0  # 0: no piece has it
        estimate = said if self._timer is not None else ""  # the words to estimate when the engine cannot time them

        def run(piece: Piece) -> Piece:
            piece = post(piece) if post else piece
            timings = piece.timings
            if timings is None and estimate:
                timings = estimate_words(estimate, piece.samples, piece.rate)
            samples = leveller.process(piece.samples)
            return Piece(samples, piece.rate, timings, pcm16=int16_bytes(samples) if piece.rate == rate else None)
        return run

    async def _level(self, voicing: Voicing, job: SegmentJob, audio: np.ndarray) -> np.ndarray:
        """Level a piece with its voice's gain (unless its worker did: _finishing) and bring it to the stream's rate."""
        if job not in self._levelled:
            if voicing.leveller is None:
                voicing.leveller = Leveller(await self._service.gain(job.voice) * voicing.volume)
            audio = voicing.leveller.process(audio)
        tail = None  # what the previous resampler still held, when the engine's rate changes
        if self._resampler is None or self._resampler.in_rate != job.rate:
            tail = self._resampler.flush() if self._resampler is not None else None
            self._resampler = Resampler(job.rate, self.sample_rate)
        out = self._resampler.process(audio)
        return np.concatenate([tail, out]) if tail is not None and len(tail) else out

    async def __anext__(self) -> PcmChunk:
        if self._held_encoded is not None:  # passed-through bytes that waited for a resampler's held end
            held, self._held_encoded = self._held_encoded, None
            return self._emit_encoded(*held)
        while not self._closed:
            self._fill()
            if not self._inflight:
                if await self._more_input():
                    continue
                tail = self._resampler.flush() if self._resampler else np.zeros(0, np.float32)
                if self._end_pause:  # an SSML break at the very end
                    tail = np.concatenate([tail, np.zeros(int(self._end_pause * self.sample_rate), np.float32)])
                await self._finish(completed=True)
                if not self._passed and self._timer is not None:
                    self._unsent += self._timer.finish()
                if len(tail) or self._unsent:  # words never timed still get their (estimated) timing
                    return self._emit(tail, -1, "")
                break
            index, text, job, run, voicing = self._inflight[0]
            if index in self._pauses:  # an SSML break before this segment
                silence = np.zeros(int(self._pauses.pop(index) * self.sample_rate), np.float32)
                self._heard += len(silence) / self.sample_rate  # later words are said that much later
                return self._emit(silence, index, "")
            try:
                item: Chunk | None = await anext(run)
            except StopAsyncIteration:
                item = None
            except EngineFailure as exc:
                if not self._inflight or self._inflight[0][2] is not job:
                    continue  # stopped while waiting: the stream ends cleanly
                if self._recover(job, exc):
                    continue
                await self._finish(completed=False)
                raise
            if not self._inflight or self._inflight[0][2] is not job:
                continue  # stopped (cancel or stop_all) while waiting: the stream ends cleanly
            if item is None:
                self._inflight.popleft()
                self._timed.pop(job, None)
                self._levelled.discard(job)
                continue
            if item.encoded is not None:  # the upstream's own bytes in the client's format
                self._passed = True
                tail = self._resampler.flush() if self._resampler is not None else None
                self._resampler = None  # a PCM piece before (a local fallback's) leaves its held end first
                if tail is not None and len(tail):
                    self._held_encoded = (item.encoded, index, text)
                    return self._emit(tail, -1, "")
                return self._emit_encoded(item.encoded, index, text)
            self._take_timings(job, item)
            try:
                audio = await self._level(voicing, job, item.samples)
            except BaseException:
                await self._finish(completed=False)
                raise
            if len(audio):
                # the worker's int16 bytes go with the samples they were made from (not a resampler's output)
                return self._emit(audio, index, text).with_pcm16(item.pcm16 if audio is item.samples else None)
        raise StopAsyncIteration

    def _recover(self, job: SegmentJob, error: EngineFailure) -> bool:
        """True when the stream carries on after `job` failed (a text stream whose forwarded session failed
        before any audio speaks its text segment by segment instead); False: the failure stands."""
        return False

    def _take_timings(self, job: SegmentJob, item: Chunk) -> None:
        """A piece's engine timings as word timings on the request's text and the stream's time axis."""
        if self._timer is None:  # the client reads no timings
            return
        start = self._heard
        self._heard += item.duration
        key = self._timed.get(job)
        if key is None:  # not a call the timer knows (a text stream's forwarded session)
            return
        timings = item.timings
        if timings is None:  # an engine that cannot say: its text's words over its voiced audio, estimated
            timings = estimate_words(job.text, item.samples, item.rate) if job.text else None
        self._unsent += self._timer.take(key, timings, start)

    async def _more_input(self) -> bool:
        """True when more segments may still come (text streams wait for them here)."""
        return False

    def _emit(self, audio: np.ndarray, index: int, text: str) -> PcmChunk:
        if self._first_audio is None:
            self._first_audio = time.monotonic() - self._t0
            self._service.metrics.first_audio.observe(self._first_audio)
        seconds = len(audio) / self.sample_rate
        self._delivered += seconds
        self._service.metrics.audio_seconds.inc(seconds)
        # Word timings go out with the first chunk after their piece was taken in (a piece shorter than the
        # resampler's delay makes no chunk of its own), but never before the chunk holding a word's start:
        # the resampler holds the end of each piece back, so a word there waits for the next chunk.
        timings: tuple[Timing, ...] | None = None  # none asked for (request.timings)
        if self._timer is not None:
            unsent = self._unsent
            if index == -1 or not unsent or unsent[-1].start <= self._delivered + 1e-6:  # all of them (most chunks)
                timings, self._unsent = tuple(unsent), []
            else:  # (starts only grow: the words before the first that starts later)
                ready = next((n for n, t in enumerate(unsent) if t.start > self._delivered + 1e-6), len(unsent))
                timings, self._unsent = tuple(unsent[:ready]), unsent[ready:]
        # The caption text: inline overrides ([word](/ipa/), also from SSML <phoneme>) shown as their words.
        return PcmChunk(samples=audio, rate=self.sample_rate, index=index, text=strip_inline(text), timings=timings)

    def _emit_encoded(self, data: bytes, index: int, text: str) -> PcmChunk:
        """A piece already in the client's format: its length is known only for raw pcm (int16)."""
        if self._first_audio is None:
            self._first_audio = time.monotonic() - self._t0
            self._service.metrics.first_audio.observe(self._first_audio)
        if self.output is not None and self.output.format == "pcm":
            seconds = len(data) / 2 / self.sample_rate
            self._delivered += seconds
            self._service.metrics.audio_seconds.inc(seconds)
        return PcmChunk(samples=np.zeros(0, np.float32), rate=self.sample_rate, index=index,
                        text=strip_inline(text), encoded=data)

    def cancel(self) -> None:
        """Drop queued segments and stop the running one after its current piece."""
        self._service.metrics.segments_dropped.inc(len(self._pending) + len(self._inflight))
        for entry in self._inflight:
            self._service.backend.abort(entry[2])
        self._inflight.clear()
        self._levelled.clear()
        self._pending.clear()
        self._prepared.clear()

    async def _finish(self, completed: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self.cancel()
        self._service._release(self)

    async def aclose(self) -> None:
        """End the stream; if it had not finished, its work is cancelled and counted."""
        if not self._closed:
            self._service.metrics.cancelled.inc()
            await self._finish(completed=False)


StreamT = TypeVar("StreamT", bound=SynthesisStream)


@dataclass(frozen=True)
class Health:
    """The service's state for /ready: admission and what its backend reports."""

    ready: bool  # warmed up: the default voice is loaded and levelled
    saturated: bool  # no admission slot could be had for SATURATED_SECONDS
    saturated_seconds: float  # how long every slot has been held without a break
    slots_held: int  # requests admitted and not yet closed
    slots_total: int  # admission slots: the backend's capacity plus the queue
    backend: BackendHealth



def reading_language(request: SynthesisRequest, voice: VoiceInfo | None) -> str | None:
    """The language numbers and dates are read in: the request's, else its voice's (None: by script)."""
    if request.language and request.language.lower() != "auto":
        return request.language
    return voice.language if voice is not None else None

GAIN_CACHE = 1024  # levelling gains kept in memory (least recently used go; the voice store keeps them all)


def gain_key(voice: VoiceInfo) -> str:
    """A voice's gain key in the voice store: its id, with its model file's size when it has one (so a
    replaced model is measured again; the size, not the time, is the same on every node)."""
    try:
        size = voice.model_path.stat().st_size if voice.model_path is not None else None
    except OSError:
        size = None
    return voice.id if size is None else f"{voice.id}@{size}"


class SynthesisService:
    """Validates requests, admits them, and turns text into PCM through a synthesis backend."""

    def __init__(self, voices: VoiceRegistry, backend: Backend, metrics: Metrics,
                 limits: Limits = Limits(), lexicon: Lexicon | None = None) -> None:
        self.voices = voices
        self.lexicon = lexicon if lexicon is not None else Lexicon()  # shared by every dialect and engine
        self.backend = backend
        self.metrics = metrics
        self.limits = limits
        self.prefetch = max(2, backend.capacity)  # segments of one stream queued at once
        self._active = 0
        self._full_since: float | None = None  # when the last free admission slot was taken
        self._open: weakref.WeakSet[SynthesisStream] = weakref.WeakSet()  # not finished, for stop_all
        self._gains: OrderedDict[str, float] = OrderedDict()  # voice id → gain, the GAIN_CACHE most recent
        self._gain_locks: dict[str, asyncio.Lock] = {}
        self.ready = False
        metrics.watch(self._gauges)

    def _gauges(self) -> dict[str, float]:
        stats = self.backend.load()
        return {"queue_depth": stats.queued, "jobs_running": stats.running, "active_requests": self._active,
                "jobs_dropped": stats.dropped, "jobs_interrupted": stats.interrupted,
                "jobs_completed": stats.completed, "jobs_failed": stats.failed}

    @property
    def active(self) -> int:
        """Requests admitted and not yet closed."""
        return self._active

    @property
    def capacity(self) -> int:
        """Admission slots: what the backend runs at once plus the queue."""
        return self.backend.capacity + self.limits.max_queue

    @property
    def saturated_for(self) -> float:
        """Seconds every admission slot has been held without a break (0 while one is free)."""
        return 0.0 if self._full_since is None else time.monotonic() - self._full_since

    @property
    def saturated(self) -> bool:
        """No slot could be had for SATURATED_SECONDS: /ready reports the server not ready."""
        return self.saturated_for >= SATURATED_SECONDS

    def health(self) -> Health:
        """Admission and backend state now (what /ready reports)."""
        return Health(ready=self.ready, saturated=self.saturated, saturated_seconds=self.saturated_for,
                      slots_held=self._active, slots_total=self.capacity, backend=self.backend.health())

    def close(self) -> None:
        """Stop the backend: queued work is dropped, running work stops after its current piece."""
        self.backend.close()

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        """Close, when the block ends, every stream opened inside it (in this task or tasks it starts):
        the composition root wraps each HTTP request and WebSocket connection in one, so a dialect that
        forgets a stream, or raises between opening it and closing it, cannot keep its slot."""
        opened: weakref.WeakSet[SynthesisStream] = weakref.WeakSet()
        token = _SCOPE.set(opened)
        try:
            yield
        finally:
            try:
                _SCOPE.reset(token)
            except ValueError:  # exited in another context than it was entered in: nothing to reset
                pass
            for stream in list(opened):
                if not stream._closed:
                    _LOG.debug("closing a stream its dialect left open")
                    await stream.aclose()

    async def warm_up(self, preload: Sequence[str] = ()) -> None:
        """Load the default voice's sessions (and those of `preload`) and measure their level, so first
        requests are fast. These sessions stay loaded whatever the memory budget."""
        for voice in [self.voices.resolve(None), *(self.voices.resolve(v) for v in preload)]:
            await self.backend.preload(voice)
            await self.gain(voice)
        self.ready = True

    async def open(self, request: SynthesisRequest) -> SynthesisStream:
        """Validate and admit a request; raises before any audio if it is bad or the server is busy.

        One pass, each step once: normalise the text, check the numbers, resolve the voice, route the text
        (which also checks the language), segment, then admit; the backend gets the segments as the stream
        is read. SSML input becomes parts (core/parts.py): its voices and prosody, with its breaks as pauses."""
        script = self._script(request)
        pauses: dict[int, float] = {}
        joined: set[int] = set()
        mapped: dict[Any, Normalized] = {}  # the normalised texts, kept for the word timings
        if script is not None:
            voice, segments, starts = self._plan_parts(replace(request, parts=script.parts, segments=None), mapped)
            for i, start in enumerate(starts):
                if script.pauses[i]:
                    pauses[start] = pauses.get(start, 0.0) + script.pauses[i]
                # Where a part starts mid-sentence (a prosody or voice change, a break inside a sentence), the
                # engines' end-of-sentence silence is cut, so the sentence goes on with no gap but the break's.
                # After a sentence the natural pause stays and a break adds its time to it.
                previous = segments[start - 1][1].rstrip() if 0 < start <= len(segments) else ""
                if previous and not previous.endswith(SENTENCE_ENDS):
                    joined.add(start - 1)
            if script.end_pause:
                pauses[len(segments)] = script.end_pause
        elif request.parts is not None:
            voice, segments, _ = self._plan_parts(request, mapped)
        else:
            voice, segments = self._plan(request, 0, mapped=mapped)
        output = None if script is not None else self.passthrough(request, segments, joined, pauses)
        if output is not None and len(segments) > 1 and not get_format(output.format).concatenates:
            # one upstream answer is one file: the whole text goes as one request (the upstream cuts it itself)
            index, _, first_voice, owner = segments[0]
            segments = [(index, " ".join(text for _, text, _, _ in segments), first_voice, owner)]
        if (output is None and script is None and _policy(request.segmentation) is DEFAULT_POLICY
                and request.segments is None and segments and self._busy()):
            _, first, first_voice, owner = segments[0]
            long = len(first) > BUSY_FIRST_MAX and not self._cheap(first, first_voice, request.speed)
            halves = cut_at_word(first, BUSY_FIRST_CUT) if long else None
            if halves is not None:
                segments = [(0, halves[0], first_voice, owner), (1, halves[1], first_voice, owner),
                            *((i + 1, t, v, o) for i, t, v, o in segments[1:])]
                joined.add(0)
                self.metrics.busy_cuts.inc()
        # A word the voice cannot say is refused before admission; the stream reuses the prepared text.
        said = [self.prepare(piece, piece_voice) for _, piece, piece_voice, _ in segments]
        stream = SynthesisStream(self, request, voice, segments, joined, pauses, said, mapped, output)
        self.admit()
        stream.admitted = True  # nothing can raise between taking the slot and tracking its holder
        return self.track(stream)

    def passthrough(self, request: SynthesisRequest, segments: Sequence[Segment], joined: set[int] | None = None,
                    pauses: dict[int, float] | None = None) -> Output | None:
        """The one place that decides whether a request's audio passes through as its upstream's own bytes.

        Yes when the dialect takes encoded bytes in the client's format (`request.output`), every segment is
        spoken by one voice whose backend can send that format at the client's rate as is (an upstream:
        RouterBackend.encodes), and nothing would change the audio: no gain (`volume`), no pitch, no tempo
        beyond what the upstream does itself, no reference shift, no parts, breaks or trimmed seams. A
        format whose streams do not join (all but raw pcm) also needs the text sent as one request, which
        open() then does. The voice's level is then the upstream's own (it is not levelled), and the
        stream's chunks carry no word timings. Segments a local fallback voice speaks come back as PCM."""
        fmt = request.output
        if fmt is None or not segments or joined or pauses or request.parts is not None:
            return None
        voice = segments[0][2]
        if any(v.id != voice.id or owner is not None for _, _, v, owner in segments):
            return None
        if request.volume != 1.0 or request.pitch != 0.0:
            return None
        if len(segments) > 1 and request.segments is not None and not get_format(fmt).concatenates:
            return None  # the dialect's own cut is kept: its segments cannot be one request
        rate = request.sample_rate or voice.sample_rate
        encodes = getattr(self.backend, "encodes", None)
        if encodes is None or not encodes(voice, fmt, rate):  # first: local voices leave here
            return None
        _, tempo = split_speed(request.speed, self.voices.capabilities(voice).speed_range)
        if post_processing(voice, 0.0, tempo) is not None:
            return None
        return Output(fmt, rate)

    def forwards_text(self, request: SynthesisRequest, voice: VoiceInfo) -> bool:
        """The one place that decides whether a text stream's text goes on to its voice's upstream as it
        arrives, in one upstream session (core/textstream.py), rather than segment by segment: when the
        voice's backend takes streamed text (RouterBackend.streams_text: an upstream kind with `stream_text`)
        and nothing must run on the audio per segment (no pitch, no tempo beyond the upstream's, no shift).
        The text is then the client's own: the upstream normalises, cuts and routes it itself, so a lexicon with
        entries keeps the stream on voxgate's segments (where its words are applied)."""
        if request.pitch != 0.0 or not self.lexicon.empty():
            return False
        _, tempo = split_speed(request.speed, self.voices.capabilities(voice).speed_range)
        if post_processing(voice, 0.0, tempo) is not None:
            return False
        streams = getattr(self.backend, "streams_text", None)
        return bool(streams is not None and streams(voice))

    def _plan(self, request: SynthesisRequest, start: int, owner: SynthesisRequest | None = None,
              mapped: dict[Any, Normalized] | None = None) -> tuple[VoiceInfo, list[Segment]]:
        """The request's voice and segments, numbered from `start`: its text normalised, its numbers
        checked, its voice resolved and its text routed (which checks the language) and cut, once each.
        `mapped` gets the normalised texts with their offset maps, keyed as the stream's word timer finds them."""
        found = self.voices.resolve_or_none(request.voice)  # first, for the language the text is read in
        text, pieces, maps = self._check_text(request, reading_language(request, found))
        if mapped is not None:
            if owner is not None:
                mapped[id(owner)] = maps[0]
            elif pieces is not None:
                mapped.update({("segment", i): m for i, m in enumerate(maps)})
            else:
                mapped["text"] = maps[0]
        self._check_numbers(request)
        voice = found or self.voices.resolve(request.voice)  # an unknown voice is refused after the text's checks
        segments: list[Segment] = []
        if pieces is not None:  # the dialect cut the text: indexes stay its segment numbers
            for i, piece in enumerate(pieces):
                piece = self.lexicon.rewrite(piece, voice.language, voice.id)  # regex entries
                segments += [(start + i, span.text, span.voice, owner) for span in self.route(request, piece, voice)]
            return voice, segments
        policy = _policy(request.segmentation)
        for span in self.route(request, self.lexicon.rewrite(text, voice.language, voice.id), voice):
            cut = split_text(span.text, policy) if policy else [span.text.strip()]
            segments += [(start + len(segments) + n, piece, span.voice, owner) for n, piece in enumerate(cut)]
        return voice, segments

    def _script(self, request: SynthesisRequest) -> Script | None:
        """SSML input read as parts, or None for plain text. A dialect's one pre-cut segment may be SSML."""
        if request.parts is not None or (request.segments is not None and len(request.segments) != 1):
            return None
        text = request.text if request.segments is None else request.segments[0]
        if not ssml.is_ssml(text):
            return None
        if len(text) > self.limits.max_input_chars:
            raise InputTooLong(f"text is {len(text)} characters; the limit is {self.limits.max_input_chars}",
                               param="text")
        return from_ssml(request, text, self.limits)

    def _plan_parts(self, request: SynthesisRequest,
                    mapped: dict[Any, Normalized] | None = None) -> tuple[VoiceInfo, list[Segment], list[int]]:
        """Every part planned as a request of its own would be (each checked against the limits), with
        segments numbered on across the parts; the stream's voice is the first part's. Also: the index of
        each part's first segment."""
        assert request.parts is not None
        if not request.parts:
            raise InvalidInput("text is empty or has nothing to speak", param="text")
        first: VoiceInfo | None = None
        segments: list[Segment] = []
        starts: list[int] = []
        for part in request.parts:
            starts.append(len(segments))
            sub = replace(request, text=part.text, voice=part.voice or request.voice,
                          language=part.language or request.language,
                          speed=request.speed if part.speed is None else part.speed,
                          pitch=request.pitch if part.pitch is None else part.pitch,
                          volume=request.volume if part.volume is None else part.volume,
                          segments=None, parts=None)
            voice, planned = self._plan(sub, segments[-1][0] + 1 if segments else 0, sub, mapped)
            first = first or voice
            segments += planned
        assert first is not None
        return first, segments, starts

    def _cheap(self, text: str, voice: VoiceInfo, speed: float) -> bool:
        """Whether `voice`'s engine says it makes `text` in under BUSY_FIRST_CHEAP_S of CPU (then it is not cut)."""
        cost = self.voices.capabilities(voice).compute_per_second
        return cost is not None and len(text) * SECONDS_PER_CHAR / speed * cost < BUSY_FIRST_CHEAP_S

    def _busy(self) -> bool:
        """Every worker has a job (so a first segment will run on a 1-thread session, after a wait)."""
        load = self.backend.load()
        return load.running + load.queued >= self.backend.capacity

    def route(self, request: SynthesisRequest, text: str, voice: VoiceInfo | None = None) -> list[Span]:
        """The request's (normalised) text cut into spans, each with the voice that speaks its language;
        only spans with something to say, stripped. `voice` is the request's voice if already resolved."""
        requested = voice if voice is not None else request.voice
        return [span._replace(text=span.text.strip())
                for span in route(self.voices, requested, request.language, text) if is_speakable(span.text)]

    def prepare(self, text: str, voice: VoiceInfo) -> str:
        """A segment's text as `voice`'s engine gets it: inline overrides and lexicon words applied."""
        return self.lexicon.apply(text, language=voice.language, voice=voice.id, engine=voice.engine,
                                  takes_phonemes=self.voices.capabilities(voice).phonemes)

    def admit(self) -> None:
        """Count a request in, or raise Overloaded. The caller must hand the stream it builds to
        track(); the slot is released when the stream ends."""
        if self._active >= self.capacity:
            self.metrics.rejected.inc()
            raise Overloaded(f"{self._active} requests in progress; retry shortly", retry_after=1.0)
        self._active += 1
        if self._active >= self.capacity and self._full_since is None:
            self._full_since = time.monotonic()

    def _give_back(self) -> None:
        self._active -= 1
        if self._active < self.capacity:
            self._full_since = None

    def track(self, stream: StreamT) -> StreamT:
        """Remember a stream until it finishes (for stop_all), close it with the enclosing scope(), and
        give its slot back if it is garbage-collected unclosed. Every stream passes through here."""
        self._open.add(stream)
        opened = _SCOPE.get()
        if opened is not None:
            opened.add(stream)
        weakref.finalize(stream, self._reclaim, stream._lease)
        return stream

    def _reclaim(self, lease: _Lease) -> None:
        """A stream was collected without being closed: free its slot and stop its work."""
        if not lease.held:
            return
        lease.held = False
        self._give_back()
        for entry in lease.inflight:
            job = entry[2]
            # A finalizer may run inside any code, even the backend's own while it holds its lock: the
            # abort runs on the event loop instead.
            if lease.loop is not None and not lease.loop.is_closed():
                try:
                    lease.loop.call_soon_threadsafe(self.backend.abort, job)
                except RuntimeError:  # the loop closed meanwhile: the backend is going away too
                    pass
        _LOG.warning("a synthesis stream was dropped without being closed; its slot was reclaimed")

    def stop_all(self) -> int:
        """Stop every stream in flight: queued work is dropped, running pieces stop after the current
        one, and each stream ends cleanly after the audio it already has. Returns how many were stopped."""
        streams = list(self._open)
        for stream in streams:
            stream.cancel()
        return len(streams)

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        """Audio chunks of a request as they are synthesized."""
        async with await self.open(request) as stream:
            async for chunk in stream:
                yield chunk

    async def synthesize(self, request: SynthesisRequest) -> Pcm:
        """The whole utterance at once."""
        async with await self.open(request) as stream:
            parts = [chunk.samples async for chunk in stream]
            rate = stream.sample_rate
        return Pcm(np.concatenate(parts) if parts else np.zeros(0, np.float32), rate)

    def _check_text(self, request: SynthesisRequest,
                    language: str | None) -> tuple[str, list[str] | None, list[Normalized]]:
        """The request's text normalised (once), and its segments each normalised when the dialect cut it;
        also the normalised texts with their maps to the text sent (the request's, or one per segment).
        The limit counts what the client sent: writing numbers out makes text longer, not the request."""
        raw = len(request.text) if request.segments is None else sum(len(s) for s in request.segments)
        if raw > self.limits.max_input_chars:
            raise InputTooLong(
                f"text is {raw} characters; the limit is {self.limits.max_input_chars}",
                param="text",
            )
        pieces = None
        if request.segments is not None:
            # Each segment is normalised once; the whole is their join. (Normalising the joined text again
            # could only differ by a character where a segment's own edges held two line breaks.)
            maps = [normalize_mapped(segment, language, spoken=request.normalize) for segment in request.segments]
            pieces = [m.text for m in maps]
            text = " ".join(piece for piece in pieces if piece)
        else:
            maps = [normalize_mapped(request.text, language, spoken=request.normalize)]
            text = maps[0].text
        if not is_speakable(text):
            raise InvalidInput("text is empty or has nothing to speak", param="text")
        return text, pieces, maps

    def check(self, request: SynthesisRequest) -> VoiceInfo:
        """Validate everything but the text (for a text stream, whose text comes later); returns the voice
        that will speak."""
        self._check_numbers(request)
        voice = self.voices.resolve(request.voice)
        route(self.voices, voice, request.language, "")  # an unknown or unspoken language fails here
        return voice

    def _check_numbers(self, request: SynthesisRequest) -> None:
        if not self.limits.min_speed <= request.speed <= self.limits.max_speed:
            raise InvalidInput(f"speed {request.speed} is outside {self.limits.min_speed}–"
                               f"{self.limits.max_speed}", param="speed")
        if not -12.0 <= request.pitch <= 12.0:
            raise InvalidInput(f"pitch {request.pitch} semitones is outside -12–12", param="pitch")
        if request.sample_rate is not None and not 8000 <= request.sample_rate <= 192_000:
            raise InvalidInput(f"sample rate {request.sample_rate} Hz is outside 8000–192000",
                               param="sample_rate")

    def known_gain(self, voice: VoiceInfo) -> float | None:
        """The gain gain() would return for `voice` without measuring or reading anything; None if not known yet."""
        base = voice.base_voice
        if base and base != voice.id:
            try:
                return self.known_gain(self.voices.resolve(str(base)))
            except VoxgateError:
                pass  # its base is gone: as itself
        gain = self._gains.get(voice.id)
        if gain is not None:
            self._gains.move_to_end(voice.id)
        return gain

    async def gain(self, voice: VoiceInfo, background: bool = False) -> float:
        """The fixed gain that levels this voice, measured once on a calibration sentence. A reference
        voice spoken by an installed one is levelled as its base is (its shift moves the spectrum's
        shape, not its loudness, by much), so a new reference costs no calibration on its first request.
        `background`: measured as housekeeping (a base voice's), on a session that goes when that is done."""
        base = voice.base_voice
        if base and base != voice.id:
            try:
                return await self.gain(self.voices.resolve(str(base)), background)
            except VoxgateError:
                pass  # its base is gone: measured as itself
        if voice.id in self._gains:
            self._gains.move_to_end(voice.id)
            return self._gains[voice.id]
        lock = self._gain_locks.setdefault(voice.id, asyncio.Lock())
        try:
            async with lock:
                gain = self._gains.get(voice.id)
                if gain is None:
                    gain = self._gains[voice.id] = await self._level(voice, background)
                    while len(self._gains) > GAIN_CACHE:
                        self._gains.popitem(last=False)
        finally:
            if not lock.locked():  # no other caller holds it: forgotten (one per voice ever grew without bound)
                self._gain_locks.pop(voice.id, None)
        return gain

    async def _level(self, voice: VoiceInfo, background: bool = False) -> float:
        """A voice's gain from the voice store (measured by any node sharing it), else measured and kept there."""
        store, key = getattr(self.voices, "store", None), gain_key(voice)
        if store is not None:
            try:
                kept = await asyncio.to_thread(store.get_gain, key)
            except Exception as exc:  # the store is shared best effort: a database hiccup costs a measurement
                _LOG.warning("could not read the gain of %s from the voice store: %s", voice.id, exc)
                kept = None
            if kept is not None:
                _LOG.info("voice %s levelled with gain %.2f (from the voice store)", voice.id, kept)
                return kept
        job = SegmentJob(voice, CALIBRATION_TEXT, EngineParams(timings=False), time.monotonic(),
                         post=post_processing(voice), background=background)
        try:
            parts = [item.samples async for item in self.backend.generate(job)]
        except EngineFailure as exc:
            cause = exc.__cause__
            raise EngineFailure(f"{voice.engine} failed to load {voice.id}: {cause}") from cause
        gain = calibrate_gain(np.concatenate(parts)) if parts else 1.0
        if store is not None:
            try:
                gain = await asyncio.to_thread(store.put_gain, key, gain)  # the first node's measurement wins
            except Exception as exc:
                _LOG.warning("could not keep the gain of %s in the voice store: %s", voice.id, exc)
        _LOG.info("voice %s levelled with gain %.2f", voice.id, gain)
        return gain

    def _release(self, stream: SynthesisStream) -> None:
        if stream.admitted:
            stream.admitted = False
            self._give_back()
        self._open.discard(stream)


__all__ = ["Health", "Limits", "SynthesisService", "SynthesisStream"]

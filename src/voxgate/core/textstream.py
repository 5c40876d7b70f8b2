"""Text streamed in, audio streamed out: the core of the CosyVoice WebSocket and StackFlow dialects.

A `TextStream` is a `SynthesisStream` whose segments arrive while it plays. Text is fed as it comes
(typically LLM tokens); the incremental segmenter hands over each segment once its end is certain, so the
first clause is spoken as soon as it is complete. Text that never gets punctuation is flushed: all of it
when the input goes quiet for `idle_flush` seconds, or up to its last word when the stream has spoken
nothing for `stall_flush` seconds although text keeps coming. The unspoken backlog is bounded by the
service's input limit, and audio out by the pool's prefetch depth, so a fast producer or a slow consumer
cannot grow memory without bound.

SSML in a stream (docs/ssml.md): text whose first non-blank characters are `<speak` (as for a whole request)
is held until its `</speak>` arrives, then read as one SSML document (its voices, prosody and breaks, as
`SynthesisService.open` reads one), so tags split over pieces are never spoken. Text after the document may
be another document or plain text. A stream opened with `ssml=True` (Wyoming's `text_format: ssml`) is SSML
even without `<speak>`: such text is held to the end of the stream and read inside `<speak>…</speak>`. Plain
text is plain to its end: a `<` later in it is a character. An SSML document is spoken only once it is
complete, so its first audio waits for its end; a document left open when the stream ends is invalid markup,
reported by the stream's reader.

Forwarding (docs/upstreams.md): when the voice is on an upstream that takes streamed text (CosyVoice's
WebSocket, a Wyoming server that streams; `SynthesisService.forwards_text` decides), plain text is not cut
here: each piece goes on to the upstream as it arrives, all in one upstream session (one job whose `texts`
keeps coming), so the upstream starts on the client's first words. Until that session's first audio its
text is kept: if it fails before any audio, the text is cut into segments here after all and spoken as any
other (retries, failover to a local voice). An SSML document ends the session (what follows is cut here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from voxgate.core.parts import from_ssml
from voxgate.core.service import SENTENCE_ENDS, SynthesisService, SynthesisStream, reading_language
from voxgate.core.types import PcmChunk, SynthesisRequest
from voxgate.engines.base import VoiceInfo
from voxgate.errors import EngineFailure, InputTooLong, InvalidInput, VoxgateError
from voxgate.scheduling.backend import SegmentJob
from voxgate.text.normalize import normalize
from voxgate.text.segment import DEFAULT_POLICY, Segmenter, SegmentPolicy
from voxgate.text.ssml import document_end, starts_ssml

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextStreamPolicy:
    """When unpunctuated text is spoken anyway."""

    idle_flush: float = 0.8  # seconds without new text before everything buffered is spoken
    stall_flush: float = 2.0  # seconds of text without a segment before it is cut at its last word
    idle_end: float = 60.0  # seconds without any text (and nothing left to say) before the stream ends


class _Forwarded:
    """A forwarded stream's text as its upstream session reads it (SegmentJob.texts): pieces in order, ended
    by `close`, or when the client sends nothing for `idle_end` seconds (then `on_idle` ends the stream)."""

    def __init__(self, idle_end: float, on_idle: Callable[[], None]) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._idle_end = idle_end
        self._on_idle = on_idle
        self._closed = False
        self.queued = 0  # characters given and not yet taken by the session
        self.waiting = False  # the session has taken all there is and waits for the client

    def put(self, text: str) -> None:
        if not self._closed:
            self.queued += len(text)
            self._queue.put_nowait(text)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> _Forwarded:
        return self

    async def __anext__(self) -> str:
        self.waiting = self._queue.empty()
        try:
            async with asyncio.timeout(self._idle_end):
                text = await self._queue.get()
        except TimeoutError:
            self._on_idle()
            raise StopAsyncIteration from None
        finally:
            self.waiting = False
        if text is None:
            self._queue.put_nowait(None)  # a reader asking again still finds the end
            raise StopAsyncIteration
        self.queued -= len(text)
        return text


class TextStream(SynthesisStream):
    """Feed text with `feed`, end it with `finish`, read PcmChunks in order; `cancel` drops everything."""

    def __init__(self, service: SynthesisService, request: SynthesisRequest, voice: VoiceInfo,
                 segment_policy: SegmentPolicy, policy: TextStreamPolicy, ssml: bool = False,
                 forward: bool = False) -> None:
        super().__init__(service, request, voice, [])
        self.admitted = False  # until the first text: see feed
        self._segmenter = Segmenter(segment_policy)
        self._policy = policy
        self._language = reading_language(request, voice)  # what numbers and dates are read in
        self._limit = service.limits.max_input_chars  # unspoken characters held at once
        self._next_index = 0
        self._input_done = False
        self._wake = asyncio.Event()
        self._last_text: float | None = None  # when text last arrived
        self._last_segment: float | None = None  # when a segment last went out (or text first came)
        self._at_word_end = False  # the last text fed ended in whitespace, so no word is half-fed
        self.characters = 0  # text fed so far
        self._opened = time.monotonic()
        # SSML: "detect" while the text since the start (or the last document's end) could still be
        # `<speak`; "ssml" inside a document; "wrapped" for ssml=True text without <speak> (held to the end);
        # "plain" once the text is plain.
        self._mode = "detect"
        self._forced = ssml
        self._held = ""  # text not yet given to the segmenter: an undecided start or an open document
        self._error: VoxgateError | None = None  # bad markup found at finish: raised to the reader
        # Forwarding (module docstring): plain text goes on to the upstream as it comes, in one session
        self._forward = forward
        self._source: _Forwarded | None = None  # the session's text, once it is open
        self._session: SegmentJob | None = None
        self._forwarded: list[str] = []  # its text so far, kept until its first audio (to cut it after all)
        # The session's audio in the client's format, when it passes through as the upstream's own bytes (the
        # one rule, SynthesisService.passthrough, for the session's voice); segments cut here never do.
        self._passing = service.passthrough(request, [(0, "", voice, None)]) if forward else None

    # -- input ------------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Add text (any chunking); raises InputTooLong when the unspoken backlog would pass the limit."""
        if self._input_done:
            raise InvalidInput("the text stream is already finished", param="text")
        if self._closed or not text:
            return
        if not self.admitted:
            self._service.admit()  # a stream holds a slot only once it has something to say
            self.admitted = True
        backlog = (len(self._segmenter.pending) + sum(len(t) for _, t, _ in self._pending) + len(self._held)
                   + (self._source.queued if self._source is not None else 0) + len(text))
        if backlog > self._limit:
            raise InputTooLong(f"{backlog} characters are waiting to be spoken; the limit is {self._limit}",
                               param="text")
        now = time.monotonic()
        if self._last_text is None:
            self._t0 = now  # deadlines and first-audio latency count from the first text, not the open
            self._last_segment = now
        self._last_text = now
        self._at_word_end = text[-1].isspace()
        self.characters += len(text)
        self._take(text)
        self._wake.set()  # a reader waiting for text times its flush from this text, not from before it came

    def _take(self, text: str) -> None:
        """Plain text to the segmenter; SSML held until its document is complete."""
        while text:
            if self._mode == "plain":
                if self._forward:
                    self._send_on(text)
                else:
                    self._enqueue(self._segmenter.add(text))
                return
            seen = len(self._held)
            self._held += text
            text = ""
            if self._mode == "detect":
                start = starts_ssml(self._held)
                if start is None:
                    return
                self._mode = "ssml" if start else "wrapped" if self._forced else "plain"
                if self._mode == "plain":
                    text, self._held = self._held, ""
                    continue
                seen = 0
            if self._mode == "ssml":
                end = document_end(self._held, seen)
                if end is None:
                    return
                document, text, self._held = self._held[:end], self._held[end:], ""
                self._mode = "detect"
                self._enqueue_ssml(document)

    def finish(self) -> None:
        """No more text: whatever is buffered is spoken, then the stream ends."""
        if self._input_done:
            return
        self._input_done = True
        if not self._closed:
            held, self._held = self._held, ""
            try:
                if self._mode == "wrapped" or (self._forced and self._mode == "detect" and held.strip()):
                    self._enqueue_ssml(f"<speak>{held}</speak>")
                elif self._mode == "ssml":
                    self._enqueue_ssml(held)  # never closed: the parser names what is missing
                else:
                    if self._forward and held.strip():
                        self._send_on(held)
                        held = ""
                    self._end_forward()
                    self._enqueue(self._segmenter.add(held) if held.strip() else [])
                    self._enqueue(self._segmenter.finish())
            except VoxgateError as exc:  # the reader raises it once what came before is spoken
                self._error = exc
            self._end_pause += self._pauses.pop(self._next_index, 0.0)  # a break at the very end
        self._wake.set()

    @property
    def input_done(self) -> bool:
        """True once finish() was called."""
        return self._input_done

    def _enqueue(self, segments: list[str]) -> None:
        for segment in segments:
            text = normalize(segment, self._language, spoken=self.request.normalize)
            spans = self._service.route(self.request, text, self.voice)  # one span unless scripts mix
            if not spans:
                continue
            self._pending.extend((self._next_index, span.text, self._voicing(span.voice)) for span in spans)
            self._next_index += 1
            self._last_segment = time.monotonic()
        if self._pending and not self._closed:
            self._fill()  # start synthesis now, not when the reader next asks
            self._wake.set()

    # -- forwarding -------------------------------------------------------------------------------

    def _send_on(self, text: str) -> None:
        """Plain text to the upstream session (opened on the first text)."""
        if self._closed:
            return
        if self._source is None:
            voicing = self._voicing(self.voice)
            self._source = _Forwarded(self._policy.idle_end, self.finish)
            self._session = SegmentJob(voicing.voice, "", voicing.params, time.monotonic(), urgent=True,
                                       post=voicing.post, texts=self._source, output=self._passing)
            run = self._service.backend.generate(self._session)
            self._service.metrics.segments.labels(voicing.voice.engine).inc()
            self._inflight.append((self._next_index, "", self._session, run, voicing))
            self._next_index += 1
            self._last_segment = time.monotonic()
            self._wake.set()
        if self._session is not None and self._session.rate:
            self._forwarded.clear()  # its audio came: the session will not be replaced by segments
        else:
            self._forwarded.append(text)
        self._source.put(text)

    def _emit_encoded(self, data: bytes, index: int, text: str) -> PcmChunk:
        """The session's passed bytes: counted as audio (raw pcm) as the base class counts its own."""
        chunk = super()._emit_encoded(data, index, text)
        if self.output is None and self._passing is not None and self._passing.format == "pcm":
            seconds = len(data) / 2 / self.sample_rate
            self._delivered += seconds
            self._service.metrics.audio_seconds.inc(seconds)
        return chunk

    def _end_forward(self) -> None:
        """No more text goes to the session (the input ended, or SSML came): it ends once it has spoken."""
        self._forward = False
        if self._source is not None:
            self._source.close()

    def _recover(self, job: SegmentJob, error: EngineFailure) -> bool:
        if job is not self._session or job.rate or self._closed:
            return False  # not the session, or some of its audio was heard: the failure stands
        _LOG.warning("%s; the streamed text is cut into segments here and spoken that way", error)
        self._inflight.popleft()
        self._end_forward()
        self._session = self._source = None
        text, self._forwarded = "".join(self._forwarded), []
        self._enqueue(self._segmenter.add(text) if text.strip() else [])
        if self._input_done:
            self._enqueue(self._segmenter.finish())
        return True

    def _enqueue_ssml(self, document: str) -> None:
        """One complete SSML document read as SynthesisService.open reads one: parts with their voices and
        prosody, breaks as pauses, mid-sentence seams trimmed; raises InvalidInput for bad markup."""
        self._end_forward()  # what follows the document is cut here, after the session
        if len(document) > self._limit:
            raise InputTooLong(f"an SSML document of {len(document)} characters; the limit is {self._limit}",
                               param="text")
        script = from_ssml(self.request, document, self._service.limits)
        base = self._next_index
        if script.parts:
            _, segments, starts = self._service._plan_parts(replace(self.request, parts=script.parts,
                                                                    segments=None))
            for _, piece, voice, _ in segments:
                self._service.prepare(piece, voice)  # a word the voice cannot say is refused now
            for i, start in enumerate(starts):
                if script.pauses[i]:
                    self._pauses[base + start] = self._pauses.get(base + start, 0.0) + script.pauses[i]
                previous = segments[start - 1][1].rstrip() if 0 < start <= len(segments) else ""
                if previous and not previous.endswith(SENTENCE_ENDS):
                    self._joined.add(base + start - 1)
            self._pending.extend((base + i, piece, self._voicing(voice, owner))
                                 for i, (_, piece, voice, owner) in enumerate(segments))
            self._next_index = base + len(segments)
            self._last_segment = time.monotonic()
        if script.end_pause:  # before whatever comes next (or at the end of the stream)
            self._pauses[self._next_index] = self._pauses.get(self._next_index, 0.0) + script.end_pause
        if self._pending and not self._closed:
            self._fill()
            self._wake.set()

    def _flush_due(self) -> None:
        """Speak unpunctuated text the segmenter is still holding, if it has waited long enough."""
        if not self._segmenter.pending or self._last_text is None or self._last_segment is None:
            return
        now = time.monotonic()
        idle = now - self._last_text >= self._policy.idle_flush
        stalled = now - self._last_segment >= self._policy.stall_flush
        if idle or (stalled and self._at_word_end):
            self._enqueue(self._segmenter.flush())
        elif stalled:
            text = " ".join(self._segmenter.flush())
            cut = text.rfind(" ")
            head, tail = (text[:cut], text[cut + 1 :]) if cut > 0 else ("", text)
            self._enqueue([head] if head else [])
            if tail:
                self._segmenter.add(tail)  # the last word may still be growing

    # -- output -----------------------------------------------------------------------------------

    def _timeout(self) -> float:
        now = time.monotonic()
        quiet_end = (self._last_text or self._opened) + self._policy.idle_end
        if self._last_text is None or not self._segmenter.pending:
            return max(0.01, quiet_end - now)  # nothing to flush: only feed/finish/cancel or the end
        assert self._last_segment is not None  # set with the first text
        return max(0.01, min(self._last_text + self._policy.idle_flush,
                             self._last_segment + self._policy.stall_flush, quiet_end) - now)

    async def _more_input(self) -> bool:
        """Wait until there is a segment to synthesize; False once the input is finished and spoken."""
        while not self._closed:
            if self._pending or self._inflight:  # _enqueue may have submitted segments already
                return True
            if self._input_done:
                if self._error is not None:
                    error, self._error = self._error, None
                    await self._finish(completed=False)
                    raise error
                return False
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands just
                # as the event fires, and a cancelled reader must not go on waiting for text.
                async with asyncio.timeout(self._timeout()):
                    await self._wake.wait()
            except TimeoutError:
                if time.monotonic() - (self._last_text or self._opened) >= self._policy.idle_end:
                    self.finish()  # a client that went quiet ends its stream (and frees its slot)
                else:
                    self._flush_due()
        return False

    def cancel(self) -> None:
        """Drop buffered text, queued segments and the running one (after its current piece)."""
        self._segmenter.finish()
        self._input_done = True
        self._end_forward()
        super().cancel()
        self._wake.set()


async def open_text_stream(service: SynthesisService, request: SynthesisRequest,
                           segment_policy: SegmentPolicy = DEFAULT_POLICY,
                           policy: TextStreamPolicy = TextStreamPolicy(), ssml: bool = False) -> TextStream:
    """Open a text stream: `request.text` is ignored (feed the text), everything else applies. It is
    admitted (or refused with Overloaded) on its first text, so an idle client holds no slot. `ssml`: the
    text is SSML even without a `<speak>` element (Wyoming's text_format)."""
    voice = service.check(request)
    forward = not ssml and service.forwards_text(request, voice)  # the upstream takes the text as it comes
    return service.track(TextStream(service, request, voice, segment_policy, policy, ssml, forward))


__all__ = ["TextStream", "TextStreamPolicy", "open_text_stream"]

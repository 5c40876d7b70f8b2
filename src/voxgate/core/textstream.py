"""Text streamed in, audio streamed out: the core of the CosyVoice WebSocket and StackFlow dialects.

A `TextStream` is a `SynthesisStream` whose segments arrive while it plays. Text is fed as it comes
(typically LLM tokens); the incremental segmenter hands over each segment once its end is certain, so the
first clause is spoken as soon as it is complete. Text that never gets punctuation is flushed: all of it
when the input goes quiet for `idle_flush` seconds, or up to its last word when the stream has spoken
nothing for `stall_flush` seconds although text keeps coming. The unspoken backlog is bounded by the
service's input limit, and audio out by the pool's prefetch depth, so a fast producer or a slow consumer
cannot grow memory without bound.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from voxgate.core.service import SynthesisService, SynthesisStream, reading_language
from voxgate.core.types import SynthesisRequest
from voxgate.engines.base import VoiceInfo
from voxgate.errors import InputTooLong, InvalidInput
from voxgate.text.normalize import normalize
from voxgate.text.segment import DEFAULT_POLICY, Segmenter, SegmentPolicy


@dataclass(frozen=True)
class TextStreamPolicy:
    """When unpunctuated text is spoken anyway."""

    idle_flush: float = 0.8  # seconds without new text before everything buffered is spoken
    stall_flush: float = 2.0  # seconds of text without a segment before it is cut at its last word
    idle_end: float = 60.0  # seconds without any text (and nothing left to say) before the stream ends


class TextStream(SynthesisStream):
    """Feed text with `feed`, end it with `finish`, read PcmChunks in order; `cancel` drops everything."""

    def __init__(self, service: SynthesisService, request: SynthesisRequest, voice: VoiceInfo,
                 segment_policy: SegmentPolicy, policy: TextStreamPolicy) -> None:
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
        backlog = len(self._segmenter.pending) + sum(len(t) for _, t, _ in self._pending) + len(text)
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
        self._enqueue(self._segmenter.add(text))

    def finish(self) -> None:
        """No more text: whatever is buffered is spoken, then the stream ends."""
        if self._input_done:
            return
        self._input_done = True
        if not self._closed:
            self._enqueue(self._segmenter.finish())
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
        super().cancel()
        self._wake.set()


async def open_text_stream(service: SynthesisService, request: SynthesisRequest,
                           segment_policy: SegmentPolicy = DEFAULT_POLICY,
                           policy: TextStreamPolicy = TextStreamPolicy()) -> TextStream:
    """Open a text stream: `request.text` is ignored (feed the text), everything else applies. It is
    admitted (or refused with Overloaded) on its first text, so an idle client holds no slot."""
    voice = service.check(request)
    return service.track(TextStream(service, request, voice, segment_policy, policy))


__all__ = ["TextStream", "TextStreamPolicy", "open_text_stream"]

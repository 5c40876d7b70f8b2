"""The core's two upstream rules against a fake backend (no threads, no engines): passthrough of encoded bytes
(SynthesisService.passthrough) and streamed text going on in one session (SynthesisService.forwards_text),
including the fallback of a session that fails before any audio to voxgate's own segments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from tests.unit.fake_backend import FakeBackend
from tests.unit.fake_engine import FakeEngine
from voxgate.core.metrics import Metrics
from voxgate.core.service import CALIBRATION_TEXT, Limits, SynthesisService
from voxgate.core.textstream import TextStreamPolicy, open_text_stream
from voxgate.core.types import Piece, SynthesisRequest
from voxgate.engines.base import VoiceInfo
from voxgate.errors import EngineFailure
from voxgate.scheduling.backend import Chunk, SegmentJob
from voxgate.text.lexicon import Entry
from voxgate.voices.registry import VoiceRegistry

TEXT = "The first sentence is here. And a second sentence follows it."


class UpstreamLike(FakeBackend):
    """A fake that sends `mp3`/`pcm` bytes when asked (`job.output`) and takes streamed text (`job.texts`):
    a session yields one tone per piece of text as it comes; `fail_sessions` makes a session fail first."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_sessions = False
        self.session_texts: list[list[str]] = []

    def encodes(self, voice: VoiceInfo, fmt: str, rate: int) -> bool:
        return fmt in ("mp3", "pcm")

    def streams_text(self, voice: VoiceInfo) -> bool:
        return True

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        if job.texts is not None:
            self.record.started.append(job)
            return self._session(job)
        if job.output is not None:
            self.record.started.append(job)
            return self._encoded(job)
        return super().generate(job)

    async def _encoded(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        assert job.output is not None
        job.rate = job.output.rate
        yield Piece(np.zeros(0, np.float32), job.output.rate, encoded=f"<{job.output.format}:{job.text}>".encode())

    async def _session(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        assert job.texts is not None
        got: list[str] = []
        self.session_texts.append(got)
        if self.fail_sessions:
            async for text in job.texts:
                got.append(text)
                break
            raise EngineFailure("upstream up: connection refused")
        rate = job.voice.sample_rate
        async for text in job.texts:
            got.append(text)
            job.rate = rate
            yield Piece((0.3 * np.sin(np.arange(rate // 10) * 0.06)).astype(np.float32), rate)


def make() -> tuple[SynthesisService, UpstreamLike]:
    backend = UpstreamLike()
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a")
    return SynthesisService(registry, backend, Metrics(), Limits(max_queue=4)), backend


async def test_passthrough_sends_the_encoded_bytes_as_chunks_and_decides_on_the_request() -> None:
    service, _ = make()
    await service.warm_up()
    # mp3 does not join: the whole text is one request, its bytes one chunk, nothing levelled or resampled
    async with await service.open(SynthesisRequest(text=TEXT, voice="a", sample_rate=24_000, output="mp3")) as s:
        chunks = [chunk async for chunk in s]
    assert [c.encoded for c in chunks] == [f"<mp3:{TEXT}>".encode()]
    assert chunks[0].samples.size == 0 and chunks[0].rate == 24_000
    # raw pcm joins: voxgate's own segments, one request each
    async with await service.open(SynthesisRequest(text=TEXT, voice="a", sample_rate=24_000, output="pcm")) as s:
        assert [c.encoded async for c in s] == [b"<pcm:The first sentence is here.>",
                                                b"<pcm:And a second sentence follows it.>"]
    # a format the backend cannot send, a gain, a pitch: PCM, levelled and encoded by voxgate as before
    for request in (SynthesisRequest(text=TEXT, voice="a", output="flac"),
                    SynthesisRequest(text=TEXT, voice="a", output="mp3", volume=0.5),
                    SynthesisRequest(text=TEXT, voice="a", output="mp3", pitch=2.0),
                    SynthesisRequest(text=TEXT, voice="a")):
        assert service.passthrough(request, [(0, TEXT, service.voices.resolve("a"), None)]) is None
        async with await service.open(request) as s:
            chunks = [chunk async for chunk in s]
        assert chunks and all(c.encoded is None for c in chunks) and sum(len(c.samples) for c in chunks) > 0
    service.close()


async def test_streamed_text_goes_on_in_one_session_as_it_arrives() -> None:
    service, backend = make()
    await service.warm_up()
    stream = await open_text_stream(service, SynthesisRequest(text="", voice="a"))
    pieces = ["The first ", "sentence is ", "here. And ", "more follows"]
    stream.feed(pieces[0])
    first = await asyncio.wait_for(anext(stream), 5)  # audio of the first piece, before the rest was sent
    assert len(first.samples)
    for piece in pieces[1:]:
        stream.feed(piece)
    stream.finish()
    rest = [chunk async for chunk in stream]
    assert len(rest) >= len(pieces) - 1
    assert backend.session_texts == [pieces]  # one session, the client's pieces as they came
    assert [job.text for job in backend.record.started if job.text != CALIBRATION_TEXT] == [""]
    await stream.aclose()
    service.close()


async def test_a_session_that_fails_before_audio_falls_back_to_segments() -> None:
    service, backend = make()
    await service.warm_up()
    backend.fail_sessions = True
    stream = await open_text_stream(service, SynthesisRequest(text="", voice="a"),
                                    policy=TextStreamPolicy(idle_flush=0.05))
    stream.feed("The first sentence is here. ")
    stream.feed("And a second sentence follows it.")
    stream.finish()
    chunks = [chunk async for chunk in stream]
    assert sum(len(c.samples) for c in chunks) > 0
    assert backend.session_texts == [["The first sentence is here. "]]
    spoken = [job.text for job in backend.record.started if job.texts is None and job.text != CALIBRATION_TEXT]
    assert " ".join(spoken) == TEXT  # the text kept until then, cut into segments after all
    await stream.aclose()
    service.close()


class FallsBackFirst(UpstreamLike):
    """Segment 0 comes back as PCM at another rate (a local fallback voice), the next as passed bytes."""

    async def _encoded(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        if job.text.startswith("The first"):
            job.rate = 22_050
            yield Piece((0.3 * np.sin(np.arange(11_025) * 0.06)).astype(np.float32), 22_050)
            return
        async for chunk in super()._encoded(job):
            yield chunk


async def test_a_fallback_segments_resampled_end_goes_out_before_the_next_passed_bytes() -> None:
    backend = FallsBackFirst()
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a")
    service = SynthesisService(registry, backend, Metrics(), Limits(max_queue=4))
    await service.warm_up()
    async with await service.open(SynthesisRequest(text=TEXT, voice="a", sample_rate=24_000, output="pcm")) as s:
        chunks = [chunk async for chunk in s]
    kinds = ["encoded" if c.encoded is not None else "pcm" for c in chunks]
    # every sample of segment 0 (the resampler's held end included) before segment 1's bytes, none after
    assert kinds[-1] == "encoded" and kinds.count("encoded") == 1, kinds
    assert abs(sum(len(c.samples) for c in chunks[:-1]) - 12_000) <= 2  # 0.5 s at 24 kHz, whole
    service.close()


async def test_a_lexicon_keeps_text_streams_on_voxgates_segments() -> None:
    service, _ = make()
    voice = service.voices.resolve("a")
    assert service.forwards_text(SynthesisRequest(text="", voice="a"), voice)
    service.lexicon.put([Entry.parse({"word": "voxgate", "respelling": "vox gate"})])
    assert not service.forwards_text(SynthesisRequest(text="", voice="a"), voice)  # its words must apply
    service.close()

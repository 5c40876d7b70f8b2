"""SynthesisService over a fake backend: admission, busy answers, cancellation, errors and slots, with no
threads and no engine behind the seam (scheduling/backend.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.unit.fake_backend import WORD_SECONDS, FakeBackend
from tests.unit.fake_engine import RATE, FakeEngine, FakeLoaded
from voxgate.core.metrics import Metrics
from voxgate.core.parts import Part
from voxgate.core.service import CALIBRATION_TEXT, Limits, SynthesisService
from voxgate.core.textstream import open_text_stream
from voxgate.core.types import Piece, Segmentation, SynthesisRequest
from voxgate.engines.base import EngineParams
from voxgate.errors import EngineFailure, InvalidInput, Overloaded, VoiceNotFound
from voxgate.scheduling.backend import LocalBackend, SegmentJob
from voxgate.scheduling.pool import WorkerPool
from voxgate.voices.registry import VoiceRegistry

# Numbers as words: the service writes digits out (text/normalize) before the backend sees them.
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEN = " ".join(f"Sentence {n} has five words." for n in NUMBERS)


def make(workers: int = 2, max_queue: int = 2) -> tuple[SynthesisService, FakeBackend]:
    backend = FakeBackend(workers)
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a")  # the catalogue only: nothing is loaded
    return SynthesisService(registry, backend, Metrics(), Limits(max_queue=max_queue)), backend


def spoken(backend: FakeBackend) -> list[str]:
    return [t for t in backend.record.texts() if t != CALIBRATION_TEXT]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SynthesisService, FakeBackend]]:
    service, backend = make()
    await service.warm_up()
    yield service, backend
    service.close()
    assert backend.closed


async def test_warm_up_preloads_and_levels_through_the_backend(pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    assert backend.record.preloaded == ["a"] and service.ready
    assert backend.record.texts() == [CALIBRATION_TEXT]  # the gain is measured on the backend's audio


async def test_audio_comes_through_in_order_at_the_stream_rate(pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    request = SynthesisRequest(text=TEN, voice="a", segmentation=Segmentation.SENTENCE, sample_rate=24_000)
    chunks = [c async for c in service.stream(request)]
    assert {c.rate for c in chunks} == {24_000}
    assert spoken(backend) == [f"Sentence {n} has five words." for n in NUMBERS]
    indices = [c.index for c in chunks if c.index >= 0]
    assert indices == sorted(indices) and indices[0] == 0 and indices[-1] == 9
    assert abs(sum(c.duration for c in chunks) - 50 * WORD_SECONDS) < 0.01  # 50 words, resampled 16→24 kHz
    assert float(np.sqrt(np.mean(np.concatenate([c.samples for c in chunks]) ** 2))) > 0.05
    assert service.active == 0


async def test_admission_takes_the_backend_capacity_plus_the_queue_and_refuses_with_a_retry(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    assert service.capacity == backend.capacity + 2 == 4
    held = [await service.open(SynthesisRequest(text="Hello there.", voice="a")) for _ in range(4)]
    assert service.active == 4 and service.health().slots_held == 4 and service.health().slots_total == 4
    with pytest.raises(Overloaded) as refused:
        await service.open(SynthesisRequest(text="One too many.", voice="a"))
    assert refused.value.retry_after == 1.0  # the dialects answer 503 with Retry-After: 1
    assert service.metrics.rejected._value.get() == 1
    await held[0].aclose()
    again = await service.open(SynthesisRequest(text="Room again.", voice="a"))
    for stream in (*held[1:], again):
        await stream.aclose()
    assert service.active == 0


async def test_a_busy_backend_cuts_a_long_first_segment_at_a_word(pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    text = "This first sentence is long enough to be cut when every worker is busy. Then more."
    [c async for c in service.stream(SynthesisRequest(text=text, voice="a"))]
    assert service.metrics.busy_cuts._value.get() == 0
    backend.busy = True  # load() says every worker has a job
    [c async for c in service.stream(SynthesisRequest(text=text, voice="a"))]
    assert service.metrics.busy_cuts._value.get() == 1
    later = spoken(backend)[-3:]
    assert len(later[0]) <= 48 and later[0] + " " + later[1] == text.split(" Then")[0]


async def test_a_busy_backend_leaves_a_first_segment_whole_when_its_engine_makes_it_cheaply(
        pair: tuple[SynthesisService, FakeBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: hibari makes a sentence in ~30 ms; cutting it saved little first audio and cost an engine call."""
    service, backend = pair
    text = "This first sentence is long enough to be cut when every worker is busy. Then more."
    cheap = dataclasses.replace(FakeEngine().capabilities(), compute_per_second=0.008)
    monkeypatch.setattr(FakeEngine, "capabilities", lambda self: cheap)
    backend.busy = True
    [c async for c in service.stream(SynthesisRequest(text=text, voice="a"))]
    assert service.metrics.busy_cuts._value.get() == 0
    assert spoken(backend)[-2:] == [text.split(" Then")[0], "Then more."]
    slow = dataclasses.replace(cheap, compute_per_second=0.08)  # Piper's order: a 70-character sentence costs ~0.3 s
    monkeypatch.setattr(FakeEngine, "capabilities", lambda self: slow)
    [c async for c in service.stream(SynthesisRequest(text=text, voice="a"))]
    assert service.metrics.busy_cuts._value.get() == 1


async def test_closing_early_aborts_running_and_never_starts_queued_work(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    stream = await service.open(SynthesisRequest(text=TEN, voice="a", segmentation=Segmentation.SENTENCE))
    await anext(stream)
    started = len(spoken(backend))
    assert started <= 1 + service.prefetch  # the one being read, and the prefetch ahead of it
    await stream.aclose()
    assert service.active == 0
    assert {j.text for j in backend.record.aborted} <= set(spoken(backend))
    assert len(backend.record.aborted) >= 1  # the running segment was told to stop
    await asyncio.sleep(0.05)
    assert len(spoken(backend)) == started  # nothing more was started after the consumer stopped
    assert service.metrics.cancelled._value.get() == 1


async def test_a_consumer_task_cancelled_mid_read_gives_its_slot_back(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair

    async def consume() -> None:
        async with service.scope():
            async for _ in service.stream(SynthesisRequest(text="WAIT for the gate please.", voice="a")):
                pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    assert service.active == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert service.active == 0
    stopped = backend.record.aborted + backend.record.closed_early  # the cancel reached the backend's read
    assert [j.text for j in stopped] == ["WAIT for the gate please."] and not backend.record.finished[1:]


async def test_a_backend_error_is_raised_to_the_consumer_and_frees_the_slot(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, _ = pair
    stream = await service.open(SynthesisRequest(text="FAIL right away.", voice="a"))
    with pytest.raises(EngineFailure) as failed:
        await anext(stream)
    assert "engine exploded" in failed.value.message and isinstance(failed.value.__cause__, RuntimeError)
    assert service.active == 0 and not stream.admitted


async def test_a_dialect_raising_after_open_cannot_keep_the_slot(pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, _ = pair
    for _ in range(3 * service.capacity):
        with pytest.raises(ZeroDivisionError):
            async with service.scope():
                stream = await service.open(SynthesisRequest(text=TEN, voice="a"))
                await anext(stream)
                _ = 1 / 0
        assert service.active == 0
    text = await open_text_stream(service, SynthesisRequest(text="", voice="a"))
    text.feed("Some words. ")
    assert service.active == 1
    await text.aclose()
    assert service.active == 0


async def test_a_collected_stream_aborts_its_jobs_on_the_loop(pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    stream = await service.open(SynthesisRequest(text=TEN, voice="a", segmentation=Segmentation.SENTENCE))
    await anext(stream)
    del stream
    gc.collect()
    assert service.active == 0  # the slot comes back at once
    await asyncio.sleep(0.01)  # the aborts were scheduled on the loop, not run inside the finalizer
    assert backend.record.aborted


async def test_health_reports_admission_and_the_backend(pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, _ = pair
    stream = await service.open(SynthesisRequest(text="Hello there.", voice="a"))
    assert service.health().backend.load.running == 0  # nothing is handed over before the first read
    await anext(stream)
    health = service.health()
    assert health.ready and not health.saturated and health.saturated_seconds == 0.0
    assert (health.slots_held, health.slots_total) == (1, 4)
    assert health.backend.workers == 2 and health.backend.loaded_voices == frozenset({"a"})
    assert health.backend.load.running == 1  # the first segment, read half-way
    await stream.aclose()


async def test_voices_of_another_rate_are_resampled_to_the_stream_rate(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    pcm = await service.synthesize(SynthesisRequest(text="Hello there. こんにちは。", voice="a"))
    assert pcm.rate == RATE  # the request's voice decides; the 32 kHz voice is resampled to it
    assert [j.voice.id for j in backend.record.started if j.text != CALIBRATION_TEXT] == ["a", "ja"]
    assert abs(pcm.duration - 3 * WORD_SECONDS) < 0.01


async def test_the_local_backend_keeps_the_same_contract() -> None:
    """The thread pool behind the seam: chunks in order with their rate, errors raised, close aborts."""
    engine = FakeEngine()
    backend = LocalBackend(WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0))
    voice = VoiceRegistry({"fake": engine}, {}, "a").resolve("a")
    try:
        job = SegmentJob(voice, "one two three", EngineParams(), 0.0)
        chunks = [c async for c in backend.generate(job)]
        assert job.rate == RATE and [len(c.samples) for c in chunks] == [int(RATE * 0.1)] * 3
        with pytest.raises(EngineFailure) as failed:
            [c async for c in backend.generate(SegmentJob(voice, "FAIL now", EngineParams(), 0.0))]
        assert isinstance(failed.value.__cause__, RuntimeError) and "engine exploded" in failed.value.message
        engine.log.gate.clear()
        blocker = backend.generate(SegmentJob(voice, "WAIT a moment", EngineParams(), 0.0))
        queued = SegmentJob(voice, "never spoken", EngineParams(), 1.0)
        run = backend.generate(queued)
        backend.abort(queued)
        assert [c async for c in run] == [] and backend.load().dropped == 1
        engine.log.gate.set()
        assert len([c async for c in blocker]) == 3
        health = backend.health()
        assert health.workers == backend.capacity == 1 and health.loaded_voices == frozenset({"a"})
        assert [s.voice for s in health.sessions] == ["a"] and health.load.completed == 2
    finally:
        backend.close()


# -- several parts in order, one slot (core/parts.py) --------------------------------------------------


async def test_parts_play_in_order_each_in_its_voice_and_manner_on_one_slot(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    held = [await service.open(SynthesisRequest(text="Hold a slot.", voice="a")) for _ in range(3)]
    parts = (Part("The narrator begins here.", voice="b"), Part("Then the hero speaks.", speed=2.0),
             Part("And the narrator ends.", voice="b", volume=0.5))
    stream = await service.open(SynthesisRequest(text="", voice="a", parts=parts))
    assert service.active == 4 == service.capacity  # three parts, one slot
    chunks = [c async for c in stream]
    assert service.active == 3
    assert spoken(backend)[-3:] == [p.text for p in parts]
    assert [(j.voice.id, j.params.speed) for j in backend.record.started[-3:]] == [("b", 1.0), ("a", 2.0), ("b", 1.0)]
    texts = list(dict.fromkeys(c.text for c in chunks if c.text))
    assert texts == [p.text for p in parts]
    assert [c.index for c in chunks if c.index >= 0] == sorted(c.index for c in chunks if c.index >= 0)
    assert {c.index for c in chunks if c.index >= 0} == {0, 1, 2}
    seconds = {t: sum(c.duration for c in chunks if c.text == t) for t in texts}
    assert abs(seconds[parts[0].text] - 4 * WORD_SECONDS) < 0.01
    assert abs(seconds[parts[1].text] - 4 * WORD_SECONDS / 2) < 0.01  # the part's own speed
    level = {t: float(np.sqrt(np.mean(np.concatenate([c.samples for c in chunks if c.text == t]) ** 2)))
             for t in texts}
    assert 0.45 < level[parts[2].text] / level[parts[0].text] < 0.55  # the part's own volume, same voice
    for other in held:
        await other.aclose()


async def test_each_part_is_checked_as_a_request_would_be_before_any_slot_is_taken(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, _ = pair
    bad = [((Part("Fine."), Part("Too fast.", speed=50.0)), InvalidInput, "speed"),
           ((Part("Fine."), Part("Who?", voice="nobody")), VoiceNotFound, None),
           ((Part("Fine."), Part("...")), InvalidInput, "text"),
           ((Part("Fine."), Part("한국어", language="ko")), InvalidInput, "language"),
           ((), InvalidInput, "text")]
    for parts, error, param in bad:
        with pytest.raises(error) as raised:
            await service.open(SynthesisRequest(text="ignored", voice="a", parts=parts))
        if param is not None:
            assert raised.value.param == param
    assert service.active == 0


async def test_parts_take_the_first_parts_rate_and_dialect_segments_keep_counting(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, _ = pair
    stream = await service.open(SynthesisRequest(text="", voice="a", parts=(Part("こんにちは。", voice="ja"),
                                                                              Part("Hello. Goodbye."))))
    chunks = [c async for c in stream]
    assert stream.sample_rate == 2 * RATE and {c.rate for c in chunks} == {2 * RATE}
    assert [t for t in dict.fromkeys(c.text for c in chunks) if t] == ["こんにちは。", "Hello.", "Goodbye."]
    assert sorted({c.index for c in chunks if c.index >= 0}) == [0, 1, 2]


async def test_engines_are_asked_for_word_timings_only_when_the_client_reads_them(
        pair: tuple[SynthesisService, FakeBackend]) -> None:
    service, backend = pair
    assert not backend.record.started[0].params.timings  # the calibration reads no words
    for reads in (False, True):
        request = SynthesisRequest(text="One sentence. And another.", voice="a", timings=reads)
        before = len(backend.record.started)
        assert [c async for c in service.stream(request)]
        jobs = backend.record.started[before:]
        assert jobs and all(job.params.timings is reads for job in jobs)


async def test_words_estimated_on_the_workers_are_those_estimated_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A timed stream's pieces are levelled on the workers too (issue 16: as an untimed one's), and the words of an
    engine that cannot time them are estimated there, from the piece as the engine made it: the same samples and
    word timings as levelling and estimating on the event loop."""
    import threading

    from voxgate.core import service as service_module

    engine = FakeEngine()
    timed = FakeLoaded.synthesize

    def untimed(self, text, params):  # type: ignore[no-untyped-def]
        return (Piece(piece.samples, piece.rate) for piece in timed(self, text, params))  # an engine that cannot say
    monkeypatch.setattr(FakeLoaded, "synthesize", untimed)
    on_loop: list[bool] = []  # for each estimate: made on the event loop's thread
    estimate = service_module.estimate_words

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        on_loop.append(threading.current_thread() is threading.main_thread())
        return estimate(*args, **kwargs)
    monkeypatch.setattr(service_module, "estimate_words", spy)

    async def run(on_workers: bool) -> tuple[list[tuple[list[bytes], list[tuple]]], list[bool]]:  # type: ignore[type-arg]
        backend = LocalBackend(WorkerPool(lambda name: engine, workers=2, threads=1, solo_threads=0))
        if not on_workers:
            backend.posts_per_piece = lambda voice: False  # type: ignore[method-assign]
        service = SynthesisService(VoiceRegistry({"fake": engine}, {}, "a"), backend, Metrics())
        await service.warm_up()
        on_loop.clear()
        out = []
        try:
            for volume in (6.0, 1.0):  # the limiter engaged, and not
                request = SynthesisRequest(text=TEN, voice="a", volume=volume, timings=True)
                chunks = [c async for c in service.stream(request)]
                out.append(([c.samples.tobytes() for c in chunks], [t for c in chunks for t in c.timings or ()]))
        finally:
            service.close()
        return out, list(on_loop)

    (loop_out, loop_where), (worker_out, worker_where) = await run(False), await run(True)
    assert worker_out == loop_out
    assert loop_where and all(loop_where)  # estimated on the loop
    assert worker_where and not any(worker_where)  # estimated on the workers, as they made each piece
    words = loop_out[0][1]
    assert [TEN[t.start_char:t.end_char] for t in words] == TEN.split() and all(t.estimated for t in words)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))


@pytest.mark.parametrize("fmt", ["pcm", "wav", None])
async def test_a_stream_levelled_on_its_workers_sends_what_one_levelled_on_the_loop_does(fmt: str | None) -> None:
    """Issue 13: the pool's workers level each piece (and make a raw PCM client's int16 bytes) as they make it;
    samples and encoded bytes are those of levelling on the event loop, limiter engaged or not, resampled
    or not, with a tempo change's post-processing before it."""
    from voxgate.audio.encoders import open_encoder
    from voxgate.audio.pcm import int16_bytes
    from voxgate.dialects.common import encode_stream

    engine = FakeEngine()

    async def run(on_workers: bool) -> list[tuple[list[bytes], list[bytes | None], bytes]]:
        backend = LocalBackend(WorkerPool(lambda name: engine, workers=2, threads=1, solo_threads=0))
        if not on_workers:
            backend.posts_per_piece = lambda voice: False  # type: ignore[method-assign]
        service = SynthesisService(VoiceRegistry({"fake": engine}, {}, "a"), backend, Metrics())
        await service.warm_up()
        out = []
        try:
            for rate, volume, speed in ((RATE, 6.0, 1.0), (RATE, 1.0, 1.3), (24_000, 6.0, 1.0)):
                request = SynthesisRequest(text=TEN, voice="a", sample_rate=rate, volume=volume, speed=speed,
                                           output=fmt, int16_chunks=fmt is not None)
                chunks = [c async for c in service.stream(request)]

                async def replay(chunks: list = chunks) -> AsyncIterator:  # type: ignore[type-arg]
                    for chunk in chunks:
                        yield chunk
                encoded = b"".join([data async for data in encode_stream(replay(), open_encoder(fmt or "pcm", rate))])
                out.append(([c.samples.tobytes() for c in chunks], [c.pcm16 for c in chunks], encoded))
        finally:
            service.close()
        return out

    loop_levelled, worker_levelled = await run(False), await run(True)
    for (samples, pcm16, encoded), (samples_w, _, encoded_w) in zip(loop_levelled, worker_levelled, strict=True):
        assert samples_w == samples and encoded_w == encoded
        assert pcm16 == [None] * len(pcm16)
    at_engine_rate = worker_levelled[0][1] + worker_levelled[1][1]
    if fmt is None:  # not asked for (SynthesisRequest.int16_chunks): no int16 bytes are made
        assert set(at_engine_rate) == {None}
    else:  # made for every piece at the engine's rate, never for resampled ones
        made = [(s, p) for s, p in zip(worker_levelled[0][0] + worker_levelled[1][0], at_engine_rate, strict=True)
                if p is not None]
        assert len(made) >= 40 and all(p == int16_bytes(np.frombuffer(s, np.float32)) for s, p in made)
        assert set(worker_levelled[2][1]) == {None}
    assert max(np.abs(np.frombuffer(b"".join(worker_levelled[0][0]), np.float32))) > 0.9  # the limiter's knee

"""Worker pool and synthesis service behaviour, on the fake engine (scheduling logic only)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests.unit.fake_engine import RATE, FakeEngine
from voxgate.core.metrics import Metrics
from voxgate.core.service import CALIBRATION_TEXT, Limits, SynthesisService
from voxgate.core.types import Piece, Segmentation, SynthesisRequest
from voxgate.engines.base import EngineParams
from voxgate.errors import EngineFailure, InvalidInput, Overloaded
from voxgate.scheduling.backend import LocalBackend
from voxgate.scheduling.pool import Job, WorkerPool, is_done
from voxgate.voices.registry import VoiceRegistry


def make_pool(engine: FakeEngine, workers: int = 1, solo: int = 0, express: int = 0) -> WorkerPool:
    return WorkerPool(lambda name: engine, workers=workers, threads=1, solo_threads=solo, express=express)


async def drain(job: Job) -> list[object]:
    items = []
    while not is_done(item := await asyncio.wait_for(job.queue.get(), 10)):
        items.append(item)
    return items


def job(engine: FakeEngine, text: str, deadline: float, voice: str = "a", urgent: bool = False) -> Job:
    info = next(v for v in engine.voices() if v.id == voice)
    return Job(info, text, EngineParams(), deadline, asyncio.get_running_loop(), urgent=urgent)


async def test_most_urgent_deadline_runs_first() -> None:
    engine = FakeEngine()
    pool = make_pool(engine)
    try:
        gate = pool.submit(job(engine, "WAIT here", 0.0))
        await asyncio.sleep(0.05)  # the worker is now blocked inside the gate job
        jobs = [pool.submit(job(engine, f"deadline {d}", float(d))) for d in (3, 1, 2)]
        engine.log.gate.set()
        for j in [gate, *jobs]:
            await drain(j)
        assert engine.log.texts() == ["WAIT here", "deadline 1", "deadline 2", "deadline 3"]
    finally:
        pool.close()


async def test_express_worker_runs_first_segments_while_the_pool_is_busy() -> None:
    engine = FakeEngine()
    pool = make_pool(engine, workers=1, express=1)
    try:
        gate = pool.submit(job(engine, "WAIT busy", 0.0))
        await asyncio.sleep(0.05)  # the only regular worker is stuck in the gate job
        later = pool.submit(job(engine, "a later segment", 5.0))
        first = pool.submit(job(engine, "a first segment", 9.0, urgent=True))
        assert len(await drain(first)) == 3  # spoken by the express worker, gate still closed
        assert "a later segment" not in engine.log.texts()  # express workers leave other work alone
        engine.log.gate.set()
        await drain(gate)
        await drain(later)
        assert engine.log.texts() == ["WAIT busy", "a first segment", "a later segment"]
    finally:
        pool.close()


async def test_cancelled_queued_job_is_dropped_without_running() -> None:
    engine = FakeEngine()
    pool = make_pool(engine)
    try:
        gate = pool.submit(job(engine, "WAIT", 0.0))
        await asyncio.sleep(0.05)
        victim = pool.submit(job(engine, "never spoken", 1.0))
        pool.cancel(victim)
        engine.log.gate.set()
        await drain(gate)
        assert await drain(victim) == []
        assert "never spoken" not in engine.log.texts()
        assert pool.stats.dropped == 1 and pool.stats.queued == 0
    finally:
        pool.close()


async def test_cancelled_running_job_stops_after_current_piece() -> None:
    engine = FakeEngine(piece_seconds=0.03)
    pool = make_pool(engine)
    try:
        running = pool.submit(job(engine, " ".join(["word"] * 50), 0.0))
        first = await asyncio.wait_for(running.queue.get(), 10)
        assert isinstance(first, Piece)
        pool.cancel(running)
        rest = await drain(running)
        assert len(rest) < 5
        assert pool.stats.interrupted == 1
        assert engine.log.pieces < 10
    finally:
        pool.close()


async def test_lone_job_uses_solo_session_and_busy_pool_does_not() -> None:
    engine = FakeEngine(piece_seconds=0.02)
    pool = WorkerPool(lambda name: engine, workers=2, threads=1, solo_threads=2, express=0)
    try:
        await drain(pool.submit(job(engine, "alone at last", 0.0)))
        assert engine.log.calls[-1][1] == 2
        # Both queued before a worker can take either (the pool's lock is re-entrant): submitted back to back,
        # a worker may take the first alone before the second comes (a race by reading; 0 of 30 loaded runs).
        with pool._cond:
            together = [pool.submit(job(engine, f"pair {i} " + "w " * 10, 0.0)) for i in range(2)]
        for j in together:
            await drain(j)
        assert sorted(t for _, t, text in engine.log.calls if text.startswith("pair")) == [1, 1]
    finally:
        pool.close()


async def test_engine_error_reaches_the_job() -> None:
    engine = FakeEngine()
    pool = make_pool(engine)
    try:
        failing = pool.submit(job(engine, "FAIL now", 0.0))
        item = await asyncio.wait_for(failing.queue.get(), 10)
        assert isinstance(item, RuntimeError)
        assert pool.stats.failed == 1
    finally:
        pool.close()


def make_service(engine: FakeEngine, workers: int = 1, max_queue: int = 4) -> SynthesisService:
    registry = VoiceRegistry({"fake": engine}, {"alloy": "a"}, "a")
    pool = WorkerPool(lambda name: engine, workers=workers, threads=1, solo_threads=0, express=0)
    return SynthesisService(registry, LocalBackend(pool), Metrics(), Limits(max_queue=max_queue))


_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEN = " ".join(f"Sentence {_NUMBERS[n]} has five words." for n in range(10))  # words: normalisation keeps them


async def test_stream_yields_segments_in_order_with_right_length() -> None:
    engine = FakeEngine()
    service = make_service(engine, workers=2)
    try:
        request = SynthesisRequest(text=TEN, voice="alloy", segmentation=Segmentation.SENTENCE)
        chunks = [c async for c in service.stream(request)]
        indices = [c.index for c in chunks if c.index >= 0]
        assert indices == sorted(indices) and indices[-1] == 9
        words = sum(len(s.split()) for s in engine.log.texts() if s != CALIBRATION_TEXT)
        assert words == 50
        total = sum(len(c.samples) for c in chunks)
        assert abs(total - 50 * int(RATE * 0.1)) <= 2
        assert service.active == 0
    finally:
        service.close()


async def test_new_stream_first_segment_overtakes_running_stream() -> None:
    engine = FakeEngine(piece_seconds=0.01)
    service = make_service(engine, workers=1)
    try:
        old = await service.open(SynthesisRequest(text=TEN, voice="a", segmentation=Segmentation.SENTENCE))
        for _ in range(2):
            await anext(old)  # the old stream has audio in hand; its next segments are less urgent
        new = await service.open(SynthesisRequest(text="Newcomer speaks now.", voice="a"))
        first_new = asyncio.ensure_future(anext(new))
        async for _ in old:
            pass
        await first_new
        texts = engine.log.texts()
        assert texts.index("Newcomer speaks now.") < texts.index("Sentence five has five words.")
        await new.aclose()
    finally:
        service.close()


async def test_admission_refuses_past_the_queue_and_close_releases() -> None:
    engine = FakeEngine()
    service = make_service(engine, workers=1, max_queue=1)
    try:
        await service.warm_up()
        streams = [await service.open(SynthesisRequest(text="Hello there.", voice="a")) for _ in range(2)]
        with pytest.raises(Overloaded) as info:
            await service.open(SynthesisRequest(text="One too many.", voice="a"))
        assert info.value.retry_after >= 1
        assert service.metrics.rejected._value.get() == 1
        await streams[0].aclose()
        extra = await service.open(SynthesisRequest(text="Room again.", voice="a"))
        for stream in (streams[1], extra):
            await stream.aclose()
        assert service.active == 0
        assert service.metrics.cancelled._value.get() == 3
    finally:
        service.close()


async def test_engine_failure_surfaces_as_domain_error_and_releases() -> None:
    engine = FakeEngine()
    service = make_service(engine)
    try:
        await service.warm_up()
        stream = await service.open(SynthesisRequest(text="FAIL please.", voice="a"))
        with pytest.raises(EngineFailure):
            await anext(stream)
        assert service.active == 0
    finally:
        service.close()


async def test_output_rate_and_volume() -> None:
    engine = FakeEngine()
    service = make_service(engine)
    try:
        loud = await service.synthesize(SynthesisRequest(text="one two three four", voice="a", sample_rate=24000))
        quiet = await service.synthesize(
            SynthesisRequest(text="one two three four", voice="a", sample_rate=24000, volume=0.5)
        )
        assert loud.rate == 24000 and abs(len(loud.samples) - 0.4 * 24000) < 50
        ratio = np.sqrt(np.mean(quiet.samples**2)) / np.sqrt(np.mean(loud.samples**2))
        assert 0.45 < ratio < 0.55
        assert np.abs(loud.samples).max() <= 1.0
    finally:
        service.close()


async def test_queued_work_of_closed_stream_never_runs() -> None:
    engine = FakeEngine(piece_seconds=0.02)
    service = make_service(engine, workers=1)
    try:
        await service.warm_up()
        stream = await service.open(SynthesisRequest(text=TEN, voice="a", segmentation=Segmentation.SENTENCE))
        await anext(stream)
        await stream.aclose()
        started = time.monotonic()
        while service.backend.load().running and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        spoken = [t for t in engine.log.texts() if t.startswith("Sentence")]
        assert len(spoken) <= 3  # the first, plus at most the prefetched ones
        assert service.backend.load().queued == 0
    finally:
        service.close()


async def test_explicit_segments_keep_their_indices_and_skip_unspeakable_ones() -> None:
    engine = FakeEngine()
    service = make_service(engine)
    try:
        request = SynthesisRequest(text="", voice="a", segments=("one two,", "...", "three four five."))
        chunks = [c async for c in service.stream(request)]
        assert sorted({c.index for c in chunks if c.index >= 0}) == [0, 2]
        assert [t for t in engine.log.texts() if t != CALIBRATION_TEXT] == ["one two,", "three four five."]
    finally:
        service.close()


async def test_stop_all_ends_every_stream_cleanly_and_drops_queued_work() -> None:
    engine = FakeEngine()
    service = make_service(engine, workers=1)
    try:
        await service.warm_up()
        texts = "WAIT first piece. Second sentence here. Third sentence here."
        streams = [await service.open(SynthesisRequest(text=t, voice="a", segmentation=Segmentation.SENTENCE))
                   for t in (texts, "Another stream waiting. With more.")]
        pulls = [asyncio.ensure_future(anext(s)) for s in streams]  # both wait: the worker is gated
        await asyncio.sleep(0.05)
        assert service.stop_all() == 2
        engine.log.gate.set()
        for stream, pull in zip(streams, pulls, strict=True):
            try:
                await asyncio.wait_for(pull, 5)  # the running piece may still deliver its audio
            except StopAsyncIteration:
                pass
            rest = [c async for c in stream]  # and then the stream ends, without raising
            assert all(c.index == 0 for c in rest)
        assert service.active == 0 and service.stop_all() == 0
        await asyncio.sleep(0.05)
        assert "Second sentence here." not in engine.log.texts()
        assert "Another stream waiting." not in engine.log.texts()
    finally:
        service.close()


async def test_mixed_script_text_is_spoken_by_a_voice_per_language_at_one_rate() -> None:
    engine = FakeEngine()
    service = make_service(engine)
    try:
        request = SynthesisRequest(text="Hello there my friend. こんにちは、元気ですか。 Goodbye now.", voice="a")
        chunks = [c async for c in service.stream(request)]
        assert {c.rate for c in chunks} == {RATE}  # the 32 kHz voice is resampled to the stream's rate
        spoken = list(dict.fromkeys(c.text for c in chunks if c.text))  # in output order
        assert spoken == ["Hello there my friend.", "こんにちは、元気ですか。", "Goodbye now."]
        by = {text: voice for voice, _, text in engine.log.calls if text != CALIBRATION_TEXT}
        assert [by[t] for t in spoken] == ["a", "ja", "a"]
        words = sum(len(t.split()) for t in spoken)  # the fake engine makes 0.1 s per word
        assert abs(sum(c.duration for c in chunks) - 0.1 * words) < 0.02
        with pytest.raises(InvalidInput):  # asked for explicitly, a language nobody speaks is an error
            await service.open(SynthesisRequest(text="안녕하세요", voice="a", language="ko"))
        ja = await service.synthesize(SynthesisRequest(text="Hello, こんにちは。", voice="a", language="all_ja"))
        assert ja.rate == RATE and engine.log.calls[-1][0] == "ja"
    finally:
        service.close()


def budget_voices(engine: FakeEngine, pool: WorkerPool) -> tuple[dict[str, Any], Callable[[str], Awaitable[None]]]:
    """The fake engine's voices plus a third English one, "c", and a function speaking one job on a voice."""
    voices = {v.id: v for v in engine.voices()}
    voices["c"] = type(voices["b"])(id="c", name="c", engine="fake", language="en-US", sample_rate=RATE)

    async def speak(name: str) -> None:
        await drain(pool.submit(Job(voices[name], "one two", EngineParams(), 0.0, asyncio.get_running_loop())))
    return voices, speak


async def test_memory_budget_unloads_idle_sessions_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import voxgate.scheduling.pool as pool_module

    rss = iter(range(0, 10**12, 100 * 2**20))  # every reading 100 MB above the last: each load "costs" 100 MB
    monkeypatch.setattr(pool_module, "_rss", lambda: next(rss))
    monkeypatch.setattr(pool_module, "WARM_USES", 0)  # loads only here; first runs are charged below
    engine = FakeEngine()
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, memory_budget_mb=250)
    try:
        voices, speak = budget_voices(engine, pool)

        pool.preload(voices["a"])  # pinned: stays whatever the budget
        await speak("b")
        assert pool.loaded_voices() == {"a", "b"}  # 200 MB: within budget
        await speak("ja")  # 300 MB: the least recently used idle, unpinned session goes
        assert pool.loaded_voices() == {"a", "ja"} and pool.stats.evicted == 1
        held = pool._loaded(voices["ja"], 1)  # as if a job were running on "ja"
        await speak("b")  # 300 MB, but "a" is pinned and "ja" busy: "b" goes as soon as its job leaves it idle
        assert pool.loaded_voices() == {"a", "ja"} and pool.stats.evicted == 2
        assert [(s["voice"], s["in_use"], s["pinned"], s["mb"]) for s in pool.sessions()] == [
            ("a", 0, True, 100.0), ("ja", 1, False, 100.0)]
        pool._release(held)  # 200 MB: within budget, "ja" stays
        assert pool.loaded_voices() == {"a", "ja"}
        await speak("c")  # 300 MB: "ja", the oldest idle one, goes
        assert pool.loaded_voices() == {"a", "c"} and pool.stats.evicted == 3
        await speak("ja")  # an unloaded voice loads again on demand
        assert "ja" in pool.loaded_voices()
    finally:
        pool.close()


async def test_a_sessions_first_runs_count_toward_its_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: an ONNX arena and lazily loaded tables grow RSS on first use, after the load was measured."""
    import voxgate.scheduling.pool as pool_module

    rss = iter(range(0, 10**12, 100 * 2**20))  # each reading 100 MB above the last
    monkeypatch.setattr(pool_module, "_rss", lambda: next(rss))
    engine = FakeEngine()
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0)
    try:
        b = next(v for v in engine.voices() if v.id == "b")
        for _ in range(4):
            await drain(pool.submit(Job(b, "one two", EngineParams(), 0.0, asyncio.get_running_loop())))
        # the load (100 MB) and the first WARM_USES runs (100 MB each); later runs are not charged
        assert [s["mb"] for s in pool.sessions()] == [100.0 * (1 + pool_module.WARM_USES)]
    finally:
        pool.close()


async def test_first_runs_on_the_shared_arena_stay_counted_when_their_session_goes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Piper's sessions share one onnxruntime arena that outlives each of them: what their first runs grow is
    the process's, so unloading the session that happened to grow it must not take it off the budget's total."""
    import voxgate.scheduling.pool as pool_module

    rss = iter(range(0, 10**12, 100 * 2**20))  # each reading 100 MB above the last
    monkeypatch.setattr(pool_module, "_rss", lambda: next(rss))
    monkeypatch.setattr(pool_module, "WARM_USES", 1)
    engine = FakeEngine()
    original = engine.load

    def load(voice: Any, threads: int) -> Any:
        loaded = original(voice, threads)
        loaded.shares_arena = voice.id == "b"  # "b" runs on the shared arena, "c" has memory of its own
        return loaded

    monkeypatch.setattr(engine, "load", load)
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, memory_budget_mb=450)
    try:
        _, speak = budget_voices(engine, pool)
        await speak("b")  # load 100 MB (the session's) + first run 100 MB (the shared arena's)
        assert [s["mb"] for s in pool.sessions()] == [100.0] and pool._shared_cost == 100 * 2**20
        await speak("c")  # load 100 + first run 100, both its own: 400 MB counted, within 450
        assert pool.loaded_voices() == {"b", "c"}
        await speak("ja")  # +100 MB load, +100 run: over budget, "b" (least recently used) goes...
        assert "b" not in pool.loaded_voices()
        # ...and the arena's 100 MB stays counted: c 200 + ja 200 + shared 100 = 500 > 450, so "c" goes too
        assert pool.loaded_voices() == {"ja"} and pool._shared_cost == 100 * 2**20
    finally:
        pool.close()


async def test_malloc_trim_waits_for_an_idle_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trim holds the malloc arenas while it runs, stalling every thread that allocates (first audio's p95 rose
    with a trim every 30 s): it runs once jobs ran and none runs or waits, and under a load that never pauses
    only after TRIM_BUSY_S."""
    import voxgate.scheduling.pool as pool_module

    monkeypatch.setattr(pool_module, "TRIM_EVERY_S", 0.05)
    monkeypatch.setattr(pool_module, "TRIM_BUSY_S", 2.0)
    trims: list[tuple[float, bool]] = []  # when, and whether the pool was idle then
    engine = FakeEngine()
    pool = make_pool(engine, workers=2)
    monkeypatch.setattr(pool_module, "_trim", lambda: trims.append((time.monotonic(), pool._is_idle())))
    try:
        await asyncio.sleep(0.2)
        assert trims == []  # nothing ran: nothing was freed
        gate = pool.submit(job(engine, "WAIT busy", 0.0))
        await drain(pool.submit(job(engine, "one two", 1.0)))  # ran on the other worker, beside the gate job
        await asyncio.sleep(0.4)
        assert trims == []  # a job ran, but the pool is busy
        engine.log.gate.set()
        await drain(gate)
        for _ in range(100):
            if trims:
                break
            await asyncio.sleep(0.02)
        assert [idle for _, idle in trims] == [True]  # at the pause
        engine.log.gate.clear()
        busy_since = time.monotonic()
        gate = pool.submit(job(engine, "WAIT again", 0.0))
        await drain(pool.submit(job(engine, "three four", 1.0)))
        for _ in range(250):
            if len(trims) > 1:
                break
            await asyncio.sleep(0.02)
        assert [idle for _, idle in trims] == [True, False]  # a load that never pauses: after TRIM_BUSY_S
        assert trims[1][0] - trims[0][0] >= 1.9 and trims[1][0] > busy_since
        engine.log.gate.set()
        await drain(gate)
    finally:
        engine.log.gate.set()
        pool.close()


async def test_when_every_worker_is_busy_a_long_first_sentence_is_cut_at_a_phrase() -> None:
    engine = FakeEngine()
    service = make_service(engine, workers=1)
    long = "Our library opens at nine every weekday and at ten on Saturdays. Then more."
    try:
        await service.warm_up()
        idle = [c async for c in service.stream(SynthesisRequest(text=long, voice="a"))]
        assert idle[0].text == "Our library opens at nine every weekday and at ten on Saturdays."  # idle: whole
        gate = await service.open(SynthesisRequest(text="WAIT busy.", voice="b"))
        pull = asyncio.ensure_future(anext(gate))
        await asyncio.sleep(0.05)  # the only worker is stuck: the pool is busy
        busy = await service.open(SynthesisRequest(text=long, voice="a"))
        engine.log.gate.set()
        chunks = [c async for c in busy]
        texts = list(dict.fromkeys(c.text for c in chunks if c.text))
        assert texts == ["Our library opens at nine", "every weekday and at ten on Saturdays.", "Then more."]
        assert [c.index for c in chunks if c.text] == sorted(c.index for c in chunks if c.text)
        await pull
        await gate.aclose()
    finally:
        service.close()


async def test_sessions_a_burst_loaded_are_unloaded_once_unused_for_the_idle_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: after a burst (or CPU starvation) loaded extra sessions, the pool goes back to what the steady
    load uses: within the memory budget nothing else unloaded them, and a 60-minute soak kept +150 MB. The clock
    is injected: no test time passes."""
    import voxgate.scheduling.pool as pool_module

    trims: list[int] = []
    monkeypatch.setattr(pool_module, "_trim", lambda: trims.append(1))
    now = [1000.0]
    engine = FakeEngine()
    pool = WorkerPool(lambda name: engine, workers=2, threads=1, solo_threads=0, idle_unload_s=600,
                      clock=lambda: now[0])
    try:
        voices = {v.id: v for v in engine.voices()}

        async def speak(*names: str) -> None:
            await asyncio.gather(*(drain(pool.submit(Job(voices[n], "one two", EngineParams(), 0.0,
                                                         asyncio.get_running_loop()))) for n in names))

        pool.preload(voices["a"])  # the default voice: pinned, never unloaded for idleness
        await speak("b", "ja")  # the burst
        assert pool.loaded_voices() == {"a", "b", "ja"}
        assert pool.unload_idle() == 0 and trims == []  # just used
        now[0] += 300
        await speak("b")  # the steady load keeps using b
        now[0] += 301
        assert pool.unload_idle() == 1 and pool.loaded_voices() == {"a", "b"}  # ja: 601 s unused
        assert trims == [1]  # its memory given back at once
        held = pool._loaded(voices["b"], 1)  # as if a job were running on b
        now[0] += 10_000
        assert pool.unload_idle() == 0 and pool.loaded_voices() == {"a", "b"}  # a running job keeps its session
        pool._release(held)
        assert pool.unload_idle() == 0  # b's job just ended: its idle time starts now
        now[0] += 600
        assert pool.unload_idle() == 1 and pool.loaded_voices() == {"a"}  # back to the pinned voice alone
        await speak("ja")  # an unloaded voice loads again on demand
        assert pool.loaded_voices() == {"a", "ja"}
    finally:
        pool.close()


async def test_the_trim_thread_unloads_idle_sessions_when_the_pool_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    import voxgate.scheduling.pool as pool_module

    monkeypatch.setattr(pool_module, "TRIM_EVERY_S", 0.02)
    monkeypatch.setattr(pool_module, "_trim", lambda: None)
    now = [0.0]
    engine = FakeEngine()
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, idle_unload_s=600,
                      clock=lambda: now[0])
    try:
        b = next(v for v in engine.voices() if v.id == "b")
        gate = pool.submit(Job(b, "WAIT busy", EngineParams(), 0.0, asyncio.get_running_loop()))
        for _ in range(250):  # bounded: until the job is on the worker
            if pool.stats.running:
                break
            await asyncio.sleep(0.02)
        now[0] += 10_000
        await asyncio.sleep(0.2)
        assert pool.loaded_voices() == {"b"}  # in use: not unloaded
        engine.log.gate.set()
        await drain(gate)
        now[0] += 10_000
        for _ in range(250):  # bounded: the thread looks every TRIM_EVERY_S
            if not pool.loaded_voices():
                break
            await asyncio.sleep(0.02)
        assert pool.loaded_voices() == set()
    finally:
        engine.log.gate.set()
        pool.close()


@contextlib.contextmanager
def counting_wakes(loop: asyncio.AbstractEventLoop) -> Iterator[list[object]]:
    """The callbacks handed to `loop.call_soon_threadsafe` (each one wake-up of the loop) while inside."""
    wakes: list[object] = []
    original = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any) -> Any:
        wakes.append(callback)
        return original(callback, *args)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        yield wakes
    finally:
        del loop.call_soon_threadsafe


async def test_what_a_worker_posts_before_the_loop_takes_it_rides_one_wake_up() -> None:
    """Issue 13: a piece and its job's end posted back to back cost one call_soon_threadsafe, not two."""
    import voxgate.scheduling.pool as pool_module

    loop = asyncio.get_running_loop()
    job = Job(FakeEngine().voices()[0], "Hi.", EngineParams(), 0.0, loop)
    with counting_wakes(loop) as wakes:
        thread = threading.Thread(target=lambda: (job._post("piece"), job._post(pool_module._DONE)))
        thread.start()
        thread.join()
        assert await job.queue.get() == "piece" and is_done(await job.queue.get())
        job._post("later")  # taken: the next post wakes the loop again
        assert await job.queue.get() == "later"
    assert len(wakes) == 2


async def test_pieces_of_several_jobs_posted_before_the_loop_takes_them_ride_one_wake_up() -> None:
    """Issue 13: the mailbox is the loop's, not each job's: two workers' pieces for two jobs, posted before the
    loop gets round to them, cost one call_soon_threadsafe, and each job still gets its own items in order."""
    import voxgate.scheduling.pool as pool_module

    loop = asyncio.get_running_loop()
    voice = FakeEngine().voices()[0]
    first, second = (Job(voice, text, EngineParams(), 0.0, loop) for text in ("Hi.", "Ho."))
    with counting_wakes(loop) as wakes:
        thread = threading.Thread(target=lambda: (first._post("a1"), second._post("b1"), first._post("a2"),
                                                  second._post(pool_module._DONE)))
        thread.start()
        thread.join()
        assert [await first.queue.get(), await first.queue.get()] == ["a1", "a2"]
        assert await second.queue.get() == "b1" and is_done(await second.queue.get())
    assert len(wakes) == 1


def test_a_post_after_the_loop_closed_under_a_pending_wake_up_cancels_the_job() -> None:
    """A wake-up asked for just before the loop closed never runs: later posts must still tell the worker that
    nobody listens (it stops after its current piece), as a post's own call_soon_threadsafe would have."""
    loop = asyncio.new_event_loop()
    job = Job(FakeEngine().voices()[0], "Hi.", EngineParams(), 0.0, loop)
    job._post("piece")  # asks for a wake-up...
    loop.close()  # ...that the closed loop will never run
    assert not job.cancelled.is_set()
    job._post("next piece")
    assert job.cancelled.is_set()

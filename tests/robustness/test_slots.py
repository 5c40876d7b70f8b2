"""Issue 12: a stream's admission slot comes back whatever a dialect does after opening it (fake engine)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.unit.fake_engine import FakeEngine
from voxgate.core import service as service_module
from voxgate.core.metrics import Metrics
from voxgate.core.service import Limits, SynthesisService, SynthesisStream
from voxgate.core.textstream import open_text_stream
from voxgate.core.types import SynthesisRequest
from voxgate.errors import Overloaded
from voxgate.scheduling.backend import LocalBackend
from voxgate.scheduling.pool import WorkerPool
from voxgate.voices.registry import VoiceRegistry

TEXT = "First sentence here. Second sentence here. Third sentence here."


class Boom(Exception):
    """What a buggy dialect raises."""


def make_service(workers: int = 1, max_queue: int = 3) -> SynthesisService:
    engine = FakeEngine()
    registry = VoiceRegistry({"fake": engine}, {}, "a")
    pool = WorkerPool(lambda name: engine, workers=workers, threads=1, solo_threads=0, express=0)
    return SynthesisService(registry, LocalBackend(pool), Metrics(), Limits(max_queue=max_queue))


@pytest.fixture
async def service() -> AsyncIterator[SynthesisService]:
    svc = make_service()
    await svc.warm_up()
    yield svc
    svc.close()


async def _before_first(stream: SynthesisStream) -> None:
    raise Boom


async def _mid(stream: SynthesisStream) -> None:
    await anext(stream)
    raise Boom


async def _after(stream: SynthesisStream) -> None:
    async for _ in stream:
        pass
    raise Boom


async def _never_iterated(stream: SynthesisStream) -> None:
    return None  # opened, forgotten, no error at all


async def _wrapped_generator(stream: SynthesisStream) -> None:
    async def units() -> AsyncIterator[object]:
        async for chunk in stream:
            yield chunk  # no finally: a dialect that forgot to close

    gen = units()
    await anext(gen)
    del gen
    raise Boom


async def _cancelled(stream: SynthesisStream) -> None:
    task = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise asyncio.CancelledError


POINTS: dict[str, Callable[[SynthesisStream], Awaitable[None]]] = {
    "before_first_iteration": _before_first, "mid_iteration": _mid, "after_iteration": _after,
    "never_iterated": _never_iterated, "wrapped_generator_dropped": _wrapped_generator, "cancelled": _cancelled,
}


@pytest.mark.parametrize("point", list(POINTS))
async def test_scope_gives_every_slot_back(service: SynthesisService, point: str) -> None:
    for _ in range(3 * service.capacity):  # more rounds than slots: one leak per round would lock it
        with pytest.raises((Boom, asyncio.CancelledError)) if point != "never_iterated" else _nothing():
            async with service.scope():
                stream = await service.open(SynthesisRequest(text=TEXT, voice="a"))
                await POINTS[point](stream)
        assert service.active == 0
    assert len(service._open) == 0
    assert not service.saturated


async def test_a_collected_stream_gives_its_slot_back_without_any_scope(service: SynthesisService) -> None:
    for _ in range(2 * service.capacity):
        stream = await service.open(SynthesisRequest(text=TEXT, voice="a"))
        await anext(stream)
        del stream
        gc.collect()
        assert service.active == 0
    # and a collected stream's queued work is cancelled, so the pool ends idle
    for _ in range(100):
        if service.backend.load().running == 0 and service.backend.load().queued == 0:
            break
        await asyncio.sleep(0.02)
    assert service.backend.load().running == 0 and service.backend.load().queued == 0


async def test_text_streams_are_covered_too(service: SynthesisService) -> None:
    for _ in range(2 * service.capacity):
        with pytest.raises(Boom):
            async with service.scope():
                stream = await open_text_stream(service, SynthesisRequest(text="", voice="a"))
                stream.feed("Some text to speak. ")
                assert service.active == 1
                raise Boom
        assert service.active == 0


async def test_closing_twice_and_scope_after_close_release_once(service: SynthesisService) -> None:
    async with service.scope():
        stream = await service.open(SynthesisRequest(text=TEXT, voice="a"))
        await stream.aclose()
        await stream.aclose()
        other = await service.open(SynthesisRequest(text=TEXT, voice="a"))
        assert service.active == 1
    assert service.active == 0 and other.admitted is False


async def test_saturation_is_reported_after_the_documented_time(service: SynthesisService,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "SATURATED_SECONDS", 0.2)
    async with service.scope():
        held = [await service.open(SynthesisRequest(text=TEXT, voice="a")) for _ in range(service.capacity)]
        with pytest.raises(Overloaded):
            await service.open(SynthesisRequest(text=TEXT, voice="a"))
        assert not service.saturated  # full, but not yet for long
        await asyncio.sleep(0.25)
        assert service.saturated and service.saturated_for >= 0.2
        await held[0].aclose()
        assert not service.saturated and service.saturated_for == 0.0
    assert service.active == 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

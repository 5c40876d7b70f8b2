"""Cluster mode without a cluster: options checked before connecting, the piece framing, and no Ray import
in the single-process server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.cluster.conftest import free_ports
from voxgate.app import StartupError
from voxgate.cluster import pieces
from voxgate.cluster.options import gateway_options, replica_settings, synthesizer_options
from voxgate.core.types import Piece, Timing
from voxgate.settings import Settings

pytestmark = pytest.mark.cluster


def test_synthesizer_defaults_follow_the_worker_settings_and_bad_options_are_one_line() -> None:
    options = synthesizer_options(Settings(workers=3, max_queue=5))
    assert (options.num_cpus, options.max_ongoing_requests, options.max_queued_requests) == (3.0, 6, 8)
    assert (options.min_replicas, options.max_replicas, options.resources) == (1, 0, {})
    given = synthesizer_options(Settings(ray_synthesizer={"num_cpus": 1, "max_replicas": 2,
                                                          "resources": {"synth": 1}}))
    assert (given.num_cpus, given.max_replicas, given.resources) == (1, 2, {"synth": 1})
    for bad, message in (({"bogus": 1}, "unknown option 'bogus'"), ({"num_cpus": -1}, "num_cpus must be"),
                         ({"max_replicas": 1.5}, "whole number"), ({"resources": [1]}, "resources must be"),
                         ({"max_queued_requests": 0}, "must be ≥ 1"),
                         ({"min_replicas": 3, "max_replicas": 2}, "max_replicas must be ≥ min_replicas")):
        with pytest.raises(StartupError, match=message):
            synthesizer_options(Settings(ray_synthesizer=bad))
    data = Settings(workers=1).model_dump(mode="json")  # threads 1, solo_threads 2
    one_cpu = replica_settings(data, synthesizer_options(Settings(workers=1)))  # num_cpus: 1, from --workers
    assert (one_cpu["threads"], one_cpu["solo_threads"]) == (1, 1) and data["solo_threads"] == 2
    four = replica_settings({**data, "threads": 2}, synthesizer_options(Settings(ray_synthesizer={"num_cpus": 4})))
    assert (four["threads"], four["solo_threads"]) == (2, 2)
    assert replica_settings(data, synthesizer_options(Settings(ray_synthesizer={"num_cpus": 0}))) == data
    assert gateway_options(Settings()).replicas == 1
    with pytest.raises(StartupError, match="--ray-gateway: unknown option"):
        gateway_options(Settings(ray_gateway={"replica": 2}))


def test_pieces_cross_http_whole_with_their_timings() -> None:
    piece = Piece(np.linspace(-1, 1, 1001, dtype=np.float32), 22050, (Timing(0, 5, 0.0, 0.2), Timing(6, 9, 0.2, 0.4)))
    data = pieces.encode(piece) + pieces.encode(Piece(np.zeros(3, np.float32), 16000))
    buffer = bytearray()
    out = []
    for i in range(0, len(data), 7):  # arriving in small reads
        buffer += data[i:i + 7]
        while (got := pieces.decode(buffer)) is not None:
            out.append(got)
    assert not buffer and len(out) == 2
    assert np.array_equal(out[0].samples, piece.samples) and out[0].rate == 22050 and out[0].timings == piece.timings
    assert out[1].rate == 16000 and out[1].timings is None and len(out[1].samples) == 3


def test_single_process_never_imports_ray_and_cli_errors_are_one_line() -> None:
    (closed,) = free_ports(1)  # nothing listens there
    code = ("import sys, voxgate.app, voxgate.cli, voxgate.cli_serve\n"
            "m = voxgate.cli.main\n"
            "a = m(['serve', '--ray-address', '127.0.0.1:1', '--ray-synthesizer', '{\"bogus\": 1}'])\n"
            f"b = m(['serve', '--ray-address', '127.0.0.1:{closed}'])\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n"
            "sys.exit(a + b)\n")
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 4 and len(lines) == 2, bad.stderr
    assert lines[0].startswith("voxgate: --ray-synthesizer: unknown option 'bogus'"), bad.stderr
    assert lines[1].startswith(f"voxgate: --ray-address 127.0.0.1:{closed}: no Ray cluster answers there"), lines


class _Response:
    """A fake streaming handle call: one piece at once, the end when told (or when cancelled)."""

    def __init__(self) -> None:
        self.gave, self.cancelled, self.done = False, False, asyncio.Event()

    def __aiter__(self) -> _Response:
        return self

    async def __anext__(self) -> Piece:
        if not self.gave:
            self.gave = True
            return Piece(np.zeros(10, np.float32), 16000)
        await self.done.wait()
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True
        self.done.set()


class _Handle:
    """The part of a DeploymentHandle RayBackend uses: `options(...).generate.remote(...)`, in call order."""

    def __init__(self) -> None:
        self.calls: dict[str, _Response] = {}  # segment text → its call, in the order they were made
        self.generate = self

    def options(self, **_: object) -> _Handle:
        return self

    def remote(self, voice: object, text: str, *_: object) -> _Response:
        self.calls[text] = _Response()
        return self.calls[text]


@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")  # ray.serve's, at import
async def test_later_segments_past_the_limit_wait_in_the_gateway_earliest_deadline_first() -> None:
    from voxgate.cluster.backend import RayBackend
    from voxgate.core.types import VoiceInfo
    from voxgate.engines.base import EngineParams
    from voxgate.scheduling.backend import SegmentJob

    voice = VoiceInfo("v", "v", "piper", "en-US", 16000)
    handle = _Handle()
    backend = RayBackend(handle, capacity=1, limit=2)  # the replicas take two segments at once
    now = time.monotonic()

    def segment(text: str, due: float, urgent: bool = False):  # type: ignore[no-untyped-def]
        return backend.generate(SegmentJob(voice, text, EngineParams(), now + due, urgent=urgent))

    a, b, c, d = segment("a", 30), segment("b", 10), segment("c", 20), segment("d", 5)
    e = segment("e", 40, urgent=True)  # a stream's first segment: sent at once, whatever waits here
    f = segment("f", 1)
    assert list(handle.calls) == ["a", "b", "e"] and backend.load().queued == 6
    for call in (a, b, e):
        assert (await anext(call)).rate == 16000
    await f.aclose()  # cancelled while it waited here: never sent
    handle.calls["a"].done.set()
    assert await anext(a, None) is None and list(handle.calls) == ["a", "b", "e"]  # b and e still take the room
    handle.calls["b"].done.set()
    assert await anext(b, None) is None and list(handle.calls) == ["a", "b", "e", "d"]  # d (due in 5 s) before c
    await e.aclose()  # the client went away: its call is cancelled, and c gets the room
    assert handle.calls["e"].cancelled and list(handle.calls) == ["a", "b", "e", "d", "c"]
    for call in (d, c):
        assert (await anext(call)).rate == 16000
        await call.aclose()
    load = backend.load()
    assert (load.queued, load.running, load.completed, load.dropped, load.interrupted) == (0, 0, 2, 1, 3)


@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")  # ray.serve's, at import
async def test_a_held_call_that_cannot_be_made_fails_its_own_reader() -> None:
    from voxgate.cluster.backend import RayBackend
    from voxgate.core.types import VoiceInfo
    from voxgate.engines.base import EngineParams
    from voxgate.errors import EngineFailure
    from voxgate.scheduling.backend import SegmentJob

    class Refusing(_Handle):
        def remote(self, voice: object, text: str, *_: object) -> _Response:
            if text == "held":
                raise RuntimeError("the handle is gone")
            return super().remote(voice, text)

    voice = VoiceInfo("v", "v", "piper", "en-US", 16000)
    handle = Refusing()
    backend = RayBackend(handle, capacity=1, limit=1)
    now = time.monotonic()
    first = backend.generate(SegmentJob(voice, "first", EngineParams(), now + 1))
    held = backend.generate(SegmentJob(voice, "held", EngineParams(), now + 2))
    assert (await anext(first)).rate == 16000
    handle.calls["first"].done.set()
    assert await anext(first, None) is None  # its end sends the held call, whose making fails: not here
    with pytest.raises(EngineFailure, match="RuntimeError"):
        await asyncio.wait_for(anext(held), 5)  # but there, to its own reader, not a wait for ever
    load = backend.load()
    assert (load.queued, load.running, load.completed, load.failed) == (0, 0, 1, 1)


def test_a_big_piece_crosses_in_inline_slices_and_joins_whole() -> None:
    timings = (Timing(0, 5, 0.0, 2.0), Timing(6, 9, 2.0, 4.5))
    big = Piece(np.linspace(-1, 1, 99_001, dtype=np.float32), 22050, timings)
    parts = list(pieces.slices(big))
    assert [type(p) for p in parts] == [pieces.Slice] * 5 and [p.last for p in parts] == [False] * 4 + [True]
    assert all(p.samples.nbytes <= pieces.SLICE_BYTES for p in parts)
    assert parts[0].head is not None and len(parts[0].head.samples) == 0 and all(p.head is None for p in parts[1:])
    small = Piece(np.zeros(100, np.float32), 16000)
    assert list(pieces.slices(small)) == [small] and list(pieces.slices(big, 0)) == [big]  # 0: never sliced
    joiner = pieces.Joiner()
    got = [joiner.feed(p) for p in [*parts, small, *pieces.slices(big, 4 * 40_000)]]
    assert got[:4] == [None] * 4 and got[5] is small and got[6:8] == [None, None] and not joiner.pending
    for whole in (got[4], got[8]):
        assert np.array_equal(whole.samples, big.samples) and whole.rate == 22050 and whole.timings == timings
    with pytest.raises(ValueError, match="without its piece's first slice"):
        pieces.Joiner().feed(parts[1])
    joiner.feed(parts[0])
    with pytest.raises(ValueError, match="before the sliced one ended"):
        joiner.feed(small)


class _Sliced(_Response):
    """A replica's answer of one big piece in slices, then one small piece, then the end (or a cut-off)."""

    def __init__(self, cut: bool = False) -> None:
        super().__init__()
        self.big = Piece(np.arange(60_000, dtype=np.float32), 22050, (Timing(0, 3, 0.0, 2.7),))
        self.items = [*pieces.slices(self.big), Piece(np.ones(5, np.float32), 22050)]
        if cut:
            self.items = self.items[:2]  # the stream ends inside the big piece

    async def __anext__(self) -> Piece | pieces.Slice:  # type: ignore[override]
        if self.items:
            return self.items.pop(0)
        raise StopAsyncIteration


@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")  # ray.serve's, at import
async def test_the_gateway_hands_sliced_pieces_on_whole() -> None:
    from voxgate.cluster.backend import RayBackend
    from voxgate.core.types import VoiceInfo
    from voxgate.engines.base import EngineParams
    from voxgate.errors import EngineFailure
    from voxgate.scheduling.backend import SegmentJob

    class Slicing(_Handle):
        def __init__(self, cut: bool) -> None:
            super().__init__()
            self.cut = cut

        def remote(self, voice: object, text: str, *_: object) -> _Response:
            self.calls[text] = _Sliced(self.cut)
            return self.calls[text]

    for cut in (False, True):
        handle = Slicing(cut)
        backend = RayBackend(handle, capacity=1)
        call = backend.generate(SegmentJob(VoiceInfo("v", "v", "piper", "en-US", 22050), "t", EngineParams(),
                                           time.monotonic() + 1))
        if cut:
            with pytest.raises(EngineFailure, match="inside a piece"):
                await anext(call)
            assert backend.load().failed == 1
            continue
        first = await anext(call)
        big = handle.calls["t"].big
        assert np.array_equal(first.samples, big.samples) and first.timings == big.timings
        assert len((await anext(call)).samples) == 5 and await anext(call, None) is None
        assert backend.load().completed == 1

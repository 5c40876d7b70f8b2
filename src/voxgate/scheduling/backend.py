"""The seam under the core: a synthesis backend runs one segment of text for one voice and streams its audio.

`SynthesisService` admits requests, cuts and routes their text, and levels and resamples the audio; what
runs an engine call is a `Backend`. `LocalBackend` is today's in-process thread pool; a remote engine or
a cluster is another class with the same methods (`Backend` below). The core reads nothing else of a
backend: not its threads, its queues or its counters' storage.

Contract of `generate(job)`: the work starts when it is called (so a caller can queue several segments
ahead of the one it is reading), its chunks arrive in order by iterating, an engine failure is raised
from the iterator as `EngineFailure` (its `__cause__` is the engine's own exception), and closing the
iterator before its end aborts the job.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from voxgate.engines.base import EngineParams, Output, Piece, VoiceInfo
from voxgate.errors import EngineFailure
from voxgate.scheduling import pool as _pool

_LOG = logging.getLogger(__name__)

# What a backend streams: one typed piece of mono float32 audio with its rate and (optional) timings.
Chunk = Piece
Post = Callable[[Piece], Piece]  # per-piece processing on the backend, run where the engine runs


@dataclass(eq=False)
class SegmentJob:
    """One segment of text for one voice: what the service hands a backend."""

    voice: VoiceInfo
    text: str
    params: EngineParams
    deadline: float  # time.monotonic() seconds by which the stream needs this audio (earliest runs first)
    urgent: bool = False  # the first segment of a stream that has no audio yet
    post: Post | None = None  # per-piece processing, run where the engine runs
    background: bool = False  # housekeeping (measuring voices): never counted as load
    rate: int = 0  # Hertz of the chunks, set by the backend before the first one
    # The voice, knobs and processing that speak it if its upstream fails before any audio (a voice cloned on
    # an upstream keeps its local matched voice: engines/remote/clone.py); None: the router's own fallback.
    fallback: tuple[VoiceInfo, EngineParams, Post | None] | None = None
    # The client's format, when the stream passes an upstream's own bytes through (SynthesisService.passthrough):
    # a backend that can send it answers with Pieces whose `encoded` holds them; any other answers PCM.
    output: Output | None = None
    # Text that follows `text` as the client sends it (a text stream forwarded to an upstream that takes streamed
    # text: SynthesisService.forwards_text): spoken in one upstream session. Its `waiting` attribute is True
    # while it waits for the client (the upstream may then be quiet without fault).
    texts: AsyncIterator[str] | None = None


@dataclass(frozen=True)
class Load:
    """What a backend is doing now, and its counters since it started."""

    queued: int = 0  # jobs waiting
    running: int = 0  # jobs on an engine now
    completed: int = 0
    dropped: int = 0  # aborted before they ran
    interrupted: int = 0  # aborted while running
    failed: int = 0
    evicted: int = 0  # sessions unloaded to stay within the memory budget


@dataclass(frozen=True)
class Session:
    """One loaded engine session."""

    voice: str  # the voice's load key
    threads: int
    mb: float  # resident memory its load and first runs added
    in_use: int  # jobs on it now
    pinned: bool  # kept loaded whatever the memory budget


@dataclass(frozen=True)
class BackendHealth:
    """A backend's state for /ready and operators."""

    ready: bool  # it can take jobs
    workers: int  # jobs it runs at once (its capacity)
    loaded_voices: frozenset[str]  # load keys of voices ready to run without a load
    sessions: tuple[Session, ...]  # every loaded session, least recently used first
    memory_mb: float  # resident memory the loaded sessions cost
    memory_budget_mb: int  # 0: no limit
    load: Load
    upstreams: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # per upstream: its state


class Backend(Protocol):
    """Runs segments on engines; see the module docstring for the contract of `generate`."""

    @property
    def capacity(self) -> int:
        """Jobs it runs at once; admission adds the service's queue to this."""
        ...

    def load(self) -> Load:
        """What it is doing now."""
        ...

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        """Start `job` now; its audio chunks in order. Raises EngineFailure from the iterator."""
        ...

    def abort(self, job: SegmentJob) -> None:
        """Drop `job` if it waits, or stop it after its current piece; its iterator then ends."""
        ...

    async def preload(self, voice: VoiceInfo) -> None:
        """Make `voice` ready to run without a load, and keep it so whatever the memory budget."""
        ...

    def health(self) -> BackendHealth:
        """Its state now."""
        ...

    def loaded_voices(self) -> frozenset[str]:
        """Load keys of the voices ready to run without a load (health()'s, without the rest of it)."""
        ...

    def close(self) -> None:
        """Stop: queued jobs are dropped, running ones stop after their current piece."""
        ...


class _Run:
    """The audio of one job on the pool, bridged from the worker threads onto the event loop."""

    def __init__(self, pool: _pool.WorkerPool, job: SegmentJob, work: _pool.Job) -> None:
        self._pool, self._job, self._work = pool, job, work
        self._ended = False

    def __aiter__(self) -> _Run:
        return self

    async def __anext__(self) -> Chunk:
        if self._ended:
            raise StopAsyncIteration
        item = await self._work.queue.get()
        if _pool.is_done(item):
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise EngineFailure(f"{self._job.voice.engine} failed: {item}") from item
        self._job.rate = self._work.rate
        assert isinstance(item, Piece)
        return item

    async def aclose(self) -> None:
        if not self._ended:
            self._ended = True
            self._pool.cancel(self._work)


class LocalBackend:
    """Today's in-process backend: the thread pool of scheduling/pool.py behind the Backend interface."""

    def __init__(self, pool: _pool.WorkerPool) -> None:
        self.pool = pool
        self._work: weakref.WeakKeyDictionary[SegmentJob, _pool.Job] = weakref.WeakKeyDictionary()

    @property
    def capacity(self) -> int:
        return self.pool.size

    def load(self) -> Load:
        stats = self.pool.stats
        return Load(stats.queued, stats.running, stats.completed, stats.dropped, stats.interrupted,
                    stats.failed, stats.evicted)

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        work = _pool.Job(job.voice, job.text, job.params, job.deadline, asyncio.get_running_loop(),
                         urgent=job.urgent, post=job.post, background=job.background)
        self._work[job] = work
        self.pool.submit(work)
        return _Run(self.pool, job, work)

    def abort(self, job: SegmentJob) -> None:
        work = self._work.get(job)
        if work is not None:
            self.pool.cancel(work)

    def posts_per_piece(self, voice: VoiceInfo) -> bool:
        """Whether a job's `post` runs on each piece as it is made, in this process, off the event loop (a stream
        may then put its own per-piece work there: SynthesisStream._finishing). The pool's workers: always."""
        return True

    async def preload(self, voice: VoiceInfo) -> None:
        await asyncio.to_thread(self.pool.preload, voice)

    async def release_background(self) -> int:
        """Unload the sessions only background work used (see WorkerPool.release_background)."""
        return await asyncio.to_thread(self.pool.release_background)

    def health(self) -> BackendHealth:
        sessions = tuple(Session(**s) for s in self.pool.sessions())  # type: ignore[arg-type]
        return BackendHealth(ready=True, workers=self.pool.size, loaded_voices=self.loaded_voices(),
                             sessions=sessions, memory_mb=round(sum(s.mb for s in sessions), 1),
                             memory_budget_mb=self.pool.memory_budget_mb, load=self.load())

    def loaded_voices(self) -> frozenset[str]:
        return frozenset(self.pool.loaded_voices())

    def close(self) -> None:
        self.pool.close()


UPSTREAM_ENGINE = "upstream"  # VoiceInfo.engine of upstream voices; VoiceInfo.upstream names the upstream


class Remote(Protocol):
    """What the router needs of one upstream's backend (engines/remote/backend.py RemoteBackend)."""

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        ...

    def abort(self, job: SegmentJob) -> None:
        ...

    def close(self) -> None:
        ...


class Lifecycle(Protocol):
    """Started in the server's lifespan and stopped at its end (the upstreams' voice lists and connections)."""

    async def start(self) -> None:
        ...

    async def stop(self) -> None:
        ...


class _Failed:
    """An iterator that raises one EngineFailure (a job for an upstream that is not configured)."""

    def __init__(self, message: str) -> None:
        self._message: str | None = message

    def __aiter__(self) -> _Failed:
        return self

    async def __anext__(self) -> Chunk:
        if self._message is None:
            raise StopAsyncIteration
        message, self._message = self._message, None
        raise EngineFailure(message)

    async def aclose(self) -> None:
        self._message = None


class _Failover:
    """A job on an upstream that moves to a local voice if the upstream fails before any audio."""

    def __init__(self, router: RouterBackend, job: SegmentJob, run: AsyncIterator[Chunk]) -> None:
        self._router, self._job, self._run = router, job, run
        self._sent = self._switched = False

    def __aiter__(self) -> _Failover:
        return self

    async def __anext__(self) -> Chunk:
        try:
            piece = await anext(self._run)
        except EngineFailure as exc:
            if self._sent or self._switched or getattr(exc.__cause__, "sent", False):
                raise
            job, upstream = self._job, self._job.voice
            own = job.fallback
            voice = own[0] if own else self._router.fallback(upstream) if self._router.fallback else None
            if voice is None:
                raise
            if own:  # the cloned voice's local matched voice: its own knobs and shift
                job.params, job.post = own[1], own[2]
            _LOG.warning("%s; speaking its segment with the local voice %s instead of %s", exc, voice.id,
                         upstream.id)
            self._router.fallbacks += 1
            job.voice = voice  # the voice that really speaks: the stream levels its audio as that voice's
            self._switched = True
            self._run = self._router.local.generate(job)
            self._router.owner[job] = self._router.local
            piece = await anext(self._run)
        self._sent = True
        return piece

    async def aclose(self) -> None:
        aclose = getattr(self._run, "aclose", None)
        if aclose is not None:
            await aclose()


class RouterBackend:
    """The local backend plus upstreams: a job goes to the upstream its voice names (engine `upstream`,
    VoiceInfo.upstream), any other to the local backend. With `fallback`, a job whose upstream fails
    before any audio is spoken by the local voice `fallback(voice)` chooses (None: the failure stands).

    Admission, capacity, load and preloading are the local backend's: upstream jobs wait in their own
    upstream's queue (its concurrency), and their state is in `health().upstreams`."""

    def __init__(self, local: Backend, remotes: Mapping[str, Remote],
                 fallback: Callable[[VoiceInfo], VoiceInfo | None] | None = None,
                 describe: Callable[[], Mapping[str, Mapping[str, object]]] | None = None,
                 lifecycle: Lifecycle | None = None) -> None:
        self.local = local
        self.remotes = dict(remotes)
        self.fallback = fallback
        self.fallbacks = 0  # jobs moved to a local voice
        self._describe = describe
        self._lifecycle = lifecycle
        self.owner: weakref.WeakKeyDictionary[SegmentJob, Backend | Remote] = weakref.WeakKeyDictionary()

    @property
    def upstreams(self) -> Lifecycle | None:
        """What manages the upstreams (engines/remote/manager.py's Upstreams), started and stopped here."""
        return self._lifecycle

    @property
    def capacity(self) -> int:
        return self.local.capacity

    def load(self) -> Load:
        return self.local.load()

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        if job.voice.engine != UPSTREAM_ENGINE:
            self.owner[job] = self.local
            return self.local.generate(job)
        name = str(job.voice.upstream)
        remote = self.remotes.get(name)
        if remote is None:
            return _Failed(f"upstream {name!r} is not configured")
        self.owner[job] = remote
        run = remote.generate(job)
        if job.texts is not None:  # its text is gone once sent: the text stream itself falls back to segments
            return run
        return _Failover(self, job, run) if self.fallback is not None or job.fallback is not None else run

    def abort(self, job: SegmentJob) -> None:
        owner = self.owner.get(job)
        if owner is not None:
            owner.abort(job)

    def encodes(self, voice: VoiceInfo, fmt: str, rate: int) -> bool:
        """Whether `voice`'s upstream can send its audio in format `fmt` at `rate` Hertz as is (then a stream
        may pass its bytes through: SynthesisService.passthrough). Local voices: never."""
        if voice.engine != UPSTREAM_ENGINE:
            return False
        encodes = getattr(self.remotes.get(str(voice.upstream)), "encodes", None)
        return bool(encodes is not None and encodes(fmt, rate))

    def posts_per_piece(self, voice: VoiceInfo) -> bool:
        """The local backend's answer for local voices; upstreams run `post` on a whole segment, or elsewhere."""
        if voice.engine == UPSTREAM_ENGINE:
            return False
        per_piece = getattr(self.local, "posts_per_piece", None)
        return bool(per_piece is not None and per_piece(voice))

    def streams_text(self, voice: VoiceInfo) -> bool:
        """Whether `voice`'s upstream takes text as it arrives, in one session (SegmentJob.texts). Local: never."""
        if voice.engine != UPSTREAM_ENGINE:
            return False
        streams = getattr(self.remotes.get(str(voice.upstream)), "streams_text", None)
        return bool(streams is not None and streams())

    async def preload(self, voice: VoiceInfo) -> None:
        if voice.engine != UPSTREAM_ENGINE:
            await self.local.preload(voice)

    async def release_background(self) -> int:
        release = getattr(self.local, "release_background", None)
        return int(await release()) if release is not None else 0

    def health(self) -> BackendHealth:
        local = self.local.health()
        upstreams = dict(self._describe()) if self._describe is not None else {}
        return BackendHealth(local.ready, local.workers, local.loaded_voices, local.sessions, local.memory_mb,
                             local.memory_budget_mb, local.load, upstreams)

    def loaded_voices(self) -> frozenset[str]:
        return self.local.loaded_voices()

    async def start(self) -> None:
        """Start the upstreams' lifecycle (their first voice listing, their refresh timer)."""
        if self._lifecycle is not None:
            await self._lifecycle.start()

    async def stop(self) -> None:
        """Stop the upstreams: requests in flight are cancelled, connections closed."""
        if self._lifecycle is not None:
            await self._lifecycle.stop()

    def close(self) -> None:
        for remote in self.remotes.values():
            remote.close()
        self.local.close()


__all__ = ["UPSTREAM_ENGINE", "Backend", "BackendHealth", "Chunk", "Lifecycle", "Load", "LocalBackend", "Post",
           "Remote", "RouterBackend", "SegmentJob", "Session"]

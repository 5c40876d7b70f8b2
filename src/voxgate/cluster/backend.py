"""`RayBackend`: the Backend seam over the Synthesizer deployment's handle (runs in the Gateway).

Every segment job is one streaming call to a Synthesizer replica (`options(stream=True)`), routed to a
replica that already holds the voice (`multiplexed_model_id` = the voice's load key). Ray Serve's refusal
when every replica is full (BackPressureError) becomes `Overloaded`, raised by the first `anext`, which the
dialects pull before they answer, so each answers with its own busy reply; a later segment of a stream
already speaking waits a little for room instead. Closing the iterator cancels the call down to the
replica, whose pool then drops or interrupts the job. A replica that dies mid-stream is an `EngineFailure`.

Serve's router serves what waits for a replica in arrival order, blind to deadlines. So once `limit` calls
(what the replicas take at once) are outstanding, a later segment waits here instead, and these are sent in
deadline order as calls end; a first segment is always sent at once. A stream's next segment then never
stands in Serve's queue in front of another stream's first one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, RequestCancelledError

from voxgate.cluster import pieces
from voxgate.engines.base import Piece, VoiceInfo
from voxgate.errors import EngineFailure, Overloaded
from voxgate.scheduling.backend import BackendHealth, Chunk, Load, SegmentJob, Session

_LOG = logging.getLogger(__name__)
RETRY_S = 0.05  # seconds between tries of a later segment the replicas had no room for
RETRY_FOR_S = 5.0  # how long a later segment waits for room before its stream fails as busy
REPORT_EVERY_S = 1.0  # seconds a replica report behind health() and /cluster stays fresh


class _Call:
    """The pieces of one job from a replica, as the async iterator the Backend contract promises."""

    def __init__(self, backend: RayBackend, job: SegmentJob, held: bool = False) -> None:
        self._backend, self._job = backend, job
        self._response: Any = None if held else backend._call(job)  # None while it waits here (held)
        self._sent = asyncio.Event()
        if not held:
            self._sent.set()
        self._ended = False
        self._started = False
        self._send_error: Exception | None = None
        self._joiner = pieces.Joiner()

    def send(self) -> None:
        """A held call's turn: make it now (a failure to make it is this call's, raised to its own reader)."""
        try:
            self._response = self._backend._call(self._job)
        except Exception as exc:  # handed to its own reader, not to whichever stream released it
            self._send_error = exc
        self._sent.set()

    def __aiter__(self) -> _Call:
        return self

    async def __anext__(self) -> Chunk:
        if self._ended:
            raise StopAsyncIteration
        try:
            piece = self._joiner.feed(await self._first() if not self._started else await self._response.__anext__())
            while piece is None:  # the rest of a sliced piece (cluster/pieces.py)
                piece = self._joiner.feed(await self._response.__anext__())
        except StopAsyncIteration:
            if self._joiner.pending:
                self._end("failed")
                raise EngineFailure("synthesizer replica ended its stream inside a piece") from None
            self._end("completed")
            raise
        except asyncio.CancelledError:
            self.cancel()
            raise
        except Overloaded:
            self._end("failed")
            raise
        except RequestCancelledError:
            self._end("interrupted")
            raise StopAsyncIteration from None
        except Exception as exc:
            self._end("failed")
            raise EngineFailure(_reason(exc)) from exc
        assert isinstance(piece, Piece)
        self._job.rate = piece.rate
        return piece

    async def _first(self) -> Piece | pieces.Slice:
        """The first piece: a refusal for room is Overloaded (first segments) or waited out (later ones)."""
        await self._sent.wait()
        if self._ended:  # cancelled while it waited here
            raise StopAsyncIteration
        if self._send_error is not None:
            raise self._send_error  # failed there: __anext__ ends the call and raises EngineFailure
        give_up = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                piece = await self._response.__anext__()
                self._started = True
                self._backend._running += 1
                self._backend._queued -= 1
                return piece
            except BackPressureError as exc:
                if self._job.urgent or time.monotonic() > give_up:
                    raise Overloaded("every synthesizer replica is busy; retry shortly") from exc
                await asyncio.sleep(RETRY_S)
                self._response = self._backend._call(self._job)

    def _end(self, how: str) -> None:
        if self._ended:
            return
        self._ended = True
        backend = self._backend
        if self._started:
            backend._running -= 1
        else:
            backend._queued -= 1
        backend._counts[how] += 1
        backend._calls.pop(self._job, None)
        if self._response is not None:
            backend._outstanding -= 1
            backend._release()
        self._sent.set()  # a held call's waiter wakes up to end

    def cancel(self) -> None:
        """Stop the call on its replica (its pool drops or interrupts the job), or here while it is held."""
        if not self._ended:
            if self._response is not None:
                self._response.cancel()
            self._end("interrupted" if self._started else "dropped")

    async def aclose(self) -> None:
        self.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RayTaskError):  # raised on the replica: its own message, not Ray's traceback
        cause = exc.cause
        return str(getattr(cause, "message", None) or cause)
    return f"synthesizer replica lost ({type(exc).__name__})"


class RayBackend:
    """The Backend protocol over a DeploymentHandle of the Synthesizer deployment."""

    def __init__(self, handle: Any, capacity: int, limit: int | None = None) -> None:
        self._handle = handle
        self._capacity = capacity  # workers over every replica the deployment may have
        self._limit = limit  # outstanding calls past which later segments wait here (None: never)
        self._outstanding = 0  # calls made and not ended
        self._held: list[tuple[float, int, _Call]] = []  # later segments waiting here: a heap by deadline
        self._order = itertools.count()  # arrival order among equal deadlines
        self._calls: dict[SegmentJob, _Call] = {}
        self._queued = 0
        self._running = 0
        self._counts = {"completed": 0, "dropped": 0, "interrupted": 0, "failed": 0}
        self._report: dict[str, Any] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._reported = -REPORT_EVERY_S  # time.monotonic() of the last ask

    def _call(self, job: SegmentJob) -> Any:
        wait = job.deadline - time.monotonic()  # clocks differ between hosts: the replica gets seconds left
        stream = self._handle.options(stream=True, multiplexed_model_id=job.voice.load_key)
        return stream.generate.remote(job.voice, job.text, job.params, wait, job.urgent, job.post, job.background)

    @property
    def capacity(self) -> int:
        return self._capacity

    def load(self) -> Load:
        c = self._counts
        return Load(max(self._queued, 0), max(self._running, 0), c["completed"], c["dropped"], c["interrupted"],
                    c["failed"])

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        held = self._limit is not None and not job.urgent and self._outstanding >= self._limit
        call = _Call(self, job, held)
        if held:
            heapq.heappush(self._held, (job.deadline, next(self._order), call))
        else:
            self._outstanding += 1
        self._queued += 1
        self._calls[job] = call
        return call

    def _release(self) -> None:
        """Send held segments, earliest deadline first, while there is room."""
        while self._held and (self._limit is None or self._outstanding < self._limit):
            _, _, call = heapq.heappop(self._held)
            if not call._ended:
                self._outstanding += 1
                call.send()

    def abort(self, job: SegmentJob) -> None:
        call = self._calls.get(job)
        if call is not None:
            call.cancel()

    async def preload(self, voice: VoiceInfo) -> None:
        await self._handle.options(multiplexed_model_id=voice.load_key).preload.remote(voice)

    def report(self) -> dict[str, Any] | None:
        """The latest report of a Synthesizer replica (pid, node, load, sessions); asks for a fresher one."""
        self._watch()
        return self._report

    @property
    def asking(self) -> bool:
        """True while a report is on its way."""
        return self._reporter is not None and not self._reporter.done()

    def health(self) -> BackendHealth:
        report = self.report() or {}
        sessions = tuple(Session(**s) for s in report.get("sessions", ()))
        return BackendHealth(ready=True, workers=self._capacity, loaded_voices=_loaded_voices(report),
                             sessions=sessions, memory_mb=round(sum(s.mb for s in sessions), 1),
                             memory_budget_mb=int(report.get("memory_budget_mb", 0)), load=self.load())

    def loaded_voices(self) -> frozenset[str]:
        return _loaded_voices(self.report() or {})

    def _watch(self) -> None:
        """Ask a replica for a fresh report when the last is older than REPORT_EVERY_S (one ask at a time)."""
        now = time.monotonic()
        if (self._reporter is None or self._reporter.done()) and now - self._reported >= REPORT_EVERY_S:
            try:
                self._reporter = asyncio.get_running_loop().create_task(self._ask())
                self._reported = now
            except RuntimeError:  # no loop yet: the next call asks
                pass

    async def _ask(self) -> None:
        try:
            self._report = await self._handle.report.remote()
        except Exception as exc:  # a replica restarting: keep the last report
            _LOG.debug("synthesizer report failed: %s", exc)

    def close(self) -> None:
        self._limit = 0  # nothing held is sent any more
        for call in list(self._calls.values()):
            call.cancel()
        self._held.clear()
        if self._reporter is not None:
            self._reporter.cancel()


def _loaded_voices(report: dict[str, Any]) -> frozenset[str]:
    """The load keys a replica's report says are loaded."""
    return frozenset(report.get("loaded_voices", ()))

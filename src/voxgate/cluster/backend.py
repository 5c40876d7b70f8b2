"""`RayBackend`: the Backend seam over the Synthesizer deployment's handle (runs in the Gateway).

Every segment job is one streaming call to a Synthesizer replica (`options(stream=True)`), routed to a
replica that already holds the voice (`multiplexed_model_id` = the voice's load key). Ray Serve's refusal
when every replica is full (BackPressureError) becomes `Overloaded`, raised by the first `anext`, which the
dialects pull before they answer, so each answers with its own busy reply; a later segment of a stream
already speaking waits a little for room instead. Closing the iterator cancels the call down to the
replica, whose pool then drops or interrupts the job. A replica that dies mid-stream is an `EngineFailure`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, RequestCancelledError

from voxgate.engines.base import Piece, VoiceInfo
from voxgate.errors import EngineFailure, Overloaded
from voxgate.scheduling.backend import BackendHealth, Chunk, Load, SegmentJob, Session

_LOG = logging.getLogger(__name__)
RETRY_S = 0.05  # seconds between tries of a later segment the replicas had no room for
RETRY_FOR_S = 5.0  # how long a later segment waits for room before its stream fails as busy
REPORT_EVERY_S = 1.0  # seconds a replica report behind health() and /cluster stays fresh


class _Call:
    """The pieces of one job from a replica, as the async iterator the Backend contract promises."""

    def __init__(self, backend: RayBackend, job: SegmentJob) -> None:
        self._backend, self._job = backend, job
        self._response: Any = backend._call(job)
        self._ended = False
        self._started = False

    def __aiter__(self) -> _Call:
        return self

    async def __anext__(self) -> Chunk:
        if self._ended:
            raise StopAsyncIteration
        try:
            piece = await self._first() if not self._started else await self._response.__anext__()
        except StopAsyncIteration:
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

    async def _first(self) -> Piece:
        """The first piece: a refusal for room is Overloaded (first segments) or waited out (later ones)."""
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

    def cancel(self) -> None:
        """Stop the call on its replica (its pool drops or interrupts the job)."""
        if not self._ended:
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

    def __init__(self, handle: Any, capacity: int) -> None:
        self._handle = handle
        self._capacity = capacity  # workers over every replica the deployment may have
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
        call = _Call(self, job)
        self._queued += 1
        self._calls[job] = call
        return call

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
        return BackendHealth(ready=True, workers=self._capacity,
                             loaded_voices=frozenset(report.get("loaded_voices", ())), sessions=sessions,
                             memory_mb=round(sum(s.mb for s in sessions), 1),
                             memory_budget_mb=int(report.get("memory_budget_mb", 0)), load=self.load())

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
        for call in list(self._calls.values()):
            call.cancel()
        if self._reporter is not None:
            self._reporter.cancel()

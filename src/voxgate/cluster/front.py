"""`voxgate tcp-front`: StackFlow and Wyoming over the cluster's HTTP endpoint, with no Ray driver in it.

The front is the single-process core (voices from the same data folder, text, segmentation, levelling, the
TCP dialects) over `HttpBackend`: each segment is one `POST /cluster/segment` to the Gateway, whose answer
streams the raw pieces a Synthesizer replica makes (cluster/pieces.py). A job's per-piece processing (a
registered voice's shift, pitch, tempo) runs here, in a thread, since a function cannot cross HTTP. A 503 is
`Overloaded` (the dialect's busy answer); closing a job's iterator closes its HTTP request, which Serve's proxy
turns into a cancel down to the replica.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voxgate.cluster import pieces
from voxgate.engines.base import Piece, VoiceInfo
from voxgate.errors import EngineFailure, Overloaded
from voxgate.scheduling.backend import BackendHealth, Chunk, Load, SegmentJob
from voxgate.settings import Settings

_LOG = logging.getLogger(__name__)
_DONE = object()


class _Remote:
    """One job's pieces from the cluster; the request starts when the job is created."""

    def __init__(self, backend: HttpBackend, job: SegmentJob) -> None:
        self._backend, self._job = backend, job
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._ended = False

    async def _run(self) -> None:
        job = self._job
        body = {"voice": job.voice.id, "text": job.text, "speed": job.params.speed,
                "noise_scale": job.params.noise_scale, "noise_w_scale": job.params.noise_w_scale,
                "seed": job.params.seed, "timings": job.params.timings, "wait": job.deadline - time.monotonic(),
                "urgent": job.urgent, "background": job.background}
        try:
            async with self._backend.client.stream("POST", "/cluster/segment", json=body) as response:
                if response.status_code == 503:
                    self._queue.put_nowait(Overloaded("every synthesizer replica is busy; retry shortly"))
                    return
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")[:300]
                    self._queue.put_nowait(EngineFailure(f"cluster answered {response.status_code}: {text}"))
                    return
                buffer = bytearray()
                async for data in response.aiter_bytes():
                    buffer += data
                    while (piece := pieces.decode(buffer)) is not None:
                        self._queue.put_nowait(piece)
            self._queue.put_nowait(_DONE)
        except httpx.HTTPError as exc:
            self._queue.put_nowait(EngineFailure(f"cluster unreachable or stream broken: {exc}"))

    def __aiter__(self) -> _Remote:
        return self

    async def __anext__(self) -> Chunk:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _DONE:
            self._end("completed")
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._end("failed")
            raise item
        assert isinstance(item, Piece)
        if self._job.post is not None:
            item = await asyncio.to_thread(self._job.post, item)
        self._job.rate = item.rate
        return item

    def _end(self, how: str) -> None:
        if not self._ended:
            self._ended = True
            self._backend.counts[how] += 1
            self._backend.calls.pop(self._job, None)

    def cancel(self) -> None:
        if not self._ended:
            self._task.cancel()  # closes the HTTP request: Serve cancels the call down to the replica
            self._end("interrupted")

    async def aclose(self) -> None:
        self.cancel()


class HttpBackend:
    """The Backend protocol over a voxgate cluster's HTTP endpoint (its Gateway)."""

    def __init__(self, url: str, api_key: str | None, capacity: int) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers,
                                        timeout=httpx.Timeout(None, connect=10.0))
        self._capacity = capacity
        self.calls: dict[SegmentJob, _Remote] = {}
        self.counts = {"completed": 0, "dropped": 0, "interrupted": 0, "failed": 0}

    @property
    def capacity(self) -> int:
        return self._capacity

    def load(self) -> Load:
        c = self.counts
        return Load(0, len(self.calls), c["completed"], c["dropped"], c["interrupted"], c["failed"])

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        call = self.calls[job] = _Remote(self, job)
        return call

    def abort(self, job: SegmentJob) -> None:
        call = self.calls.get(job)
        if call is not None:
            call.cancel()

    async def preload(self, voice: VoiceInfo) -> None:
        """Nothing to do here: the cluster's replicas load voices (the warm-up's calibration reaches them)."""

    def health(self) -> BackendHealth:
        return BackendHealth(ready=True, workers=self._capacity, loaded_voices=self.loaded_voices(), sessions=(),
                             memory_mb=0.0, memory_budget_mb=0, load=self.load())

    def loaded_voices(self) -> frozenset[str]:
        """None known: the cluster's replicas load voices and this front does not ask them."""
        return frozenset()

    def close(self) -> None:
        for call in list(self.calls.values()):
            call.cancel()


def run_front(settings: Settings, cluster_url: str) -> int:
    """Serve every TCP dialect (StackFlow, Wyoming) on its port over the cluster at `cluster_url` until
    SIGINT/SIGTERM."""
    from voxgate.app import StartupError, create_app, tcp_dialects
    from voxgate.cli_serve import open_tcp_doors

    tables = tcp_dialects(settings)
    if not any(config.port for _, config in tables.values()):
        flags = " and ".join(cls.flag() for cls, _ in tables.values())
        raise StartupError(f"tcp-front: {'both ' if len(tables) == 2 else ''}{flags} are 0: nothing to serve")
    try:
        httpx.get(f"{cluster_url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        raise StartupError(f"--cluster-url {cluster_url}: no voxgate there ({exc})") from None
    doors = open_tcp_doors(settings, refuse_unauthenticated=False)  # the key is the cluster's to check
    key = settings.api_key.get_secret_value() if settings.api_key else None
    backend = HttpBackend(cluster_url, key, settings.workers)
    # Base voices are measured by the cluster's Gateway; the front only speaks.
    app = create_app(settings.model_copy(update={"match_bases": []}),
                     {name: door.sock for name, door in doors.items()}, backend=backend)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with app.router.lifespan_context(app):
            print(f"voxgate tcp-front over {cluster_url}", flush=True)
            for name, door in doors.items():
                print(f"  port {door.port:<7} TCP: {tables[name][0].title}", flush=True)
            await stop.wait()
        await backend.client.aclose()

    asyncio.run(main())
    return 0

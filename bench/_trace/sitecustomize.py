"""Tracing for bench/trace_burst.py, imported at start-up by a server whose PYTHONPATH holds this folder.

Inactive unless VOXGATE_TRACE names a log file and the process is a server (`serve … --data-dir`). Then it
records, in memory and flushed to that file twice a second (one event a line, monotonic seconds):
- `gc START MS GEN COLLECTED`: every cyclic-GC pass (gc.callbacks), its pause and generation;
- `lag START MS`: with VOXGATE_TRACE_LAG=1, how late the event loop ran a callback posted every 5 ms;
- `req START FIRST_BODY_MS`: per /v1/audio/speech request, its arrival and its first body byte;
- `submit|take|post T URGENT JOB`: per pool job, its submission, the moment a worker took it, and its first
  piece; URGENT is 1 for a stream's first segment (only names both today's code and e9a966b have:
  FastAPI.__call__, WorkerPool.submit/_take, Job._post, Job.urgent);
- `snap T objects N freeze F …` on SIGUSR2: len(gc.get_objects()), gc.get_freeze_count() and GC counters.
It changes no behaviour of the server beyond the cost of recording.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("VOXGATE_TRACE") and "serve" in sys.argv and "--data-dir" in sys.argv:
    import gc
    import signal
    import threading
    import time

    _now = time.monotonic
    _events: list[tuple[str, float, float, object, object]] = []
    _out = open(os.environ["VOXGATE_TRACE"], "a", buffering=1)  # open for the life of the process
    _gc_start = [0.0]

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_start[0] = _now()
        else:
            _events.append(("gc", _gc_start[0], _now() - _gc_start[0], info["generation"], info["collected"]))

    gc.callbacks.append(_on_gc)

    def _flush() -> None:
        while True:
            time.sleep(0.5)
            n = len(_events)
            if n:
                chunk = _events[:n]
                del _events[:n]
                _out.write("".join(f"{k} {t:.6f} {d * 1000:.3f} {a} {b}\n" for k, t, d, a, b in chunk))

    threading.Thread(target=_flush, daemon=True, name="trace-flush").start()

    def _snap(*_: object) -> None:
        t = _now()
        count = len(gc.get_objects())
        _out.write(f"snap {t:.6f} objects {count} freeze {gc.get_freeze_count()} took {(_now() - t) * 1000:.1f}ms "
                   f"collections {[s['collections'] for s in gc.get_stats()]} threshold {gc.get_threshold()}\n")

    signal.signal(signal.SIGUSR2, _snap)

    if os.environ.get("VOXGATE_TRACE_LAG") == "1":
        import asyncio
        import asyncio.events

        _set_loop = asyncio.events._set_running_loop
        _lag_started = [False]

        def _lag(loop: asyncio.AbstractEventLoop) -> None:
            while True:
                time.sleep(0.005)
                posted, ran = _now(), threading.Event()

                def hit(posted: float = posted, ran: threading.Event = ran) -> None:
                    _events.append(("lag", posted, _now() - posted, 0, 0))
                    ran.set()

                try:
                    loop.call_soon_threadsafe(hit)
                except RuntimeError:  # the loop closed
                    return
                ran.wait(5)

        def _set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
            _set_loop(loop)
            if loop is not None and not _lag_started[0] and threading.current_thread() is threading.main_thread():
                _lag_started[0] = True
                threading.Thread(target=_lag, args=(loop,), daemon=True, name="trace-lag").start()

        asyncio.events._set_running_loop = _set_running_loop  # uvloop binds asyncio's name at its import
        asyncio._set_running_loop = _set_running_loop  # type: ignore[attr-defined]

    import fastapi

    from voxgate.scheduling import pool as _pool

    _call = fastapi.FastAPI.__call__

    async def _traced_call(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope.get("type") != "http" or scope.get("path") != "/v1/audio/speech":
            return await _call(self, scope, receive, send)
        arrived, first = _now(), [0.0]

        async def traced_send(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.body" and message.get("body") and not first[0]:
                first[0] = _now()
            await send(message)

        try:
            return await _call(self, scope, receive, traced_send)
        finally:
            _events.append(("req", arrived, first[0] - arrived if first[0] else -1.0, 0, 0))

    fastapi.FastAPI.__call__ = _traced_call  # type: ignore[method-assign]
    _submit, _take, _post = _pool.WorkerPool.submit, _pool.WorkerPool._take, _pool.Job._post

    def _traced_submit(self, job):  # type: ignore[no-untyped-def]
        job._trace_posted = False
        _events.append(("submit", _now(), 0.0, int(job.urgent), id(job)))
        return _submit(self, job)

    def _traced_take(self, express):  # type: ignore[no-untyped-def]
        job = _take(self, express)
        if job is not None:
            _events.append(("take", _now(), 0.0, int(job.urgent), id(job)))
        return job

    def _traced_post(self, item):  # type: ignore[no-untyped-def]
        if getattr(self, "_trace_posted", True) is False:
            self._trace_posted = True
            _events.append(("post", _now(), 0.0, int(self.urgent), id(self)))
        return _post(self, item)

    _pool.WorkerPool.submit = _traced_submit  # type: ignore[method-assign]
    _pool.WorkerPool._take = _traced_take  # type: ignore[method-assign]
    _pool.Job._post = _traced_post  # type: ignore[method-assign]
    _out.write(f"start {_now():.6f} threshold {gc.get_threshold()}\n")

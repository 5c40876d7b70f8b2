"""A debugging aid for memory growth: VOXGATE_TRACEMALLOC=<seconds> traces Python allocations.

With the variable set, `voxgate serve` starts tracemalloc and a thread that takes a snapshot every <seconds>:
the first is the baseline, and each later one logs (at WARNING, so it shows at every log level) the traced
total and the source lines whose allocations grew most since the baseline. Python-level growth shows up
by line; growth outside Python (onnxruntime arenas, malloc fragmentation) shows as RSS growing while the
traced total stays flat. Tracing slows the server a lot and a snapshot of a busy server's heap takes minutes
under load (a 10-minute soak on the shared machine never got past its baseline): use it on a quiet machine
with a short mix (`bench/soak.py --dialects ...`), never in production.

VOXGATE_MALLINFO=<seconds> is the cheap half (glibc only): every <seconds> it logs glibc's mallinfo2 — bytes
malloc holds in its heaps, in use and free inside them, and in chunks mmapped on their own. Growth "in use"
is live native memory (onnxruntime's arenas, numpy buffers, a leak); growth "free" is fragmentation that
malloc_trim cannot give back; RSS above malloc's total is memory mapped outside malloc (Python's own arenas).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
import tracemalloc

_LOG = logging.getLogger(__name__)
ENV = "VOXGATE_TRACEMALLOC"
MALLINFO_ENV = "VOXGATE_MALLINFO"
TOP = 15


def _report(baseline: tracemalloc.Snapshot, snapshot: tracemalloc.Snapshot, started: float) -> None:
    stats = snapshot.compare_to(baseline, "lineno")  # (filter_traces would copy every trace twice: too slow)
    total = sum(stat.size for stat in stats) / 2**20
    grown = sum(stat.size_diff for stat in stats) / 2**20
    lines = [f"tracemalloc at {time.monotonic() - started:.0f} s: {total:.1f} MB traced, {grown:+.1f} MB since the "
             f"baseline; the lines that grew most:"]
    for stat in stats[:TOP]:
        frame = stat.traceback[0]
        lines.append(f"  {stat.size_diff / 2**10:+10.1f} KiB {stat.count_diff:+8d} blocks  "
                     f"{frame.filename}:{frame.lineno}")
    _LOG.warning("\n".join(lines))


def _run(interval: float) -> None:
    started = time.monotonic()
    time.sleep(interval)
    baseline = tracemalloc.take_snapshot()
    _LOG.warning("tracemalloc baseline taken at %.0f s", time.monotonic() - started)
    while True:
        time.sleep(interval)
        _report(baseline, tracemalloc.take_snapshot(), started)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallinfo() -> dict[str, float] | None:
    """glibc's heap figures in MB (None where mallinfo2 is missing: glibc < 2.33, musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        call = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    call.restype = _MallInfo2
    info = call()
    mb = 2**20
    return {"heap_mb": info.arena / mb, "in_use_mb": info.uordblks / mb, "free_mb": info.fordblks / mb,
            "mmapped_mb": info.hblkhd / mb, "mmapped_chunks": float(info.hblks)}


def _log_mallinfo(interval: float) -> None:
    import psutil

    process = psutil.Process()
    while True:
        info = mallinfo()
        if info is None:
            return
        _LOG.warning("mallinfo: rss %.0f MB; malloc heaps %.0f MB (in use %.0f, free %.0f), mmapped chunks "
                     "%.0f MB (%d)", process.memory_info().rss / 2**20, info["heap_mb"], info["in_use_mb"],
                     info["free_mb"], info["mmapped_mb"], info["mmapped_chunks"])
        time.sleep(interval)


def _seconds(name: str) -> float:
    try:
        return max(0.0, float(os.environ.get(name, "0")))
    except ValueError:
        return 0.0


def start_from_env() -> bool:
    """Start tracing if VOXGATE_TRACEMALLOC is a positive number of seconds, and the mallinfo log if
    VOXGATE_MALLINFO is; True if either started."""
    interval, every = _seconds(ENV), _seconds(MALLINFO_ENV)
    if every > 0:
        threading.Thread(target=_log_mallinfo, args=(every,), name="voxgate-mallinfo", daemon=True).start()
    if interval > 0:
        tracemalloc.start(1)
        threading.Thread(target=_run, args=(interval,), name="voxgate-tracemalloc", daemon=True).start()
    return interval > 0 or every > 0

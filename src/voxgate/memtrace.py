"""A debugging aid for memory growth: VOXGATE_TRACEMALLOC=<seconds> traces Python allocations.

With the variable set, `voxgate serve` starts tracemalloc and a thread that takes a snapshot every <seconds>:
the first is the baseline, and each later one logs (at WARNING, so it shows at every log level) the traced
total and the source lines whose allocations grew most since the baseline. Python-level growth shows up
by line; growth outside Python (onnxruntime arenas, malloc fragmentation) shows as RSS growing while the
traced total stays flat. Tracing slows the server a lot and a snapshot of a busy server's heap takes minutes
under load (a 10-minute soak on the shared machine never got past its baseline): use it on a quiet machine
with a short mix (`bench/soak.py --dialects ...`), never in production.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tracemalloc

_LOG = logging.getLogger(__name__)
ENV = "VOXGATE_TRACEMALLOC"
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


def start_from_env() -> bool:
    """Start tracing if VOXGATE_TRACEMALLOC is a positive number of seconds; True if it started."""
    try:
        interval = float(os.environ.get(ENV, "0"))
    except ValueError:
        return False
    if interval <= 0:
        return False
    tracemalloc.start(1)
    threading.Thread(target=_run, args=(interval,), name="voxgate-tracemalloc", daemon=True).start()
    return True

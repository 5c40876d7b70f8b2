#!/usr/bin/env python3
"""Where the event loop's CPU goes under load: a CPU-clock sampling profile of a server's main thread.

    python bench/loop_profile.py [--src CHECKOUT] [--clients 8] [--per-client 40] [--voice hibari:heart]
                                 [--out bench/results/loop_profile.txt] [--top 40] [server flags...]

py-spy counts a thread's samples while it is running *or runnable*: on a saturated 2-core machine the loop
thread spends much of its time runnable (woken, waiting for a core or the GIL), so its py-spy profile showed
half its samples in epoll. This profiles CPU time only: the server runs under this script (`--serve`), which
arms a POSIX timer on the main thread's own CPU clock (CLOCK_THREAD_CPUTIME_ID, signal sent to that thread);
each expiry records the Python stack where the thread was running. The kernel checks thread CPU timers on its
tick, so samples come at most once per tick of the loop's running time: an unbiased sample of where its CPU
went, a few hundred per minute of load. Time in C code (a syscall, a regex) lands on the Python line after it.
Writes collapsed stacks ("frame;frame;... count") and prints the top inclusive and self frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CLOCK_THREAD_CPUTIME_ID = 3
SIGEV_THREAD_ID = 4
CPU_INTERVAL_NS = 250_000  # asked for; the kernel's tick bounds what it delivers


class _SigEvent(ctypes.Structure):
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("tid", ctypes.c_int), ("pad", ctypes.c_int * 11)]


class _Timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]


class _ITimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


def serve(out: str, argv: list[str]) -> int:
    """Run `voxgate serve` in this process, its main thread sampled between SIGUSR1 and SIGUSR2 (then written)."""
    from voxgate.cli import main as voxgate_main

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    timer = ctypes.c_void_p()
    counts: collections.Counter[str] = collections.Counter()

    def stack(frame: object) -> str:
        names = []
        while frame is not None:
            code = frame.f_code  # type: ignore[attr-defined]
            names.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")  # type: ignore[attr-defined]
            frame = frame.f_back  # type: ignore[attr-defined]
        return ";".join(reversed(names))

    def arm(ns: int) -> None:
        spec = _ITimerspec(_Timespec(0, ns), _Timespec(0, ns))
        if libc.timer_settime(timer, 0, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timer_settime")

    def stop(*_: object) -> None:
        arm(0)
        Path(out).write_text("".join(f"{k} {v}\n" for k, v in counts.items()))

    signal.signal(signal.SIGPROF, lambda _sig, frame: counts.update((stack(frame),)))
    event = _SigEvent(signo=signal.SIGPROF, notify=SIGEV_THREAD_ID, tid=threading.get_native_id())
    if libc.timer_create(CLOCK_THREAD_CPUTIME_ID, ctypes.byref(event), ctypes.byref(timer)) != 0:
        raise OSError(ctypes.get_errno(), "timer_create")
    signal.signal(signal.SIGUSR1, lambda *_: (counts.clear(), arm(CPU_INTERVAL_NS)))
    signal.signal(signal.SIGUSR2, stop)
    return voxgate_main(["serve", *argv])


def summary(path: Path, top: int) -> list[str]:
    """The top inclusive and self frames of a collapsed-stack file, as shares of its samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += int(n)
        inclusive.update({f: int(n) for f in set(frames)})
        own[stack.split(";")[-1]] += int(n)
    lines = [f"{total} samples of the event loop thread's CPU", "", "| inclusive | frame |", "|---:|---|"]
    lines += [f"| {100 * c / total:.1f}% | {f} |" for f, c in inclusive.most_common(top)]
    lines += ["", "| self | frame (line) |", "|---:|---|"]
    lines += [f"| {100 * c / total:.1f}% | {f} |" for f, c in own.most_common(top // 2)]
    return lines


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=HERE, help="a checkout whose src/ the server runs")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--voice", default="hibari:heart")
    parser.add_argument("--out", type=Path, default=HERE / "bench" / "results" / "loop_profile.txt")
    parser.add_argument("--top", type=int, default=40)
    args, flags = parser.parse_known_args()
    import httpx
    import psutil

    import bench_server as bs
    from _server import drain, stop, wait_ready

    bs.ENGINE["name"] = "hibari" if args.voice.startswith("hibari") else "piper"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="voxgate-loop-") as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOXGATE_MATCH_BASES": json.dumps([args.voice]),
               "PYTHONPATH": os.pathsep.join(p for p in (str(args.src.resolve() / "src"), os.environ.get(
                   "PYTHONPATH", "")) if p)}
        cmd = [sys.executable, __file__, "--serve", str(args.out.resolve()), "--host", "127.0.0.1", "--port", "0",
               "--data-dir", tmp, "--wyoming-port", "0", "--stackflow-port", "0", "--default-voice", args.voice,
               *flags]
        log = Path(tmp) / "server.log"
        with log.open("w") as err:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        first: queue.Queue[str] = queue.Queue()
        threading.Thread(target=drain, args=(process, first), daemon=True).start()
        try:
            url = wait_ready(process, first, log)
            bs.bases_measured(url)

            async def load(per_client: int) -> float:
                plan = dataclasses.replace(bs.QUICK, per_client=per_client, cap_s=1800.0)
                limits = httpx.Limits(max_connections=args.clients + 2)
                async with httpx.AsyncClient(timeout=300.0, limits=limits) as client:
                    samples, _ = await bs._drive(client, url, args.clients, plan)
                return sum(s.audio_s for s in samples)

            asyncio.run(load(1))  # warm
            loop_thread = psutil.Process(process.pid)

            def loop_cpu() -> float:
                return next(t.user_time + t.system_time for t in loop_thread.threads() if t.id == process.pid)

            before = loop_cpu()
            os.kill(process.pid, signal.SIGUSR1)
            time.sleep(0.2)
            audio = asyncio.run(load(args.per_client))
            os.kill(process.pid, signal.SIGUSR2)
            time.sleep(1.0)
            print(f"{audio:.0f} audio s; event loop thread {1000 * (loop_cpu() - before) / audio:.3f} ms CPU per "
                  f"audio s (with sampling)\n")
        finally:
            stop(process)
    print("\n".join(summary(args.out, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

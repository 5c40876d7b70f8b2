#!/usr/bin/env python3
"""CPU seconds per audio second: raw hibari (2 × 1-thread sessions) against voxgate servers, in one run.

    python bench/cpu_per_audio.py [--src CHECKOUT ...] [--rounds 4] [--clients 8] [--per-client 2]
                                  [--voice hibari:heart] [--profile SECONDS] [server flags...]

Wall-clock throughput moves with whatever else runs on a shared machine; CPU time spent per second of audio
hardly does, so it is the figure that shows work a server adds over the raw engine. Each round measures raw
(this process's CPU over bench_server's parallel run of the medium texts, nothing else running in it), then
each server (its process's CPU over 8 clients speaking the same texts as bench_server's throughput block; the
clients' own CPU is reported apart), the order of the servers swapped every round. Each --src is a checkout
whose src/ a server runs (default: this one). --profile N records N seconds of the first server's load run
with py-spy (if installed) into bench/results/. The server's CPU is also split by thread: the event loop's, the
two busiest other threads' (the pool's workers, running the engine: what raw's two threads do) and the kernel's
share of all of it (system time).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

import bench_server as bs
from _server import stop
from compare_checkouts import Side, start

HERE = Path(__file__).resolve().parents[1]


def raw_round(voices: list, texts: list[str]) -> tuple[float, float, float]:
    """(CPU seconds per audio second of raw 2 × 1 thread, audio seconds per wall second, system CPU seconds per
    audio second)."""
    me = psutil.Process()
    cpu0, sys0 = sum(me.cpu_times()[:2]), me.cpu_times().system
    audio, wall = bs.parallel(voices, texts)
    return (sum(me.cpu_times()[:2]) - cpu0) / audio, audio / wall, (me.cpu_times().system - sys0) / audio


def thread_cpu(server: psutil.Process) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each of the server's threads, by thread id (the main thread's, where the
    event loop runs, is the process id)."""
    return {t.id: (t.user_time, t.system_time) for t in server.threads()}


@dataclasses.dataclass(frozen=True)
class Round:
    """One server load run, each CPU figure in seconds per audio second."""

    cpu: float  # the server process
    clients: float  # this process (the load's clients)
    speed: float  # audio seconds per wall second
    loop: float  # the event loop's thread
    workers: float  # the `workers` busiest other threads (the pool's workers, which run the engine)
    system: float  # kernel time of every thread of the server (page faults, sockets, futexes)


def server_round(side: Side, clients: int, per_client: int, workers: int = 2) -> Round:
    """The CPU a server spent on one load run, per audio second, whole and by thread."""
    server, me = psutil.Process(side.pid), psutil.Process()
    s0, c0, t0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2]), thread_cpu(server)
    plan = dataclasses.replace(bs.QUICK, per_client=per_client, cap_s=1800.0)

    async def run() -> tuple[float, float]:
        async with httpx.AsyncClient(timeout=300.0, limits=httpx.Limits(max_connections=clients + 2)) as client:
            t0 = time.perf_counter()
            samples, _ = await bs._drive(client, side.url, clients, plan)
            return sum(s.audio_s for s in samples), time.perf_counter() - t0

    audio, wall = asyncio.run(run())
    t1 = thread_cpu(server)
    spent = {tid: (user - t0.get(tid, (0.0, 0.0))[0], system - t0.get(tid, (0.0, 0.0))[1])
             for tid, (user, system) in t1.items()}
    loop = sum(spent.pop(server.pid, (0.0, 0.0)))
    busiest = sorted((sum(v) for v in spent.values()), reverse=True)[:workers]
    return Round((sum(server.cpu_times()[:2]) - s0) / audio, (sum(me.cpu_times()[:2]) - c0) / audio, audio / wall,
                 loop / audio, sum(busiest) / audio,
                 (sum(t[1] for t in t1.values()) - sum(t[1] for t in t0.values())) / audio)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, action="append", help="a checkout whose src/ a server runs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--voice", default="hibari:heart")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds of the first server's load")
    args, flags = parser.parse_known_args()
    bs.ENGINE["name"] = "hibari" if args.voice.startswith("hibari") else "piper"
    sides = [Side(f"{n}:{p.resolve().name}", p.resolve()) for n, p in enumerate(args.src or [HERE])]
    flags = ["--default-voice", args.voice, *flags]
    voices = [bs.tuned_voice(1), bs.tuned_voice(1)]
    texts = [bs.MEDIUM[i % len(bs.MEDIUM)] for i in range(args.per_client * args.clients // 2)]
    bs.parallel(voices, texts[:2])  # warm
    raw: list[tuple[float, float, float]] = []
    got: dict[str, list[Round]] = {s.name: [] for s in sides}
    procs = []
    with tempfile.TemporaryDirectory(prefix="voxgate-cpu-") as tmp:
        try:
            for side in sides:
                procs.append(start(side, args.voice, flags, Path(tmp)))
                server_round(side, args.clients, 1)  # warm
            for n in range(args.rounds):
                raw.append(raw_round(voices, texts))
                for side in (sides if n % 2 == 0 else sides[::-1]):
                    spy = None
                    spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
                    if args.profile and side is sides[0] and n == 0 and spy_bin:
                        out = HERE / "bench" / "results" / f"cpu_per_audio_{side.src.name}.txt"
                        spy = subprocess.Popen([spy_bin, "record", "-p", str(side.pid), "-d", str(int(args.profile)),
                                                "-r", "200", "-f", "raw", "--threads", "--nonblocking",
                                                "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    got[side.name].append(server_round(side, args.clients, args.per_client))
                    if spy is not None:
                        spy.wait()
                print(f"round {n}: raw {raw[-1][0] * 1000:.2f} ms/s (system {raw[-1][2] * 1000:.2f}); " + "; ".join(
                    f"{k} {v[-1].cpu * 1000:.2f} ms/s (loop {v[-1].loop * 1000:.2f}, workers "
                    f"{v[-1].workers * 1000:.2f}, system {v[-1].system * 1000:.2f}, clients {v[-1].clients * 1000:.2f})"
                    for k, v in got.items()),
                    file=sys.stderr, flush=True)
        finally:
            for proc in procs:
                stop(proc)
    raw_cpu = float(np.median([r[0] for r in raw]))
    print(f"`python bench/cpu_per_audio.py {' '.join(sys.argv[1:])}`\n")
    print("| side | CPU ms per audio s (median of rounds) | × raw | per round | event loop thread ms/s "
          "| 2 busiest other threads ms/s | system ms/s | client CPU ms/s | audio s/s | rounds below side 0 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| raw 2 × 1 thread | {raw_cpu * 1000:.2f} | 1.00 | {', '.join(f'{r[0] * 1000:.2f}' for r in raw)} | – | "
          f"– | {np.median([r[2] for r in raw]) * 1000:.2f} | – | {np.median([r[1] for r in raw]):.1f} | – |")
    first = got[sides[0].name]
    for side in sides:
        rows = got[side.name]
        ratios = [r.cpu / w[0] for r, w in zip(rows, raw, strict=True)]
        below = sum(r.cpu < f.cpu for r, f in zip(rows, first, strict=True))
        loop_below = sum(r.loop < f.loop for r, f in zip(rows, first, strict=True))

        def med(values: list[float]) -> str:
            return f"{float(np.median(values)) * 1000:.2f}"
        print(f"| {side.name} ({side.module}) | {med([r.cpu for r in rows])} | {np.median(ratios):.3f} | "
              f"{', '.join(f'{r.cpu * 1000:.2f}' for r in rows)} | {med([r.loop for r in rows])} | "
              f"{med([r.workers for r in rows])} | {med([r.system for r in rows])} | "
              f"{med([r.clients for r in rows])} | "
              f"{np.median([r.speed for r in rows]):.1f} | "
              f"{'–' if side is sides[0] else f'CPU {below}/{len(rows)}, loop {loop_below}/{len(rows)}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

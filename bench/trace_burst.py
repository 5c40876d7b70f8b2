#!/usr/bin/env python3
"""What happens inside two checkouts' servers during compare_checkouts' 8-client bursts, counted per burst.

    python bench/trace_burst.py OTHER_CHECKOUT [--this CHECKOUT] [--rounds 4] [--lag] [--json PATH]

Runs both servers as compare_checkouts.py does (same voice, warm-up, alone series, then N clients × medium
texts, order swapped every round), each with bench/_trace/sitecustomize.py on its PYTHONPATH, so the old
checkout needs no change. Per side and burst it reports: cyclic-GC passes per generation (count, summed and
longest pause), the CPU seconds of the event-loop thread and of all other threads (/proc, which the machine's
load hardly moves). Over all bursts: the server's own time to each request's first body byte, and for each
stream's first segment its time queued (submitted → taken by a worker) and to its first piece. With --lag, also
how late the event loop ran a callback posted every 5 ms. After the warm-up it records len(gc.get_objects())
and the frozen count. Wall-clock columns move with the machine's load; the counts and CPU seconds are the
figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import compare_checkouts as cc

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> tuple[float, float]:
    """CPU seconds of (the main thread, which runs the event loop; every other thread) of `pid`."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        if int(tid) == pid:
            main += cpu
        else:
            other += cpu
    return main, other


def _events(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def _report(name: str, log: Path, bursts: list[dict[str, float | list[float]]]) -> list[str]:
    events = _events(log)
    gcs = [(float(e[1]), float(e[2]), int(e[3])) for e in events if e[0] == "gc"]
    lags = [(float(e[1]), float(e[2])) for e in events if e[0] == "lag"]
    requests = [(float(e[1]), float(e[2])) for e in events if e[0] == "req"]
    jobs: dict[str, dict[str, float]] = {}
    for e in events:
        if e[0] in ("submit", "take", "post") and e[3] == "1":  # a stream's first segment
            jobs.setdefault(e[4], {})[e[0]] = float(e[1])
    lines = [f"### {name}", ""] + [" ".join(e) for e in events if e[0] == "snap"] + [
        "", "| burst | p95 first audio | GC gen 0 / 1 / 2: count, sum ms, max ms | loop-thread CPU s | other CPU s |"
        + (" loop lag p95 / max ms |" if lags else ""), "|---|---|---|---|---|" + ("---|" if lags else "")]
    first_byte: list[float] = []
    waits: list[float] = []
    synths: list[float] = []
    for n, b in enumerate(bursts):
        t0, t1 = float(b["t0"]), float(b["t1"])  # type: ignore[arg-type]
        cells = []
        for gen in (0, 1, 2):
            pauses = [d for t, d, g in gcs if t0 <= t <= t1 and g == gen]
            cells.append(f"{len(pauses)}, {sum(pauses):.1f}, {max(pauses, default=0):.1f}")
        lag = [d for t, d in lags if t0 <= t <= t1]
        lines.append(f"| {n + 1} | {cc._p(b['firsts'], 95):.0f} ms | {' / '.join(cells)} | {b['loop_cpu']:.2f} | "  # type: ignore[arg-type]
                     f"{b['other_cpu']:.1f} |" + (f" {cc._p(lag, 95):.1f} / {max(lag):.1f} |" if lag else ""))
        first_byte += [ms for t, ms in requests if t0 <= t <= t1 and ms >= 0]
        for job in jobs.values():
            if {"submit", "take", "post"} <= job.keys() and t0 <= job["submit"] <= t1:
                waits.append((job["take"] - job["submit"]) * 1000)
                synths.append((job["post"] - job["take"]) * 1000)
    lines += ["", f"{len(first_byte)} requests, {len(waits)} first segments: milliseconds", "",
              "| | server's first body byte | first segment queued (submit → worker) | first piece (worker → piece) |",
              "|---|---|---|---|"]
    for label, q in (("median", 50), ("p95", 95), ("max", 100)):
        cells = [f"{cc._p(v, q):.1f}" if v else "-" for v in (first_byte, waits, synths)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path)
    parser.add_argument("--this", type=Path, default=HERE.parent)
    parser.add_argument("--voice", default="hibari:heart")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--lag", action="store_true", help="also sample event-loop lag every 5 ms")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "trace_burst.json")
    args = parser.parse_args()
    sides = [cc.Side(args.other.resolve().name, args.other.resolve()), cc.Side(args.this.resolve().name,
                                                                              args.this.resolve())]
    bursts: dict[str, list[dict[str, float | list[float]]]] = {s.name: [] for s in sides}
    processes = []
    with tempfile.TemporaryDirectory(prefix="voxgate-trace-") as tmp:
        logs = {s.name: Path(tmp) / f"{s.name}.trace" for s in sides}
        try:
            for side in sides:
                extra = {"VOXGATE_TRACE": str(logs[side.name]), "VOXGATE_TRACE_LAG": "1" if args.lag else "0"}
                processes.append(cc.start(side, args.voice, [], Path(tmp), extra, (HERE / "_trace",)))
            for side in sides:
                cc.alone(side.url, args.voice, 3)
                asyncio.run(cc.loaded(side.url, args.clients, 1))
                os.kill(side.pid, signal.SIGUSR2)  # objects after warm-up
            for n in range(args.rounds):
                for side in (sides if n % 2 == 0 else sides[::-1]):
                    cc.alone(side.url, args.voice, 15, cc.WARMUPS)
                    (main0, other0), t0 = _threads(side.pid), time.monotonic()
                    rate, firsts = asyncio.run(cc.loaded(side.url, args.clients, args.per_client))
                    t1, (main1, other1) = time.monotonic(), _threads(side.pid)
                    bursts[side.name].append({"t0": t0, "t1": t1, "rate": rate, "firsts": firsts,
                                              "loop_cpu": main1 - main0, "other_cpu": other1 - other0,
                                              "load": os.getloadavg()[0]})
                    print(f"round {n + 1} {side.name}: p95 {cc._p(firsts, 95):.0f} ms, loop CPU {main1 - main0:.2f} s,"
                          f" other {other1 - other0:.1f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            time.sleep(1.0)  # the last events flushed
        finally:
            for process in processes:
                cc.stop(process)
        loads = [b["load"] for s in bursts.values() for b in s]
        lines = [f"`python {' '.join(sys.argv)}`", "", f"1-min load average {min(loads):.1f}–{max(loads):.1f}", ""]
        for side in sides:
            lines += [*_report(side.name, logs[side.name], bursts[side.name]), ""]
        print("\n".join(lines))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bursts": bursts, "events": {s.name: _events(logs[s.name]) for s in sides}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Two checkouts' servers in one run, interleaved: first audio alone, and first audio and throughput under load.

    python bench/compare_checkouts.py OTHER_CHECKOUT [--this CHECKOUT] [--voice hibari:heart] [--rounds 10]
                                      [--sequential 15] [--clients 8] [--per-client 4] [--json PATH]
                                      [server flags...]

A before/after of a change on a shared machine: both servers run side by side (OTHER_CHECKOUT's `src/`, e.g.
`git worktree add ../base <commit>`, and this checkout's or --this's), with this venv's Python, so only the
source differs. Each round measures one server, then the other, the order swapped every round: one-sentence pcm
requests one at a time on a bare socket (first body byte), then N clients each making back-to-back requests
of bench_server's medium texts over httpx (audio seconds per wall second; first byte of every request). The
idle server waits meanwhile. Every phase records the CPU the rest of the machine used (cores), since other
load moves these figures; the paired per-round differences are what to read. Both servers are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

import bench_server as bs
from _server import drain, stop, wait_ready
from _socket_client import Connection

HERE = Path(__file__).resolve().parents[1]
WARMUPS = 2  # untimed one-at-a-time requests before each timed series (after the other server's load run)
READ_TIMEOUT_S = 300.0  # a loaded shared machine can starve a niced server for a long while between chunks


@dataclass
class Side:
    """One checkout's server and what was measured on it, round by round."""

    name: str
    src: Path
    url: str = ""
    pid: int = 0
    module: str = ""  # where its voxgate package was imported from (proves which source runs)
    alone_ms: list[list[float]] = field(default_factory=list)  # per round: first audio, one request at a time
    load_first_ms: list[list[float]] = field(default_factory=list)  # per round: first audio under load
    throughput: list[float] = field(default_factory=list)  # per round: audio seconds per wall second
    other_cores: list[float] = field(default_factory=list)  # per round: CPU of everything else, in cores
    # The server's own CPU (user + system seconds of its process), which the machine's load hardly moves:
    alone_cpu_ms: list[float] = field(default_factory=list)  # per round: per one-sentence request
    load_cpu: list[float] = field(default_factory=list)  # per round: CPU seconds per audio second under load


def _env(src: Path, voice: str, extra: dict[str, str] | None = None,
         path: tuple[Path, ...] = ()) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOXGATE_MATCH_BASES": json.dumps([voice]), **(extra or {})}
    parts = [str(src / "src"), env.get("PYTHONPATH", ""), *map(str, path)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def start(side: Side, voice: str, flags: list[str], data: Path, extra: dict[str, str] | None = None,
          path: tuple[Path, ...] = ()) -> subprocess.Popen[str]:
    """Start `side`'s server on a free loopback port (`extra` environment, `path` after its src on PYTHONPATH);
    the caller stops it."""
    env = _env(side.src, voice, extra, path)
    side.module = subprocess.run([sys.executable, "-c", "import voxgate; print(voxgate.__file__)"], env=env,
                                 capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    if not side.module.startswith(str(side.src / "src")):
        raise RuntimeError(f"{side.name}: voxgate imported from {side.module}, not {side.src / 'src'}")
    log = data / f"{side.name}.log"
    cmd = [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data / side.name), "--wyoming-port", "0", "--stackflow-port", "0", *flags]
    with log.open("w") as err:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    first: queue.Queue[str] = queue.Queue()
    threading.Thread(target=drain, args=(process, first), daemon=True).start()
    try:
        side.url, side.pid = wait_ready(process, first, log), process.pid
        bs.bases_measured(side.url)
    except BaseException:  # not handed to the caller yet: stopped here, by its PID
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    return process


def alone(url: str, voice: str, count: int, warmups: int = 2) -> list[float]:
    """First body byte of `count` one-sentence pcm requests, one at a time, in milliseconds."""
    with Connection(url, timeout=READ_TIMEOUT_S) as connection:
        request = connection.prepare("/v1/audio/speech", {"model": "tts-1", "voice": voice, "input": bs.ONE,
                                                          "response_format": "pcm"})
        times = []
        for n in range(warmups + count):
            answer = connection.request(request)
            if answer.status != 200 or answer.first_s is None:
                raise RuntimeError(f"HTTP {answer.status}: {answer.body[:300]!r}")
            if n >= warmups:
                times.append(answer.first_s * 1000)
    return times


async def loaded(url: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    """`clients` clients each making `per_client` back-to-back medium requests: (audio s per s, first ms)."""
    plan = dataclasses.replace(bs.QUICK, per_client=per_client, cap_s=1800.0)  # only _drive's fields are read
    async with httpx.AsyncClient(timeout=READ_TIMEOUT_S,
                                 limits=httpx.Limits(max_connections=clients + 2)) as client:
        start = time.perf_counter()
        samples, capped = await bs._drive(client, url, clients, plan)
        wall = time.perf_counter() - start
    if capped:
        raise RuntimeError(f"the load run at {url} hit its time cap")
    return sum(s.audio_s for s in samples) / wall, [s.first_byte * 1000 for s in samples]


def _busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def measure(side: Side, voice: str, args: argparse.Namespace, pids: list[int]) -> None:
    """One round on one server: the series alone, then the load run."""
    busy0, ours0, t0 = _busy(), _cpu(pids), time.perf_counter()
    own0 = _cpu([side.pid])
    side.alone_ms.append(alone(side.url, voice, args.sequential, WARMUPS))
    own1 = _cpu([side.pid])
    side.alone_cpu_ms.append((own1 - own0) / (args.sequential + WARMUPS) * 1000)
    start = time.perf_counter()
    rate, firsts = asyncio.run(loaded(side.url, args.clients, args.per_client))
    side.load_cpu.append((_cpu([side.pid]) - own1) / (rate * (time.perf_counter() - start)))
    side.throughput.append(rate)
    side.load_first_ms.append(firsts)
    side.other_cores.append(max(0.0, (_busy() - busy0) - (_cpu(pids) - ours0)) / (time.perf_counter() - t0))


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def summary(sides: list[Side], args: argparse.Namespace, command: str, loads: list[float]) -> str:
    """A markdown block: pooled figures per side, then the per-round paired differences (second − first)."""
    base, head = sides
    rows = [f"`{command}`", "",
            f"{args.rounds} rounds, order swapped every round; voice {args.voice}; 1-min load average "
            f"{min(loads):.1f}–{max(loads):.1f}; other processes' CPU per phase (cores) "
            f"{min(base.other_cores + head.other_cores):.2f}–{max(base.other_cores + head.other_cores):.2f}", "",
            f"| figure | {base.name} | {head.name} | {head.name} − {base.name}, per round: median (range) |",
            "|---|---|---|---|"]

    def row(label: str, per_round_b: list[float], per_round_h: list[float], pooled_b: float, pooled_h: float,
            unit: str) -> None:
        diffs = [h - b for b, h in zip(per_round_b, per_round_h, strict=True)]
        rows.append(f"| {label} | {pooled_b:.1f} {unit} | {pooled_h:.1f} {unit} | {np.median(diffs):+.1f} "
                    f"({min(diffs):+.1f} … {max(diffs):+.1f}), higher in {sum(d > 0 for d in diffs)}/{len(diffs)} |")

    def flat(series: list[list[float]]) -> list[float]:
        return [x for part in series for x in part]

    row("first audio alone, median", [float(np.median(r)) for r in base.alone_ms],
        [float(np.median(r)) for r in head.alone_ms], float(np.median(flat(base.alone_ms))),
        float(np.median(flat(head.alone_ms))), "ms")
    row(f"throughput at {args.clients} clients", base.throughput, head.throughput,
        float(np.median(base.throughput)), float(np.median(head.throughput)), "audio-s/s")
    row(f"first audio at {args.clients} clients, median", [_p(r, 50) for r in base.load_first_ms],
        [_p(r, 50) for r in head.load_first_ms], _p(flat(base.load_first_ms), 50), _p(flat(head.load_first_ms), 50),
        "ms")
    row(f"first audio at {args.clients} clients, p95", [_p(r, 95) for r in base.load_first_ms],
        [_p(r, 95) for r in head.load_first_ms], _p(flat(base.load_first_ms), 95), _p(flat(head.load_first_ms), 95),
        "ms")
    row("server CPU per request alone", base.alone_cpu_ms, head.alone_cpu_ms, float(np.median(base.alone_cpu_ms)),
        float(np.median(head.alone_cpu_ms)), "ms")
    row(f"server CPU per audio second at {args.clients} clients", [x * 1000 for x in base.load_cpu],
        [x * 1000 for x in head.load_cpu], float(np.median(base.load_cpu)) * 1000,
        float(np.median(head.load_cpu)) * 1000, "ms")
    rows += ["", "Pooled columns: every request of every round (throughput and CPU: the median round). "
             f"{base.name}: {base.module}; {head.name}: {head.module}"]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the other checkout (its src/ runs the first server)")
    parser.add_argument("--this", type=Path, default=HERE, help="the checkout of the second server (default: this)")
    parser.add_argument("--voice", default="hibari:heart")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sequential", type=int, default=15, help="one-at-a-time requests per round and server")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=4, help="requests per client per load run")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="start no round after this many minutes (0: no limit; the rounds done are reported)")
    parser.add_argument("--json", type=Path, default=HERE / "bench" / "results" / "compare.json")
    args, flags = parser.parse_known_args()
    other, this = args.other.resolve(), args.this.resolve()
    if other == this:
        parser.error("both checkouts are the same")
    sides = [Side(other.name, other), Side(this.name, this)]
    command = shlex.join(["python", *sys.argv])
    processes: list[subprocess.Popen[str]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="voxgate-compare-") as tmp:
        try:
            for side in sides:
                processes.append(start(side, args.voice, flags, Path(tmp)))
            pids = [p.pid for p in processes] + [os.getpid()]
            for side in sides:  # warm both the way the rounds run them
                alone(side.url, args.voice, 3)
                asyncio.run(loaded(side.url, args.clients, 1))
            began = time.monotonic()
            for n in range(args.rounds):
                if args.max_minutes and time.monotonic() - began > args.max_minutes * 60:
                    print(f"stopping after {n} rounds: --max-minutes", file=sys.stderr)
                    args.rounds = n
                    break
                loads.append(os.getloadavg()[0])
                for side in (sides if n % 2 == 0 else sides[::-1]):
                    measure(side, args.voice, args, pids)
                print(f"round {n + 1}/{args.rounds}: load {loads[-1]:.1f}; " + "; ".join(
                    f"{s.name}: alone {np.median(s.alone_ms[-1]):.1f} ms, {args.clients} clients "
                    f"{s.throughput[-1]:.1f} audio-s/s p95 {_p(s.load_first_ms[-1], 95):.0f} ms, "
                    f"CPU {s.alone_cpu_ms[-1]:.0f} ms/request, {s.load_cpu[-1] * 1000:.0f} ms/audio-s, "
                    f"others {s.other_cores[-1]:.2f} cores" for s in sides), file=sys.stderr, flush=True)
        finally:
            for process in processes:
                stop(process)
    text = summary(sides, args, command, loads)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "load_average": loads,
                                     "sides": [asdict(s) | {"src": str(s.src)} for s in sides]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

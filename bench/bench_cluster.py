"""Single process vs the Ray Serve cluster mode on this machine, in one run.

1. Proxy overhead on first audio: the same one-sentence request, one at a time, to `voxgate serve` (one
   worker) and to `voxgate serve --ray-address` (a Gateway and one Synthesizer replica of one worker, on
   two local Ray nodes): median time to the first audio byte, and the difference (target ≤ 40 ms).
2. Throughput with 1 and 2 Synthesizer replicas of 1 CPU each (one per node): CLIENTS streams in a loop for
   SECONDS, audio seconds made per wall second (target: 2 replicas ≥ 1.8× one).

    .venv/bin/python bench/bench_cluster.py [--requests 15] [--clients 4] [--seconds 20]

Each throughput phase also says where the CPU went (bench/_cpu.py: CPU seconds of each process this script
started — replicas, Gateway, Serve's proxy and controller, raylets, GCS, Ray's agents, the clients — and of the
whole machine), and the verdict says whether this machine can judge the 2-replica target at all: the replicas'
share of the cores, and their efficiency (audio seconds per replica CPU second), which does not depend on it.

    .venv/bin/python bench/bench_cluster.py --compare whole,sliced [--rounds 2] [--seconds 20]

compares deployments on one cluster instead, 2 replicas each, taking turns ROUNDS times (so a machine whose
load changes weighs on each alike): throughput, efficiency and the CPU the rest of voxgate and Ray took per
request. Variants: see VARIANTS.

The Ray nodes are voxgate.cluster.local's, as in tests/cluster: their own temp dir and free ports (the client
server off 10001), stopped by the PIDs this script started; the Gateway is pinned to the head node, where
Serve's proxy runs, and the replicas take one node each.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from voxgate.cluster.local import Deployed, LocalCluster, free_ports

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cpu import CpuMeter, Split
from _server import drain, stop, wait_ready

VOICE = "en_US-joe-medium"
SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west."
COMMON = ["--engines", "piper", f"--default-voice={VOICE}", "--workers=1", "--threads=1", "--solo-threads=1",
          "--stackflow-port=0", "--wyoming-port=0"]


def first_audio(urls: list[str], requests: int) -> list[list[float]]:
    """Seconds to the first audio byte of `requests` one-sentence streams per URL, one request at a time,
    the URLs taking turns (so a machine whose load changes weighs on both alike); one warm-up each first."""
    body = {"model": "tts-1", "input": SENTENCE, "voice": VOICE, "response_format": "pcm"}
    times: list[list[float]] = [[] for _ in urls]
    with httpx.Client(timeout=120) as client:
        for i in range(requests + 1):
            for url, into in zip(urls, times, strict=True):
                start = time.perf_counter()
                with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
                    response.raise_for_status()
                    chunks = response.iter_bytes()
                    next(chunks)
                    elapsed = time.perf_counter() - start
                    for _ in chunks:
                        pass
                if i:
                    into.append(elapsed)
    return times


def throughput(url: str, clients: int, seconds: float) -> tuple[float, int]:
    """Audio seconds made per wall second by `clients` looping streams (24 kHz 16-bit PCM), and the requests
    answered."""
    body = {"model": "tts-1", "input": SENTENCE, "voice": VOICE, "response_format": "pcm"}
    made = [0] * clients
    answered = [0] * clients
    end = time.monotonic() + seconds

    def loop(i: int) -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < end:
                response = client.post(f"{url}/v1/audio/speech", json=body)
                if response.status_code == 200:
                    made[i] += len(response.content)
                    answered[i] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(made) / 2 / 24000 / (time.monotonic() - start), sum(answered)


@dataclass
class Phase:
    """One throughput phase: audio seconds per second, requests answered, and where the CPU went."""

    rate: float
    requests: int
    cpu: Split

    @property
    def efficiency(self) -> float:
        """Audio seconds made per CPU second of the Synthesizer replicas: what a replica does with a core,
        whatever share of the machine it got."""
        return self.rate * self.cpu.wall / max(self.cpu.replicas, 1e-9)


def measured(url: str, clients: int, seconds: float) -> Phase:
    meter = CpuMeter()
    meter.start()
    rate, requests = throughput(url, clients, seconds)
    return Phase(rate, requests, meter.stop())


def single(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    log = tmp / "single.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "voxgate", "serve", "--host=127.0.0.1", "--port=0",
                                    f"--data-dir={tmp / 'data'}", *COMMON], stdout=subprocess.PIPE,
                                   stderr=err, text=True, env={**os.environ, "VOXGATE_MATCH_BASES": "[]"})
    first: queue.Queue[str] = queue.Queue()
    threading.Thread(target=drain, args=(process, first), daemon=True).start()
    return process, wait_ready(process, first, log)


# The Gateway on the head node, beside Serve's proxy (as in tests/cluster): placed anywhere, a deploy that put it
# on the other node sent every response across nodes too, and Ray's own CPU per request went from ~5 to ~13 ms.
NODES = [{"gateway": 1}, {}]
GATEWAY = {"resources": {"gateway": 1}}


def deploy(cluster: LocalCluster, port: int, replicas: int, more: dict | None = None) -> Deployed:
    """voxgate on the cluster with `replicas` Synthesizer replicas of 1 CPU (and `more` --ray-synthesizer
    options), each answering and warm."""
    options = {"num_cpus": 1, "min_replicas": replicas, "max_replicas": replicas, **(more or {})}
    deployed = cluster.deploy([f"--data-dir={cluster.folder / 'data'}", *COMMON,
                               f"--ray-synthesizer={json.dumps(options)}", f"--ray-gateway={json.dumps(GATEWAY)}"],
                              port=port,
                              env={"VOXGATE_MATCH_BASES": "[]"}, name=f"cluster{replicas}")
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while len(pids) < replicas and time.monotonic() < deadline:  # every replica up (a report is 1 s fresh)
        pids.add(httpx.get(f"{deployed.url}/cluster", timeout=10).json()["synthesizer"]["pid"])
        time.sleep(1.1)
    if len(pids) < replicas:
        print(f"  only {len(pids)} of {replicas} replicas answered", flush=True)
    throughput(deployed.url, 4, 5.0)  # warm-up: the voice loaded on every replica the router uses
    return deployed


# --compare variants: --ray-synthesizer options over deploy()'s.
VARIANTS: dict[str, dict] = {
    "sliced": {},  # today's default: pieces cross from the replica as inline slices (cluster/pieces.py)
    "whole": {"slice_bytes": 0},  # each piece as one Ray object: through the object store when > 100 KiB
}


def compare(names: list[str], rounds: int, clients: int, seconds: float) -> None:
    """2-replica deployments of the variants `names`, taking turns on one cluster, `rounds` times."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    tmp = Path(tempfile.mkdtemp(prefix="vxb", dir="/tmp"))
    results: dict[str, list[tuple[Phase, Split, float]]] = {n: [] for n in names}
    (port,) = free_ports(1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    try:
        with LocalCluster(tmp / "cluster", NODES) as cluster:
            for r in range(rounds):
                for name in names:
                    serve = deploy(cluster, port, 2, VARIANTS[name])
                    try:
                        meter = CpuMeter()
                        meter.start()
                        time.sleep(5.0)  # idle: what the cluster costs with no request
                        idle = meter.stop()
                        phase = measured(serve.url, clients, seconds)
                    finally:
                        serve.stop()
                    results[name].append((phase, idle, os.getloadavg()[0]))
                    rest = phase.cpu.ours - phase.cpu.replicas
                    print(f"  round {r + 1} {name:8} {phase.rate:6.2f} audio s/s, {phase.requests} requests, "
                          f"efficiency {phase.efficiency:5.2f}, rest of ours {1000 * rest / phase.requests:5.1f} "
                          f"ms/req ({rest / phase.cpu.wall:.2f} cores; idle {_rest(idle):.2f}; above idle "
                          f"{1000 * (_rest(phase.cpu) - _rest(idle)) * phase.cpu.wall / phase.requests:.1f} ms/req), "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(names)} variants × {rounds} rounds, 2 replicas, {clients} clients for {seconds:.0f} s each "
          "(medians; ms/req = CPU ms per answered request, idle = cores used with no request):")
    labels = sorted({k for runs in results.values() for phase, _, _ in runs for k, v in phase.cpu.roles.items()
                     if not k.startswith("synthesizer") and v >= 0.01 * phase.cpu.wall})
    for name, runs in results.items():
        phases = [p for p, _, _ in runs]
        rate = statistics.median(p.rate for p in phases)
        efficiency = statistics.median(p.efficiency for p in phases)
        replicas = statistics.median(p.cpu.replicas / p.cpu.wall for p in phases)
        per_request = statistics.median(1000 * (p.cpu.ours - p.cpu.replicas) / p.requests for p in phases)
        cores = statistics.median((p.cpu.ours - p.cpu.replicas) / p.cpu.wall for p in phases)
        idle = statistics.median(_rest(i) for _, i, _ in runs)
        net = statistics.median(1000 * (_rest(p.cpu) - _rest(i)) * p.cpu.wall / p.requests for p, i, _ in runs)
        print(f"  {name:8} {rate:6.2f} audio s/s   efficiency {efficiency:5.2f}   replicas {replicas:.2f} cores   "
              f"rest of ours {per_request:5.1f} ms/req, {cores:.2f} cores (idle {idle:.2f}; above idle "
              f"{net:.1f} ms/req)")
        each = {k: statistics.median(1000 * p.cpu.roles.get(k, 0.0) / p.requests for p in phases) for k in labels}
        print("           " + ", ".join(f"{k} {v:.1f}" for k, v in each.items()) + " ms/req")


def _rest(split: Split) -> float:
    """Cores our processes other than the replicas used."""
    return (split.ours - split.replicas) / split.wall


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def report(name: str, phase: Phase, load: float, single: bool = False) -> None:
    print(f"  {name:24}{phase.rate:6.2f}   ({phase.requests} requests; 1-min load average after: {load:.1f})")
    for line in phase.cpu.lines(phase.requests):
        print(line)
    if single:  # the idle cluster's replica is in the tree too: the single process's own CPU counts here
        own = phase.cpu.roles.get("voxgate single process", 0.0)
        print(f"    efficiency {phase.rate * phase.cpu.wall / max(own, 1e-9):.2f} audio s per CPU s of the whole "
              "single process (HTTP, text and encoding included)")
    else:
        print(f"    efficiency {phase.efficiency:.2f} audio s per replica CPU s")


LONE_CORE = 0.9  # share of a core the lone replica must get for its rate to be a 1-replica baseline


def verdict(one: Phase, two: Phase, replicas: int) -> None:
    """Whether 2 replicas ≥ 1.8× one can be judged on this machine: did the lone replica get its core, and could
    the two get 1.8× that; and the replicas' efficiency (audio seconds per replica CPU second), which does not
    depend on the machine."""
    cores = two.cpu.cores
    got1, got2 = one.cpu.replicas / one.cpu.wall, two.cpu.replicas / two.cpu.wall
    rest = (two.cpu.ours - two.cpu.replicas) / two.cpu.wall
    others = max(two.cpu.machine_busy - two.cpu.ours, 0.0) / two.cpu.wall
    full = replicas * two.efficiency / one.efficiency  # each replica with a core of its own, as one node each
    print(f"  efficiency (audio s per replica CPU s): 1 replica {one.efficiency:.2f}, {replicas} replicas "
          f"{two.efficiency:.2f} ({two.efficiency / one.efficiency:.2f}×; 1.00: a replica does as much with a core "
          f"however many there are); {replicas} replicas with a core each (a node each) would make {full:.2f}× one")
    print(f"  the 1 replica got {got1:.2f} of {cores} cores; the {replicas} replicas got {got2:.2f} "
          f"({got2 / replicas:.2f} each; {got2 / max(got1, 1e-9):.2f}× one's) and made {two.rate / one.rate:.2f}× "
          f"one's audio; the rest of voxgate and Ray took {rest:.2f} cores, other processes on the machine "
          f"{others:.2f}")
    if got1 < LONE_CORE:
        print(f"  verdict: not judgeable here — the lone replica got {got1:.2f} of a core (other processes load the "
              "machine), so neither rate is what a replica with a core makes; see the efficiency line")
    elif got2 < 1.8 * got1:
        print(f"  verdict: not judgeable here — {replicas} replicas could get only {got2:.2f} of {cores} cores (the "
              f"rest of voxgate and Ray {rest:.2f}, others {others:.2f}), under the 1.8× one replica's the target "
              "needs; see the efficiency line")
    else:
        ratio = two.rate / one.rate
        print(f"  verdict: {ratio:.2f}× one: target ≥ 1.8 {'met' if ratio >= 1.8 else 'missed'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--compare", default="", help="comma-separated VARIANTS to compare instead (2 replicas)")
    parser.add_argument("--rounds", type=int, default=2, help="turns each --compare variant takes")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare.split(","), max(1, min(args.rounds, 10)), args.clients, args.seconds)
        return
    tmp = Path(tempfile.mkdtemp(prefix="vxb", dir="/tmp"))  # short: Ray's socket paths have a length limit
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    loads = {}
    phases: dict[object, Phase] = {}
    (port,) = free_ports(1)
    solo, url = single(tmp)
    try:
        with LocalCluster(tmp / "cluster", NODES) as cluster:
            serve = deploy(cluster, port, 1)
            try:
                single_first, cluster_first = first_audio([url, serve.url], args.requests)
                phases["single"] = measured(url, args.clients, args.seconds)
                loads["single"] = os.getloadavg()[0]
                stop(solo)
                phases[1] = measured(serve.url, args.clients, args.seconds)
                loads[1] = os.getloadavg()[0]
            finally:
                serve.stop()
            serve = deploy(cluster, port, 2)
            try:
                phases[2] = measured(serve.url, args.clients, args.seconds)
                loads[2] = os.getloadavg()[0]
            finally:
                serve.stop()
    finally:
        stop(solo)
        shutil.rmtree(tmp, ignore_errors=True)
    one, cluster = statistics.median(single_first), statistics.median(cluster_first)
    print(f"first audio, one sentence, {args.requests} requests each, one at a time, taking turns (median / p90 ms):")
    print(f"  single process          {one * 1000:7.1f} / {p90(single_first) * 1000:7.1f}")
    print(f"  cluster (1 replica)     {cluster * 1000:7.1f} / {p90(cluster_first) * 1000:7.1f}")
    paired = statistics.median(c - o for c, o in zip(cluster_first, single_first, strict=True))
    print(f"  cluster overhead        {(cluster - one) * 1000:+7.1f} ms (median of the pairs: {paired * 1000:+.1f}; "
          "target ≤ 40)")
    print(f"throughput, {args.clients} clients for {args.seconds:.0f} s (audio seconds per second), and CPU seconds "
          "per process over the phase (cores = CPU s / wall s; ms/req = CPU ms per answered request):")
    report("single process, 1 worker", phases["single"], loads["single"], single=True)
    report("cluster, 1 replica", phases[1], loads[1])
    report("cluster, 2 replicas", phases[2], loads[2])
    print(f"  2 replicas: {phases[2].rate / phases[1].rate:.2f}× one (target ≥ 1.8)")
    verdict(phases[1], phases[2], 2)


if __name__ == "__main__":
    main()

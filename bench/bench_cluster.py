"""Single process vs the Ray Serve cluster mode on this machine, in one run.

1. Proxy overhead on first audio: the same one-sentence request, one at a time, to `voxgate serve` (one
   worker) and to `voxgate serve --ray-address` (a Gateway and one Synthesizer replica of one worker, on
   two local Ray nodes): median time to the first audio byte, and the difference (target ≤ 40 ms).
2. Throughput with 1 and 2 Synthesizer replicas of 1 CPU each (one per node): CLIENTS streams in a loop for
   SECONDS, audio seconds made per wall second (target: 2 replicas ≥ 1.8× one).

    .venv/bin/python bench/bench_cluster.py [--requests 15] [--clients 4] [--seconds 20]

The Ray nodes are voxgate.cluster.local's, as in tests/cluster: their own temp dir and free ports (the client
server off 10001), stopped by the PIDs this script started.
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
from pathlib import Path

import httpx

from voxgate.cluster.local import Deployed, LocalCluster, free_ports

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def throughput(url: str, clients: int, seconds: float) -> float:
    """Audio seconds made per wall second by `clients` looping streams (24 kHz 16-bit PCM)."""
    body = {"model": "tts-1", "input": SENTENCE, "voice": VOICE, "response_format": "pcm"}
    made = [0] * clients
    end = time.monotonic() + seconds

    def loop(i: int) -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < end:
                response = client.post(f"{url}/v1/audio/speech", json=body)
                if response.status_code == 200:
                    made[i] += len(response.content)

    start = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(made) / 2 / 24000 / (time.monotonic() - start)


def single(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    log = tmp / "single.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "voxgate", "serve", "--host=127.0.0.1", "--port=0",
                                    f"--data-dir={tmp / 'data'}", *COMMON], stdout=subprocess.PIPE,
                                   stderr=err, text=True, env={**os.environ, "VOXGATE_MATCH_BASES": "[]"})
    first: queue.Queue[str] = queue.Queue()
    threading.Thread(target=drain, args=(process, first), daemon=True).start()
    return process, wait_ready(process, first, log)


def deploy(cluster: LocalCluster, port: int, replicas: int) -> Deployed:
    """voxgate on the cluster with `replicas` Synthesizer replicas of 1 CPU, each answering and warm."""
    options = {"num_cpus": 1, "min_replicas": replicas, "max_replicas": replicas}
    deployed = cluster.deploy([f"--data-dir={cluster.folder / 'data'}", *COMMON,
                               f"--ray-synthesizer={json.dumps(options)}"], port=port,
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


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vxb", dir="/tmp"))  # short: Ray's socket paths have a length limit
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    loads = {}
    rates: dict[object, float] = {}
    (port,) = free_ports(1)
    solo, url = single(tmp)
    try:
        with LocalCluster(tmp / "cluster", [{}, {}]) as cluster:
            serve = deploy(cluster, port, 1)
            try:
                single_first, cluster_first = first_audio([url, serve.url], args.requests)
                rates["single"] = throughput(url, args.clients, args.seconds)
                loads["single"] = os.getloadavg()[0]
                stop(solo)
                rates[1] = throughput(serve.url, args.clients, args.seconds)
                loads[1] = os.getloadavg()[0]
            finally:
                serve.stop()
            serve = deploy(cluster, port, 2)
            try:
                rates[2] = throughput(serve.url, args.clients, args.seconds)
                loads[2] = os.getloadavg()[0]
            finally:
                serve.stop()
    finally:
        stop(solo)
        shutil.rmtree(tmp, ignore_errors=True)
    single_rate = rates["single"]
    one, cluster = statistics.median(single_first), statistics.median(cluster_first)
    print(f"first audio, one sentence, {args.requests} requests each, one at a time, taking turns (median / p90 ms):")
    print(f"  single process          {one * 1000:7.1f} / {p90(single_first) * 1000:7.1f}")
    print(f"  cluster (1 replica)     {cluster * 1000:7.1f} / {p90(cluster_first) * 1000:7.1f}")
    paired = statistics.median(c - o for c, o in zip(cluster_first, single_first, strict=True))
    print(f"  cluster overhead        {(cluster - one) * 1000:+7.1f} ms (median of the pairs: {paired * 1000:+.1f}; "
          "target ≤ 40)")
    print(f"throughput, {args.clients} clients for {args.seconds:.0f} s (audio seconds per second):")
    print(f"  single process, 1 worker  {single_rate:6.2f}   (1-min load average after: {loads['single']:.1f})")
    print(f"  cluster, 1 replica        {rates[1]:6.2f}   (load {loads[1]:.1f})")
    print(f"  cluster, 2 replicas       {rates[2]:6.2f}   (load {loads[2]:.1f}; {rates[2] / rates[1]:.2f}× one; "
          "target ≥ 1.8)")


if __name__ == "__main__":
    main()

"""Single process vs the Ray Serve cluster mode on this machine, in one run.

1. Proxy overhead on first audio: the same one-sentence request, one at a time, to `voxgate serve` (one
   worker) and to `voxgate serve --ray-address` (a Gateway and one Synthesizer replica of one worker, on
   two local Ray nodes): median time to the first audio byte, and the difference (target ≤ 40 ms).
2. Throughput with 1 and 2 Synthesizer replicas of 1 CPU each (one per node): CLIENTS streams in a loop for
   SECONDS, audio seconds made per wall second (target: 2 replicas ≥ 1.8× one).

    .venv/bin/python bench/bench_cluster.py [--requests 15] [--clients 4] [--seconds 20]

The Ray nodes use their own temp dir and free ports (the client server off 10001) and are stopped by the
PIDs this script started.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import drain, stop, wait_ready

VOICE = "en_US-joe-medium"
SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west."
RAY = Path(sys.executable).with_name("ray")
COMMON = ["--host=127.0.0.1", "--engines", "piper", f"--default-voice={VOICE}", "--workers=1", "--threads=1",
          "--solo-threads=1", "--stackflow-port=0", "--wyoming-port=0"]


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


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
        process = subprocess.Popen([sys.executable, "-m", "voxgate", "serve", "--port=0",
                                    f"--data-dir={tmp / 'data'}", *COMMON], stdout=subprocess.PIPE,
                                   stderr=err, text=True, env={**os.environ, "VOXGATE_MATCH_BASES": "[]"})
    first: queue.Queue[str] = queue.Queue()
    threading.Thread(target=drain, args=(process, first), daemon=True).start()
    return process, wait_ready(process, first, log)


def node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:
        process = subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats",
                                    "--node-ip-address=127.0.0.1", "--min-worker-port=0", "--max-worker-port=0",
                                    *args], stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                                   start_new_session=True)
    deadline = time.monotonic() + 120
    while "will now block" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray node did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.25)
    return process


def stop_tree(process: subprocess.Popen[str]) -> None:
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=10)


def deploy(tmp: Path, gcs: int, port: int, replicas: int, env: dict[str, str]) -> subprocess.Popen[str]:
    options = {"num_cpus": 1, "min_replicas": replicas, "max_replicas": replicas}
    log = tmp / f"cluster{replicas}.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "voxgate", "serve", f"--ray-address=127.0.0.1:{gcs}",
                                    f"--port={port}", f"--data-dir={tmp / 'data'}", *COMMON,
                                    f"--ray-synthesizer={json.dumps(options)}"], stdout=subprocess.PIPE,
                                   stderr=err, text=True, env={**env, "VOXGATE_MATCH_BASES": "[]"})
    assert process.stdout is not None
    for line in process.stdout:
        if "voxgate listening on" in line:
            break
    else:
        raise RuntimeError(f"deploy failed:\n{log.read_text()[-2000:]}")
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while len(pids) < replicas and time.monotonic() < deadline:  # every replica up (a report is 1 s fresh)
        pids.add(httpx.get(f"{url}/cluster", timeout=10).json()["synthesizer"]["pid"])
        time.sleep(1.1)
    if len(pids) < replicas:
        print(f"  only {len(pids)} of {replicas} replicas answered", flush=True)
    throughput(url, 4, 5.0)  # warm-up: the voice loaded on every replica the router uses
    return process


def undeploy(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vxb", dir="/tmp"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    gcs, client, port, *more = free_ports(14)
    nodes = []
    loads = {}
    solo, url = single(tmp)
    cluster_url = f"http://127.0.0.1:{port}"
    try:
        nodes.append(node(["--head", "--include-dashboard=false", f"--port={gcs}",
                           f"--ray-client-server-port={client}", "--num-cpus=1", f"--temp-dir={tmp / 'ray'}",
                           f"--node-manager-port={more[0]}", f"--object-manager-port={more[1]}",
                           f"--dashboard-agent-listen-port={more[2]}", f"--dashboard-agent-grpc-port={more[3]}",
                           f"--metrics-export-port={more[4]}", f"--runtime-env-agent-port={more[5]}"],
                          env, tmp / "head.log"))
        nodes.append(node([f"--address=127.0.0.1:{gcs}", "--num-cpus=1", f"--node-manager-port={more[6]}",
                           f"--object-manager-port={more[7]}", f"--dashboard-agent-listen-port={more[8]}",
                           f"--dashboard-agent-grpc-port={more[9]}", f"--metrics-export-port={more[10]}"],
                          env, tmp / "worker.log"))
        rates = {}
        serve = deploy(tmp, gcs, port, 1, env)
        try:
            single_first, cluster_first = first_audio([url, cluster_url], args.requests)
            rates["single"] = throughput(url, args.clients, args.seconds)
            loads["single"] = os.getloadavg()[0]
            stop(solo)
            rates[1] = throughput(cluster_url, args.clients, args.seconds)
            loads[1] = os.getloadavg()[0]
        finally:
            undeploy(serve)
        serve = deploy(tmp, gcs, port, 2, env)
        try:
            rates[2] = throughput(cluster_url, args.clients, args.seconds)
            loads[2] = os.getloadavg()[0]
        finally:
            undeploy(serve)
    finally:
        stop(solo)
        for process in reversed(nodes):
            stop_tree(process)
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

"""A local two-node Ray cluster on 127.0.0.1 with voxgate deployed on it, shared by every cluster test.

Each node is a `ray start --block` process of this fixture; its own temp dir and ports (the client server
off 10001, StackFlow's port), token auth on. The Gateway is pinned to the head node and the Synthesizer to
the second node by custom resources, so every segment crosses nodes. At the end voxgate is stopped, then
each node's process tree, by the PIDs this fixture started (never `ray stop`, which would stop any Ray
cluster of this user on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

RAY = Path(sys.executable).with_name("ray")
JOE = "en_US-joe-medium"
START_TIMEOUT = 90.0  # seconds for a node to join (a loaded 2-core machine)
DEPLOY_TIMEOUT = 150.0  # seconds until voxgate answers /ready through the cluster


@dataclass
class Cluster:
    """voxgate on a two-node Ray cluster: its HTTP endpoint and how to reach the Synthesizer."""

    url: str
    gcs: str  # HOST:PORT of the head node
    env: dict[str, str]  # RAY_AUTH_* for anything that joins the cluster
    log: Path
    data_dir: Path

    def report(self) -> dict:
        """A Synthesizer replica's report (pid, node, load counters) through the Gateway's /cluster."""
        return httpx.get(f"{self.url}/cluster", timeout=10).json()


def free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """A `ray start --block` node; returns once it says it started."""
    with log.open("w") as out:
        process = subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats",
                                    "--node-ip-address=127.0.0.1", *args],
                                   stdout=out, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if "will now block" in log.read_text(errors="replace"):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.25)
    _stop_tree(process)
    pytest.fail(f"ray node did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _stop_tree(process: subprocess.Popen[str]) -> None:
    """Stop one node: the `ray start` process and every process it started (raylet, GCS, workers)."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=3)  # the cluster is thrown away: no need for a slow drain
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    process.wait(timeout=5)


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="vxr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs, client, http, *more = free_ports(14)
    nodes: list[subprocess.Popen[str]] = []
    serve: subprocess.Popen[str] | None = None
    try:
        nodes.append(_node([
            "--head", "--include-dashboard=false", f"--port={gcs}", f"--ray-client-server-port={client}",
            "--num-cpus=1",
            '--resources={"gateway": 1}', f"--temp-dir={tmp / 'ray'}", f"--node-manager-port={more[0]}",
            f"--object-manager-port={more[1]}", f"--dashboard-agent-listen-port={more[2]}",
            f"--dashboard-agent-grpc-port={more[3]}", f"--metrics-export-port={more[4]}",
            f"--runtime-env-agent-port={more[5]}", "--min-worker-port=0", "--max-worker-port=0",
        ], env, tmp / "head.log"))
        nodes.append(_node([
            f"--address=127.0.0.1:{gcs}", "--num-cpus=1", '--resources={"synth": 1}',
            f"--node-manager-port={more[6]}", f"--object-manager-port={more[7]}",
            f"--dashboard-agent-listen-port={more[8]}", f"--dashboard-agent-grpc-port={more[9]}",
            f"--metrics-export-port={more[10]}", "--min-worker-port=0", "--max-worker-port=0",
        ], env, tmp / "worker.log"))
        log = tmp / "voxgate.log"
        serve_env = {**env, "VOXGATE_MATCH_BASES": '["en_US-joe-medium"]'}
        cmd = [sys.executable, "-m", "voxgate", "serve", f"--ray-address=127.0.0.1:{gcs}", "--host=127.0.0.1",
               f"--port={http}", f"--data-dir={tmp / 'data'}", "--engines", "piper", "--workers=1",
               f"--default-voice={JOE}",  # the voice the tests speak: warmed on the replica at start
               '--ray-gateway={"resources": {"gateway": 1}}',
               # One replica of one worker that takes two segments at once and queues one more: a fourth
               # concurrent first segment is refused (the overload test); a stream's prefetch fits.
               '--ray-synthesizer={"num_cpus": 1, "resources": {"synth": 1}, "max_replicas": 1, '
               '"max_ongoing_requests": 2, "max_queued_requests": 1}']
        with log.open("w") as err:
            serve = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=serve_env)
        assert serve.stdout is not None
        line = ""
        for line in serve.stdout:  # Ray's own lines (its workers' logs) may come first
            if "voxgate listening on" in line:
                break
        else:
            pytest.fail(f"voxgate did not deploy:\n{log.read_text()[-3000:]}")
        threading.Thread(target=_drain, args=(serve,), daemon=True).start()
        url = line.split("listening on", 1)[1].strip()
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail(f"voxgate not ready through the cluster:\n{log.read_text()[-3000:]}")
        yield Cluster(url, f"127.0.0.1:{gcs}", {k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}, log,
                      tmp / "data")
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)  # removes its deployments
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait(timeout=5)
            if serve.stdout is not None:
                serve.stdout.close()
        for node in reversed(nodes):
            _stop_tree(node)
        shutil.rmtree(tmp, ignore_errors=True)

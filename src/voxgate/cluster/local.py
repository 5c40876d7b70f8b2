"""A throwaway Ray cluster on this machine, with voxgate deployed on it: the tests' and the benchmark's.

`LocalCluster` starts each node as a `ray start --block` process of its own on 127.0.0.1: its own temp dir
and free ports (the client server off 10001, StackFlow's port), token auth on, and the least Ray needs to
start (no dashboard, no usage stats, a small object store: the pieces that cross nodes are small).
`deploy()` runs `voxgate serve --ray-address` against it and waits until `/ready` answers through Serve's
proxy. `stop()` ends each voxgate (its deployments go with it), then each node's process tree by the PID
started here; never `ray stop`, which would stop every Ray cluster of this user on the machine.

    with LocalCluster(folder, [{"gateway": 1}, {"synth": 1}]) as cluster:
        deployed = cluster.deploy(["--workers=1", ...])
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import psutil

NODE_TIMEOUT = 90.0  # seconds for a node to start (a loaded 2-core machine)
DEPLOY_TIMEOUT = 150.0  # seconds until voxgate answers /ready through the cluster
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # Ray's minimum is 75 MiB; a segment's pieces are kilobytes


class ClusterError(RuntimeError):
    """A node or voxgate did not start; the message ends with the tail of its log."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop_tree(*processes: subprocess.Popen[str], grace: float = 1.0) -> None:
    """Stop processes and every process they started (a node: raylet, GCS, workers), all at once: TERM, then
    KILL after `grace` seconds."""
    tree = []
    for process in processes:
        try:
            tree += [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for proc in tree:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace)  # the cluster is thrown away: no slow drain (a raylet takes 3 s+)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    for process in processes:
        process.wait(timeout=5)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class Deployed:
    """One `voxgate serve --ray-address` process and the URL Serve's proxy answers on."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: voxgate deletes its deployments (and Serve with the last of them), then exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


class LocalCluster:
    """Ray nodes on 127.0.0.1, one per entry of `resources` (the first is the head), each of `cpus` CPUs and
    those custom resources (to pin deployments to nodes)."""

    def __init__(self, folder: Path, resources: Sequence[Mapping[str, float]] = ({}, {}), cpus: int = 1) -> None:
        self.folder = folder  # short: Ray's socket paths under it have a length limit
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # for all that join
        self._resources, self._cpus = list(resources), cpus
        self._nodes: list[subprocess.Popen[str]] = []
        self._deployed: list[Deployed] = []
        self.gcs = ""  # HOST:PORT of the head node once started

    def _environ(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        return env

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, wait: bool = True) -> None:
        """Start the head node, then the others; `wait=False` returns while they are still joining (a deploy
        may start meanwhile: call wait_nodes() before relying on them). Raises ClusterError (after stopping
        what started) when a node does not come up."""
        try:
            self._nodes.append(self._launch(0, self._resources[0]))
            self._wait(0)
            for i, resources in enumerate(self._resources[1:], 1):
                self._nodes.append(self._launch(i, resources))
            if wait:
                self.wait_nodes()
        except BaseException:
            self.stop()
            raise

    def wait_nodes(self) -> None:
        """Return once every node has started; raises ClusterError when one died or took too long."""
        for i in range(1, len(self._nodes)):
            self._wait(i)

    def _launch(self, index: int, resources: Mapping[str, float]) -> subprocess.Popen[str]:
        ray = Path(sys.executable).with_name("ray")
        ports = free_ports(8)
        args = [str(ray), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self._cpus}", f"--resources={json.dumps(dict(resources))}",
                f"--object-store-memory={OBJECT_STORE_BYTES}", "--min-worker-port=0", "--max-worker-port=0",
                f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
                f"--dashboard-agent-listen-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
                f"--metrics-export-port={ports[4]}"]
        if index == 0:
            self.gcs = f"127.0.0.1:{ports[5]}"
            args += ["--head", "--include-dashboard=false", f"--port={ports[5]}",
                     f"--ray-client-server-port={ports[6]}", f"--runtime-env-agent-port={ports[7]}",
                     f"--temp-dir={self.folder / 'ray'}"]
        else:
            args.append(f"--address={self.gcs}")
        log = self.folder / f"node{index}.log"
        self.folder.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            # Its own process group (a Ctrl-C at the terminal does not reach it; stop_tree stops it), but the
            # caller's session: with the kernel's autogroup scheduling (sched_autogroup_enabled) each session is
            # one scheduling group and the CPUs are shared fairly between groups, not between processes. Nodes in
            # sessions of their own put each replica in a group with different neighbours (the head's holds the
            # Gateway, proxy and GCS), and on one machine one replica of two did about half the other's work.
            # No stdin: a node of a background process group that read the terminal would be stopped (SIGTTIN).
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
                                    env=self._environ(), process_group=0)

    def _wait(self, index: int) -> None:
        process, log = self._nodes[index], self.folder / f"node{index}.log"
        deadline = time.monotonic() + NODE_TIMEOUT
        while time.monotonic() < deadline:
            if "will now block" in log.read_text(errors="replace"):
                return
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise ClusterError(f"ray node {index} did not start:\n{_tail(log)}")

    def deploy(self, args: Sequence[str], port: int | None = None, env: Mapping[str, str] | None = None,
               name: str = "voxgate") -> Deployed:
        """`voxgate serve --ray-address` on this cluster with `args`; returns once /ready answers 200."""
        port = port or free_ports(1)[0]
        log = self.folder / f"{name}.log"
        cmd = [sys.executable, "-m", "voxgate", "serve", f"--ray-address={self.gcs}", "--host=127.0.0.1",
               f"--port={port}", *args]
        with log.open("w") as err:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                       env={**self._environ(), **(env or {})})
        deployed = Deployed(process, f"http://127.0.0.1:{port}", log)
        self._deployed.append(deployed)
        assert process.stdout is not None
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_read_lines, args=(process, lines), daemon=True).start()
        while True:  # Ray's own lines (its workers' logs) may come first; bounded in time, not only by EOF
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise ClusterError(f"voxgate did not deploy:\n{_tail(log)}")
            if "voxgate listening on" in line:
                deployed.url = line.split("listening on", 1)[1].strip()
                break
        while time.monotonic() < deadline:
            if any(node.poll() is not None for node in self._nodes):
                raise ClusterError(f"a ray node exited while voxgate deployed:\n{_tail(log)}")
            try:
                if httpx.get(f"{deployed.url}/ready", timeout=5).status_code == 200:
                    return deployed
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise ClusterError(f"voxgate not ready through the cluster:\n{_tail(log)}")

    def stop(self) -> None:
        """Stop every voxgate deployed here, then every node, by the PIDs started here."""
        for deployed in reversed(self._deployed):
            deployed.stop()
        self._deployed.clear()
        stop_tree(*self._nodes)
        self._nodes.clear()


def _read_lines(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Hand voxgate's stdout lines over until it says where it listens (None at its end), then read the rest
    to its end so the pipe never fills."""
    try:
        for line in process.stdout or ():
            if lines is not None:
                lines.put(line)
                if "voxgate listening on" in line:
                    lines = None  # type: ignore[assignment]
    except ValueError:  # closed by Deployed.stop()
        pass
    if lines is not None:
        lines.put(None)


__all__ = ["ClusterError", "Deployed", "LocalCluster", "free_ports", "stop_tree"]

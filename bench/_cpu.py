"""Where the CPU went during a benchmark phase: CPU seconds per process of this script's process tree (the
Ray nodes it started, their actors and daemons, `voxgate serve`, the clients in this process) and of the
whole machine, from psutil, between `start()` and `stop()`.

Ray names its actor processes `ray::ServeReplica:APP:DEPLOYMENT`, `ray::ProxyActor`, `ray::ServeController`;
its daemons are `raylet`, `gcs_server` and Python scripts (dashboard agent, runtime-env agent, log monitor)
recognised by their command lines. A process started during the phase counts with all its CPU, one that ended
during it with none after the last look (phases here start and end with the same processes).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

BUSY_THREAD_SHARE = 0.02  # a thread counts as busy when it used this share of one core over the phase


def role(proc: psutil.Process) -> str:
    """What a process of the tree is, as a short label (a Synthesizer replica's label ends with its PID)."""
    try:
        name, cmdline = proc.name(), " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if proc.pid == os.getpid():
        return "bench clients"
    title = cmdline if cmdline.startswith("ray::") else name
    if "Synthesizer" in title:
        return f"synthesizer {proc.pid}"
    for key, label in (("Gateway", "gateway"), ("ProxyActor", "serve proxy"), ("ServeController", "serve controller"),
                       ("ray::IDLE", "idle ray workers"), ("DashboardAgent", "dashboard agent"),
                       ("RuntimeEnvAgent", "runtime-env agent")):
        if key in title:
            return label
    if "py-spy" in name:
        return "py-spy"
    if name == "raylet" or "/raylet" in cmdline:
        return "raylet"
    if name == "gcs_server" or "gcs_server" in cmdline:
        return "gcs"
    for key, label in (("dashboard/agent.py", "dashboard agent"), ("runtime_env/agent", "runtime-env agent"),
                       ("dashboard/dashboard.py", "dashboard"), ("log_monitor", "log monitor"),
                       ("monitor.py", "autoscaler monitor"), ("ray.util.client.server", "ray client server"),
                       ("--ray-address", "voxgate serve driver"), ("voxgate", "voxgate single process"),
                       ("ray start", "ray start")):
        if key in cmdline:
            return label
    return f"other ({name})"


def _tree() -> list[psutil.Process]:
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def _cpu(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _threads(proc: psutil.Process) -> dict[int, float]:
    try:
        return {t.id: t.user_time + t.system_time for t in proc.threads()}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}


@dataclass
class Split:
    """CPU seconds per role over `wall` seconds, the machine's busy CPU seconds, and per Synthesizer replica its
    thread count and busy threads."""

    wall: float
    roles: dict[str, float]
    machine_busy: float
    cores: int
    threads: dict[str, tuple[int, int]] = field(default_factory=dict)  # replica → (threads, busy threads)

    @property
    def replicas(self) -> float:
        return sum(v for k, v in self.roles.items() if k.startswith("synthesizer"))

    @property
    def ours(self) -> float:
        return sum(self.roles.values())

    def lines(self, requests: int) -> list[str]:
        """A table: CPU seconds, share of the machine's cores, CPU ms per request, biggest first."""
        out = [f"    {'process':24} {'CPU s':>7} {'cores':>6} {'ms/req':>7}"]
        for name, value in sorted(self.roles.items(), key=lambda kv: -kv[1]):
            if value >= 0.005 * self.wall:
                out.append(f"    {name:24} {value:7.2f} {value / self.wall:6.2f} "
                           f"{1000 * value / max(requests, 1):7.1f}")
        rest = self.ours - self.replicas
        out.append(f"    {'= replicas':24} {self.replicas:7.2f} {self.replicas / self.wall:6.2f} "
                   f"{1000 * self.replicas / max(requests, 1):7.1f}")
        out.append(f"    {'= everything else ours':24} {rest:7.2f} {rest / self.wall:6.2f} "
                   f"{1000 * rest / max(requests, 1):7.1f}")
        other = max(self.machine_busy - self.ours, 0.0)
        out.append(f"    {'= rest of the machine':24} {other:7.2f} {other / self.wall:6.2f}")
        out.append(f"    machine busy {self.machine_busy / self.wall:.2f} of {self.cores} cores")
        for name, (count, busy) in sorted(self.threads.items()):
            out.append(f"    {name}: {count} threads, {busy} busy (≥{BUSY_THREAD_SHARE:.0%} of a core)")
        return out


class CpuMeter:
    """start() … stop() → Split."""

    def start(self) -> None:
        self._procs = {p.pid: p for p in _tree()}
        self._before = {pid: _cpu(p) for pid, p in self._procs.items()}
        self._threads = {pid: _threads(p) for pid, p in self._procs.items() if role(p).startswith("synthesizer")}
        self._machine = self._busy()
        self._t0 = time.monotonic()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def stop(self) -> Split:
        wall = time.monotonic() - self._t0
        machine = self._busy() - self._machine
        roles: dict[str, float] = defaultdict(float)
        threads: dict[str, tuple[int, int]] = {}
        for proc in _tree():
            now = _cpu(proc)
            if now is None:
                continue
            before = self._before.get(proc.pid) if proc.pid in self._procs else 0.0
            label = role(proc)
            roles[label] += now - (before or 0.0)
            if label.startswith("synthesizer"):
                after, earlier = _threads(proc), self._threads.get(proc.pid, {})
                busy = sum(1 for tid, t in after.items() if t - earlier.get(tid, 0.0) >= BUSY_THREAD_SHARE * wall)
                threads[label] = (len(after), busy)
        return Split(wall, dict(roles), machine, psutil.cpu_count() or 1, threads)

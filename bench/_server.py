"""Starting and stopping a voxgate server for the benchmarks (shared by every bench script)."""

from __future__ import annotations

import queue
import subprocess
import time
from pathlib import Path

import httpx

START_TIMEOUT_S = 120.0  # spawn → /ready


def drain(process: subprocess.Popen[str], first: queue.Queue[str]) -> None:
    """Hand the first stdout line to `first`, then discard the rest (the access log) so the pipe never fills."""
    assert process.stdout is not None
    first.put(process.stdout.readline())
    for _ in process.stdout:
        pass


def wait_ready(process: subprocess.Popen[str], first: queue.Queue[str], log: Path) -> str:
    """The server's URL once GET /ready answers 200; raises if it dies or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    line = first.get(timeout=START_TIMEOUT_S)
    if "listening on" not in line:
        raise RuntimeError(f"server did not start: {line!r}\n{log.read_text()[-2000:]}")
    url = line.split("listening on", 1)[1].strip()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {START_TIMEOUT_S:.0f} s\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[str]) -> None:
    """Terminate the server, and kill it if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

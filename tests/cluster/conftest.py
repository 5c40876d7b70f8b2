"""A local two-node Ray cluster on 127.0.0.1 with voxgate deployed on it, shared by every cluster test.

The cluster is voxgate.cluster.local's (as bench/bench_cluster.py's): each node a `ray start --block`
process with its own temp dir and ports (the client server off 10001, StackFlow's port), token auth on,
stopped by the PIDs started here. The Gateway is pinned to the head node and the Synthesizer to the second
node by custom resources, so every segment crosses nodes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import _seed_bases
from voxgate.cluster.local import ClusterError, LocalCluster, free_ports

__all__ = ["Cluster", "free_ports"]

JOE = "en_US-joe-medium"


@dataclass
class Cluster:
    """voxgate on a two-node Ray cluster: its HTTP endpoint and how to reach the Synthesizer."""

    url: str
    gcs: str  # HOST:PORT of the head node
    env: dict[str, str]  # RAY_AUTH_* for anything that joins the cluster
    log: Path
    data_dir: Path
    front: subprocess.Popen[str]  # `voxgate tcp-front` over this cluster (Wyoming on front_port)
    front_port: int
    front_log: Path

    def report(self) -> dict:
        """A Synthesizer replica's report (pid, node, load counters) through the Gateway's /cluster."""
        return httpx.get(f"{self.url}/cluster", timeout=10).json()


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="vxr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    local = LocalCluster(tmp, [{"gateway": 1}, {"synth": 1}])
    front: subprocess.Popen[str] | None = None
    _seed_bases(tmp / "data")  # base-voice measurements earlier servers of the session made: not made again
    try:
        try:
            local.start(wait=False)  # the second node joins while voxgate deploys (its Synthesizer waits for it)
            deployed = local.deploy([
                f"--data-dir={tmp / 'data'}", "--engines", "piper", "--workers=1",
                f"--default-voice={JOE}",  # the voice the tests speak: warmed on the replica at start
                '--ray-gateway={"resources": {"gateway": 1}}',
                # One replica of one worker that takes two segments at once and queues one more: a fourth
                # concurrent first segment is refused (the overload test); a stream's prefetch fits.
                '--ray-synthesizer={"num_cpus": 1, "resources": {"synth": 1}, "max_replicas": 1, '
                '"max_ongoing_requests": 2, "max_queued_requests": 1}'], env={"VOXGATE_MATCH_BASES": f'["{JOE}"]'})
            local.wait_nodes()
        except ClusterError as exc:
            pytest.fail(str(exc))
        # The TCP front starts (seconds of imports) while the first tests run; its test reads its first lines.
        (port,) = free_ports(1)
        front_log = tmp / "front.log"
        with front_log.open("w") as err:
            front = subprocess.Popen([sys.executable, "-m", "voxgate", "tcp-front", f"--cluster-url={deployed.url}",
                                      "--host=127.0.0.1", f"--data-dir={tmp / 'data'}", "--engines", "piper",
                                      f"--default-voice={JOE}", "--no-warmup", "--stackflow-port=0",
                                      f"--wyoming-port={port}"], stdout=subprocess.PIPE, stderr=err, text=True)
        yield Cluster(deployed.url, local.gcs, dict(local.env), deployed.log, tmp / "data", front, port, front_log)
    finally:
        if front is not None:
            front.terminate()
            front.wait(timeout=20)
            if front.stdout is not None:
                front.stdout.close()
        local.stop()
        shutil.rmtree(tmp, ignore_errors=True)

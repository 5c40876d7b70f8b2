"""`voxgate serve --ray-address HOST:PORT`: deploy onto a running Ray cluster, serve until told to stop."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import Any

from voxgate.app import StartupError
from voxgate.settings import Settings


def serve_cluster(settings: Settings) -> int:
    """Deploy Gateway + Synthesizer as the Serve app `voxgate`, serve HTTP/WebSocket on --port through Serve's
    proxy, and delete the app on SIGINT/SIGTERM."""
    from voxgate.cluster.options import gateway_options, synthesizer_options

    synth, gateway = synthesizer_options(settings), gateway_options(settings)  # checked before connecting
    _check_reachable(settings.ray_address or "")
    try:
        import ray
        from ray import serve
    except ImportError:
        raise StartupError("--ray-address needs the cluster extra: pip install 'voxgate[ray]'") from None
    from voxgate.cluster.deployments import APP_NAME, build

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        ray.init(address=settings.ray_address, logging_level=logging.WARNING, namespace="voxgate")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StartupError(f"--ray-address {settings.ray_address}: cannot join the Ray cluster: "
                           f"{str(exc).splitlines()[0]}") from None
    try:
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        serve.start(http_options={"host": settings.host, "port": settings.port}, proxy_location="HeadOnly")
        try:
            serve.run(build(settings, synth, gateway, nodes), name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:
            raise StartupError(f"deploying onto the Ray cluster failed: {_first_line(exc)}") from None
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(f"voxgate listening on http://{host}:{settings.port}", flush=True)
        print(f"  cluster      Ray at {settings.ray_address}, {nodes} node(s); Serve app {APP_NAME!r}: "
              f"Gateway ×{gateway.replicas}, Synthesizer {synth.min_replicas}–{synth.max_replicas or nodes} "
              "replica(s)", flush=True)
        print(f"  data folder  {settings.data_dir.resolve()} (--data-dir or VOXGATE_DATA_DIR)", flush=True)
        print("  TCP dialects not served here: run `voxgate tcp-front` (docs/cluster.md)", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        _undeploy(serve, APP_NAME)
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in one line when nothing listens at the address (ray.init would retry for minutes)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://").rsplit(":", 1)
    if len(hostport) != 2 or not hostport[1].isdigit():
        raise StartupError(f"--ray-address {address}: give HOST:PORT (the head node's GCS port, e.g. head:6379)")
    host, port = hostport[0].strip("[]"), int(hostport[1])
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise StartupError(f"--ray-address {address}: no Ray cluster answers there "
                           f"({exc.strerror or exc}); start one with `ray start --head` (docs/cluster.md)") from None


def _undeploy(serve: Any, name: str) -> None:
    """Delete our app; stop Serve (and free the HTTP port) when no other app is left on the cluster."""
    try:
        serve.delete(name, _blocking=True)
        if not [other for other in serve.status().applications if other != name]:
            serve.shutdown()
    except Exception as exc:  # the cluster went away first: nothing left to remove
        logging.getLogger(__name__).warning("removing the deployments failed: %s", _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = [line.strip() for line in str(exc).strip().splitlines()][:3]  # pydantic's: title, field, reason
    return " ".join(text) if text else type(exc).__name__

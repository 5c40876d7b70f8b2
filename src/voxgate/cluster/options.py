"""The deployments' options (`--ray-synthesizer`, `--ray-gateway`), checked before anything connects."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from voxgate.app import StartupError
from voxgate.cluster.pieces import SLICE_BYTES
from voxgate.settings import Settings


@dataclass(frozen=True)
class SynthesizerOptions:
    """How the Synthesizer deployment is placed and scaled (one replica per node at most)."""

    num_cpus: float  # CPUs one replica reserves; default: its worker count
    max_ongoing_requests: int  # segments one replica takes at once: its admission limit (2 per worker)
    max_queued_requests: int  # segments waiting in the callers' routers past that; then back-pressure
    min_replicas: int = 1
    max_replicas: int = 0  # 0: as many as the cluster has nodes when it is deployed
    target_ongoing_requests: float = 0.0  # autoscaling target per replica; 0: its worker count
    upscale_delay_s: float = 2.0  # seconds above target before a replica is added
    downscale_delay_s: float = 60.0
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources a replica needs
    # Bytes of samples per Ray object a replica sends: a bigger piece goes as slices of this size, which ride
    # inline in Ray's reply instead of through the object store (cluster/pieces.py); 0 sends whole pieces.
    slice_bytes: int = SLICE_BYTES


@dataclass(frozen=True)
class GatewayOptions:
    """How the Gateway deployment (the HTTP/WebSocket app) is placed."""

    num_cpus: float = 0.0  # its work is I/O and encoding; it reserves no CPU unless told to
    replicas: int = 1
    max_ongoing_requests: int = 1000  # HTTP requests and WebSockets one replica holds; admission is the app's
    resources: dict[str, float] = field(default_factory=dict)


def _build(cls: type, given: dict[str, Any], defaults: dict[str, Any], flag: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise StartupError(f"{flag}: unknown option {unknown[0]!r} (known: {', '.join(known)})")
    values = {**defaults, **given}
    for name, value in values.items():
        if name == "resources":
            if not isinstance(value, dict) or not all(isinstance(v, int | float) and v >= 0 for v in value.values()):
                raise StartupError(f"{flag}: resources must be a JSON object of numbers, e.g. {{\"synth\": 1}}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise StartupError(f"{flag}: {name} must be a number ≥ 0 (got {value!r})")
        elif known[name].type in ("int",) and value != int(value):
            raise StartupError(f"{flag}: {name} must be a whole number (got {value!r})")
    return cls(**{k: int(v) if known[k].type == "int" else v for k, v in values.items()})


def synthesizer_options(settings: Settings) -> SynthesizerOptions:
    """The Synthesizer's options: --ray-synthesizer over defaults derived from the worker settings."""
    # A replica takes two segments per worker (so a worker always has its next one): past that Serve's router
    # counts it busy and sends even a voice it holds to another replica, which is how one popular voice
    # spreads over the cluster. What waits beyond that waits in the caller's router, bounded by the queue.
    defaults = {"num_cpus": float(settings.workers), "max_ongoing_requests": 2 * settings.workers,
                "max_queued_requests": settings.max_queue + settings.workers}
    options = _build(SynthesizerOptions, settings.ray_synthesizer, defaults, "--ray-synthesizer")
    if options.max_ongoing_requests < 1 or options.max_queued_requests < 1 or options.min_replicas < 1:
        raise StartupError("--ray-synthesizer: max_ongoing_requests, max_queued_requests and min_replicas "
                           "must be ≥ 1")
    if options.max_replicas and options.max_replicas < options.min_replicas:
        raise StartupError("--ray-synthesizer: max_replicas must be ≥ min_replicas")
    return options


def gateway_options(settings: Settings) -> GatewayOptions:
    """The Gateway's options: --ray-gateway over the defaults."""
    options = _build(GatewayOptions, settings.ray_gateway, {}, "--ray-gateway")
    if options.replicas < 1 or options.max_ongoing_requests < 1:
        raise StartupError("--ray-gateway: replicas and max_ongoing_requests must be ≥ 1")
    return options


def replica_settings(data: dict[str, Any], synth: SynthesizerOptions) -> dict[str, Any]:
    """The settings (as a dict) a Synthesizer replica runs with: no onnxruntime session with more compute
    threads than the CPUs the replica reserves, its solo session included (default 2 threads), so a 1-CPU
    replica runs 1-thread sessions and replicas sharing a node do not oversubscribe it. num_cpus 0 (nothing
    reserved) caps nothing."""
    if synth.num_cpus <= 0:
        return data
    cap = max(1, int(synth.num_cpus))
    return {**data, "threads": min(int(data["threads"]), cap), "solo_threads": min(int(data["solo_threads"]), cap)}

"""The two Ray Serve deployments: `Synthesizer` (a local worker pool per node) and `Gateway` (every dialect)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import ray
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from pydantic import Field as PydanticField
from ray import serve
from ray.serve.handle import DeploymentHandle

from voxgate.cluster import pieces
from voxgate.cluster.options import GatewayOptions, SynthesizerOptions, replica_settings
from voxgate.engines.base import EngineParams, Piece, VoiceInfo
from voxgate.errors import EngineFailure, Overloaded, VoxgateError
from voxgate.scheduling.backend import Post, SegmentJob
from voxgate.settings import Settings

APP_NAME = "voxgate"  # the Serve application `voxgate serve --ray-address` deploys (and deletes on exit)
# Seconds between a stopping replica's checks for requests still running (Serve's default, 2, is also the
# least a stop takes: it waits once before its first check). The wait for them is bounded by Serve (20 s).
DRAIN_CHECK_S = 0.25
VOICES_PER_REPLICA = 64  # voice load keys a replica reports as held, for routing (its pool's memory budget rules)


class Synthesizer:
    """One replica per node: today's LocalBackend (worker pool, sessions, deadline ordering)."""

    def __init__(self, settings: dict[str, Any], slice_bytes: int = pieces.SLICE_BYTES) -> None:
        from voxgate.app import build_engines
        from voxgate.scheduling.backend import LocalBackend
        from voxgate.scheduling.pool import WorkerPool, limit_malloc_arenas

        limit_malloc_arenas()
        self.settings = s = Settings(**settings)
        self.slice_bytes = slice_bytes
        engines = build_engines(s)
        self.backend = LocalBackend(WorkerPool(engines.__getitem__, s.workers, s.threads, s.solo_threads,
                                               express=s.express_workers, memory_budget_mb=s.memory_budget_mb,
                                               idle_unload_s=s.session_idle_unload_s))

    @serve.multiplexed(max_num_models_per_replica=VOICES_PER_REPLICA)
    async def _voice(self, key: str) -> str:
        # The pool loads sessions itself (lazily, within its memory budget); this registration only tells
        # Serve's router that the voice is warm here, so it sends that voice's segments here first.
        return key

    async def generate(self, voice: VoiceInfo, text: str, params: EngineParams, wait: float, urgent: bool,
                       post: Post | None, background: bool) -> AsyncIterator[Piece | pieces.Slice]:
        """One segment's pieces (a big one in slices); cancelling the call (the client went away) drops or
        interrupts the job."""
        key = serve.get_multiplexed_model_id()
        if key:
            await self._voice(key)
        job = SegmentJob(voice, text, params, time.monotonic() + wait, urgent=urgent, post=post,
                         background=background)
        run = self.backend.generate(job)
        try:
            async for piece in run:
                for part in pieces.slices(piece, self.slice_bytes):  # inline Ray objects (cluster/pieces.py)
                    yield part
        finally:
            await run.aclose()  # a no-op after the end; a cancel when the caller left

    async def preload(self, voice: VoiceInfo) -> None:
        """Load `voice` here and keep it loaded whatever the memory budget."""
        await self.backend.preload(voice)

    def report(self) -> dict[str, Any]:
        """This replica now: where it runs, its load counters and its sessions."""
        health = self.backend.health()
        load = health.load
        return {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "workers": health.workers,
            "load": {name: getattr(load, name) for name in load.__dataclass_fields__},
            "loaded_voices": sorted(health.loaded_voices),
            "sessions": [vars(s) for s in health.sessions],
            "memory_budget_mb": health.memory_budget_mb,
        }

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


@serve.ingress()
class Gateway:
    """The FastAPI app of the single process, every HTTP and WebSocket dialect, over the Synthesizer handle."""

    def __init__(self, settings: dict[str, Any], synthesizer: DeploymentHandle, capacity: int,
                 limit: int | None = None) -> None:
        from voxgate.app import tcp_port_settings

        # TCP dialects are served by `voxgate tcp-front`; compat ports are not opened in cluster mode.
        closed = dict.fromkeys(tcp_port_settings(), 0)
        self.settings = Settings(**{**settings, **closed, "compat_ports": False})
        self.synthesizer = synthesizer
        self.capacity = capacity
        self.limit = limit  # segments the replicas take at once: later ones past it wait in deadline order

    def __serve_build_asgi_app__(self) -> FastAPI:
        from voxgate.app import create_app
        from voxgate.cluster.backend import RayBackend

        backend = RayBackend(self.synthesizer, self.capacity, self.limit)
        app = create_app(self.settings, backend=backend)
        app.include_router(_cluster_router(backend, app))
        return app


class SegmentBody(BaseModel):
    """One segment for `voxgate tcp-front` (cluster/front.py): its text already prepared by the front."""

    voice: str  # voice id, resolved here against the same voice store
    text: str = PydanticField(min_length=1, max_length=10_000)
    speed: float = PydanticField(1.0, gt=0, le=10)
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    seed: int | None = None
    timings: bool = True  # the stream reads word timings (EngineParams.timings)
    wait: float = 0.0  # seconds until the front's stream needs this audio (the deadline)
    urgent: bool = False
    background: bool = False


def _cluster_router(backend: Any, app: FastAPI) -> APIRouter:
    router = APIRouter()

    @router.post("/cluster/segment", tags=["native"])
    async def segment(body: SegmentBody) -> Response:
        """Raw pieces of one segment from a Synthesizer replica (cluster/pieces.py): what tcp-front streams."""
        try:
            voice = app.state.ctx.voices.resolve(body.voice)
        except VoxgateError as exc:
            return JSONResponse({"error": {"message": exc.message}}, 404)
        params = EngineParams(speed=body.speed, noise_scale=body.noise_scale, noise_w_scale=body.noise_w_scale,
                              seed=body.seed, timings=body.timings)
        job = SegmentJob(voice, body.text, params, time.monotonic() + body.wait, urgent=body.urgent,
                         background=body.background)
        run = backend.generate(job)
        try:
            first = await anext(run)
        except StopAsyncIteration:
            first = None
        except Overloaded as exc:
            return JSONResponse({"error": {"message": exc.message}}, 503, headers={"Retry-After": "1"})
        except EngineFailure as exc:
            return JSONResponse({"error": {"message": exc.message}}, 502)

        async def rest() -> AsyncIterator[bytes]:
            try:
                if first is not None:
                    yield pieces.encode(first)
                    async for piece in run:
                        yield pieces.encode(piece)
            finally:
                await run.aclose()  # the front went away: cancel down to the replica

        return StreamingResponse(rest(), media_type=pieces.MEDIA_TYPE)

    @router.get("/cluster", tags=["native"])
    async def cluster() -> JSONResponse:
        """The last report of a Synthesizer replica (pid, node, load counters, sessions) and the Gateway's calls
        (behind the API key, as every route no dialect owns)."""
        backend.report()  # asks for a fresh report when the last is a second old
        for _ in range(20):  # wait for it (bounded)
            await asyncio.sleep(0.05)
            if backend.report() is not None and not backend.asking:
                break
        load = backend.load()
        return JSONResponse({"synthesizer": backend.report(),
                             "gateway": {name: getattr(load, name) for name in load.__dataclass_fields__}})

    return router


def build(settings: Settings, synth: SynthesizerOptions, gateway: GatewayOptions, nodes: int) -> Any:
    """The bound Serve application: Gateway(Synthesizer)."""
    data = settings.model_dump(mode="json")  # a plain dict: every setting (the voice store's too) reaches replicas
    data["data_dir"], data["voices_dir"] = str(settings.data_dir.resolve()), str(settings.voices_path.resolve())
    if settings.api_key is not None:
        data["api_key"] = settings.api_key.get_secret_value()
    max_replicas = synth.max_replicas or max(nodes, synth.min_replicas)
    synthesizer = serve.deployment(Synthesizer).options(
        name="Synthesizer",
        ray_actor_options={"num_cpus": synth.num_cpus, "resources": dict(synth.resources)},
        max_replicas_per_node=1,
        max_ongoing_requests=synth.max_ongoing_requests,
        max_queued_requests=synth.max_queued_requests,
        autoscaling_config={
            "min_replicas": synth.min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": synth.target_ongoing_requests or settings.workers,
            "upscale_delay_s": synth.upscale_delay_s,
            "downscale_delay_s": synth.downscale_delay_s,
        },
        logging_config={"enable_access_log": False},  # a line per segment call would drown the logs
        health_check_period_s=2,
        health_check_timeout_s=10,
        graceful_shutdown_wait_loop_s=DRAIN_CHECK_S,
    )
    front = serve.deployment(Gateway).options(
        name="Gateway",
        num_replicas=gateway.replicas,
        ray_actor_options={"num_cpus": gateway.num_cpus, "resources": dict(gateway.resources)},
        max_ongoing_requests=gateway.max_ongoing_requests,
        logging_config={"enable_access_log": False},
        graceful_shutdown_wait_loop_s=DRAIN_CHECK_S,
    )
    return front.bind(data, synthesizer.bind(replica_settings(data, synth), synth.slice_bytes),
                      settings.workers * max_replicas, synth.max_ongoing_requests * max_replicas)


def app_builder(args: dict[str, Any]) -> Any:
    """The application for a Serve config file or a KubeRay RayService (`import_path:
    voxgate.cluster.deployments:app_builder`): `args` are voxgate settings by field name (ray_synthesizer,
    data_dir, …); VOXGATE_* variables of the cluster's processes fill the rest."""
    from voxgate.cluster.options import gateway_options, synthesizer_options

    settings = Settings(**args)
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return build(settings, synthesizer_options(settings), gateway_options(settings), nodes)

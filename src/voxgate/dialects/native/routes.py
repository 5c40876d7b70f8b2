"""Health, readiness, Prometheus metrics and voice rescans."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from voxgate.core.context import Context


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount the native routes."""

    @app.get("/health", tags=["native"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["native"])
    async def ready() -> JSONResponse:
        loaded = sorted(ctx.service.pool.loaded_voices())
        body = {
            "status": "ready" if ctx.service.ready else "warming",
            "default_voice": ctx.voices.default_voice,
            "voices_loaded": loaded,
            "workers": ctx.service.pool.size,
            "active_requests": ctx.service.active,
        }
        return JSONResponse(body, status_code=200 if ctx.service.ready else 503)

    @app.get("/metrics", tags=["native"])
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/audio/voices/reload", tags=["native"])
    async def reload_voices() -> dict[str, int]:
        count = await asyncio.to_thread(ctx.voices.refresh)
        return {"voices": count}

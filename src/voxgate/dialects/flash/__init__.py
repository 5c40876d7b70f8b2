"""Flash-TTS (`flashtts serve`): /clone_voice, /speak, /multi_speak, roles, /server_info."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from voxgate.core.context import Context
from voxgate.dialects.clones import remove_leftover_clones
from voxgate.dialects.flash.routes import attach_routes
from voxgate.dialects.flash.voices import import_role_dir

_LOG = logging.getLogger(__name__)
ROLE_DIR_KEY = "flash.role_dir"  # in ctx.extras: the --role-dir folder, or None
STARTED_KEY = "flash.started"  # in ctx.extras: the start-up work runs once per server, not per app

__all__ = ["attach", "start"]


async def start(ctx: Context) -> None:
    """Once per server, before it serves: drop temporary voices a crash left, import --role-dir."""
    if ctx.extras.get(STARTED_KEY):
        return
    ctx.extras[STARTED_KEY] = True
    removed = await remove_leftover_clones(ctx)
    if removed:
        _LOG.info("removed %d temporary clone voice(s) left by an earlier run", len(removed))
    role_dir = ctx.extras.get(ROLE_DIR_KEY)
    if isinstance(role_dir, str | Path):
        await import_role_dir(ctx, Path(role_dir))


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount the Flash-TTS routes, and run `start` inside the app's lifespan (after the app's own start-up)."""
    attach_routes(app, ctx)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            await start(ctx)
            yield state

    app.router.lifespan_context = lifespan

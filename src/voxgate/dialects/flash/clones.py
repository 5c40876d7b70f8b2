"""Per-request clone voices of older versions of the Flash-TTS dialect: their id prefix, and their removal
at start (a crash could leave them registered). References used for one request now go to the voice bank's
reference cache (dialects/common.py `load_reference`, `reference_voice`) and never become voices."""

from __future__ import annotations

import asyncio
import logging

from voxgate.core.context import Context

_LOG = logging.getLogger(__name__)
TEMPORARY_PREFIX = "flash-clone-"  # ids of the per-request voices of older versions (removed at start)


async def remove_leftover_clones(ctx: Context) -> list[str]:
    """Remove per-request voices older versions registered and a crash left behind."""
    stored = await asyncio.to_thread(ctx.voicebank.store.list)
    gone = [v.id for v in stored if v.meta.get("temporary") and v.id.startswith(TEMPORARY_PREFIX)]
    for voice_id in gone:
        await ctx.voicebank.remove(voice_id)
    return gone

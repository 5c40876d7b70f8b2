"""References used for one request (Flash-TTS's /clone_voice, a reference `voice` on the OpenAI route),
shared by the dialects that take reference audio in place of a voice name. They go to the voice bank's
reference cache, never into the voice list."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from voxgate.core.context import Context

_LOG = logging.getLogger(__name__)
TEMPORARY_PREFIX = "flash-clone-"  # ids of the per-request voices of older versions (removed at start)
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")
BASE64_SNIFF_CHARS = 256  # a voice "name" this long in the base64 alphabet is audio


def looks_like_reference(value: str) -> bool:
    """Whether a voice value is reference audio (URL, data URI or a long base64 string) rather than a name."""
    text = value.strip()
    return (text[:8].lower().startswith(("http://", "https://", "data:"))
            or (len(text) >= BASE64_SNIFF_CHARS and _BASE64_TEXT.fullmatch(text) is not None))


async def load_reference(ctx: Context, value: str | bytes) -> Any:
    """Reference audio from an upload, an http(s) URL, base64, or (a voxgate extension: Flash-TTS takes
    none) a file in the reference folders: a value with characters outside the base64 alphabet (`.` of a
    file name) is a path, any other is base64, as Flash-TTS reads it."""
    if isinstance(value, str):
        text = value.strip()
        url = text[:8].lower().startswith(("http://", "https://", "data:"))
        if not url and _BASE64_TEXT.fullmatch(text):
            value = "data:;base64," + text
    return await ctx.voicebank.load_reference(value)


async def reference_voice(ctx: Context, reference: Any, transcript: str | None = None,
                          language: str | None = None) -> str:
    """The voice of a reference used for this request only: served from the reference cache (measured
    once, kept across restarts, never listed); it becomes a voice only when registered."""
    return str(await ctx.voicebank.adhoc(reference, transcript=transcript, language=language))


async def remove_leftover_clones(ctx: Context) -> list[str]:
    """Remove per-request voices older versions registered and a crash left behind."""
    stored = await asyncio.to_thread(ctx.voicebank.store.list)
    gone = [v.id for v in stored if v.meta.get("temporary") and v.id.startswith(TEMPORARY_PREFIX)]
    for voice_id in gone:
        await ctx.voicebank.remove(voice_id)
    return gone



"""Voices made from reference audio for one request (Flash-TTS's /clone_voice, a reference `voice` on the
OpenAI route), shared by the dialects that take reference audio in place of a voice name."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from voxgate.core.context import Context
from voxgate.errors import VoxgateError

_LOG = logging.getLogger(__name__)
TEMPORARY_PREFIX = "flash-clone-"  # ids of the voices made for one request
CLONES_KEY = "clones"  # in ctx.extras: one TemporaryVoices per server, shared by every app on the context
ORIGIN = "flash"  # meta origin of temporary voices
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")
BASE64_SNIFF_CHARS = 256  # a voice "name" this long in the base64 alphabet is audio


def looks_like_reference(value: str) -> bool:
    """Whether a voice value is reference audio (URL, data URI or a long base64 string) rather than a name."""
    text = value.strip()
    return (text[:8].lower().startswith(("http://", "https://", "data:"))
            or (len(text) >= BASE64_SNIFF_CHARS and _BASE64_TEXT.fullmatch(text) is not None))


async def load_reference(ctx: Context, value: str | bytes) -> Any:
    """Reference audio from an upload, an http(s) URL or base64 (Flash-TTS never takes server paths)."""
    if isinstance(value, str):
        text = value.strip()
        if not text[:8].lower().startswith(("http://", "https://", "data:")):
            text = "data:;base64," + text  # anything else is base64, never a file name on this server
        value = text
    return await ctx.voicebank.load_reference(value)


class TemporaryVoices:
    """Voices made from reference audio for one request and removed after it.

    The id comes from the audio's hash, so concurrent requests with one reference share a voice (counted),
    and a reference used again gets the level the service measured for it before.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._users: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, reference: Any, transcript: str | None = None) -> str:
        """Register (or share) the voice of `reference`; every acquire needs one release."""
        voice_id = TEMPORARY_PREFIX + (await asyncio.to_thread(reference.sha256))[:16]
        lock = self._locks.setdefault(voice_id, asyncio.Lock())
        async with lock:
            if not self._users.get(voice_id):
                await self._ctx.voicebank.register(voice_id, reference, transcript=transcript,
                                                   meta={"origin": ORIGIN, "temporary": True}, replace=True)
            self._users[voice_id] = self._users.get(voice_id, 0) + 1
        return voice_id

    async def release(self, voice_id: str) -> None:
        """Drop one use; the last one removes the voice (shielded: a cancelled request still cleans up)."""
        await asyncio.shield(self._release(voice_id))

    async def _release(self, voice_id: str) -> None:
        async with self._locks.setdefault(voice_id, asyncio.Lock()):
            left = self._users.get(voice_id, 0) - 1
            if left > 0:
                self._users[voice_id] = left
                return
            self._users.pop(voice_id, None)  # the lock stays: a request may be waiting on it right now
            try:
                await self._ctx.voicebank.remove(voice_id)
            except VoxgateError as exc:  # never fails a response that was already answered
                _LOG.warning("could not remove temporary voice %s: %s", voice_id, exc.message)


def temporary_voices(ctx: Context) -> TemporaryVoices:
    """The server's one TemporaryVoices (shared by every app mounted on this context)."""
    clones = ctx.extras.setdefault(CLONES_KEY, TemporaryVoices(ctx))
    assert isinstance(clones, TemporaryVoices)
    return clones


async def remove_leftover_clones(ctx: Context) -> list[str]:
    """Remove temporary voices a crash left behind (none is in use before the server serves)."""
    stored = await asyncio.to_thread(ctx.voicebank.store.list)
    gone = [v.id for v in stored if v.meta.get("temporary") and v.id.startswith(TEMPORARY_PREFIX)]
    for voice_id in gone:
        await ctx.voicebank.remove(voice_id)
    return gone



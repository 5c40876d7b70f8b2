"""HTTP handlers of the CosyVoice streaming server: /, /alive, /speakers, /remove, /cache/*, /clone, POST /tts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from voxgate.audio.encoders import encode_all
from voxgate.audio.pcm import wav_header
from voxgate.core.context import Context
from voxgate.dialects.auth import MESSAGE
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import failure, parse_json, unless_disconnected
from voxgate.dialects.cosyvoice.cache import CacheFiles
from voxgate.dialects.cosyvoice.errors import DIALECT, ERRORS, error_response, speaker
from voxgate.dialects.cosyvoice.protocol import (
    CloneInput,
    LoadCacheInput,
    OutputParams,
    RemoveInput,
    SaveCacheInput,
    TtsInput,
)
from voxgate.dialects.cosyvoice.ws import Link
from voxgate.errors import (
    InvalidInput,
    Unauthorized,
)

_LOG = logging.getLogger(__name__)
ORIGIN = {"origin": DIALECT}  # meta of the voices /clone registers; /remove with [] removes only these


def _raw_pcm(text: str, rate: int, max_bytes: int) -> bytes | None:
    """Raw s16le PCM in base64 wrapped as a WAV file, or None if `text` is not base64 (a path or URL then)."""
    compact = "".join(text.split())
    if compact.lower().startswith(("http://", "https://")) or len(compact) % 4:
        return None
    if len(compact) // 4 * 3 > max_bytes:
        raise InvalidInput(f"prompt_audio is too large (at most {max_bytes / 2**20:.1f} MB)", param="prompt_audio")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not 8000 <= rate <= 192_000:
        raise InvalidInput(f"sample_rate {rate} Hz is outside 8000–192000", param="sample_rate")
    data = data[: len(data) // 2 * 2]
    return wav_header(rate, data_bytes=len(data)) + data


async def synthesize_file(ctx: Context, params: OutputParams, voice: str, text: str,
                          request: Request) -> bytes:
    """The whole text as one file of the requested format (the original: one pass, no splitting)."""

    async def collect() -> np.ndarray:
        async with await ctx.service.open(params.to_request(voice, text)) as stream:
            parts = [chunk.samples async for chunk in stream]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    samples = await unless_disconnected(request, collect())
    return await asyncio.to_thread(encode_all, samples, params.sample_rate, params.audio_format)


@dataclass(frozen=True)
class CosyVoiceConfig:
    """The settings this dialect reads (filled by the composition root)."""

    cache_dir: Path | None = None  # every /cache/* file lives in it; None: voice caches are not available
    # The voice archive (voxgate.voices.archive, which a dialect may not import), run off the event loop:
    export_voices: Callable[..., list[str]] | None = None  # (store, dest, ids, root=cache_dir) -> ids
    import_voices: Callable[..., list[Any]] | None = None  # (store, src) -> [(voice, existed)]


routes = Routes()


class CosyVoice(Dialect):
    """The CosyVoice streaming server on the core: HTTP voice management and /tts, WebSocket /tts."""

    name = "cosyvoice"
    original = "CosyVoice"
    port = 12244
    routes = routes

    def __init__(self, ctx: Context, config: CosyVoiceConfig) -> None:
        super().__init__(ctx)
        self.cache = CacheFiles(ctx, config.cache_dir, config.export_voices, config.import_voices)

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """The original's error body: the message as a bare JSON string (the key check: its PermissionError)."""
        if isinstance(exc, Unauthorized):
            found = failure(self.ctx.metrics, DIALECT, exc, ERRORS)
            return JSONResponse(refusal(found.message), status_code=found.spec.status)
        return error_response(self.ctx, exc)

    def claims(self, request: Request, body: bytes) -> bool:
        """GET / is CosyVoice's "Hello." unless a browser asks for the page; POST /tts when the body is a JSON
        object with `prompt_id` and neither of GPT-SoVITS's `text_lang` and `ref_audio_path`."""
        if request.url.path == "/":
            return not any("text/html" in accept for accept in request.headers.getlist("accept"))
        if request.method == "POST" and request.url.path == "/tts":
            try:
                payload = parse_json(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return False
            return isinstance(payload, dict) and "prompt_id" in payload \
                and "text_lang" not in payload and "ref_audio_path" not in payload
        return True


CosyVoiceDep = Annotated[CosyVoice, Depends(this_dialect)]


@routes.get("/", public=True, include_in_schema=False)
async def hello() -> Response:
    return JSONResponse("Hello.")


@routes.get("/alive", tags=["cosyvoice"])
async def alive() -> dict[str, str]:
    return {"status": "alive"}


@routes.get("/speakers", tags=["cosyvoice"])
async def speakers(dialect: CosyVoiceDep) -> list[str]:
    return [voice.id for voice in dialect.ctx.voices.list()]


@routes.post("/remove", tags=["cosyvoice"], response_model=None)
async def remove(body: RemoveInput, dialect: CosyVoiceDep) -> dict[str, Any]:
    ctx = dialect.ctx
    wanted = list(body.prompt_ids or [])
    if body.prompt_id is not None:
        wanted.append(body.prompt_id)
    stored = await asyncio.to_thread(ctx.voicebank.store.list)
    if not wanted:  # [] = all: every voice this dialect registered, not other dialects' or installed ones
        wanted = [v.id for v in stored if v.meta.get("origin") == DIALECT]
    registered = {v.id for v in stored}
    removed = []
    for voice_id in dict.fromkeys(wanted):
        if voice_id in registered and await ctx.voicebank.remove(voice_id):
            removed.append(voice_id)
    if body.prompt_ids is None:
        return {"status": "ok", "removed_speakers": removed}  # the seed doc's answer, plus the list
    return {"removed_speakers": removed}


@routes.post("/cache/save", tags=["cosyvoice"], response_model=None)
async def cache_save(body: SaveCacheInput, dialect: CosyVoiceDep) -> dict[str, Any]:
    return {"cache_path": await dialect.cache.save(body.cache_dir, body.filename, body.prompt_ids)}


@routes.post("/cache/load", tags=["cosyvoice"], response_model=None)
async def cache_load(body: LoadCacheInput, dialect: CosyVoiceDep) -> dict[str, Any]:
    return {"loaded_speakers": await dialect.cache.load(body.cache_path, body.prompt_ids)}


@routes.post("/clone", tags=["cosyvoice"], response_model=None)
async def clone(body: CloneInput, dialect: CosyVoiceDep) -> dict[str, Any]:
    ctx = dialect.ctx
    prompt_id = body.voice_id()
    if prompt_id in {voice.id for voice in ctx.voices.list()}:
        return {"existed": True, "prompt_id": prompt_id}
    raw = None
    if body.audio_format.strip().lower() == "pcm":
        raw = await asyncio.to_thread(_raw_pcm, body.prompt_audio, body.sample_rate,
                                      ctx.voicebank.policy.limits.max_bytes)
    reference = await ctx.voicebank.load_reference(raw if raw is not None else body.prompt_audio)
    voice, existed = await ctx.voicebank.register(
        prompt_id, reference, transcript=body.prompt_text.strip() or None,
        meta={**ORIGIN, "loudness": body.loudness})
    return {"existed": existed, "prompt_id": voice.id}


@routes.post("/tts", tags=["cosyvoice"], response_model=None)
async def tts(body: TtsInput, request: Request, dialect: CosyVoiceDep) -> Response:
    voice = speaker(dialect.ctx, body.prompt_id)
    body.check()
    data = await synthesize_file(dialect.ctx, body, voice, body.text, request)
    encoded = await asyncio.to_thread(base64.b64encode, data)
    return JSONResponse({"audio": encoded.decode("ascii")})


# The WebSocket checks the key itself: a refusal is a message in the session's shape, then a close.
@routes.websocket("/tts")
async def tts_stream(websocket: WebSocket, dialect: CosyVoiceDep) -> None:
    if not dialect.authorized(websocket):
        found = failure(dialect.ctx.metrics, DIALECT, Unauthorized(MESSAGE), ERRORS)
        await websocket.accept()  # say why in the session's error message, then close (policy violation)
        await websocket.send_text(json.dumps(refusal(found.message)))
        await websocket.close(1008, "unauthorized")
        return
    await websocket.accept()
    await Link(websocket, dialect.ctx).run()


def refusal(message: str) -> dict[str, Any]:
    """The key check's answer, as the original reports a PermissionError."""
    return {"error": True, "message": f"PermissionError: {message}"}

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
from typing import Any

import numpy as np
from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse, Response

from voxgate.audio.encoders import encode_all
from voxgate.audio.pcm import wav_header
from voxgate.core.context import Context
from voxgate.dialects.auth import MESSAGE
from voxgate.dialects.base import Dialect
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


class CosyVoice(Dialect):
    """The CosyVoice streaming server on the core: HTTP voice management and /tts, WebSocket /tts."""

    name = "cosyvoice"
    original = "CosyVoice"
    port = 12244

    def __init__(self, ctx: Context, config: CosyVoiceConfig) -> None:
        super().__init__(ctx)
        self.cache = CacheFiles(ctx, config.cache_dir, config.export_voices, config.import_voices)
        add = self.router.add_api_route
        self.public.add_api_route("/", hello, methods=["GET"], include_in_schema=False)
        add("/alive", alive, methods=["GET"], tags=["cosyvoice"])
        add("/speakers", self.speakers, methods=["GET"], tags=["cosyvoice"])
        add("/remove", self.remove, methods=["POST"], tags=["cosyvoice"], response_model=None)
        add("/cache/save", self.cache_save, methods=["POST"], tags=["cosyvoice"], response_model=None)
        add("/cache/load", self.cache_load, methods=["POST"], tags=["cosyvoice"], response_model=None)
        add("/clone", self.clone, methods=["POST"], tags=["cosyvoice"], response_model=None)
        add("/tts", self.tts, methods=["POST"], tags=["cosyvoice"], response_model=None)
        # The WebSocket checks the key itself: a refusal is a message in the session's shape, then a close.
        self.public.add_api_websocket_route("/tts", self.tts_stream)

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

    async def speakers(self) -> list[str]:
        return [voice.id for voice in self.ctx.voices.list()]

    async def remove(self, body: RemoveInput) -> dict[str, Any]:
        ctx = self.ctx
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

    async def cache_save(self, body: SaveCacheInput) -> dict[str, Any]:
        return {"cache_path": await self.cache.save(body.cache_dir, body.filename, body.prompt_ids)}

    async def cache_load(self, body: LoadCacheInput) -> dict[str, Any]:
        return {"loaded_speakers": await self.cache.load(body.cache_path, body.prompt_ids)}

    async def clone(self, body: CloneInput) -> dict[str, Any]:
        ctx = self.ctx
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

    async def tts(self, body: TtsInput, request: Request) -> Response:
        voice = speaker(self.ctx, body.prompt_id)
        body.check()
        data = await synthesize_file(self.ctx, body, voice, body.text, request)
        encoded = await asyncio.to_thread(base64.b64encode, data)
        return JSONResponse({"audio": encoded.decode("ascii")})

    async def tts_stream(self, websocket: WebSocket) -> None:
        if not self.authorized(websocket):
            found = failure(self.ctx.metrics, DIALECT, Unauthorized(MESSAGE), ERRORS)
            await websocket.accept()  # say why in the session's error message, then close (policy violation)
            await websocket.send_text(json.dumps(refusal(found.message)))
            await websocket.close(1008, "unauthorized")
            return
        await websocket.accept()
        await Link(websocket, self.ctx).run()


def refusal(message: str) -> dict[str, Any]:
    """The key check's answer, as the original reports a PermissionError."""
    return {"error": True, "message": f"PermissionError: {message}"}


async def hello() -> Response:
    return JSONResponse("Hello.")


async def alive() -> dict[str, str]:
    return {"status": "alive"}

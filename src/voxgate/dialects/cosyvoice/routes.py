"""HTTP handlers of the CosyVoice streaming server: /, /alive, /speakers, /remove, /cache/*, /clone, POST /tts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from voxgate.audio.encoders import encode_all
from voxgate.audio.pcm import wav_header
from voxgate.core.context import Context
from voxgate.dialects.common import ErrorSpec, failure, parse_json, unless_disconnected
from voxgate.dialects.cosyvoice.cache import CacheFiles
from voxgate.dialects.cosyvoice.protocol import (
    NO_SUCH_SPEAKER,
    CloneInput,
    LoadCacheInput,
    OutputParams,
    RemoveInput,
    SaveCacheInput,
    TtsInput,
)
from voxgate.dialects.gptsovits.protocol import claims
from voxgate.errors import (
    Cancelled,
    EngineFailure,
    ForbiddenReference,
    InvalidInput,
    Overloaded,
    Unauthorized,
    VoiceNotFound,
    VoxgateError,
)

_LOG = logging.getLogger(__name__)
DIALECT = "cosyvoice"
ORIGIN = {"origin": DIALECT}  # meta of the voices /clone registers; /remove with [] removes only these

# The original answers every failure with 500 and the message as a JSON string; the status says more here.
ERRORS: dict[type[BaseException], ErrorSpec] = {
    InvalidInput: ErrorSpec(400, code="invalid_input"),
    ForbiddenReference: ErrorSpec(403, code="forbidden_path"),
    Unauthorized: ErrorSpec(401, code="unauthorized"),
    VoiceNotFound: ErrorSpec(404, code="voice_not_found"),
    Overloaded: ErrorSpec(503, code="server_overloaded"),
    Cancelled: ErrorSpec(499, code="cancelled"),
    EngineFailure: ErrorSpec(500, code="engine_failure"),
}


def error_response(ctx: Context, exc: BaseException) -> JSONResponse:
    """The original's error body: the message as a bare JSON string."""
    found = failure(ctx.metrics, DIALECT, exc, ERRORS, ErrorSpec(500, code="internal_error"))
    return JSONResponse(found.message, status_code=found.spec.status, headers=found.headers)


def speaker(ctx: Context, prompt_id: str) -> str:
    """The voice id a prompt_id names, or VoiceNotFound("No such speaker.") (never the default voice)."""
    if not prompt_id.strip():
        raise VoiceNotFound(NO_SUCH_SPEAKER, param="prompt_id")
    try:
        return ctx.voices.resolve(prompt_id).id
    except VoiceNotFound:
        raise VoiceNotFound(NO_SUCH_SPEAKER, param="prompt_id") from None


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


class ByBody:
    """One POST path shared by two dialects: the JSON body decides which route handles the request.

    The body is read once and replayed to the chosen route, which then runs exactly as if it had been
    matched by the router (validation, dependencies, its own errors).
    """

    def __init__(self, mine: APIRoute, theirs: APIRoute, is_theirs: Callable[[Mapping[str, Any]], bool]) -> None:
        self._mine, self._theirs, self._is_theirs = mine, theirs, is_theirs

    def _choose(self, body: bytes) -> APIRoute:
        try:
            payload = parse_json(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._theirs  # forms and broken JSON: the other dialect accepts forms
        if isinstance(payload, dict) and not self._is_theirs(payload):
            return self._mine
        return self._theirs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        route = self._choose(body)
        _, child = route.matches(scope)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later reads wait for the disconnect, as on a fresh request

        await route.handle({**scope, **child}, replay, send)


def share_post(app: FastAPI, mine: APIRoute) -> None:
    """If GPT-SoVITS already serves POST `mine.path` on this app, put a body-based chooser in front of both.

    Both routes stay in the route list (so both appear in the OpenAPI schema); the chooser comes first.
    """
    routes = app.router.routes
    theirs = next((r for r in routes if isinstance(r, APIRoute) and r is not mine and r.path == mine.path
                   and "POST" in r.methods), None)
    if theirs is None:
        return
    chooser = Route(mine.path, ByBody(mine, theirs, claims), methods=["POST"], include_in_schema=False)
    routes.insert(routes.index(theirs), chooser)


class NotForBrowsers(Route):
    """A route that steps aside for requests that accept HTML, so a browser page can share its path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and any(k == b"accept" and b"text/html" in v for k, v in scope["headers"]):
            return Match.NONE, {}
        return match, child


async def _hello(request: Request) -> Response:
    return JSONResponse("Hello.")


def share_index(app: FastAPI) -> None:
    """GET / answers "Hello."; where a page is already served at / (the web UI), browsers keep getting it."""
    routes = app.router.routes
    page = next((r for r in routes if isinstance(r, Route) and r.path == "/" and "GET" in (r.methods or ())), None)
    if page is None:
        routes.append(Route("/", _hello, methods=["GET"], include_in_schema=False))
    else:
        routes.insert(routes.index(page), NotForBrowsers("/", _hello, methods=["GET"], include_in_schema=False))


def attach_http(app: FastAPI, ctx: Context) -> None:
    """Mount the HTTP routes."""
    cache = CacheFiles(ctx)

    def count() -> None:
        ctx.metrics.requests.labels(DIALECT).inc()

    share_index(app)

    @app.get("/alive", tags=["cosyvoice"])
    async def alive() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/speakers", tags=["cosyvoice"])
    async def speakers() -> list[str]:
        return [voice.id for voice in ctx.voices.list()]

    @app.post("/remove", tags=["cosyvoice"], response_model=None)
    async def remove(body: RemoveInput) -> Response | dict[str, Any]:
        count()
        wanted = list(body.prompt_ids or [])
        if body.prompt_id is not None:
            wanted.append(body.prompt_id)
        stored = await asyncio.to_thread(ctx.voicebank.store.list)
        if not wanted:  # [] = all: every voice this dialect registered, not other dialects' or installed ones
            wanted = [v.id for v in stored if v.meta.get("origin") == DIALECT]
        registered = {v.id for v in stored}
        removed = []
        try:
            for voice_id in dict.fromkeys(wanted):
                if voice_id in registered and await ctx.voicebank.remove(voice_id):
                    removed.append(voice_id)
        except VoxgateError as exc:
            return error_response(ctx, exc)
        if body.prompt_ids is None:
            return {"status": "ok", "removed_speakers": removed}  # the seed doc's answer, plus the list
        return {"removed_speakers": removed}

    @app.post("/cache/save", tags=["cosyvoice"], response_model=None)
    async def cache_save(body: SaveCacheInput) -> Response | dict[str, Any]:
        count()
        try:
            return {"cache_path": await cache.save(body.cache_dir, body.filename, body.prompt_ids)}
        except VoxgateError as exc:
            return error_response(ctx, exc)

    @app.post("/cache/load", tags=["cosyvoice"], response_model=None)
    async def cache_load(body: LoadCacheInput) -> Response | dict[str, Any]:
        count()
        try:
            return {"loaded_speakers": await cache.load(body.cache_path, body.prompt_ids)}
        except VoxgateError as exc:
            return error_response(ctx, exc)

    @app.post("/clone", tags=["cosyvoice"], response_model=None)
    async def clone(body: CloneInput) -> Response | dict[str, Any]:
        count()
        prompt_id = body.voice_id()
        if prompt_id in {voice.id for voice in ctx.voices.list()}:
            return {"existed": True, "prompt_id": prompt_id}
        try:
            raw = None
            if body.audio_format.strip().lower() == "pcm":
                raw = await asyncio.to_thread(_raw_pcm, body.prompt_audio, body.sample_rate,
                                              ctx.voicebank.policy.limits.max_bytes)
            reference = await ctx.voicebank.load_reference(raw if raw is not None else body.prompt_audio)
            voice, existed = await ctx.voicebank.register(
                prompt_id, reference, transcript=body.prompt_text.strip() or None,
                meta={**ORIGIN, "loudness": body.loudness})
        except VoxgateError as exc:
            return error_response(ctx, exc)
        return {"existed": existed, "prompt_id": voice.id}

    async def tts(body: TtsInput, request: Request) -> Response:
        count()
        try:
            voice = speaker(ctx, body.prompt_id)
            body.check()
            data = await synthesize_file(ctx, body, voice, body.text, request)
        except VoxgateError as exc:
            return error_response(ctx, exc)
        encoded = await asyncio.to_thread(base64.b64encode, data)
        return JSONResponse({"audio": encoded.decode("ascii")})

    app.post("/tts", tags=["cosyvoice"], response_model=None)(tts)
    share_post(app, next(r for r in app.router.routes if isinstance(r, APIRoute) and r.endpoint is tts))

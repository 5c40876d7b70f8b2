"""voxgate's own endpoints: health, readiness, metrics, and the voice catalogue (list, add, get, delete)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import UploadFile

from voxgate.core.context import Context
from voxgate.dialects.auth import key_matches, presented_key
from voxgate.dialects.common import (
    FORM,
    JSON,
    MAX_REFERENCE_FORM_PART,
    MULTIPART,
    ErrorSpec,
    envelope_response,
    fields_schema,
    json_object,
    request_body,
)
from voxgate.dialects.native.lexicon import EntryNotFound, attach_lexicon
from voxgate.errors import (
    EngineFailure,
    ForbiddenReference,
    InvalidInput,
    InvalidReference,
    Overloaded,
    Unauthorized,
    VoiceExists,
    VoiceNotFound,
    VoxgateError,
)

DIALECT = "native"

ERRORS: dict[type[BaseException], ErrorSpec] = {
    InvalidReference: ErrorSpec(400, "invalid_request_error", "invalid_reference"),
    ForbiddenReference: ErrorSpec(403, "invalid_request_error", "forbidden_reference"),
    VoiceExists: ErrorSpec(409, "invalid_request_error", "voice_exists"),
    InvalidInput: ErrorSpec(400, "invalid_request_error", "invalid_value"),
    VoiceNotFound: ErrorSpec(404, "invalid_request_error", "voice_not_found"),
    Unauthorized: ErrorSpec(401, "invalid_request_error", "invalid_api_key"),
    Overloaded: ErrorSpec(503, "server_error", "server_overloaded"),
    EngineFailure: ErrorSpec(500, "server_error", "engine_failure"),
    EntryNotFound: ErrorSpec(404, "invalid_request_error", "entry_not_found"),
}


async def _voice_fields(request: Request) -> dict[str, Any]:
    """The add-voice fields from multipart, urlencoded or JSON; `audio` as bytes (file) or a string."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return await json_object(request, invalid="the request body is not valid JSON",
                                 not_object="the request body must be a JSON object")
    try:
        form = await request.form(max_part_size=MAX_REFERENCE_FORM_PART)
    except Exception as exc:  # the multipart parser's errors are plain exceptions with useful text
        raise InvalidInput(f"could not read the form: {exc}") from None
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        fields[key] = await value.read() if isinstance(value, UploadFile) else value
    return fields


def _text(fields: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"'{key}' is required", param=key)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{key}' must be a string", param=key)
    return value


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount the native routes."""

    def error(exc: BaseException) -> JSONResponse:
        return envelope_response(ctx.metrics, DIALECT, exc, ERRORS)

    attach_lexicon(app, ctx, error)

    @app.get("/health", tags=["native"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["native"])
    async def ready(request: Request) -> JSONResponse:
        service = ctx.service
        status = "warming" if not service.ready else "saturated" if service.saturated else "ready"
        code = 200 if status == "ready" else 503
        key = ctx.api_key
        if isinstance(key, str) and key and not key_matches(presented_key(request.scope), key):
            return JSONResponse({"status": status}, status_code=code)  # an open door: it reveals nothing more
        body = {
            "status": status,
            "default_voice": ctx.voices.default_voice,
            "voices_loaded": sorted(service.pool.loaded_voices()),
            "workers": service.pool.size,
            "active_requests": service.active,
            "slots": {"held": service.active, "total": service.capacity,
                      "saturated_seconds": round(service.saturated_for, 1)},
            "engines": ctx.voices.engine_report(),
            "sessions": service.pool.sessions(),
            "match_bases": ctx.voicebank.bases.progress(),  # base voices measured for voice matching
        }
        return JSONResponse(body, status_code=code)

    @app.get("/metrics", tags=["native"])
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/audio/voices", tags=["native"])
    async def list_voices() -> dict[str, object]:
        data = [ctx.voicebank.describe(v) for v in ctx.voices.list()]
        return {"object": "list", "data": data, "voices": [v["id"] for v in data]}

    @app.post("/v1/audio/voices/reload", tags=["native"])
    async def reload_voices() -> dict[str, int]:
        count = await asyncio.to_thread(ctx.voices.refresh)
        await ctx.voicebank.rematch()
        return {"voices": count}

    @app.post("/v1/audio/voices", tags=["native"], status_code=201, openapi_extra=request_body(
        fields_schema(("name", "audio"), ("transcript", "language", "replace"), "AddVoice"),
        MULTIPART, JSON, FORM, files=("audio",)))
    async def add_voice(request: Request) -> Response:
        ctx.metrics.requests.labels(DIALECT).inc()
        try:
            fields = await _voice_fields(request)
            name = _text(fields, "name", required=True)
            audio = fields.get("audio")
            if not isinstance(audio, bytes | str) or not audio:
                raise InvalidInput("'audio' is required: a file, base64, a server-side path or a URL",
                                   param="audio")
            reference = await ctx.voicebank.load_reference(audio)
            replace = str(fields.get("replace", "")).lower() in {"1", "true", "yes"}
            voice, existed = await ctx.voicebank.register(
                str(name), reference, transcript=_text(fields, "transcript"),
                language=_text(fields, "language"), meta={"origin": DIALECT}, replace=replace)
            if existed and not replace:
                raise VoiceExists(f"a voice named {voice.id!r} already exists; send replace=true to replace it",
                                  param="name")
        except VoxgateError as exc:
            return error(exc)
        return JSONResponse(ctx.voicebank.describe(voice), status_code=200 if existed else 201)

    @app.get("/v1/audio/voices/{voice_id}", tags=["native"])
    async def get_voice(voice_id: str) -> Response:
        try:
            return JSONResponse(ctx.voicebank.describe(ctx.voices.resolve(voice_id)))
        except VoxgateError as exc:
            return error(exc)

    @app.get("/v1/audio/voices/{voice_id}/reference", tags=["native"])
    async def reference_audio(voice_id: str) -> Response:
        stored = ctx.voicebank.store.get(voice_id)
        if stored is None:
            return error(VoiceNotFound(f"no registered voice {voice_id!r}", param="voice"))
        return FileResponse(ctx.voicebank.store.audio_path(stored.audio_sha256), media_type="audio/wav",
                            filename=f"{voice_id}.wav")

    @app.delete("/v1/audio/voices/{voice_id}", tags=["native"])
    async def delete_voice(voice_id: str) -> Response:
        try:
            if not await ctx.voicebank.remove(voice_id):
                raise VoiceNotFound(f"no registered voice {voice_id!r}", param="voice")
        except VoxgateError as exc:
            return error(exc)
        return JSONResponse({"id": voice_id, "object": "voice", "deleted": True})

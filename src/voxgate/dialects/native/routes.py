"""voxgate's own endpoints: health, readiness, metrics, the voice catalogue (list, add, get, delete), the
lexicon, and speech with captions (POST /v1/speech)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import UploadFile

from voxgate.core.context import Context
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import (
    ENVELOPE_ERRORS,
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
from voxgate.dialects.native import lexicon, speech
from voxgate.dialects.native.lexicon import EntryNotFound
from voxgate.errors import (
    ForbiddenReference,
    InvalidInput,
    InvalidReference,
    VoiceExists,
    VoiceNotFound,
)

DIALECT = "native"

ERRORS: dict[type[BaseException], ErrorSpec] = {
    **ENVELOPE_ERRORS,
    InvalidReference: ErrorSpec(400, "invalid_request_error", "invalid_reference"),
    ForbiddenReference: ErrorSpec(403, "invalid_request_error", "forbidden_reference"),
    VoiceExists: ErrorSpec(409, "invalid_request_error", "voice_exists"),
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


routes = Routes()


class Native(Dialect):
    """voxgate's own doors: the probes and metrics, and the voice catalogue."""

    name = DIALECT
    routes = routes

    def __init__(self, ctx: Context, config: object = None) -> None:
        super().__init__(ctx)

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """Any error in the OpenAI-style envelope voxgate's own routes speak."""
        return envelope_response(self.ctx.metrics, DIALECT, exc, ERRORS)


NativeDep = Annotated[Native, Depends(this_dialect)]


@routes.get("/health", public=True, tags=["native"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@routes.get("/ready", public=True, tags=["native"])
async def ready(request: Request, dialect: NativeDep) -> JSONResponse:
    ctx = dialect.ctx
    service = ctx.service
    status = "warming" if not service.ready else "saturated" if service.saturated else "ready"
    code = 200 if status == "ready" else 503
    if not dialect.authorized(request):
        return JSONResponse({"status": status}, status_code=code)  # an open door: it reveals nothing more
    backend = service.health().backend
    body = {
        "status": status,
        "default_voice": ctx.voices.default_voice,
        "voices_loaded": sorted(backend.loaded_voices),
        "workers": backend.workers,
        "active_requests": service.active,
        "slots": {"held": service.active, "total": service.capacity,
                  "saturated_seconds": round(service.saturated_for, 1)},
        "engines": ctx.voices.engine_report(),
        "sessions": [asdict(session) for session in backend.sessions],
        "match_bases": ctx.voicebank.bases.progress(),  # base voices measured for voice matching
        **({"upstreams": dict(backend.upstreams)} if backend.upstreams else {}),  # docs/upstreams.md
    }
    return JSONResponse(body, status_code=code)


@routes.get("/metrics", tags=["native"])
async def metrics(dialect: NativeDep) -> Response:
    return Response(dialect.ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@routes.get("/v1/audio/voices", tags=["native"])
async def list_voices(dialect: NativeDep) -> dict[str, object]:
    ctx = dialect.ctx
    data = [ctx.voicebank.describe(v) for v in ctx.voices.list()]
    return {"object": "list", "data": data, "voices": [v["id"] for v in data]}


@routes.post("/v1/audio/voices/reload", tags=["native"])
async def reload_voices(dialect: NativeDep) -> dict[str, int]:
    ctx = dialect.ctx
    count = await asyncio.to_thread(ctx.voices.refresh)
    await ctx.voicebank.rematch()
    return {"voices": count}


@routes.post("/v1/audio/voices", tags=["native"], status_code=201,
             openapi_extra=request_body(fields_schema(("name", "audio"),
                                                      ("transcript", "language", "replace", "upstream"), "AddVoice"),
                                        MULTIPART, JSON, FORM, files=("audio",)))
async def add_voice(request: Request, dialect: NativeDep) -> Response:
    ctx = dialect.ctx
    fields = await _voice_fields(request)
    name = _text(fields, "name", required=True)
    audio = fields.get("audio")
    if not isinstance(audio, bytes | str) or not audio:
        raise InvalidInput("'audio' is required: a file, base64, a server-side path or a URL", param="audio")
    reference = await ctx.voicebank.load_reference(audio)
    replace = str(fields.get("replace", "")).lower() in {"1", "true", "yes"}
    voice, existed = await ctx.voicebank.register(
        str(name), reference, transcript=_text(fields, "transcript"),
        language=_text(fields, "language"), meta={"origin": DIALECT}, replace=replace,
        upstream=_text(fields, "upstream"))  # clone it on that upstream too (docs/upstreams.md)
    if existed and not replace:
        raise VoiceExists(f"a voice named {voice.id!r} already exists; send replace=true to replace it",
                          param="name")
    return JSONResponse(ctx.voicebank.describe(voice), status_code=200 if existed else 201)


@routes.get("/v1/audio/voices/{voice_id}", tags=["native"])
async def get_voice(voice_id: str, dialect: NativeDep) -> Response:
    return JSONResponse(dialect.ctx.voicebank.describe(dialect.ctx.voices.resolve(voice_id)))


@routes.get("/v1/audio/voices/{voice_id}/reference", tags=["native"])
async def reference_audio(voice_id: str, dialect: NativeDep) -> Response:
    store = dialect.ctx.voicebank.store
    stored = store.get(voice_id)
    if stored is None:
        raise VoiceNotFound(f"no registered voice {voice_id!r}", param="voice")
    return FileResponse(store.audio_path(stored.audio_sha256), media_type="audio/wav", filename=f"{voice_id}.wav")


@routes.delete("/v1/audio/voices/{voice_id}", tags=["native"])
async def delete_voice(voice_id: str, dialect: NativeDep) -> Response:
    if not await dialect.ctx.voicebank.remove(voice_id):
        raise VoiceNotFound(f"no registered voice {voice_id!r}", param="voice")
    return JSONResponse({"id": voice_id, "object": "voice", "deleted": True})


routes.include(lexicon.routes)  # GET/PUT/DELETE /v1/lexicon (native/lexicon.py)
routes.include(speech.routes)  # POST /v1/speech (native/speech.py)

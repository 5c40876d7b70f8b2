"""voxgate's own endpoints: health, readiness, metrics, the voice catalogue (list, add, get, delete), the
lexicon, and speech with captions (POST /v1/speech)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import UploadFile

from voxgate.core.context import Context
from voxgate.dialects.base import Dialect
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
from voxgate.dialects.native.lexicon import EntryNotFound, attach_lexicon
from voxgate.dialects.native.speech import attach_speech
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


class Native(Dialect):
    """voxgate's own doors: the probes and metrics, and the voice catalogue."""

    name = DIALECT

    def __init__(self, ctx: Context, config: object = None) -> None:
        super().__init__(ctx)
        self.public.add_api_route("/health", self.health, methods=["GET"], tags=["native"])
        self.public.add_api_route("/ready", self.ready, methods=["GET"], tags=["native"])
        add = self.router.add_api_route
        add("/metrics", self.metrics, methods=["GET"], tags=["native"])
        add("/v1/audio/voices", self.list_voices, methods=["GET"], tags=["native"])
        add("/v1/audio/voices/reload", self.reload_voices, methods=["POST"], tags=["native"])
        add("/v1/audio/voices", self.add_voice, methods=["POST"], tags=["native"], status_code=201,
            openapi_extra=request_body(fields_schema(("name", "audio"),
                                                     ("transcript", "language", "replace", "upstream"), "AddVoice"),
                                       MULTIPART, JSON, FORM, files=("audio",)))
        add("/v1/audio/voices/{voice_id}", self.get_voice, methods=["GET"], tags=["native"])
        add("/v1/audio/voices/{voice_id}/reference", self.reference_audio, methods=["GET"], tags=["native"])
        add("/v1/audio/voices/{voice_id}", self.delete_voice, methods=["DELETE"], tags=["native"])
        attach_lexicon(self.router, ctx)
        attach_speech(self.router, ctx)

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """Any error in the OpenAI-style envelope voxgate's own routes speak."""
        return envelope_response(self.ctx.metrics, DIALECT, exc, ERRORS)

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def ready(self, request: Request) -> JSONResponse:
        ctx = self.ctx
        service = ctx.service
        status = "warming" if not service.ready else "saturated" if service.saturated else "ready"
        code = 200 if status == "ready" else 503
        if not self.authorized(request):
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

    async def metrics(self) -> Response:
        return Response(self.ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def list_voices(self) -> dict[str, object]:
        ctx = self.ctx
        data = [ctx.voicebank.describe(v) for v in ctx.voices.list()]
        return {"object": "list", "data": data, "voices": [v["id"] for v in data]}

    async def reload_voices(self) -> dict[str, int]:
        ctx = self.ctx
        count = await asyncio.to_thread(ctx.voices.refresh)
        await ctx.voicebank.rematch()
        return {"voices": count}

    async def add_voice(self, request: Request) -> Response:
        ctx = self.ctx
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

    async def get_voice(self, voice_id: str) -> Response:
        return JSONResponse(self.ctx.voicebank.describe(self.ctx.voices.resolve(voice_id)))

    async def reference_audio(self, voice_id: str) -> Response:
        store = self.ctx.voicebank.store
        stored = store.get(voice_id)
        if stored is None:
            raise VoiceNotFound(f"no registered voice {voice_id!r}", param="voice")
        return FileResponse(store.audio_path(stored.audio_sha256), media_type="audio/wav", filename=f"{voice_id}.wav")

    async def delete_voice(self, voice_id: str) -> Response:
        if not await self.ctx.voicebank.remove(voice_id):
            raise VoiceNotFound(f"no registered voice {voice_id!r}", param="voice")
        return JSONResponse({"id": voice_id, "object": "voice", "deleted": True})

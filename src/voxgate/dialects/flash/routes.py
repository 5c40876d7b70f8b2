"""The Flash-TTS dialect: its routes, state, start-up and error table (FastAPI's {"detail": ...} bodies)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from voxgate.audio.encoders import encode_all, open_encoder
from voxgate.core.context import Context
from voxgate.core.parts import Part
from voxgate.core.types import SynthesisRequest
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import (
    FORM,
    MAX_REFERENCE_FORM_PART,
    MULTIPART,
    SPEECH_ENVELOPE_ERRORS,
    STATUS_ERRORS,
    ClosingStreamingResponse,
    ErrorSpec,
    body_model,
    encode_stream,
    envelope_invalid,
    envelope_response,
    failure,
    fields_schema,
    first_then_rest,
    json_object,
    load_reference,
    looks_like_reference,
    missing_field,
    parse_json,
    reference_voice,
    request_body,
    unless_disconnected,
)
from voxgate.dialects.flash import roles as script
from voxgate.dialects.flash.clones import TEMPORARY_PREFIX, remove_leftover_clones
from voxgate.dialects.flash.protocol import (
    CONTENT_TYPES,
    ENGINES,
    OWN_FIELDS,
    CloneRequest,
    MultiSpeakRequest,
    SpeakRequest,
    SpeechRequest,
    semitones_of_ratio,
    synthesis_request,
)
from voxgate.dialects.flash.voices import (
    ORIGIN,
    UnknownRole,
    builtin_role,
    builtin_voice,
    import_role_dir,
    resolve_role,
    role_id,
    role_list,
    roles,
)
from voxgate.errors import (
    ForbiddenReference,
    InvalidInput,
    InvalidReference,
    VoiceExists,
    VoiceNotFound,
    VoxgateError,
)

_LOG = logging.getLogger(__name__)
DIALECT = "flash"
MODEL_NAME = "spark"  # what /server_info reports: the Flash-TTS engine whose features voxgate offers
EMPTY_UPLOAD = "参考音频文件为空"  # Flash-TTS: "the reference audio file is empty"
SPEECH_PATH = "/v1/audio/speech"  # OpenAI's path, which Flash-TTS serves too (its shape is claimed here)
SPEECH_RATE = 24_000  # Hertz of that route's audio, as OpenAI's shape of it answers

ERRORS: dict[type[BaseException], ErrorSpec] = {
    **STATUS_ERRORS,
    UnknownRole: ErrorSpec(400, code="unknown_role"),
    InvalidReference: ErrorSpec(400, code="invalid_reference"),
    ForbiddenReference: ErrorSpec(403, code="forbidden_reference"),
    VoiceExists: ErrorSpec(409, code="voice_exists"),
    InvalidInput: ErrorSpec(400, code="invalid_value"),
}




class UnknownModel(VoxgateError):
    """A /v1/audio/speech `model` that is neither a Flash-TTS engine nor a model name the server accepts."""


# On /v1/audio/speech errors keep the envelope clients of that path read (OpenAI's), as before the path was shared.
SPEECH_ERRORS: dict[type[BaseException], ErrorSpec] = {
    **SPEECH_ENVELOPE_ERRORS,
    UnknownModel: ErrorSpec(404, "invalid_request_error", "model_not_found"),
}


def error_response(ctx: Context, exc: BaseException, prefix: str = "") -> JSONResponse:
    """A domain error as Flash-TTS answers it: {"detail": message} ({"error": "Unauthorized"} for 401)."""
    found = failure(ctx.metrics, DIALECT, exc, ERRORS, ErrorSpec(500, code="internal_error"))
    status = found.spec.status
    body: dict[str, Any] = {"error": "Unauthorized"} if status == 401 else {"detail": prefix + found.message}
    return JSONResponse(body, status_code=status, headers=found.headers)


UPLOADS = frozenset({"audio_file", "reference_audio_file"})  # the only file fields any route reads


async def _form(request: Request, max_upload: int) -> tuple[dict[str, str], dict[str, bytes]]:
    """A multipart or urlencoded form: its text fields, and the contents of the reference upload.

    Bounded: a handful of files and fields, only the known upload fields are read into memory (Starlette
    spools file parts to disk while parsing), and an upload past the reference limit is refused unread.
    """
    try:
        async with request.form(max_files=4, max_fields=64, max_part_size=MAX_REFERENCE_FORM_PART) as form:
            fields: dict[str, str] = {}
            files: dict[str, bytes] = {}
            for key, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    fields[key] = value
                elif key in UPLOADS and key not in files:
                    data = await value.read(max_upload + 1)
                    if len(data) > max_upload:
                        raise InvalidReference(f"{key} is larger than {max_upload // 2**20} MB", param=key)
                    files[key] = data
            return fields, files
    except InvalidReference:
        raise
    except Exception as exc:  # the multipart parser's errors are plain exceptions with useful text
        raise InvalidInput(f"could not read the form: {exc}") from None


def _reference_value(files: dict[str, bytes], file_field: str, text: str | None) -> str | bytes:
    """The uploaded file if there is one (it wins), else the URL/base64 text; neither is a 400."""
    if file_field in files:
        if not files[file_field]:
            raise InvalidReference(EMPTY_UPLOAD, param=file_field)
        return files[file_field]
    if text is None or not text.strip():
        raise InvalidReference(f"reference audio is required: upload `{file_field}` or send a URL or base64",
                               param=file_field)
    return text


def _headers(fmt: str, streaming: bool) -> dict[str, str]:
    headers = {"Content-Disposition": f"attachment; filename=speech.{fmt}", "Cache-Control": "no-cache"}
    if streaming:
        headers["X-Accel-Buffering"] = "no"
    return headers


class Speaker:
    """Turns internal requests into Flash-TTS responses: one whole file, or a chunked stream in order."""

    def __init__(self, ctx: Context, rate: int) -> None:
        self._ctx = ctx
        self.rate = rate  # Hertz of every response

    @staticmethod
    def _script(requests: Sequence[SynthesisRequest]) -> SynthesisRequest:
        """The lines as one request of several parts: one admission slot, strictly in order, the next
        line's segments queued while the current one plays, so no gap opens between them."""
        if len(requests) == 1:
            return requests[0]
        parts = tuple(Part(r.text, r.voice, r.language, r.speed, r.pitch, r.volume) for r in requests)
        return replace(requests[0], parts=parts)

    async def _whole(self, requests: Sequence[SynthesisRequest]) -> np.ndarray:
        """All lines at once, in order."""
        if not requests:
            return np.zeros(0, np.float32)
        return (await self._ctx.service.synthesize(self._script(requests))).samples

    async def respond(self, request: Request, requests: Sequence[SynthesisRequest], fmt: str, stream: bool,
                      cleanup: Callable[[], Awaitable[None]] | None = None) -> Response:
        """The audio of `requests` spoken one after another; `cleanup` runs once the audio is done."""
        rate = self.rate
        handed_over = False
        try:
            if not stream:
                samples = await unless_disconnected(request, self._whole(requests))
                data = await asyncio.to_thread(encode_all, samples, rate, fmt)
                return Response(data, media_type=CONTENT_TYPES[fmt], headers=_headers(fmt, False))
            # output: an upstream voice's own bytes in `fmt` pass through (SynthesisService.passthrough); the
            # flashtts kind's are a streamed /speak answer, one container as this stream is
            first = await self._ctx.service.open(replace(self._script(requests), output=fmt))
            chunks = await first_then_rest(first)
            body = encode_stream(chunks, open_encoder(fmt, rate, streaming=True))

            async def close() -> None:
                await first.aclose()
                if cleanup is not None:
                    await cleanup()

            handed_over = True
            return ClosingStreamingResponse(body, close, media_type=CONTENT_TYPES[fmt],
                                            headers=_headers(fmt, True))
        finally:
            if cleanup is not None and not handed_over:
                await cleanup()



@dataclass(frozen=True)
class FlashConfig:
    """The settings this dialect reads (filled by the composition root)."""

    sample_rate: int  # Hertz of every response (flash_sample_rate)
    builtin_roles: Mapping[str, str]  # the built-in roles female/male → installed voice ids (flash_builtin_roles)
    role_dir: Path | None  # role folder imported at start (--role-dir), or None
    models: tuple[str, ...] = ()  # model names /v1/audio/speech accepts besides Flash-TTS's engines (openai_models)


routes = Routes()


class Flash(Dialect):
    """Flash-TTS (`flashtts serve`) on the core: roles are voices of the shared registry."""

    name = "flash"
    original = "Flash-TTS"
    port = 8000
    companions = ("native", "openai")  # Flash-TTS serves OpenAI's speech API on its port too
    routes = routes

    def __init__(self, ctx: Context, config: FlashConfig) -> None:
        super().__init__(ctx)
        self.config = config
        self.speaker = Speaker(ctx, config.sample_rate)
        self.speech_speaker = Speaker(ctx, SPEECH_RATE)

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """{"detail": message} (a route may put a prefix before it), {"error": "Unauthorized"} for the key;
        on /v1/audio/speech the envelope of that path."""
        if request is not None and request.url.path == SPEECH_PATH:
            return envelope_response(self.ctx.metrics, self.name, exc, SPEECH_ERRORS, {"text": "input"})
        prefix = getattr(request.state, "error_prefix", "") if request is not None else ""
        return error_response(self.ctx, exc, prefix)

    def claims(self, request: Request, body: bytes) -> bool:
        """POST /v1/audio/speech in Flash-TTS's shape: a Flash-TTS engine as `model`, a field of Flash-TTS's
        request that OpenAI's lacks (pitch, stream, sampling knobs), or reference audio as `voice`; never an SSE
        request (Flash-TTS has no SSE: voxgate's web page sends pitch with SSE read-along, OpenAI's route serves it)."""
        if request.url.path != SPEECH_PATH or not body:
            return False
        try:
            payload = parse_json(body)
        except ValueError:  # not JSON (UnicodeDecodeError and JSONDecodeError are ValueErrors): OpenAI's 400
            return False
        if not isinstance(payload, dict) or payload.get("stream_format") == "sse":
            return False
        model, voice = payload.get("model"), payload.get("voice")
        return ((isinstance(model, str) and model.strip().lower() in ENGINES) or not OWN_FIELDS.isdisjoint(payload)
                or (isinstance(voice, str) and looks_like_reference(voice)))

    async def startup(self) -> None:
        """Drop temporary voices a crash left, then import the role folder."""
        removed = await remove_leftover_clones(self.ctx)
        if removed:
            _LOG.info("removed %d temporary clone voice(s) left by an earlier run", len(removed))
        if self.config.role_dir is not None:
            await import_role_dir(self.ctx, self.config.role_dir)


FlashDep = Annotated[Flash, Depends(this_dialect)]


# -- roles ---------------------------------------------------------------------------------------------

@routes.get("/server_info", tags=["flash"])
async def server_info(dialect: FlashDep) -> dict[str, Any]:
    return {"success": True, "info": {"model": MODEL_NAME, "roles": roles(dialect.ctx),
                                      "sample_rate": dialect.speaker.rate}}


@routes.get("/v1/audio_roles", tags=["flash"])
@routes.get("/audio_roles", tags=["flash"])
async def audio_roles(dialect: FlashDep) -> dict[str, Any]:
    return {"success": True, "roles": roles(dialect.ctx)}


@routes.post("/add_speaker", tags=["flash"], openapi_extra=request_body(
    fields_schema(("name",), ("reference_text", "audio"), "AddSpeaker"), MULTIPART, FORM,
    files=("audio_file", "latent_file")))
async def add_speaker(dialect: FlashDep, request: Request) -> Response:
    ctx = dialect.ctx
    fields, files = await _form(request, ctx.voicebank.policy.limits.max_bytes)
    name = fields.get("name")
    if not name:
        raise missing_field("name")
    if role_id(name).startswith(TEMPORARY_PREFIX):
        raise InvalidInput(f"role names starting with {TEMPORARY_PREFIX!r} are reserved", param="name")
    if builtin_role(ctx, name) is not None:
        raise InvalidInput(f'Failed to add the voice character "{name}": it is a built-in role; map it '
                           f"to an installed voice with the setting flash_builtin_roles", param="name")
    reference = await load_reference(ctx, _reference_value(files, "audio_file", fields.get("audio")))
    if "latent_file" in files:
        _LOG.debug("latent_file is MegaTTS-only; ignored")
    voice, existed = await ctx.voicebank.register(
        name, reference, transcript=fields.get("reference_text") or None,
        meta={"origin": ORIGIN}, replace=True)
    if existed:
        _LOG.warning("role %s already existed and was replaced", voice.id)
    return JSONResponse({"success": True, "role": voice.id})


@routes.post("/delete_speaker", tags=["flash"],
             openapi_extra=request_body(fields_schema(("name",), title="DeleteSpeaker"), MULTIPART, FORM))
async def delete_speaker(dialect: FlashDep, request: Request) -> Response:
    ctx = dialect.ctx
    request.state.error_prefix = 'Failed to remove the voice character "": '
    fields, _ = await _form(request, ctx.voicebank.policy.limits.max_bytes)
    name = fields.get("name") or ""
    request.state.error_prefix = f'Failed to remove the voice character "{name}": '
    if not name:
        raise missing_field("name")
    if builtin_role(ctx, name) is not None:
        raise InvalidInput("it is a built-in role (Spark-TTS's fixed voice) and cannot be removed; "
                           "the setting flash_builtin_roles maps it to a voice", param="name")
    voice_id = role_id(name)
    if voice_id.startswith(TEMPORARY_PREFIX) or not await ctx.voicebank.remove(voice_id):
        raise VoiceNotFound(f"it is not a saved role; existing roles: {role_list(ctx)}", param="name")
    return JSONResponse({"success": True, "role": voice_id})


# -- speech --------------------------------------------------------------------------------------------

@routes.post("/clone_voice", tags=["flash"], openapi_extra=request_body(
    CloneRequest, MULTIPART, FORM, files=("reference_audio_file", "latent_file")))
async def clone_voice(dialect: FlashDep, request: Request) -> Response:
    ctx, speaker = dialect.ctx, dialect.speaker
    fields, files = await _form(request, ctx.voicebank.policy.limits.max_bytes)
    body = body_model(CloneRequest, fields)
    if "latent_file" in files:
        _LOG.debug("latent_file is MegaTTS-only; ignored")
    value = _reference_value(files, "reference_audio_file", body.reference_audio)
    reference = await load_reference(ctx, value)
    voice = await reference_voice(ctx, reference, body.reference_text)
    req = synthesis_request(body.text, voice, speaker.rate, body.pitch, body.speed)
    return await speaker.respond(request, [req], body.response_format, body.stream)


@routes.post("/speak", tags=["flash"])
async def speak(dialect: FlashDep, body: SpeakRequest, request: Request) -> Response:
    voice = resolve_role(dialect.ctx, body.name, dialect.config.builtin_roles)
    req = synthesis_request(body.text, voice, dialect.speaker.rate, body.pitch, body.speed)
    return await dialect.speaker.respond(request, [req], body.response_format, body.stream)


@routes.post("/multi_speak", tags=["flash"])
async def multi_speak(dialect: FlashDep, body: MultiSpeakRequest, request: Request) -> Response:
    lines = script.parse(body.text)
    requests = _resolve_lines(dialect.ctx, lines, dialect.speaker.rate, dialect.config.builtin_roles)
    return await dialect.speaker.respond(request, requests, body.response_format, body.stream)


# One operation per path and method in the API docs: this path's is OpenAI's (docs/flash.md has this shape).
@routes.post(SPEECH_PATH, tags=["flash"], include_in_schema=False)
async def openai_speech(dialect: FlashDep, request: Request) -> Response:
    """Flash-TTS's /v1/audio/speech: a role or reference audio as `voice`, pitch as a ratio, `stream`."""
    payload = await json_object(request, invalid="The request body is not valid JSON.",
                                not_object="The request body must be a JSON object.")
    try:
        body = SpeechRequest.model_validate(payload)
    except ValidationError as exc:
        raise envelope_invalid(exc) from None
    accepted = (*ENGINES, *(m.lower() for m in dialect.config.models))
    if body.model.strip().lower() not in accepted:
        names = ", ".join((*ENGINES, *dialect.config.models)[:8])
        raise UnknownModel(f"The model '{body.model}' does not exist; use one of {names}, …", param="model")
    voice = await _speech_voice(dialect, body.voice)
    req = SynthesisRequest(text=body.input, voice=voice, speed=body.speed, pitch=semitones_of_ratio(body.pitch),
                           sample_rate=SPEECH_RATE, normalize=body.normalize)
    return await dialect.speech_speaker.respond(request, [req], body.response_format, body.stream)


async def _speech_voice(dialect: Flash, name: str) -> str:
    """The voice of a /v1/audio/speech `voice`: a built-in role, a role, or reference audio."""
    ctx = dialect.ctx
    try:
        role = builtin_role(ctx, name)
        if role is not None:
            return builtin_voice(ctx, role, dialect.config.builtin_roles)
        for candidate in (name, role_id(name)):
            if (found := ctx.voices.resolve_or_none(candidate)) is not None:
                return found.id
        if not looks_like_reference(name):
            return ctx.voices.resolve(name).id  # raises VoiceNotFound, naming the voices
        return await reference_voice(ctx, await load_reference(ctx, name))
    except InvalidInput as exc:  # a reference that cannot be used
        exc.param = exc.param or "voice"
        raise
    except VoiceNotFound as exc:
        exc.param = "voice"
        raise


def _resolve_lines(ctx: Context, lines: list[script.Line], rate: int,
                   builtin: Mapping[str, str]) -> list[SynthesisRequest]:
    """Internal requests for a script; every unknown role is named in one 400."""
    default = ctx.voices.resolve(None).id
    unknown: list[str] = []
    requests = []
    for line in lines:
        if line.role is None:
            voice = default
        else:
            try:
                voice = resolve_role(ctx, line.role, builtin)
            except UnknownRole:
                unknown.append(line.role)
                continue
        requests.append(synthesis_request(line.text, voice, rate, line.pitch, line.speed))
    if unknown:
        names = ", ".join(f'"{n}"' for n in dict.fromkeys(unknown))
        raise UnknownRole(f"unknown role {names} in <role:…> tags; existing roles: {role_list(ctx)}",
                          param="text")
    return requests

"""The AllTalk v2 dialect (port 7851): generation to files and streams, settings, voices, its errors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError

from voxgate.core.context import Context
from voxgate.core.routing import spoken_languages
from voxgate.core.types import SynthesisRequest
from voxgate.dialects.alltalk.outputs import OutputStore
from voxgate.dialects.alltalk.protocol import (
    LANGUAGE_CODES,
    FormTypes,
    GenerateParams,
    ParamError,
    missing_form_error,
    parse_form,
)
from voxgate.dialects.alltalk.service import STREAM_RATE, VOICEMAP_KEY, AllTalk, DialectState
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import (
    FORM,
    MULTIPART,
    ClosingStreamingResponse,
    ErrorSpec,
    body_model,
    failure,
    fields_schema,
    parse_json,
    request_body,
    unless_disconnected,
)
from voxgate.errors import (
    Cancelled,
    EngineFailure,
    InvalidInput,
    Overloaded,
    Unauthorized,
    VoiceNotFound,
    VoxgateError,
)

_LOG = logging.getLogger(__name__)
DIALECT = "alltalk"
OPENAI_VOICES = ("alloy", "echo", "fable", "nova", "onyx", "shimmer")
COMBINED_RATE = 44_100  # Hertz of narrator-mode files (upstream resamples every part to it)
PREVIEW_NAME = "api_preview_voice"
STOPPED_MESSAGE = {"message": "Cancelling current TTS generation"}

ERRORS: dict[type[BaseException], ErrorSpec] = {
    InvalidInput: ErrorSpec(400, "Invalid value: ", "invalid_value"),
    VoiceNotFound: ErrorSpec(404, "File not found: ", "voice_not_found"),
    Overloaded: ErrorSpec(503, "Server busy: ", "server_overloaded"),
    Cancelled: ErrorSpec(499, "", "cancelled"),
    EngineFailure: ErrorSpec(500, "TTS generation failed: ", "engine_failure"),
    Unauthorized: ErrorSpec(401, "", "unauthorized"),
}


def _error(ctx: Context, exc: BaseException, shape: str) -> JSONResponse:
    """A domain error in one of AllTalk's three error bodies: generate, error or detail."""
    found = failure(ctx.metrics, DIALECT, exc, ERRORS, ErrorSpec(500, "", "internal_error"))
    spec, message = found.spec, found.message
    if shape == "generate":
        body: dict[str, str] = {"status": "generate-failure", "error": message}
    elif shape == "error":
        body = {"error": spec.type + message}
    else:
        body = {"detail": message}
    return JSONResponse(body, status_code=spec.status, headers=found.headers)


async def _form(request: Request) -> tuple[dict[str, str], bool]:
    """Form fields as strings, and whether the body was JSON (the common client mistake)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            async with request.form() as form:
                return {k: v for k, v in form.multi_items() if isinstance(v, str)}, False
        except (AssertionError, ValueError) as exc:  # malformed multipart
            raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": str(exc),
                                           "input": None}]) from None
    body = (await request.body()).lstrip()
    return {}, kind == "application/json" or body.startswith((b"{", b"["))


def _require(fields: Mapping[str, str], names: tuple[str, ...], is_json: bool) -> None:
    for name in names:
        if name not in fields:
            raise missing_form_error(name, is_json)


class VoiceMap(BaseModel):
    """PUT /api/openai-voicemap body: the voice each OpenAI name speaks with."""

    alloy: str
    echo: str
    fable: str
    nova: str
    onyx: str
    shimmer: str


def _urls(path: Path) -> dict[str, str]:
    return {"output_file_path": str(path), "output_file_url": f"/audio/{path.name}",
            "output_cache_url": f"/audiocache/{path.name}"}


def _defaults(at: AllTalk) -> dict[str, Any]:
    """The server-side defaults a form field falls back to (AllTalk's stock config, our active model)."""
    voice = at.active().id
    return {
        "text_filtering": "standard", "character_voice_gen": voice, "rvccharacter_voice_gen": "Disabled",
        "rvccharacter_pitch": 0.0, "narrator_enabled": "false", "narrator_voice_gen": voice,
        "rvcnarrator_voice_gen": "Disabled", "rvcnarrator_pitch": 0.0, "text_not_inside": "character",
        "language": "en", "output_file_name": "myoutputfile", "output_file_timestamp": True, "autoplay": False,
        "autoplay_volume": 0.5, "speed": 1.0, "temperature": 0.75, "repetition_penalty": 10.0, "pitch": 0.0,
    }


def _settings(at: AllTalk) -> dict[str, Any]:
    """GET /api/currentsettings, every key in the original's order, values true for this server."""
    active = at.active()
    installed = at.ctx.voices.installed()
    languages = spoken_languages(at.ctx.voices)
    return {
        "engines_available": sorted({v.engine for v in installed}),
        "current_engine_loaded": active.engine,
        "models_available": [{"name": name} for name in at.models()],
        "current_model_loaded": at.model_name(active),
        "manufacturer_name": "rhasspy (Piper) via voxgate",
        "audio_format": "wav",
        "deepspeed_capable": False,
        "deepspeed_available": False,
        "deepspeed_enabled": False,
        "generationspeed_capable": True,
        "generationspeed_set": 1.0,
        "lowvram_capable": False,
        "lowvram_enabled": False,
        "pitch_capable": True,
        "pitch_set": 0,
        "repetitionpenalty_capable": False,
        "repetitionpenalty_set": 10.0,
        "streaming_capable": True,
        "temperature_capable": False,
        "temperature_set": 0.75,
        "ttsengines_installed": True,
        "languages_capable": len(languages) > 1,
        "multivoice_capable": True,
        "multimodel_capable": len(installed) > 1,
    }


@dataclass(frozen=True)
class AllTalkConfig:
    """The settings this dialect reads (filled by the composition root)."""

    outputs_dir: Path  # where generated files are written and served from (DATA_DIR/outputs/alltalk)
    outputs_keep: int  # newest files kept; 0 = no count limit
    outputs_max_age: float  # seconds; 0 = no age limit
    max_characters: int  # longest text_input /api/tts-generate accepts
    voice_aliases: Mapping[str, str]  # AllTalk voice names (female_01.wav) → voice ids


# (method, path) → which of AllTalk's error bodies a route answers with ("detail" for any other).
SHAPES = {("POST", "/api/tts-generate"): "generate", ("GET", "/api/tts-generate-streaming"): "error",
          ("POST", "/api/previewvoice/"): "error"}


routes = Routes()


class AllTalkDialect(Dialect):
    """AllTalk v2 on the core: one state and one output folder per server, shared by every app it is on."""

    name = "alltalk"
    original = "AllTalk"
    port = 7851
    companions = ("openai",)  # AllTalk serves an OpenAI-compatible /v1/audio/speech on its port
    routes = routes

    def __init__(self, ctx: Context, config: AllTalkConfig) -> None:
        super().__init__(ctx)
        store = OutputStore(config.outputs_dir, keep=config.outputs_keep, max_age=config.outputs_max_age)
        self.at = AllTalk(ctx, DialectState(), store, config.voice_aliases, config.max_characters)

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """One of AllTalk's error bodies, chosen by the route (the key check: {"status": "error", ...})."""
        if isinstance(exc, Unauthorized):
            found = failure(self.ctx.metrics, DIALECT, exc, ERRORS)
            return JSONResponse({"status": "error", "message": found.message}, status_code=found.spec.status)
        shape = SHAPES.get((request.method, request.url.path), "detail") if request is not None else "detail"
        return _error(self.ctx, exc, shape)

    async def startup(self) -> None:
        """Apply the stored OpenAI voice map and prune old output files (both blocking: off the loop)."""
        await asyncio.to_thread(self.at.load_voicemap)
        await asyncio.to_thread(self.at.store.prune)


AllTalkDep = Annotated[AllTalkDialect, Depends(this_dialect)]


# -- settings, voices and models -----------------------------------------------------------------------

# v1's alias of /api/ready, open like every probe; on the main port the native /ready answers
# (dialects/compose.py asks the dialects in table order).
@routes.get("/ready", public=True, tags=["alltalk"])
@routes.get("/api/ready", tags=["alltalk"])
async def ready(dialect: AllTalkDep) -> PlainTextResponse:
    return PlainTextResponse("Ready" if dialect.ctx.service.ready else "Unloaded")


@routes.get("/api/currentsettings", tags=["alltalk"])
async def current_settings(dialect: AllTalkDep) -> dict[str, Any]:
    return _settings(dialect.at)


@routes.get("/api/voices", tags=["alltalk"])
async def voices(dialect: AllTalkDep) -> dict[str, Any]:
    return {"status": "success", "voices": dialect.at.voice_names()}


@routes.get("/api/rvcvoices", tags=["alltalk"])
async def rvc_voices() -> dict[str, Any]:
    return {"status": "success", "rvcvoices": ["Disabled"]}


@routes.get("/api/reload_config", tags=["alltalk"])
async def reload_config(dialect: AllTalkDep) -> PlainTextResponse:
    await asyncio.to_thread(dialect.ctx.voices.refresh)
    await asyncio.to_thread(dialect.at.load_voicemap)
    dialect.at.active()  # drops an active model whose files are gone
    return PlainTextResponse("Config file reloaded successfully")


@routes.post("/api/reload", tags=["alltalk"])
async def reload(dialect: AllTalkDep, tts_method: str | None = None) -> JSONResponse:
    ctx, state = dialect.ctx, dialect.at.state
    if state.changing.locked():
        return JSONResponse({"status": "model-is currently changing"})
    async with state.changing:
        voice = dialect.at.models().get(tts_method or "")
        if voice is None:
            ctx.metrics.errors.labels(DIALECT, "invalid_model").inc()
            return JSONResponse({"status": "error", "message": "Invalid TTS method specified"})
        try:  # load it and prove it speaks; running streams keep their own voices
            await ctx.service.synthesize(SynthesisRequest(text="Ready.", voice=voice.id))
        except VoxgateError as exc:  # AllTalk answers a failed change with a status, not an error
            _LOG.warning("AllTalk model change to %s failed: %s", voice.id, exc)
            return JSONResponse({"status": "model-failure"})
        state.model = voice.id
    return JSONResponse({"status": "model-success"})


@routes.post("/api/enginereload", tags=["alltalk"])
async def engine_reload(dialect: AllTalkDep, engine: str | None = None) -> JSONResponse:
    if engine not in {v.engine for v in dialect.ctx.voices.installed()}:
        return JSONResponse({"status": "error", "message": "Invalid TTS engine specified"})
    return JSONResponse({"status": "engine-success"})  # every engine is always loaded: nothing to restart


@routes.post("/api/deepspeed", tags=["alltalk"])
async def deepspeed(dialect: AllTalkDep, new_deepspeed_value: bool) -> JSONResponse:
    return JSONResponse({"status": "error", "message": f"The currently loaded TTS engine "
                         f"'{dialect.at.active().engine}' does not support DeepSpeed or DeepSpeed is not "
                         "available on this system."})


@routes.post("/api/lowvramsetting", tags=["alltalk"])
async def low_vram(dialect: AllTalkDep, new_low_vram_value: bool) -> JSONResponse:
    return JSONResponse({"status": "error", "message": f"The currently loaded TTS engine "
                         f"'{dialect.at.active().engine}' does not support lowvram."})


@routes.put("/api/stop-generation", tags=["alltalk"])
async def stop_generation(dialect: AllTalkDep) -> dict[str, str]:
    dialect.at.state.stop_epoch += 1
    stopped = dialect.ctx.service.stop_all()
    _LOG.info("AllTalk stop-generation: %d streams stopped", stopped)
    return STOPPED_MESSAGE


@routes.put("/api/openai-voicemap", tags=["alltalk"], openapi_extra=request_body(VoiceMap))
async def openai_voicemap(dialect: AllTalkDep, request: Request) -> JSONResponse:
    raw = await request.body()
    try:
        payload = parse_json(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", getattr(exc, "pos", 0)),
                                       "msg": "JSON decode error", "input": {}}]) from None
    mapping = body_model(VoiceMap, payload)
    try:
        targets = {name: dialect.at.voice(getattr(mapping, name)).id for name in OPENAI_VOICES}
    except VoiceNotFound as exc:  # a bad value in the body: 400, not the voice-lookup 404
        raise InvalidInput(exc.message, param=exc.param) from None
    for name, target in targets.items():
        dialect.ctx.voices.set_alias(name, target)
    await asyncio.to_thread(dialect.ctx.voicebank.store.set_value, VOICEMAP_KEY, targets)
    return JSONResponse({"message": "OpenAI voice mappings updated successfully"})


# -- generation ------------------------------------------------------------------------------------------

@routes.post("/api/tts-generate", tags=["alltalk"], openapi_extra=request_body(FormTypes, FORM, MULTIPART))
async def tts_generate(dialect: AllTalkDep, request: Request) -> Response:
    at = dialect.at
    fields, is_json = await _form(request)
    _require(fields, ("text_input",), is_json)
    try:
        params = parse_form(fields, _defaults(at), at.max_characters)
    except ParamError as exc:
        dialect.ctx.metrics.errors.labels(DIALECT, "invalid_param").inc()
        return JSONResponse({"error": exc.message}, status_code=400)
    narrated = params.narrator_enabled != "false"
    plan = at.plan(params)
    if params.streaming:
        if not plan:
            raise InvalidInput("nothing to speak: every part is silent or empty", param="text_input")
        body, close = await at.stream(params, plan)
        return ClosingStreamingResponse(body, close, media_type="audio/wav")
    rate = COMBINED_RATE if narrated else None
    samples, rate = await unless_disconnected(request, at.render(params, plan, rate))
    base = params.output_file_name
    if narrated:
        name = OutputStore.timestamped(base, "_combined.wav") if params.output_file_timestamp \
            else f"{base}_combined.wav"
    else:
        name = OutputStore.timestamped(base, ".wav") if params.output_file_timestamp else f"{base}.wav"
    path = await at.save(samples, rate, name)
    return JSONResponse({"status": "generate-success", **_urls(path)})


@routes.get("/api/tts-generate-streaming", tags=["alltalk"])
async def tts_stream(dialect: AllTalkDep, text: str, voice: str, language: str, output_file: str) -> Response:
    params = _streaming_params(text, voice, language)
    body, close = await dialect.at.stream(params, [(dialect.at.voice(voice).id, text)])
    return ClosingStreamingResponse(body, close, media_type="audio/wav")


@routes.post("/api/tts-generate-streaming", tags=["alltalk"],
             openapi_extra=request_body(fields_schema(("text", "voice", "language", "output_file"),
                                                      title="StreamingFile"), FORM, MULTIPART))
async def tts_stream_post(dialect: AllTalkDep, request: Request) -> Response:
    at = dialect.at
    fields, is_json = await _form(request)
    _require(fields, ("text", "voice", "language", "output_file"), is_json)
    output_file = fields["output_file"]
    params = _streaming_params(fields["text"], fields["voice"], fields["language"], param="voice")
    try:
        name = at.store.path_for(f"{output_file}.wav").name
    except ValueError:
        raise InvalidInput("output_file must be a plain file name (letters, digits, _ . -), "
                           "without folders", param="output_file") from None
    plan = [(at.voice(params.character_voice_gen).id, params.text_input)]
    samples, rate = await unless_disconnected(request, at.render(params, plan, STREAM_RATE))
    await at.save(samples, rate, name)
    return JSONResponse({"output_file_path": output_file})


@routes.post("/api/previewvoice/", tags=["alltalk"],
             openapi_extra=request_body(fields_schema(("voice",), title="PreviewVoice"), FORM, MULTIPART))
async def preview_voice(dialect: AllTalkDep, request: Request) -> Response:
    at = dialect.at
    fields, is_json = await _form(request)
    _require(fields, ("voice",), is_json)
    voice = fields["voice"]
    name = voice.replace(" ", "_").removesuffix(".wav")
    spoken = "".join(c if c.isascii() and c.isalnum() else " " for c in name)
    # a voice name with characters no AllTalk voice file has is refused by the model (param "voice")
    params = _streaming_params(f"Hello, this is a preview of voice {spoken}.", voice, "en", param="voice")
    plan = [(at.voice(voice).id, params.text_input)]
    samples, rate = await unless_disconnected(request, at.render(params, plan, None))
    path = await at.save(samples, rate, f"{PREVIEW_NAME}.wav")
    return JSONResponse({"status": "generate-success", "output_file_path": str(path),
                         "output_file_url": f"/audio/{path.name}"})


# -- files -----------------------------------------------------------------------------------------------

@routes.get("/audio/{filename}", tags=["alltalk"])
async def audio(dialect: AllTalkDep, filename: str) -> Response:
    path = await asyncio.to_thread(dialect.at.store.find, filename)
    if path is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return FileResponse(path, media_type="audio/wav")


@routes.get("/audiocache/{filename}", tags=["alltalk"])
async def audio_cache(dialect: AllTalkDep, filename: str) -> Response:
    path = await asyncio.to_thread(dialect.at.store.find, filename)
    if path is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    stat = path.stat()
    return FileResponse(path, media_type="audio/wav", filename=path.name, headers={
        "Cache-Control": "public, max-age=604800", "ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'})


NOT_FOUND = {"detail": "File not found"}


def _streaming_params(text: str, voice: str, language: str, param: str | None = None) -> GenerateParams:
    """The parameters of a one-voice request (streaming, preview); a bad value is InvalidInput."""
    if language not in LANGUAGE_CODES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGE_CODES)}", param="language")
    try:
        return GenerateParams(text_input=text, text_filtering="none", character_voice_gen=voice,
                              narrator_enabled="false", narrator_voice_gen=voice, text_not_inside="character",
                              language=language, output_file_name="stream")
    except ValidationError as exc:
        raise InvalidInput(str(exc.errors()[0]["msg"]), param=param) from None

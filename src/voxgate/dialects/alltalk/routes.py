"""Handlers of the AllTalk v2 dialect (port 7851): generation to files and streams, settings, voices."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
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
from voxgate.errors import Cancelled, EngineFailure, InvalidInput, Overloaded, VoiceNotFound, VoxgateError

_LOG = logging.getLogger(__name__)
DIALECT = "alltalk"
STATE_KEY = "alltalk.state"  # in ctx.extras: shared by the main app and the 7851 app
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


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount the AllTalk routes (state shared with any other app mounted on the same context)."""
    state = ctx.extras.setdefault(STATE_KEY, DialectState())
    assert isinstance(state, DialectState)
    root = ctx.extras.get("alltalk.outputs_dir")
    store = OutputStore(Path(str(root)) if root else Path("data/outputs/alltalk"),
                        keep=int(ctx.extras.get("alltalk.outputs_keep", 0)),  # type: ignore[call-overload]
                        max_age=float(ctx.extras.get("alltalk.outputs_max_age", 0.0)))  # type: ignore[arg-type]
    aliases = ctx.extras.get("alltalk.voice_aliases") or {}
    assert isinstance(aliases, dict)
    max_characters = ctx.extras.get("alltalk.max_characters", 2000)
    assert isinstance(max_characters, int)
    at = AllTalk(ctx, state, store, aliases, max_characters)
    at.load_voicemap()
    store.prune()
    paths = {getattr(r, "path", None) for r in app.routes}
    _mount_info(app, at, paths)
    _mount_generation(app, at)
    _mount_files(app, at)


def _mount_info(app: FastAPI, at: AllTalk, paths: set[Any]) -> None:
    ctx, state = at.ctx, at.state

    async def ready() -> PlainTextResponse:
        return PlainTextResponse("Ready" if ctx.service.ready else "Unloaded")

    app.get("/api/ready", tags=["alltalk"])(ready)
    if "/ready" not in paths:  # v1 alias; on the main port /ready is the native JSON health check
        app.get("/ready", tags=["alltalk"])(ready)

    @app.get("/api/currentsettings", tags=["alltalk"])
    async def current_settings() -> dict[str, Any]:
        return _settings(at)

    @app.get("/api/voices", tags=["alltalk"])
    async def voices() -> dict[str, Any]:
        return {"status": "success", "voices": at.voice_names()}

    @app.get("/api/rvcvoices", tags=["alltalk"])
    async def rvc_voices() -> dict[str, Any]:
        return {"status": "success", "rvcvoices": ["Disabled"]}

    @app.get("/api/reload_config", tags=["alltalk"])
    async def reload_config() -> PlainTextResponse:
        await asyncio.to_thread(ctx.voices.refresh)
        await asyncio.to_thread(at.load_voicemap)
        at.active()  # drops an active model whose files are gone
        return PlainTextResponse("Config file reloaded successfully")

    @app.post("/api/reload", tags=["alltalk"])
    async def reload(tts_method: str | None = None) -> JSONResponse:
        if state.changing.locked():
            return JSONResponse({"status": "model-is currently changing"})
        async with state.changing:
            voice = at.models().get(tts_method or "")
            if voice is None:
                ctx.metrics.errors.labels(DIALECT, "invalid_model").inc()
                return JSONResponse({"status": "error", "message": "Invalid TTS method specified"})
            try:  # load it and prove it speaks; running streams keep their own voices
                await ctx.service.synthesize(SynthesisRequest(text="Ready.", voice=voice.id))
            except VoxgateError as exc:
                _LOG.warning("AllTalk model change to %s failed: %s", voice.id, exc)
                return JSONResponse({"status": "model-failure"})
            state.model = voice.id
        return JSONResponse({"status": "model-success"})

    @app.post("/api/enginereload", tags=["alltalk"])
    async def engine_reload(engine: str | None = None) -> JSONResponse:
        if engine not in {v.engine for v in ctx.voices.installed()}:
            return JSONResponse({"status": "error", "message": "Invalid TTS engine specified"})
        return JSONResponse({"status": "engine-success"})  # every engine is always loaded: nothing to restart

    @app.post("/api/deepspeed", tags=["alltalk"])
    async def deepspeed(new_deepspeed_value: bool) -> JSONResponse:
        return JSONResponse({"status": "error", "message": f"The currently loaded TTS engine "
                             f"'{at.active().engine}' does not support DeepSpeed or DeepSpeed is not available "
                             "on this system."})

    @app.post("/api/lowvramsetting", tags=["alltalk"])
    async def low_vram(new_low_vram_value: bool) -> JSONResponse:
        return JSONResponse({"status": "error", "message": f"The currently loaded TTS engine "
                             f"'{at.active().engine}' does not support lowvram."})

    @app.put("/api/stop-generation", tags=["alltalk"])
    async def stop_generation() -> dict[str, str]:
        state.stop_epoch += 1
        stopped = ctx.service.stop_all()
        _LOG.info("AllTalk stop-generation: %d streams stopped", stopped)
        return STOPPED_MESSAGE

    @app.put("/api/openai-voicemap", tags=["alltalk"], openapi_extra=request_body(VoiceMap))
    async def openai_voicemap(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            payload = parse_json(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", getattr(exc, "pos", 0)),
                                           "msg": "JSON decode error", "input": {}}]) from None
        mapping = body_model(VoiceMap, payload)
        try:
            targets = {name: at.voice(getattr(mapping, name)).id for name in OPENAI_VOICES}
        except VoiceNotFound as exc:  # a bad value in the body: 400, not the voice-lookup 404
            return _error(ctx, InvalidInput(exc.message, param=exc.param), "detail")
        for name, target in targets.items():
            ctx.voices.set_alias(name, target)
        await asyncio.to_thread(ctx.voicebank.store.set_value, VOICEMAP_KEY, targets)
        return JSONResponse({"message": "OpenAI voice mappings updated successfully"})


def _mount_generation(app: FastAPI, at: AllTalk) -> None:
    ctx = at.ctx

    @app.post("/api/tts-generate", tags=["alltalk"], openapi_extra=request_body(FormTypes, FORM, MULTIPART))
    async def tts_generate(request: Request) -> Response:
        ctx.metrics.requests.labels(DIALECT).inc()
        fields, is_json = await _form(request)
        _require(fields, ("text_input",), is_json)
        try:
            params = parse_form(fields, _defaults(at), at.max_characters)
        except ParamError as exc:
            ctx.metrics.errors.labels(DIALECT, "invalid_param").inc()
            return JSONResponse({"error": exc.message}, status_code=400)
        narrated = params.narrator_enabled != "false"
        try:
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
        except VoxgateError as exc:
            return _error(ctx, exc, "generate")
        return JSONResponse({"status": "generate-success", **_urls(path)})

    async def streaming_params(text: str, voice: str, language: str) -> GenerateParams:
        if language not in LANGUAGE_CODES:
            raise InvalidInput(f"language must be one of {', '.join(LANGUAGE_CODES)}", param="language")
        return GenerateParams(text_input=text, text_filtering="none", character_voice_gen=voice,
                              narrator_enabled="false", narrator_voice_gen=voice, text_not_inside="character",
                              language=language, output_file_name="stream")

    @app.get("/api/tts-generate-streaming", tags=["alltalk"])
    async def tts_stream(text: str, voice: str, language: str, output_file: str) -> Response:
        ctx.metrics.requests.labels(DIALECT).inc()
        try:
            params = await streaming_params(text, voice, language)
            body, close = await at.stream(params, [(at.voice(voice).id, text)])
        except VoxgateError as exc:
            return _error(ctx, exc, "error")
        except ValidationError as exc:
            return _error(ctx, InvalidInput(str(exc.errors()[0]["msg"])), "error")
        return ClosingStreamingResponse(body, close, media_type="audio/wav")

    @app.post("/api/tts-generate-streaming", tags=["alltalk"], openapi_extra=request_body(
        fields_schema(("text", "voice", "language", "output_file"), title="StreamingFile"), FORM, MULTIPART))
    async def tts_stream_post(request: Request) -> Response:
        ctx.metrics.requests.labels(DIALECT).inc()
        fields, is_json = await _form(request)
        _require(fields, ("text", "voice", "language", "output_file"), is_json)
        output_file = fields["output_file"]
        try:
            params = await streaming_params(fields["text"], fields["voice"], fields["language"])
            try:
                name = at.store.path_for(f"{output_file}.wav").name
            except ValueError:
                raise InvalidInput("output_file must be a plain file name (letters, digits, _ . -), "
                                   "without folders", param="output_file") from None
            plan = [(at.voice(params.character_voice_gen).id, params.text_input)]
            samples, rate = await unless_disconnected(request, at.render(params, plan, STREAM_RATE))
            await at.save(samples, rate, name)
        except VoxgateError as exc:
            return _error(ctx, exc, "detail")
        except ValidationError as exc:
            return _error(ctx, InvalidInput(str(exc.errors()[0]["msg"]), param="voice"), "detail")
        return JSONResponse({"output_file_path": output_file})

    @app.post("/api/previewvoice/", tags=["alltalk"],
              openapi_extra=request_body(fields_schema(("voice",), title="PreviewVoice"), FORM, MULTIPART))
    async def preview_voice(request: Request) -> Response:
        ctx.metrics.requests.labels(DIALECT).inc()
        fields, is_json = await _form(request)
        _require(fields, ("voice",), is_json)
        voice = fields["voice"]
        name = voice.replace(" ", "_").removesuffix(".wav")
        spoken = "".join(c if c.isascii() and c.isalnum() else " " for c in name)
        try:
            params = await streaming_params(f"Hello, this is a preview of voice {spoken}.", voice, "en")
            plan = [(at.voice(voice).id, params.text_input)]
            samples, rate = await unless_disconnected(request, at.render(params, plan, None))
            path = await at.save(samples, rate, f"{PREVIEW_NAME}.wav")
        except VoxgateError as exc:
            return _error(ctx, exc, "error")
        except ValidationError as exc:  # a voice name with characters no AllTalk voice file has
            return _error(ctx, InvalidInput(str(exc.errors()[0]["msg"]), param="voice"), "error")
        return JSONResponse({"status": "generate-success", "output_file_path": str(path),
                             "output_file_url": f"/audio/{path.name}"})


def _mount_files(app: FastAPI, at: AllTalk) -> None:
    not_found = {"detail": "File not found"}

    @app.get("/audio/{filename}", tags=["alltalk"])
    async def audio(filename: str) -> Response:
        path = await asyncio.to_thread(at.store.find, filename)
        if path is None:
            return JSONResponse(not_found, status_code=404)
        return FileResponse(path, media_type="audio/wav")

    @app.get("/audiocache/{filename}", tags=["alltalk"])
    async def audio_cache(filename: str) -> Response:
        path = await asyncio.to_thread(at.store.find, filename)
        if path is None:
            return JSONResponse(not_found, status_code=404)
        stat = path.stat()
        return FileResponse(path, media_type="audio/wav", filename=path.name, headers={
            "Cache-Control": "public, max-age=604800", "ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'})

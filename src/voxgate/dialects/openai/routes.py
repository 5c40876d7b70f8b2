"""Handlers of the OpenAI dialect and its error table (OpenAI's {"error": {...}} envelope)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from voxgate.audio.encoders import encode_all, get_format, open_encoder
from voxgate.core.context import Context
from voxgate.dialects.common import (
    ClosingStreamingResponse,
    ErrorSpec,
    encode_stream,
    envelope_response,
    first_then_rest,
    json_object,
    load_reference,
    looks_like_reference,
    reference_voice,
    request_body,
    unless_disconnected,
)
from voxgate.dialects.openai.peers import flash_role, peer_voice
from voxgate.dialects.openai.protocol import PCM_RATE, SpeechRequest
from voxgate.errors import (
    EngineFailure,
    InputTooLong,
    InvalidInput,
    Overloaded,
    Unauthorized,
    VoiceNotFound,
    VoxgateError,
)

_LOG = logging.getLogger(__name__)
DIALECT = "openai"
_CREATED = 1_700_000_000  # a fixed "created" stamp: models here have no creation date worth reporting
FLASH_MODELS = ("spark", "orpheus", "mega")  # Flash-TTS engine names, which its clients send as `model`
LISTED_MODELS = 8  # model names an error message shows before "…"

ERRORS: dict[type[BaseException], ErrorSpec] = {
    InputTooLong: ErrorSpec(400, "invalid_request_error", "string_above_max_length"),
    InvalidInput: ErrorSpec(400, "invalid_request_error", "invalid_value"),
    VoiceNotFound: ErrorSpec(404, "invalid_request_error", "voice_not_found"),
    Unauthorized: ErrorSpec(401, "invalid_request_error", "invalid_api_key"),
    Overloaded: ErrorSpec(503, "server_error", "server_overloaded"),
    EngineFailure: ErrorSpec(500, "server_error", "engine_failure"),
}


_PARAMS = {"text": "input"}  # core field names → this dialect's names


class ModelNotFound(VoxgateError):
    """The `model` names neither an OpenAI TTS model nor an installed voice."""


ERRORS[ModelNotFound] = ErrorSpec(404, "invalid_request_error", "model_not_found")


def error_response(ctx: Context, exc: BaseException) -> JSONResponse:
    """Render any error in OpenAI's envelope, with the status its class maps to."""
    return envelope_response(ctx.metrics, DIALECT, exc, ERRORS, _PARAMS)


def _validation_error(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or None
    if param and param.startswith("voice."):
        param = "voice"
    if first["type"] == "string_too_long" and param == "input":
        return InputTooLong(f"Invalid 'input': {first['msg']}", param=param)
    value = first.get("input")
    shown = f" {value!r}" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    return InvalidInput(f"Invalid value for '{param}'{shown}: {first['msg']}", param=param)


async def _parse(request: Request) -> SpeechRequest:
    payload = await json_object(
        request, not_object="The request body must be a JSON object.",
        invalid="We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly.)")
    try:
        return SpeechRequest.model_validate(payload)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _known_model(ctx: Context, model: str) -> bool:
    """A model name of OpenAI or a peer server (any case), which every voice may be spoken with."""
    folded = model.strip().lower()
    return folded in FLASH_MODELS or any(folded == m.lower() for m in ctx.openai_models)


def _model_names(ctx: Context) -> str:
    names = list(ctx.openai_models)
    return ", ".join(names[:LISTED_MODELS]) + (", …" if len(names) > LISTED_MODELS else "")


def _voice_for(ctx: Context, speech: SpeechRequest) -> str:
    """A voice named by `voice` wins; an OpenAI name defers to a voice named as `model`.

    Flash-TTS's built-in roles (female, male) come first, as they do on Flash-TTS; Kokoro-FastAPI's names
    and blends are looked up when no voice of the registry has the name.
    """
    name = speech.voice_name
    model_voice = None
    if not _known_model(ctx, speech.model):
        try:
            model_voice = ctx.voices.resolve(speech.model)
        except VoiceNotFound:
            raise ModelNotFound(f"The model '{speech.model}' does not exist; use one of {_model_names(ctx)} "
                                f"(GET /v1/models lists them all) or an installed voice id.",
                                param="model") from None
    installed = {v.id for v in ctx.voices.list()}
    if model_voice is not None and name not in installed and name.lower() in ctx.voices.aliases():
        return model_voice.id
    if flash_role(ctx, name) is not None:
        return str(peer_voice(ctx, name))
    try:
        return ctx.voices.resolve(name).id
    except VoiceNotFound:
        voice = peer_voice(ctx, name)
        if voice is None:
            raise
        return voice


def _sse(data: bytes) -> bytes:
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def _sse_body(audio: AsyncIterator[bytes], chars: int) -> AsyncIterator[bytes]:
    async for part in audio:
        yield part
    usage = {"input_tokens": chars, "output_tokens": 0, "total_tokens": chars}
    yield b"data: " + json.dumps({"type": "speech.audio.done", "usage": usage}).encode() + b"\n\n"


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount the OpenAI routes."""

    async def audio_voice(value: str) -> str:
        """Flash-TTS: a `voice` that is reference audio (URL or base64) speaks through the reference cache."""
        try:
            reference = await load_reference(ctx, value)
        except InvalidInput as exc:
            exc.param = exc.param or "voice"
            raise
        return await reference_voice(ctx, reference)

    @app.post("/v1/audio/speech", tags=["openai"], openapi_extra=request_body(SpeechRequest))
    async def speech(request: Request) -> Response:
        ctx.metrics.requests.labels(DIALECT).inc()
        try:
            body = await _parse(request)
            if body.instructions:
                _LOG.debug("instructions are not honoured by Piper voices; ignored")
            try:
                voice = _voice_for(ctx, body)
            except VoiceNotFound:
                if not looks_like_reference(body.voice_name):
                    raise
                voice = await audio_voice(body.voice_name)
            if not body.stream and body.stream_format == "audio":
                pcm = await unless_disconnected(request, ctx.service.synthesize(body.to_request(voice)))
                data = await asyncio.to_thread(encode_all, pcm.samples, PCM_RATE, body.response_format)
                return Response(data, media_type=get_format(body.response_format).content_type)
            stream = await ctx.service.open(body.to_request(voice))
            chunks = await first_then_rest(stream)
        except VoxgateError as exc:
            return error_response(ctx, exc)

        async def close() -> None:
            await stream.aclose()

        encoder = open_encoder(body.response_format, PCM_RATE, streaming=True)
        if body.stream_format == "sse":
            audio = encode_stream(chunks, encoder, wrap=_sse)
            return ClosingStreamingResponse(_sse_body(audio, len(body.input)), close,
                                            media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return ClosingStreamingResponse(encode_stream(chunks, encoder), close, media_type=encoder.content_type)

    @app.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, object]:
        data = [{"id": m, "object": "model", "created": _CREATED, "owned_by": "voxgate"}
                for m in ctx.openai_models]
        data += [{"id": v.id, "object": "model", "created": _CREATED, "owned_by": v.engine}
                 for v in ctx.voices.list()]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_id}", tags=["openai"])
    async def model(model_id: str) -> Response:
        listed = (await models())["data"]
        assert isinstance(listed, list)
        for entry in listed:
            if entry["id"] == model_id:
                return JSONResponse(entry)
        return error_response(ctx, ModelNotFound(f"The model '{model_id}' does not exist", param="model"))

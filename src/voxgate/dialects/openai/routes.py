"""The OpenAI dialect: its error table (OpenAI's {"error": {...}} envelope) and its handlers, one per route."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from voxgate.audio.encoders import open_encoder
from voxgate.core.context import Context
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import (
    SPEECH_ENVELOPE_ERRORS,
    ClosingStreamingResponse,
    ErrorSpec,
    encode_stream,
    envelope_invalid,
    envelope_response,
    first_then_rest,
    json_object,
    request_body,
)
from voxgate.dialects.openai.captioned import CAPTIONED_PATH, captioned_speech, kokoro_error, sse_with_words, with_words
from voxgate.dialects.openai.peers import flash_role, peer_voice
from voxgate.dialects.openai.protocol import PCM_RATE, CaptionedSpeechRequest, SpeechRequest
from voxgate.errors import (
    VoiceNotFound,
    VoxgateError,
)

_LOG = logging.getLogger(__name__)
_CREATED = 1_700_000_000  # a fixed "created" stamp: models here have no creation date worth reporting
LISTED_MODELS = 8  # model names an error message shows before "…"

_PARAMS = {"text": "input"}  # core field names → this dialect's names


class ModelNotFound(VoxgateError):
    """The `model` names neither an OpenAI TTS model nor an installed voice."""


ERRORS: dict[type[BaseException], ErrorSpec] = {
    **SPEECH_ENVELOPE_ERRORS,
    ModelNotFound: ErrorSpec(404, "invalid_request_error", "model_not_found"),
}


@dataclass(frozen=True)
class OpenAIConfig:
    """The settings this dialect reads (filled by the composition root)."""

    models: tuple[str, ...]  # model names /v1/audio/speech accepts and /v1/models lists (openai_models)
    kokoro_voices: Mapping[str, str]  # lower-case Kokoro-FastAPI name → voice id or spec (kokoro_voice_aliases)
    flash_roles: Mapping[str, str]  # Flash-TTS built-in role → voice id (flash_builtin_roles)
    # Model names of peer servers whose clients send them here (Flash-TTS's engines, from the Flash dialect's
    # table): accepted with every voice, not listed
    peer_models: tuple[str, ...] = ()


async def _parse(request: Request) -> SpeechRequest:
    payload = await json_object(
        request, not_object="The request body must be a JSON object.",
        invalid="We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly.)")
    try:
        return SpeechRequest.model_validate(payload)
    except ValidationError as exc:
        raise envelope_invalid(exc) from None


def _known_model(config: OpenAIConfig, model: str) -> bool:
    """A model name of OpenAI or a peer server (any case), which every voice may be spoken with."""
    folded = model.strip().lower()
    return any(folded == m.lower() for m in (*config.peer_models, *config.models))


def _model_names(config: OpenAIConfig) -> str:
    names = list(config.models)
    return ", ".join(names[:LISTED_MODELS]) + (", …" if len(names) > LISTED_MODELS else "")


def _voice_for(ctx: Context, config: OpenAIConfig, speech: SpeechRequest) -> str:
    """A voice named by `voice` wins; an OpenAI name defers to a voice named as `model`.

    Flash-TTS's built-in roles (female, male) come first, as they do on Flash-TTS; Kokoro-FastAPI's names
    and blends are looked up when no voice of the registry has the name.
    """
    name = speech.voice_name
    model_voice = None
    if not _known_model(config, speech.model):
        try:
            model_voice = ctx.voices.resolve(speech.model)
        except VoiceNotFound:
            raise ModelNotFound(f"The model '{speech.model}' does not exist; use one of {_model_names(config)} "
                                f"(GET /v1/models lists them all) or an installed voice id.",
                                param="model") from None
    # The voice list (sorted, every voice) only when `model` named a voice: not on every request's path.
    if (model_voice is not None and name.lower() in ctx.voices.aliases()
            and name not in {v.id for v in ctx.voices.list()}):
        return model_voice.id
    if flash_role(config.flash_roles, name) is not None:
        return str(peer_voice(ctx, config.kokoro_voices, config.flash_roles, name))
    try:
        return ctx.voices.resolve(name).id
    except VoiceNotFound:
        voice = peer_voice(ctx, config.kokoro_voices, config.flash_roles, name)
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


routes = Routes()


class OpenAI(Dialect):
    """OpenAI's speech API (and the names its peer servers' clients send): POST /v1/audio/speech, /v1/models."""

    name = "openai"
    routes = routes

    def __init__(self, ctx: Context, config: OpenAIConfig) -> None:
        super().__init__(ctx)
        self.config = config

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """Any error in OpenAI's envelope, with the status its class maps to (Kokoro-FastAPI's shape on its
        route)."""
        if request is not None and request.url.path == CAPTIONED_PATH:
            return kokoro_error(self.ctx, self.name, exc)
        return envelope_response(self.ctx.metrics, self.name, exc, ERRORS, _PARAMS)


OpenAIDep = Annotated[OpenAI, Depends(this_dialect)]


@routes.post("/v1/audio/speech", tags=["openai"], openapi_extra=request_body(SpeechRequest))
async def speech(request: Request, dialect: OpenAIDep) -> Response:
    ctx = dialect.ctx
    body = await _parse(request)
    if body.instructions:
        _LOG.debug("instructions are not honoured by Piper voices; ignored")
    voice = _voice_for(ctx, dialect.config, body)
    timed = body.timestamps and body.stream_format == "sse"  # word events only fit the SSE stream
    stream = await ctx.service.open(body.to_request(voice))
    chunks = await first_then_rest(stream)

    async def close() -> None:
        await stream.aclose()

    encoder = open_encoder(body.response_format, PCM_RATE, streaming=True)
    if body.stream_format == "sse":
        if timed:
            words = sse_with_words(with_words(chunks, encoder, body.input), _sse, len(body.input))
            return ClosingStreamingResponse(words, close, media_type="text/event-stream",
                                            headers={"Cache-Control": "no-cache"})
        audio = encode_stream(chunks, encoder, wrap=_sse)
        return ClosingStreamingResponse(_sse_body(audio, len(body.input)), close,
                                        media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return ClosingStreamingResponse(encode_stream(chunks, encoder), close, media_type=encoder.content_type)


@routes.get("/v1/models", tags=["openai"])
async def models(dialect: OpenAIDep) -> dict[str, object]:
    return {"object": "list", "data": _listed(dialect)}


@routes.get("/v1/models/{model_id}", tags=["openai"])
async def model(model_id: str, dialect: OpenAIDep) -> Response:
    for entry in _listed(dialect):
        if entry["id"] == model_id:
            return JSONResponse(entry)
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")


@routes.post(CAPTIONED_PATH, tags=["openai"], openapi_extra=request_body(CaptionedSpeechRequest))
async def captioned(request: Request, dialect: OpenAIDep) -> Response:
    """Kokoro-FastAPI's POST /dev/captioned_speech (dialects/openai/captioned.py)."""
    return await captioned_speech(dialect.ctx, dialect.config.kokoro_voices, request)


def _listed(dialect: OpenAI) -> list[dict[str, object]]:
    """The configured model names, then every voice, as /v1/models lists them."""
    data: list[dict[str, object]] = [{"id": m, "object": "model", "created": _CREATED, "owned_by": "voxgate"}
                                     for m in dialect.config.models]
    data += [{"id": v.id, "object": "model", "created": _CREATED, "owned_by": v.engine}
             for v in dialect.ctx.voices.list()]
    return data

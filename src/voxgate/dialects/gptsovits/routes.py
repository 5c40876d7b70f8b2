"""The GPT-SoVITS api_v2 dialect: /tts, /control, /set_*_weights, /set_refer_audio, its state and errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask

from voxgate.audio.encoders import Encoder, encode_all, open_encoder
from voxgate.audio.pcm import int16_bytes, wav_header
from voxgate.core.context import Context
from voxgate.core.routing import spoken_languages
from voxgate.core.service import SynthesisStream
from voxgate.core.types import PcmChunk
from voxgate.core.voicebank import ReferenceAudio
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import (
    FORM,
    JSON,
    ClosingStreamingResponse,
    ErrorSpec,
    failure,
    fields_schema,
    first_then_rest,
    parse_json,
    query_parameters,
    request_body,
    unless_disconnected,
)
from voxgate.dialects.gptsovits.protocol import (
    LANGUAGES,
    SAMPLE_RATE,
    ParamError,
    TtsParams,
    claims,
)
from voxgate.dialects.gptsovits.split import Plan, plan
from voxgate.errors import (
    EngineFailure,
    ForbiddenReference,
    InvalidInput,
    InvalidReference,
    Overloaded,
    Unauthorized,
    VoiceNotFound,
)

_LOG = logging.getLogger(__name__)
DIALECT = "gptsovits"
REFERENCE_SECONDS = (3.0, 10.0)  # the original's reference length window (48000–160000 samples at 16 kHz)
REFERENCE_RANGE = "参考音频在3~10秒范围外，请更换！"  # "reference audio outside 3–10 s, please change it!"

# type "param": 400 {"message": m}; "failed": {"message": "<what> failed", "Exception": m}.
ERRORS: dict[type[BaseException], ErrorSpec] = {
    ParamError: ErrorSpec(400, "param", "invalid_param"),
    Unauthorized: ErrorSpec(401, "param", "unauthorized"),
    InvalidReference: ErrorSpec(400, "failed", "invalid_reference"),
    ForbiddenReference: ErrorSpec(400, "failed", "forbidden_reference"),
    InvalidInput: ErrorSpec(400, "failed", "invalid_value"),
    VoiceNotFound: ErrorSpec(400, "failed", "voice_not_found"),
    Overloaded: ErrorSpec(503, "failed", "server_overloaded"),
    EngineFailure: ErrorSpec(400, "failed", "engine_failure"),
}


@dataclass
class DialectState:
    """What /set_*_weights and /set_refer_audio change; one per server, never per request."""

    model: str | None = None  # voice id set by /set_gpt_weights or /set_sovits_weights
    reference: str | None = None  # voice id set by /set_refer_audio
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)  # one per reference being registered

    @property
    def default(self) -> str | None:
        """The voice /tts uses when ref_audio_path is omitted."""
        return self.reference or self.model


# What the original says failed, per route, when a domain error is not a parameter error.
FAILED = {"/control": "restart failed", "/set_gpt_weights": "change gpt weight failed",
          "/set_sovits_weights": "change sovits weight failed", "/set_refer_audio": "set refer audio failed"}


def error_response(ctx: Context, exc: BaseException, failed: str = "tts failed") -> JSONResponse:
    """Render a domain error the way the original does, with the status its class maps to."""
    found = failure(ctx.metrics, DIALECT, exc, ERRORS, ErrorSpec(500, "failed", "internal_error"))
    message = found.message
    body = {"message": message} if found.spec.type == "param" else {"message": failed, "Exception": message}
    return JSONResponse(body, status_code=found.spec.status, headers=found.headers)


def _validation_error(exc: ValidationError, where: str) -> RequestValidationError:
    """FastAPI's own 422 for wrong types, as the original (a FastAPI app) answers them."""
    errors = [{**e, "loc": (where, *e["loc"])} for e in exc.errors(include_url=False)]
    return RequestValidationError(errors)


def cross_site(request: Request) -> bool:
    """A browser request another site made: Sec-Fetch-Site says so, or Origin is not this server."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not sent by a browser's cross-origin fetch (curl, the GPT-SoVITS clients)
    host = request.headers.get("host", "")
    return origin.lower() not in {f"http://{host}".lower(), f"https://{host}".lower()}


def _parse(fields: Any, where: str) -> TtsParams:
    try:
        return TtsParams.model_validate(fields)
    except ValidationError as exc:
        raise _validation_error(exc, where) from None


async def _body_fields(request: Request) -> Any:
    """POST fields: a JSON object (the original), or a form (a voxgate extension); validated by the caller."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    try:
        return parse_json(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", getattr(exc, "pos", 0)),
                                       "msg": "JSON decode error", "input": {},
                                       "ctx": {"error": getattr(exc, "msg", str(exc))}}]) from None


class Voices:
    """Turns a ref_audio_path (voice id or server-side path) into a voice id, registering references once."""

    def __init__(self, ctx: Context, state: DialectState) -> None:
        self._ctx = ctx
        self._state = state

    def spoken(self) -> set[str]:
        """Primary language subtags the installed voices speak."""
        return spoken_languages(self._ctx.voices)

    async def _reference(self, ref: str) -> ReferenceAudio:
        reference = await self._ctx.voicebank.load_reference(ref)
        low, high = REFERENCE_SECONDS
        if not low <= reference.duration <= high:
            raise InvalidReference(REFERENCE_RANGE, param="ref_audio_path")
        return reference

    def _language(self, prompt_lang: str | None) -> str | None:
        language = LANGUAGES.get(prompt_lang.lower()) if prompt_lang else None
        return language if language in self.spoken() else None  # else the base's: cross-lingual is common

    async def resolve(self, ref: str, prompt_text: str = "", prompt_lang: str | None = None) -> str:
        """The voice id for a voice name, or a reference file used for this request (the reference cache:
        measured once, never a listed voice)."""
        try:
            return self._ctx.voices.resolve(ref).id
        except VoiceNotFound:
            pass
        reference = await self._reference(ref)
        return str(await self._ctx.voicebank.adhoc(reference, transcript=prompt_text or None,
                                                   language=self._language(prompt_lang)))

    async def register(self, ref: str) -> str:
        """/set_refer_audio: a voice id, or a reference file registered as the voice gsv-<hash> (listed)."""
        try:
            return self._ctx.voices.resolve(ref).id
        except VoiceNotFound:
            pass
        reference = await self._reference(ref)
        name = f"gsv-{(await asyncio.to_thread(reference.sha256))[:12]}"
        lock = self._state.locks.setdefault(name, asyncio.Lock())
        async with lock:  # two first requests with one new reference register it once
            voice, _ = await self._ctx.voicebank.register(name, reference, meta={"origin": DIALECT, "path": ref})
        return voice.id

    async def model(self, weights_path: str) -> str:
        """A voice id for /set_*_weights: a voice id, or the path of an installed Piper .onnx model."""
        try:
            return self._ctx.voices.resolve(weights_path).id
        except VoiceNotFound:
            pass
        found = self._model_file(weights_path)
        if found is None and weights_path.endswith(".onnx"):
            await asyncio.to_thread(self._ctx.voices.refresh)  # a model just copied into the voices folder
            found = self._model_file(weights_path)
        if found is None:
            raise VoiceNotFound(f"{weights_path} is neither a voice id nor a Piper model (.onnx) in the "
                                "voices folder", param="weights_path")
        return found

    def _model_file(self, path: str) -> str | None:
        """Match a client path against installed model files only (no file system access on its behalf)."""
        wanted = os.path.normpath(path)
        for voice in self._ctx.voices.installed():
            if voice.model_path is None or voice.speaker is not None:
                continue
            model = str(voice.model_path)
            if wanted == model or (not os.path.isabs(wanted) and model.endswith(os.sep + wanted)):
                return voice.id
        return None


Unit = np.ndarray | bytes  # samples, or raw int16 bytes an upstream sent as they are (media_type raw only)


def _joined(parts: list[Unit]) -> Unit:
    """One fragment's parts as one unit: bytes when any part is an upstream's raw bytes."""
    if any(isinstance(p, bytes) for p in parts):
        return b"".join(p if isinstance(p, bytes) else int16_bytes(p) for p in parts)
    return np.concatenate(parts)


async def _by_fragment(chunks: AsyncIterator[PcmChunk], plan: Plan, mode: int,
                       silence: int) -> AsyncGenerator[Unit, None]:
    """Audio units in the original's framing: mode 1 (and 0) one per fragment, 2/3 each piece as it comes.

    `silence` samples follow every fragment that produced audio (as a unit of its own in modes 2/3). A chunk
    that carries an upstream's own bytes (raw only: TtsParams.to_request) is a unit of those bytes.
    """
    gap = np.zeros(silence, np.float32)
    current: int | None = None
    parts: list[Unit] = []
    try:
        async for chunk in chunks:
            # index -1 is the resampler's tail at the very end: it belongs to the last fragment.
            # (an SSML request is one fragment the core cuts into several segments: they all belong to it)
            fragment = plan.fragment_of[min(chunk.index, len(plan.fragment_of) - 1)] if chunk.index >= 0 \
                else (current or 0)
            if current is not None and fragment != current:
                if mode < 2:
                    yield _joined([*parts, gap])
                    parts = []
                elif silence:
                    yield gap
            current = fragment
            unit = chunk.encoded if chunk.encoded is not None else chunk.samples
            if mode < 2:
                parts.append(unit)
            else:
                yield unit
        if current is not None:
            if mode < 2:
                yield _joined([*parts, gap])
            elif silence:
                yield gap
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()  # client gone or done: the core drops whatever is still queued


def _pack(samples: Unit, media_type: str, encoder: Encoder | None) -> bytes:
    """One streamed unit: raw int16 (wav after its header, raw), a whole Ogg file, or ADTS frames."""
    if isinstance(samples, bytes):  # an upstream's raw bytes: untouched
        return samples
    if media_type == "ogg":
        return encode_all(samples, SAMPLE_RATE, "ogg")
    if encoder is not None:
        return encoder.encode(samples)
    return int16_bytes(samples)


async def _stream_body(units: AsyncGenerator[Unit, None], media_type: str) -> AsyncIterator[bytes]:
    """Streaming framing of §2: wav = 44-byte header with zero sizes, then raw int16; codecs off the loop."""
    encoder = open_encoder("aac", SAMPLE_RATE, streaming=True) if media_type == "aac" else None
    try:
        if media_type == "wav":
            yield wav_header(SAMPLE_RATE, unknown="zero")
        async for unit in units:
            data = await asyncio.to_thread(_pack, unit, media_type, encoder)
            if data:
                yield data
        if encoder is not None:
            tail = await asyncio.to_thread(encoder.finish)
            if tail:
                yield tail
    finally:
        if encoder is not None:
            encoder.close()
        await units.aclose()


def _whole_file(samples: Unit, media_type: str) -> bytes:
    """A complete file: WAV with true sizes, raw int16, Ogg Vorbis or ADTS AAC."""
    if isinstance(samples, bytes):  # raw with an upstream's bytes in it
        return samples
    if media_type == "raw":
        return int16_bytes(samples)
    return encode_all(samples, SAMPLE_RATE, media_type)


@dataclass(frozen=True)
class GptSovitsConfig:
    """The settings this dialect reads (filled by the composition root)."""

    allow_exit: bool = False  # /control?command=exit may stop the server (setting allow_remote_control)


routes = Routes()


class GptSovits(Dialect):
    """GPT-SoVITS api_v2 on the core: one state per server, shared by every app it is mounted on."""

    name = "gptsovits"
    original = "GPT-SoVITS"
    port = 9880
    routes = routes

    def __init__(self, ctx: Context, config: GptSovitsConfig) -> None:
        super().__init__(ctx)
        self.config = config
        self.state = DialectState()
        self.voices = Voices(ctx, self.state)

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """The original's bodies: {"message": m} for a parameter, else {"message": "<what> failed", "Exception": m}."""
        failed = FAILED.get(request.url.path, "tts failed") if request is not None else "tts failed"
        return error_response(self.ctx, exc, failed)

    def claims(self, request: Request, body: bytes) -> bool:
        """POST /tts is GPT-SoVITS's unless its body is a CosyVoice request (a JSON object with `prompt_id`)."""
        if request.method != "POST":
            return True
        try:
            payload = parse_json(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return True  # forms and broken JSON: GPT-SoVITS accepts forms and explains the rest
        return not isinstance(payload, dict) or claims(payload)


GptSovitsDep = Annotated[GptSovits, Depends(this_dialect)]


# -- /tts ----------------------------------------------------------------------------------------------------

@routes.get("/tts", tags=["gptsovits"], openapi_extra=query_parameters(TtsParams))
async def tts_get(request: Request, dialect: GptSovitsDep) -> Response:
    fields: dict[str, Any] = dict(request.query_params)
    for name in ("text_lang", "prompt_lang"):  # the original lower-cases these on GET only
        if isinstance(fields.get(name), str):
            fields[name] = fields[name].lower()
    aux = request.query_params.getlist("aux_ref_audio_paths")
    fields["aux_ref_audio_paths"] = aux or None
    return await _tts(dialect, _parse(fields, "query"), request)


@routes.post("/tts", tags=["gptsovits"], openapi_extra=request_body(TtsParams, JSON, FORM))
async def tts_post(request: Request, dialect: GptSovitsDep) -> Response:
    return await _tts(dialect, _parse(await _body_fields(request), "body"), request)


async def _tts(dialect: GptSovits, params: TtsParams, request: Request) -> Response:
    state, voices = dialect.state, dialect.voices
    mode = params.check(voices.spoken(), state.default is not None)
    if params.aux_ref_audio_paths:
        _LOG.debug("aux_ref_audio_paths are accepted but not fused")
    voice = (await voices.resolve(params.ref_audio_path, params.prompt_text, params.prompt_lang)
             if params.ref_audio_path else state.default)
    assert voice is not None  # check() refused a request with neither
    cut = plan(params.text or "", params.language, params.text_split_method, mode)
    silence = params.silence  # everything that can fail is computed before the stream opens
    stream = await dialect.ctx.service.open(params.to_request(voice, cut.segments))
    if mode == 0:
        audio = await unless_disconnected(request, _whole(stream, cut, silence))
        data = await asyncio.to_thread(_whole_file, audio, params.media_type)
        return Response(data, media_type=f"audio/{params.media_type}")
    chunks = await first_then_rest(stream)
    units = _by_fragment(chunks, cut, mode, silence)
    return ClosingStreamingResponse(_stream_body(units, params.media_type), stream.aclose,
                                    media_type=f"audio/{params.media_type}")


# -- /control ------------------------------------------------------------------------------------------------

@routes.get("/control", tags=["gptsovits"])
async def control_get(request: Request, dialect: GptSovitsDep, command: str | None = None) -> Response:
    return await _control(dialect, command, request)


@routes.post("/control", tags=["gptsovits"],
             openapi_extra=request_body(fields_schema(("command",), title="Control"), required=False))
async def control_post(request: Request, dialect: GptSovitsDep) -> Response:
    try:
        body = parse_json(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {}
    command = body.get("command") if isinstance(body, dict) else None
    return await _control(dialect, command if command is not None else request.query_params.get("command"), request)


async def _control(dialect: GptSovits, command: Any, request: Request) -> Response:
    ctx, state = dialect.ctx, dialect.state
    if command is None or command == "":
        return JSONResponse({"message": "command is required"}, status_code=400)
    if command == "exit" and not dialect.config.allow_exit:
        return JSONResponse({"message": "exit is disabled: start the server with --allow-remote-control"},
                            status_code=403)
    if command == "exit" and cross_site(request):
        return JSONResponse({"message": "exit refused: a cross-site request may not stop the server"},
                            status_code=403)
    if command == "restart":
        await asyncio.to_thread(ctx.voices.refresh)
        await ctx.voicebank.rematch()  # may synthesize, so may find the server busy ("restart failed")
        state.reference = None  # a restarted original has no reference loaded
        if state.model is not None:
            try:
                state.model = ctx.voices.resolve(state.model).id
            except VoiceNotFound:
                state.model = None
        _LOG.info("gptsovits restart: voices and settings reloaded")
    elif command == "exit":
        _LOG.info("gptsovits exit: shutting down")
        # SIGTERM after the response: uvicorn then drains running streams, as on Ctrl-C.
        return JSONResponse(None, background=BackgroundTask(os.kill, os.getpid(), signal.SIGTERM))
    return JSONResponse(None)


# -- /set_*_weights, /set_refer_audio --------------------------------------------------------------------------

@routes.get("/set_gpt_weights", tags=["gptsovits"])
async def set_gpt_weights(dialect: GptSovitsDep, weights_path: str | None = None) -> Response:
    return await _set_weights(dialect, weights_path, "gpt")


@routes.get("/set_sovits_weights", tags=["gptsovits"])
async def set_sovits_weights(dialect: GptSovitsDep, weights_path: str | None = None) -> Response:
    return await _set_weights(dialect, weights_path, "sovits")


async def _set_weights(dialect: GptSovits, weights_path: str | None, kind: str) -> Response:
    if not weights_path:
        return JSONResponse({"message": f"{kind} weight path is required"}, status_code=400)
    dialect.state.model = await dialect.voices.model(weights_path)
    return JSONResponse({"message": "success"})


@routes.get("/set_refer_audio", tags=["gptsovits"])
async def set_refer_audio(dialect: GptSovitsDep, refer_audio_path: str | None = None) -> Response:
    if not refer_audio_path:
        raise InvalidInput("refer_audio_path is required", param="refer_audio_path")
    dialect.state.reference = await dialect.voices.register(refer_audio_path)
    return JSONResponse({"message": "success"})


async def _whole(stream: SynthesisStream, cut: Plan, silence: int) -> Unit:
    """Streaming mode 0: every fragment with its silence, as one array (bytes when an upstream's are in it)."""
    async with stream:
        units = [u async for u in _by_fragment(stream, cut, 0, silence)]
    return _joined(units) if units else np.zeros(0, np.float32)

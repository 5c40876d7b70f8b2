"""Helpers every dialect shares: error tables, streaming bodies that stop when the client goes."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxgate.audio.encoders import Encoder
from voxgate.core.context import Context
from voxgate.core.metrics import Metrics
from voxgate.core.service import SynthesisService, SynthesisStream
from voxgate.core.types import PcmChunk
from voxgate.core.voicebank import ReferenceAudio
from voxgate.errors import (
    Cancelled,
    EngineFailure,
    InputTooLong,
    InvalidInput,
    Overloaded,
    Unauthorized,
    VoiceNotFound,
)

E = TypeVar("E")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Starlette's cap on one form part: the base64 of a reference at the voice bank's 25 MB limit fits; the
# reference limits themselves apply after parsing.
MAX_REFERENCE_FORM_PART = 40 * 1024 * 1024

_LOG = logging.getLogger(__name__)


# The one JSON guard every hand-parsed body, WebSocket frame and StackFlow message goes through.
MAX_JSON_DEPTH = 32  # no dialect's message nests deeper than 4; json and pydantic recurse per level
MAX_JSON_BYTES = 64 * 1024 * 1024  # a base64 reference at the voice bank's 25 MB limit fits
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnsafeJson(json.JSONDecodeError):
    """Well-formed JSON voxgate refuses: too deep, too large, a non-finite number or a lone surrogate.
    A JSONDecodeError, so every caller's "not valid JSON" answer covers it."""

    def __init__(self, msg: str, doc: str = "", pos: int = 0) -> None:
        super().__init__(msg, doc, pos)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeJson(f"number {text[:40]} is out of range")
    return value


def _constant(name: str) -> float:
    raise UnsafeJson(f"{name} is not a JSON number")


def _check(value: Any, depth: int = 0) -> None:
    """Refuse nesting past MAX_JSON_DEPTH and strings with lone surrogates (the walk stops at the limit)."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise UnsafeJson("a string holds a lone surrogate (invalid Unicode)")
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            raise UnsafeJson(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str):
                _check(key, depth + 1)
            _check(item, depth + 1)


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: UTF-8 (UnicodeDecodeError otherwise), at most MAX_JSON_DEPTH deep and MAX_JSON_BYTES
    long, finite numbers only (no NaN, Infinity or 1e400), no lone surrogates; UnsafeJson (a
    JSONDecodeError) for what is refused, so nothing a client sends can raise RecursionError here or later
    make a response unrenderable."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_JSON_BYTES:
        raise UnsafeJson(f"the JSON body is over {MAX_JSON_BYTES} bytes")
    text = data.decode("utf-8")
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant,
                           parse_int=lambda s: int(s) if len(s) < 400 else _constant("a 400-digit integer"))
    except RecursionError:  # the C scanner's own guard, long before the stack is at risk
        raise UnsafeJson(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    _check(value)
    return value


def _renderable(value: Any) -> Any:
    """`value` with what JSON cannot carry made printable: non-finite floats and bytes as text, lone
    surrogates escaped (echoed client input in a 422 must never make the error itself fail)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {_renderable(k): _renderable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_renderable(v) for v in value]
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 ({"detail": [...]}), safe for any input it echoes."""
    assert isinstance(exc, RequestValidationError)
    errors = _renderable(list(exc.errors()))  # anything else (an exception in ctx) as FastAPI renders it
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


class StreamScopeMiddleware:
    """Every HTTP request and WebSocket connection runs in a SynthesisService.scope(): a stream its
    dialect leaves open is closed (its slot freed) when the request or connection ends, however it ends."""

    def __init__(self, app: ASGIApp, service: SynthesisService) -> None:
        self.app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        async with self._service.scope():
            await self.app(scope, receive, send)


@dataclass(frozen=True)
class ErrorSpec:
    """How a dialect answers one class of domain error."""

    status: int
    type: str = ""
    code: str | None = None


# The rows dialects share, once; each dialect's table is one of these plus its own rows ({**BASE, Mine: ...}).
# A lookup goes by the exception's class hierarchy (`lookup`), so the order of rows never matters.

# The {"error": {"message", "type", "param", "code"}} envelope under /v1 (OpenAI, Flash-TTS's /v1/audio/speech, native).
ENVELOPE_ERRORS: dict[type[BaseException], ErrorSpec] = {
    InvalidInput: ErrorSpec(400, "invalid_request_error", "invalid_value"),
    VoiceNotFound: ErrorSpec(404, "invalid_request_error", "voice_not_found"),
    Unauthorized: ErrorSpec(401, "invalid_request_error", "invalid_api_key"),
    Overloaded: ErrorSpec(503, "server_error", "server_overloaded"),
    EngineFailure: ErrorSpec(500, "server_error", "engine_failure"),
}

# /v1/audio/speech (OpenAI's, and Flash-TTS's on that shared path): an over-long input has its own code there
# (native answers it as any invalid value).
SPEECH_ENVELOPE_ERRORS: dict[type[BaseException], ErrorSpec] = {
    **ENVELOPE_ERRORS,
    InputTooLong: ErrorSpec(400, "invalid_request_error", "string_above_max_length"),
}

# Statuses and metric codes of the dialects whose bodies carry only a message (Flash-TTS, CosyVoice).
STATUS_ERRORS: dict[type[BaseException], ErrorSpec] = {
    Unauthorized: ErrorSpec(401, code="unauthorized"),
    VoiceNotFound: ErrorSpec(404, code="voice_not_found"),
    Overloaded: ErrorSpec(503, code="server_overloaded"),
    Cancelled: ErrorSpec(499, code="cancelled"),  # the client is gone; nobody reads this answer
    EngineFailure: ErrorSpec(500, code="engine_failure"),
}


def body_model(model: type[M], data: Any) -> M:
    """`data` (a form's fields or a JSON body) validated into `model`, or FastAPI's own 422 for it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def request_body(model: type[BaseModel] | dict[str, Any], *media: str, files: tuple[str, ...] = (),
                 required: bool = True) -> dict[str, Any]:
    """An `openapi_extra` documenting the body a handler parses by hand, from its wire model.

    `media` defaults to JSON; `files` are multipart fields that carry an uploaded file. Nested models are
    left in `$defs`, which the app moves into components.schemas.
    """
    schema = model if isinstance(model, dict) else model.model_json_schema(
        ref_template="#/components/schemas/{model}")
    content: dict[str, Any] = {}
    for kind in media or (JSON,):
        body = dict(schema)
        if kind == MULTIPART and files:
            body["properties"] = {**body.get("properties", {}),
                                  **{name: {"type": "string", "format": "binary"} for name in files}}
        content[kind] = {"schema": body}
    return {"requestBody": {"required": required, "content": content}}


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """An `openapi_extra` documenting the query a handler reads by hand, one parameter per model field."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    return {"parameters": [{"name": name, "in": "query", "required": name in required, "schema": field}
                           for name, field in schema.get("properties", {}).items()]}


def fields_schema(required: tuple[str, ...], optional: tuple[str, ...] = (), title: str = "") -> dict[str, Any]:
    """A flat object of string fields, for forms that have no wire model."""
    return {"title": title, "type": "object", "required": list(required),
            "properties": {name: {"type": "string", "title": name} for name in (*required, *optional)}}


def missing_field(field: str, msg: str = "Field required") -> RequestValidationError:
    """FastAPI's 422 for a required body field that is absent."""
    return RequestValidationError([{"type": "missing", "loc": ("body", field), "msg": msg, "input": None}])


def lookup(table: Mapping[type[BaseException], E], exc: BaseException, default: E) -> E:
    """Find the entry for the most specific class of `exc` in its hierarchy."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


async def json_object(request: Request, *, invalid: str, not_object: str) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidInput with the dialect's own wording."""
    try:
        body = parse_json(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput(invalid) from None
    if not isinstance(body, dict):
        raise InvalidInput(not_object)
    return body


@dataclass(frozen=True)
class Failure:
    """What a dialect needs to render a domain error in its own shape."""

    spec: ErrorSpec
    message: str
    headers: dict[str, str] | None  # Retry-After for Overloaded


def failure(metrics: Metrics, dialect: str, exc: BaseException, table: Mapping[type[BaseException], ErrorSpec],
            default: ErrorSpec = ErrorSpec(500, "server_error", "internal_error")) -> Failure:
    """Look the error up in the dialect's table, count it, and gather its message and headers."""
    spec = lookup(table, exc, default)
    metrics.errors.labels(dialect, spec.code or spec.type or "error").inc()
    message = getattr(exc, "message", None) or str(exc) or "internal server error"
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return Failure(spec, message, headers)


def envelope_response(
    metrics: Metrics, dialect: str, exc: BaseException, table: Mapping[type[BaseException], ErrorSpec],
    params: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error in the {"error": {"message", "type", "param", "code"}} envelope (OpenAI's, used under /v1)."""
    found = failure(metrics, dialect, exc, table)
    param = getattr(exc, "param", None)
    body = {"error": {"message": found.message, "type": found.spec.type,
                      "param": (params or {}).get(param, param), "code": found.spec.code}}
    return JSONResponse(body, status_code=found.spec.status, headers=found.headers)


def envelope_invalid(exc: ValidationError, long_field: str = "input") -> InvalidInput:
    """The first error of a body model as the envelope's 400 (`param`: the field; an over-long `long_field`
    is InputTooLong), worded as OpenAI words it."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or None
    if param and param.startswith("voice."):
        param = "voice"
    if first["type"] == "string_too_long" and param == long_field:
        return InputTooLong(f"Invalid '{param}': {first['msg']}", param=param)
    value = first.get("input")
    shown = f" {value!r}" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    return InvalidInput(f"Invalid value for '{param}'{shown}: {first['msg']}", param=param)


# References used for one request in place of a voice name (Flash-TTS's /clone_voice, a reference `voice` on
# the OpenAI route): they go to the voice bank's reference cache, never into the voice list.
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")
BASE64_SNIFF_CHARS = 256  # a voice "name" this long in the base64 alphabet is audio


def looks_like_reference(value: str) -> bool:
    """Whether a voice value is reference audio (URL, data URI or a long base64 string) rather than a name."""
    text = value.strip()
    return (text[:8].lower().startswith(("http://", "https://", "data:"))
            or (len(text) >= BASE64_SNIFF_CHARS and _BASE64_TEXT.fullmatch(text) is not None))


async def load_reference(ctx: Context, value: str | bytes) -> ReferenceAudio:
    """Reference audio from an upload, an http(s) URL, base64, or (a voxgate extension: Flash-TTS takes
    none) a file in the reference folders: a value with characters outside the base64 alphabet (`.` of a
    file name) is a path, any other is base64, as Flash-TTS reads it."""
    if isinstance(value, str):
        text = value.strip()
        url = text[:8].lower().startswith(("http://", "https://", "data:"))
        if not url and _BASE64_TEXT.fullmatch(text):
            value = "data:;base64," + text
    return await ctx.voicebank.load_reference(value)


async def reference_voice(ctx: Context, reference: ReferenceAudio, transcript: str | None = None,
                          language: str | None = None) -> str:
    """The voice of a reference used for this request only: served from the reference cache (measured
    once, kept across restarts, never listed); it becomes a voice only when registered."""
    return str(await ctx.voicebank.adhoc(reference, transcript=transcript, language=language))


async def first_then_rest(stream: SynthesisStream) -> AsyncIterator[PcmChunk]:
    """Pull the first chunk now (so an engine error can still become a status), then the rest."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise

    async def rest() -> AsyncIterator[PcmChunk]:
        try:
            if first is not None:
                yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # client gone or done: cancel whatever is still queued

    return rest()


FIRST_PIECE = 0.25  # seconds: a codec's first bytes leave after encoding this much, not a whole first sentence


async def encode_stream(
    chunks: AsyncIterator[PcmChunk], encoder: Encoder, wrap: Callable[[bytes], bytes] | None = None
) -> AsyncIterator[bytes]:
    """Encode PCM chunks as they come; a codec runs off the event loop, raw PCM on it (a thread hand-off
    would cost more than the conversion, and it sits between the first samples and the first byte), unless
    the worker that made a chunk made its int16 bytes too (PcmChunk.pcm16): then they are sent as they are.
    A codec gets the first chunk in two calls, FIRST_PIECE seconds and the rest: mp3 takes ~7 ms per second
    of audio, so the first bytes need not wait for the whole first sentence to be encoded."""
    running: asyncio.Future[bytes] | None = None  # the codec call in its thread, if one is under way
    inline_max = encoder.inline_seconds * encoder.input_rate  # samples encoded on the loop (0: never)
    head = int(FIRST_PIECE * encoder.input_rate) if not inline_max else 0  # samples of the first piece

    async def encode(samples: np.ndarray) -> bytes:
        nonlocal running
        if len(samples) <= inline_max:
            return encoder.encode(samples)
        running = asyncio.ensure_future(asyncio.to_thread(encoder.encode, samples))
        return await asyncio.shield(running)

    try:
        async for chunk in chunks:
            if chunk.encoded is not None:  # an upstream's bytes in this very format: untouched
                data = encoder.passthrough(chunk.encoded)
                if data:
                    yield wrap(data) if wrap else data
                continue
            samples = chunk.samples
            if chunk.pcm16 is not None and encoder.takes_pcm16:  # its int16 bytes came with it: nothing to convert
                data = encoder.encode_pcm16(samples, chunk.pcm16)
                if data:
                    yield wrap(data) if wrap else data
                continue
            if head and len(samples) > 2 * head:
                data = await encode(samples[:head])
                if data:
                    yield wrap(data) if wrap else data
                samples = samples[head:]
            head = 0  # only the first chunk is cut
            data = await encode(samples)
            if data:
                yield wrap(data) if wrap else data
        if inline_max:
            data = encoder.finish()
        else:
            running = asyncio.ensure_future(asyncio.to_thread(encoder.finish))
            data = await asyncio.shield(running)
        if data:
            yield wrap(data) if wrap else data
    finally:
        if running is not None and not running.done():
            await asyncio.wait({running})  # a cancel cannot stop the thread: let it finish before freeing
        encoder.close()  # frees the codec and container at once, also when the client went away
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _spec(scope: Scope) -> tuple[int, ...]:
    """The ASGI spec version the server speaks, as Starlette reads it."""
    return tuple(map(int, scope.get("asgi", {}).get("spec_version", "2.0").split(".")))


class ClosingStreamingResponse(StreamingResponse):
    """A streamed body that closes its synthesis however the response ends.

    If the client is gone before Starlette first pulls the body, the body's generators never start and
    their `finally` never runs; this closes the stream (idempotently) so its admission slot is freed.
    """

    def __init__(self, content: AsyncIterator[bytes], close: Callable[[], Awaitable[None]], **kwargs: object) -> None:
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] == "http":
                send = await self._send_head(scope, send)
                if _spec(scope) < (2, 4):  # what Starlette does there, without its anyio task group
                    await self._stream_until_disconnect(receive, send)
                    if self.background is not None:
                        await self.background()
                    return
            await super().__call__(scope, receive, send)
        finally:
            await self._close()

    async def _stream_until_disconnect(self, receive: Receive, send: Send) -> None:
        """Starlette's streaming under ASGI < 2.4 (uvicorn speaks 2.3): the body goes out from a task of its own
        while this one waits for the client to leave; whichever ends first stops the other, and an error of the
        body's is raised here. The same with plain asyncio: Starlette's anyio task group cost ~10% of the event
        loop's CPU under load (issue 13), mostly its cancel scope's cancel() formatting the repr of the current
        task (its coroutine and callbacks, with source lines) into a reason nobody reads, once per response."""
        streaming = asyncio.ensure_future(self.stream_response(send))
        try:
            while not streaming.done():
                message = asyncio.ensure_future(receive())
                try:
                    await asyncio.wait((streaming, message), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not message.done():
                        message.cancel()
                if not message.cancelled() and message.done() and message.result()["type"] == "http.disconnect":
                    break  # the client is gone (or the response is complete): stop the body
        except BaseException:  # cancelled (server shutdown), or receive() failed: the body stops, this goes on
            await self._stopped(streaming, leaving=True)
            raise
        await self._stopped(streaming, leaving=False)
        if not streaming.cancelled():
            streaming.result()  # the body's error, if it failed

    @staticmethod
    async def _stopped(streaming: asyncio.Future[None], leaving: bool) -> None:
        """Cancel the body's task unless it has ended, and wait until it has, through further cancels of this task
        (as an anyio task group waits for its children); they are raised after. When this task is `leaving` with
        an exception of its own, a body error nobody will read is logged instead of lost."""
        if not streaming.done():
            streaming.cancel()
        cancelled = False
        while not streaming.done():
            try:
                await asyncio.wait((streaming,))
            except asyncio.CancelledError:
                cancelled = True
        if leaving and not streaming.cancelled() and (error := streaming.exception()) is not None:
            _LOG.error("a response body failed while its request was ending: %r", error, exc_info=error)
        if cancelled:
            raise asyncio.CancelledError

    async def _send_head(self, scope: Scope, send: Send) -> Send:
        """Send the status, the headers and the first piece of the body in this task, as Starlette would but
        before it sets up its disconnect watch (a task and a task switch under ASGI 2.3, as uvicorn
        speaks): the first audio leaves without waiting for them. Returns the send for the rest of the
        response, which skips the start already sent."""
        spec = _spec(scope)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            body = aiter(self.body_iterator)
            self.body_iterator = body
            first = await anext(body, None)
            if first is not None:
                chunk = first if isinstance(first, bytes | memoryview) else first.encode(self.charset)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            if spec >= (2, 4):
                raise ClientDisconnect() from None
            raise

        async def rest(message: Message) -> None:
            if message["type"] != "http.response.start":
                await send(message)

        return rest


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (for answers sent only when complete)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler itself is cancelled: the work must not outlive it
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(watcher, task, return_exceptions=True)
    if task.cancelled():
        raise Cancelled("the client disconnected")
    return task.result()


CLOSE_WAIT = 10.0  # seconds a closing TCP dialect waits for its connections' handlers to end


class TcpListener:
    """The listening side of a TCP dialect (StackFlow, Wyoming): it binds host:port, or takes the socket the
    CLI bound before anything loaded; every connection sends without delay (TCP_NODELAY) and is served by
    `handle` in its own task; close() stops accepting and ends every connection."""

    def __init__(self, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                 limit: int = 2**16) -> None:
        self._handle = handle
        self._limit = limit  # the stream reader's buffer (the longest line or header it reads at once)
        self._server: asyncio.Server | None = None
        self._open: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def listen(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Bind (0 picks a free port), or take the already bound `sock`, and start accepting."""
        if sock is not None:
            self._server = await asyncio.start_server(self._accept, sock=sock, limit=self._limit)
        else:
            self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True,
                                                      limit=self._limit)
        for bound in self._server.sockets:
            bound.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open[writer] = task
        try:
            await self._handle(reader, writer)
        finally:
            self._open.pop(writer, None)

    async def close(self) -> None:
        """Stop listening and drop every connection: each handler's read sees the end and cleans up."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        handlers = set(self._open.values())
        if handlers:
            await asyncio.wait(handlers, timeout=CLOSE_WAIT)
        if self._server is not None:
            await self._server.wait_closed()

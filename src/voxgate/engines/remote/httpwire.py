"""What the HTTP kinds share: their timeouts, base URLs, bounded bodies, streamed audio and upstream errors in
one shape.

Every failure of an upstream call leaves here as an `UpstreamError` naming the upstream, with the HTTP
status when the upstream answered one, and the upstream's own message pulled from whichever error body it
speaks (OpenAI's `{"error": {"message"}}`, FastAPI's `{"detail": ...}`, AllTalk's `{"error": ...}`/`{"status":
"error", "message": ...}`, GPT-SoVITS's `{"message", "Exception"}`, CosyVoice's bare JSON string). Messages do
not name the upstream: whoever reports them does (the backend's "upstream NAME: …", the manager's logs).
Failures with no status (refused, timed out, audio that does not decode) are the upstream's fault: the
backend retries them while nothing was sent and counts them for the breaker.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np

from voxgate.core.types import Piece
from voxgate.engines.remote.base import NotSupported, UpstreamConfig, UpstreamError
from voxgate.engines.remote.pcmstream import MIN_PIECE, AudioFormatError, Int16Decoder, WavStream

MAX_JSON = 8 * 2**20  # bytes: the largest JSON answer (voice lists) read from an upstream
MAX_FILE = 256 * 2**20  # bytes: the largest audio file fetched from an upstream (≈ 45 min of 48 kHz WAV)
MESSAGE_CHARS = 300  # characters of an upstream's error text kept in our message


def timeout(config: UpstreamConfig) -> httpx.Timeout:
    """The config's connect timeout, and its read timeout for every wait on the upstream."""
    return httpx.Timeout(config.timeout, connect=config.connect_timeout)


def http_base(config: UpstreamConfig) -> str:
    """The upstream's HTTP base URL without a trailing slash (ws:// is served by the same HTTP server)."""
    url = config.url.rstrip("/")
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.lower().startswith(ws):
            return http + url[len(ws):]
    return url


def ws_base(config: UpstreamConfig) -> str:
    """The upstream's WebSocket base URL without a trailing slash."""
    url = http_base(config)
    return "wss://" + url[len("https://"):] if url.lower().startswith("https://") else "ws://" + url[len("http://"):]


def bearer(config: UpstreamConfig) -> dict[str, str]:
    """The API key as a Bearer header (voxgate and Flash-TTS check it so), or nothing."""
    return {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}


def message_of(body: bytes, fallback: str = "") -> str:
    """The upstream's error text from its error body, whatever its dialect (`fallback` for an empty body)."""
    try:
        payload: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:MESSAGE_CHARS].decode("utf-8", "replace").strip() or fallback
    if isinstance(payload, dict):
        if payload.get("message") and payload.get("Exception"):  # GPT-SoVITS: {"message": "tts failed", "Exception"}
            return f"{payload['message']}: {payload['Exception']}"[:MESSAGE_CHARS]
        for key in ("detail", "error", "message", "Exception"):
            value = payload.get(key)
            if isinstance(value, dict):  # Flash-TTS /v1: {"detail": {"error", "message", "type"}}
                value = value.get("message") or value.get("error")
            if isinstance(value, list) and value and isinstance(value[0], dict):  # FastAPI 422
                value = "; ".join(str(v.get("msg", v)) for v in value)
            if value and not isinstance(value, bool):
                return str(value)[:MESSAGE_CHARS]
    return str(payload)[:MESSAGE_CHARS]


def failed(config: UpstreamConfig, what: str, status: int | None, message: str, *,
           sent: bool = False) -> UpstreamError:
    """An UpstreamError in the one shape every kind uses: "WHAT failed: HTTP STATUS MESSAGE"."""
    code = f" HTTP {status}" if status is not None else ""
    return UpstreamError(f"{what} failed:{code} {message}".rstrip(), upstream=config.name, status=status, sent=sent)


def transport_error(config: UpstreamConfig, exc: httpx.HTTPError, *, sent: bool = False) -> UpstreamError:
    """A connection or timeout error of httpx as an UpstreamError with no status (the upstream's fault)."""
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"could not connect within {config.connect_timeout:g} s"
    elif isinstance(exc, httpx.TimeoutException):
        message = f"timed out ({type(exc).__name__})"
    elif isinstance(exc, httpx.ConnectError):
        message = f"cannot connect to {config.url}: {exc}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return UpstreamError(message, upstream=config.name, sent=sent)


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed response, refused past `limit` bytes."""
    parts, size = [], 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise UpstreamError(f"answer larger than {limit // 2**20} MB", status=response.status_code)
        parts.append(part)
    return b"".join(parts)


@contextlib.asynccontextmanager
async def transport(config: UpstreamConfig) -> AsyncIterator[None]:
    """Turn httpx's connection and timeout errors into UpstreamError (no status: nothing was answered)."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise transport_error(config, exc) from exc


@contextlib.asynccontextmanager
async def open_stream(http: httpx.AsyncClient, config: UpstreamConfig, method: str, url: str, what: str,
                      **kwargs: Any) -> AsyncIterator[httpx.Response]:
    """A streamed request to the upstream (its key and timeouts set); an error status is UpstreamError with
    the upstream's message, before any of the body is read as audio."""
    headers = {**bearer(config), **kwargs.pop("headers", {})}
    async with transport(config), http.stream(method, url, headers=headers, timeout=timeout(config),
                                              **kwargs) as response:
        if response.status_code >= 400:
            raise failed(config, what, response.status_code, await error_body(response))
        yield response


async def stream_bytes(http: httpx.AsyncClient, config: UpstreamConfig, method: str, url: str,
                       refused: Callable[[UpstreamError], bool], **kwargs: Any) -> AsyncIterator[bytes]:
    """A streamed answer's bytes as they arrive, untouched (a kind's `encoded`: the upstream's own audio in the
    client's format). An error answer that `refused` says is the upstream turning the format down (a 400/422
    naming it) is NotSupported, raised before any bytes, so the backend asks for PCM instead."""
    try:
        async with open_stream(http, config, method, url, "synthesis", **kwargs) as response:
            async for data in response.aiter_bytes():
                yield data
    except NotSupported:
        raise
    except UpstreamError as exc:
        if exc.status in (400, 422) and refused(exc):
            raise NotSupported(exc.message, upstream=config.name, status=exc.status) from None
        raise


async def stream_pieces(config: UpstreamConfig, response: httpx.Response, decoder: Int16Decoder | WavStream,
                        min_samples: int = MIN_PIECE) -> AsyncIterator[Piece]:
    """The audio of a streamed answer as Pieces: the first as soon as any samples decode, then at least
    `min_samples` each (the last may be shorter). Audio that does not decode, an empty WAV stream, or a
    stream that breaks is UpstreamError (no status; `sent` once a piece went)."""
    pending: list[np.ndarray] = []
    size, sent = 0, False
    try:
        async for chunk in response.aiter_bytes():
            samples = decoder.feed(chunk)
            if not len(samples):
                continue
            pending.append(samples)
            size += len(samples)
            if sent and size < min_samples:
                continue
            sent = True
            yield _piece(pending, decoder.rate)
            pending, size = [], 0
        decoder.finish()
    except AudioFormatError as exc:
        raise failed(config, "synthesis", None, f"audio that does not decode: {exc}", sent=sent) from None
    except httpx.HTTPError as exc:  # the stream broke after the headers
        raise failed(config, "synthesis", None, f"stream ended early: {transport_error(config, exc).message}",
                     sent=sent) from exc
    if pending:
        yield _piece(pending, decoder.rate)


def _piece(parts: list[np.ndarray], rate: int | None) -> Piece:
    assert rate is not None  # a decoder yields samples only once it knows their rate
    return Piece(parts[0] if len(parts) == 1 else np.concatenate(parts), rate)


async def request_json(http: httpx.AsyncClient, config: UpstreamConfig, method: str, path: str, what: str,
                       **kwargs: Any) -> Any:
    """One HTTP call whose answer is JSON; an error status is UpstreamError with the upstream's message."""
    url = http_base(config) + path
    headers = {**bearer(config), **kwargs.pop("headers", {})}
    async with transport(config), http.stream(method, url, headers=headers, timeout=timeout(config),
                                                    **kwargs) as response:
        body = await _bounded(response, config, what, MAX_JSON)
        if response.status_code >= 400:
            raise failed(config, what, response.status_code, message_of(body, response.reason_phrase))
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise failed(config, what, response.status_code, f"answer is not JSON: {body[:80]!r}") from None


async def _bounded(response: httpx.Response, config: UpstreamConfig, what: str, limit: int) -> bytes:
    try:
        return await read_bounded(response, limit)
    except UpstreamError as exc:
        raise failed(config, what, response.status_code, exc.message) from None


async def fetch_bytes(http: httpx.AsyncClient, config: UpstreamConfig, path: str, what: str,
                      limit: int = MAX_FILE) -> bytes:
    """GET a file of the upstream itself (`path` is a path on its base URL, never a URL)."""
    url = http_base(config) + path
    async with transport(config), http.stream("GET", url, headers=bearer(config),
                                                    timeout=timeout(config)) as response:
        body = await _bounded(response, config, what, limit)
        if response.status_code >= 400:
            raise failed(config, what, response.status_code, message_of(body, response.reason_phrase))
    return body


async def error_body(response: httpx.Response) -> str:
    """The message of a streamed error response (read bounded)."""
    try:
        return message_of(await read_bounded(response, MAX_JSON), response.reason_phrase)
    except (UpstreamError, httpx.HTTPError):
        return response.reason_phrase


async def answers(http: httpx.AsyncClient, config: UpstreamConfig, path: str) -> bool:
    """True when GET `path` answers 2xx within the connect timeout (a health probe)."""
    try:
        response = await http.get(http_base(config) + path, headers=bearer(config),
                                  timeout=httpx.Timeout(config.connect_timeout))
    except httpx.HTTPError:
        return False
    return response.is_success

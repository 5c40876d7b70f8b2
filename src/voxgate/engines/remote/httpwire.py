"""What the HTTP kinds share: their timeouts, base URLs, bounded bodies and upstream errors in one shape.

Every failure of an upstream call leaves here as an `UpstreamError` naming the upstream, with the HTTP
status when the upstream answered one, and the upstream's own message pulled from whichever error body it
speaks (FastAPI's `{"detail": ...}`, AllTalk's `{"error": ...}`/`{"status": "error", "message": ...}`,
CosyVoice's bare JSON string).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voxgate.engines.remote.base import UpstreamConfig, UpstreamError

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


def message_of(body: bytes) -> str:
    """The upstream's error text from its error body, whatever its dialect."""
    try:
        payload: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:MESSAGE_CHARS].decode("utf-8", "replace").strip()
    if isinstance(payload, dict):
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
    """An UpstreamError in the one shape every kind uses."""
    where = f"upstream {config.name} ({config.kind})"
    code = f" HTTP {status}" if status is not None else ""
    return UpstreamError(f"{where}: {what} failed:{code} {message}".rstrip(), upstream=config.name,
                         status=status, sent=sent)


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
async def transport(config: UpstreamConfig, what: str) -> AsyncIterator[None]:
    """Turn httpx's connection and timeout errors into UpstreamError (no status: nothing was answered)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise failed(config, what, None, f"timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise failed(config, what, None, f"{type(exc).__name__}: {exc}") from exc


async def request_json(http: httpx.AsyncClient, config: UpstreamConfig, method: str, path: str, what: str,
                       **kwargs: Any) -> Any:
    """One HTTP call whose answer is JSON; an error status is UpstreamError with the upstream's message."""
    url = http_base(config) + path
    headers = {**bearer(config), **kwargs.pop("headers", {})}
    async with transport(config, what), http.stream(method, url, headers=headers, timeout=timeout(config),
                                                    **kwargs) as response:
        body = await _bounded(response, config, what, MAX_JSON)
        if response.status_code >= 400:
            raise failed(config, what, response.status_code, message_of(body))
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
    async with transport(config, what), http.stream("GET", url, headers=bearer(config),
                                                    timeout=timeout(config)) as response:
        body = await _bounded(response, config, what, limit)
        if response.status_code >= 400:
            raise failed(config, what, response.status_code, message_of(body))
    return body


async def error_body(response: httpx.Response) -> str:
    """The message of a streamed error response (read bounded)."""
    try:
        return message_of(await read_bounded(response, MAX_JSON))
    except (UpstreamError, httpx.HTTPError):
        return ""


async def answers(http: httpx.AsyncClient, config: UpstreamConfig, path: str) -> bool:
    """True when GET `path` answers 2xx within the connect timeout (a health probe)."""
    try:
        response = await http.get(http_base(config) + path, headers=bearer(config),
                                  timeout=httpx.Timeout(config.connect_timeout))
    except httpx.HTTPError:
        return False
    return response.is_success

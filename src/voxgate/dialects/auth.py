"""One API key for every HTTP and WebSocket door, refused in each dialect's own error shape.

Clients authenticate with `Authorization: Bearer <key>` (what OpenAI and Flash-TTS clients send) or, where
headers are out of reach (browser WebSockets, an <audio src>), an `api_key` query parameter. The key is
compared in constant time, and `redact` keeps it out of access logs. A few doors stay open on purpose:
the web page and its assets (so a person can load it and be asked for the key), the API docs, and the
liveness and readiness probes, which reveal nothing. CORS preflights are answered before this check.
StackFlow's TCP port has its own auth step (docs/stackflow.md).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOG = logging.getLogger(__name__)

# The API docs are the app's own (webapp.py), not a dialect's: open, since they describe the routes (nothing
# stored), and their Authorize button is how a person gives the key to "Try it out". A dialect's open doors
# (the page and its assets, the probes) are on its `public` router, which `guarded` steps aside for.
OPEN_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/docs/",)
MESSAGE = "Unauthorized: a valid API key is required (Authorization: Bearer <key>)"

def _unowned(message: str) -> dict[str, object]:
    """What a request no dialect owns is refused with (an unknown path, a method a route does not serve):
    OpenAI's envelope. Every dialect's own routes check the key themselves, in their own shape
    (dialects/base.py), and the middleware steps aside for them (`guarded`)."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}


def is_open(path: str) -> bool:
    """True for the doors that need no key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def presented_key(scope: Scope) -> str | None:
    """The key a request carries: a Bearer token, else the api_key query parameter."""
    auth = Headers(scope=scope).get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if name == "api_key":
            return value
    return None


def key_matches(presented: str | None, key: str) -> bool:
    """Constant-time comparison (in the length of the presented key)."""
    return presented is not None and hmac.compare_digest(presented.encode(), key.encode())


class ApiKeyMiddleware:
    """Refuse every request without the key, except the open doors, CORS preflights and what `guarded`
    says a dialect object's own route takes (it checks the key and refuses in its own shape)."""

    def __init__(self, app: ASGIApp, key: str, on_refused: Callable[[str], None] | None = None,
                 guarded: Callable[[Scope], bool] | None = None) -> None:
        if not key:
            raise ValueError("an empty API key protects nothing")
        self.app = app
        self._key = key
        self._on_refused = on_refused
        self._guarded = guarded  # True for a request whose dialect checks the key itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if (kind == "http" and scope.get("method") == "OPTIONS") or is_open(path) \
                or key_matches(presented_key(scope), self._key) \
                or (self._guarded is not None and self._guarded(scope)):
            await self.app(scope, receive, send)
            return
        if self._on_refused is not None:
            self._on_refused(path)
        body = json.dumps(_unowned(MESSAGE)).encode()
        if kind == "websocket":
            await _refuse_websocket(receive, send, body)
            return
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="voxgate"')]})
        await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(receive: Receive, send: Send, body: bytes) -> None:
    """Accept, say why in the dialect's error message, and close with 1008 (policy violation)."""
    message: Message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": body.decode()})
    await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})


_SECRET = re.compile(r"(api_key=)[^&\s\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every api_key query value masked."""
    # No "=", no value to mask: the access log's address, method, path and format string (issue 13: the
    # filter runs on each of them for every request) skip the regex.
    return _SECRET.sub(r"\1***", text) if "=" in text else text


class RedactingFilter(logging.Filter):
    """A logging filter that masks api_key query values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


__all__ = ["ApiKeyMiddleware", "RedactingFilter", "key_matches", "presented_key", "redact"]

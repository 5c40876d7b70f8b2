"""Issue 12 §3: malformed JSON gets each dialect's own 4xx shape, never a 500, a traceback or a reset connection.

Bodies nested far past the guard's depth (RecursionError in json.loads), NaN/Infinity, invalid UTF-8 and lone
surrogates, sent to the routes that used to answer 500, each asserted field by field in its dialect's error
shape, then the next request on the same keep-alive connection must be answered.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Server

BODIES = {
    "deep-array": b"[" * 1500 + b"]" * 1500,
    "deep-object": b'{"text": "Hi.", "input": ' + b'{"a":' * 1200 + b"1" + b"}" * 1200 + b"}",
    "deep-100k": b"[" * 100_000 + b"]" * 100_000,
    "nan": b'{"text": "Hi.", "text_lang": "en", "input": "Hi.", "voice": "alloy", "speed": NaN}',
    "infinity": b'{"text": "Hi.", "text_lang": "en", "input": "Hi.", "voice": "alloy", "speed": -Infinity}',
    "huge-float": b'{"text": "Hi.", "input": "Hi.", "voice": "alloy", "speed": 1e999}',
    "invalid-utf8": b'{"text": "\xff\xfe", "input": "\xc3(", "voice": "alloy", "name": "x\x80"}',
    "lone-surrogate": b'{"text": "a\\ud800b", "input": "\\udc00", "voice": "alloy", "name": "\\udfff"}',
}


def openai_envelope(message: str) -> Callable[[dict[str, Any]], None]:
    """OpenAI's {"error": {message, type, param, code}} (dialects/common.envelope_response), as a 400."""
    def check(body: dict[str, Any]) -> None:
        assert list(body) == ["error"]
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["message"] == message
        assert error["type"] == "invalid_request_error"
        assert error["param"] is None
        assert error["code"] == "invalid_value"
    return check


def fastapi_json_invalid(with_ctx: bool) -> Callable[[dict[str, Any]], None]:
    """FastAPI's own 422 for a body that is not JSON, as the originals (FastAPI apps) answer it."""
    def check(body: dict[str, Any]) -> None:
        assert list(body) == ["detail"]
        [item] = body["detail"]
        assert set(item) == {"type", "loc", "msg", "input", *(["ctx"] if with_ctx else [])}
        assert item["type"] == "json_invalid"
        assert item["loc"][0] == "body" and isinstance(item["loc"][1], int) and len(item["loc"]) == 2
        assert item["msg"] == "JSON decode error"
        assert item["input"] == {}
        if with_ctx:
            assert list(item["ctx"]) == ["error"] and isinstance(item["ctx"]["error"], str)
            assert item["ctx"]["error"]
    return check


def gptsovits_message(body: dict[str, Any]) -> None:
    """GPT-SoVITS /control: a broken body is no command, and the original answers {"message": ...}."""
    assert body == {"message": "command is required"}


# (method, path, status, checker): each route issue 12 §3 named, plus Kokoro-FastAPI's captioned route.
ROUTES = {
    "openai-speech": ("POST", "/v1/audio/speech", 400, openai_envelope(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly.)")),
    "native-voices": ("POST", "/v1/audio/voices", 400, openai_envelope("the request body is not valid JSON")),
    "gptsovits-tts": ("POST", "/tts", 422, fastapi_json_invalid(with_ctx=True)),
    "gptsovits-control": ("POST", "/control", 400, gptsovits_message),
    "alltalk-voicemap": ("PUT", "/api/openai-voicemap", 422, fastapi_json_invalid(with_ctx=False)),
    "kokoro-captioned": ("POST", "/dev/captioned_speech", 422, fastapi_json_invalid(with_ctx=True)),
}


@pytest.fixture(scope="module")
def conn(server: Server) -> Iterator[http.client.HTTPConnection]:
    """One keep-alive connection for the whole module: a request that reset it would fail the next one."""
    where = urlsplit(server.url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=60)
    yield connection
    connection.close()


def exchange(conn: http.client.HTTPConnection, method: str, path: str,
             body: bytes | None = None) -> tuple[int, bytes, bool]:
    """Status, body and whether the server said it will close the connection."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read(), response.will_close


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
@pytest.mark.parametrize("route", list(ROUTES.values()), ids=list(ROUTES))
def test_malformed_json_gets_the_dialects_own_4xx_and_the_connection_keeps_serving(
        server: Server, conn: http.client.HTTPConnection, route: tuple[str, str, int, Any], body: bytes) -> None:
    method, path, status, check = route
    logged = server.log.stat().st_size
    code, answer, closing = exchange(conn, method, path, body)
    assert code == status, answer[:300]
    check(json.loads(answer))
    assert not closing, "the server closed the keep-alive connection after a malformed body"
    code, answer, _ = exchange(conn, "GET", "/health")  # the next request, on the same connection
    assert code == 200 and json.loads(answer) == {"status": "ok"}
    with server.log.open("rb") as log:
        log.seek(logged)
        assert b"Traceback" not in log.read()

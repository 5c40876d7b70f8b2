"""--api-key: every HTTP and WebSocket door refuses without the key, in its dialect's own error shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import Server, start_server, stop_server
from voxgate.dialects.auth import key_matches, presented_key, redact

KEY = "s3cr3t-Key_42"
OPENAI_401 = {"error": {"message": "Unauthorized: a valid API key is required (Authorization: Bearer <key>)",
                        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("locked"), "--api-key", KEY, "--log-level", "info")
    yield srv
    stop_server(srv)


# (method, path, expected 401 body) for one route of every dialect
REFUSED = [
    ("POST", "/v1/audio/speech", OPENAI_401),
    ("GET", "/v1/models", OPENAI_401),
    ("GET", "/v1/audio/voices", OPENAI_401),
    ("GET", "/metrics", OPENAI_401),
    ("POST", "/v1/speech", OPENAI_401),
    ("POST", "/dev/captioned_speech", {"detail": {"error": "unauthorized", "message": OPENAI_401["error"]["message"],
                                                  "type": "invalid_request_error"}}),
    ("GET", "/tts?text=hi&text_lang=en", {"message": OPENAI_401["error"]["message"]}),
    ("GET", "/set_gpt_weights?weights_path=x", {"message": OPENAI_401["error"]["message"]}),
    ("GET", "/api/voices", {"status": "error", "message": OPENAI_401["error"]["message"]}),
    ("POST", "/speak", {"error": "Unauthorized"}),
    ("GET", "/v1/audio_roles", {"error": "Unauthorized"}),
    ("GET", "/speakers", {"error": True, "message": "PermissionError: " + OPENAI_401["error"]["message"]}),
    ("GET", "/no/such/route", OPENAI_401),  # unknown paths reveal nothing either
]


@pytest.mark.parametrize(("method", "path", "body"), REFUSED, ids=[p for _, p, _ in REFUSED])
def test_every_dialect_refuses_without_the_key_in_its_own_shape(
    locked: Server, method: str, path: str, body: dict[str, object]
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        response = httpx.request(method, locked.url + path, headers=headers, timeout=10)
        assert response.status_code == 401, (path, headers)
        assert response.json() == body
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_key_opens_every_door_by_header_or_query(locked: Server) -> None:
    ok = httpx.get(f"{locked.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["object"] == "list"
    assert httpx.get(f"{locked.url}/v1/models?api_key={KEY}", timeout=10).status_code == 200
    speech = httpx.post(f"{locked.url}/v1/audio/speech", headers={"Authorization": f"Bearer {KEY}"},
                        json={"model": "tts-1", "voice": "alloy", "input": "Locked but open.",
                              "response_format": "pcm"}, timeout=60)
    assert speech.status_code == 200 and len(speech.content) > 24000  # > 0.5 s of audio


def test_open_doors_need_no_key(locked: Server) -> None:
    for path in ("/health", "/ready", "/", "/web/app.js", "/web/icon.svg"):  # native's probes, the page
        assert httpx.get(locked.url + path, timeout=10).status_code == 200, path
    assert httpx.get(f"{locked.url}/favicon.ico", timeout=10).status_code == 308
    assert httpx.get(f"{locked.url}/ready", timeout=10).json() == {"status": "ready"}  # nothing more without it
    full = httpx.get(f"{locked.url}/ready", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert full["status"] == "ready" and isinstance(full["voices_loaded"], list)
    assert full["slots"]["held"] == 0 and full["slots"]["total"] > 0
    preflight = httpx.options(f"{locked.url}/v1/audio/speech", timeout=10)
    assert preflight.status_code != 401


def test_websocket_without_the_key_is_told_why_and_closed(locked: Server) -> None:
    url = locked.url.replace("http://", "ws://") + "/tts"
    with connect(url, open_timeout=10) as ws:
        message = json.loads(ws.recv(timeout=10))
        assert message == {"error": True, "message": "PermissionError: " + OPENAI_401["error"]["message"]}
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_the_key_never_reaches_the_logs(locked: Server) -> None:
    httpx.get(f"{locked.url}/v1/models?api_key={KEY}", timeout=10)
    httpx.get(f"{locked.url}/v1/models?api_key=wrong-{KEY}", timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("api_key=" in line for line in locked.output):
        time.sleep(0.05)
    logged = "".join(locked.output) + Path(locked.log).read_text()
    assert "api_key=***" in logged  # the access log saw the requests ...
    assert KEY not in logged  # ... but not the key


def test_key_helpers() -> None:
    assert key_matches(KEY, KEY) and not key_matches(KEY + "x", KEY) and not key_matches(None, KEY)
    scope = {"type": "http", "headers": [(b"authorization", b"bearer  tok ")], "query_string": b"api_key=q"}
    assert presented_key(scope) == "tok"
    assert presented_key({"type": "http", "headers": [], "query_string": b"a=1&api_key=q%20r"}) == "q r"
    assert redact('"GET /x?a=1&api_key=abc&b=2 HTTP/1.1"') == '"GET /x?a=1&api_key=***&b=2 HTTP/1.1"'

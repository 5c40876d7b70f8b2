"""CORS: browser pages on other origins can call every route, errors and streams included, key or not."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Server, decode, pcm16, rms, start_server, stop_server
from voxgate.webapp import VoxgateAPI

ORIGIN = "http://front-end.example:5000"
OTHER = "http://elsewhere.example"
KEY = "cors-Key_7"
ASKED = "authorization, content-type, cache-control, x-requested-with"
VOICE = "en_US-joe-medium"
SPEECH = {"model": "tts-1", "voice": VOICE, "input": "Called from a browser page.", "response_format": "pcm"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a key that lets two origins in."""
    srv = start_server(tmp_path_factory.mktemp("cors"), "--api-key", KEY, "--cors-origins", ORIGIN,
                       "http://second.example", "--engines", "piper")
    yield srv
    stop_server(srv)


def preflight(url: str, method: str = "POST", origin: str = ORIGIN) -> httpx.Response:
    return httpx.options(url, timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": ASKED})


PREFLIGHTED = [("POST", "/v1/audio/speech"), ("POST", "/tts"), ("GET", "/tts"), ("POST", "/api/tts-generate"),
               ("GET", "/audio/x.wav"), ("POST", "/speak"), ("POST", "/clone_voice"), ("POST", "/clone"),
               ("DELETE", "/v1/audio/voices/someone"), ("PUT", "/api/openai-voicemap"), ("GET", "/metrics")]


@pytest.mark.parametrize(("method", "path"), PREFLIGHTED, ids=[f"{m} {p}" for m, p in PREFLIGHTED])
def test_every_route_answers_a_preflight_without_the_key(server: Server, keyed: Server, method: str,
                                                         path: str) -> None:
    for srv, allowed in ((server, "*"), (keyed, ORIGIN)):
        answer = preflight(srv.url + path, method)
        assert answer.status_code == 200, (srv.url, answer.text)
        assert answer.headers["access-control-allow-origin"] == allowed
        assert method in answer.headers["access-control-allow-methods"].split(", ")
        assert answer.headers["access-control-allow-headers"] == ASKED  # every requested header, as asked
        assert int(answer.headers["access-control-max-age"]) > 0


def test_a_streamed_speech_response_carries_the_headers(server: Server) -> None:
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=SPEECH, headers={"Origin": ORIGIN},
                      timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        exposed = response.headers["access-control-expose-headers"].split(", ")
        assert {"Content-Disposition", "Retry-After"} <= set(exposed)
        assert "content-length" not in response.headers  # chunked: the headers came before the audio
        audio = pcm16(response.read())
    assert len(audio) / 24000 > 0.8 and rms(audio) > 0.02


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/v1/audio/speech", {"model": "tts-1"}, 400),  # OpenAI's envelope
    ("POST", "/v1/audio/speech", {**SPEECH, "voice": "nobody-here"}, 404),
    ("GET", "/no/such/route", None, 404),
    ("DELETE", "/v1/models", None, 405),
    ("POST", "/speak", {"name": VOICE}, 422),  # FastAPI's own validation error
    ("GET", "/tts?text=hi", None, 400),  # GPT-SoVITS's {"message"}
    ("GET", "/audio/missing.wav", None, 404),  # AllTalk's file route
])
def test_errors_carry_the_headers(server: Server, method: str, path: str, body: object, status: int) -> None:
    response = httpx.request(method, server.url + path, json=body, headers={"Origin": ORIGIN}, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["access-control-allow-origin"] == "*"


def test_gptsovits_and_alltalk_files_carry_the_headers(server: Server) -> None:
    query = {"text": "From another origin.", "text_lang": "en", "ref_audio_path": VOICE, "prompt_lang": "en"}
    tts = httpx.get(f"{server.url}/tts", params=query, headers={"Origin": ORIGIN}, timeout=60)
    assert tts.status_code == 200 and tts.headers["access-control-allow-origin"] == "*"
    samples, rate = decode(tts.content)
    assert rate == 32000 and rms(samples) > 0.02
    made = httpx.post(f"{server.url}/api/tts-generate", headers={"Origin": ORIGIN}, timeout=60, data={
        "text_input": "A file for the page.", "character_voice_gen": VOICE, "narrator_enabled": "false",
        "language": "en", "output_file_name": "cors"})
    assert made.status_code == 200 and made.headers["access-control-allow-origin"] == "*"
    wav = httpx.get(server.url + made.json()["output_file_url"], headers={"Origin": ORIGIN}, timeout=30)
    assert wav.status_code == 200 and wav.headers["access-control-allow-origin"] == "*"
    assert wav.headers["content-type"] == "audio/wav"
    samples, rate = decode(wav.content)
    assert rms(samples) > 0.02


def test_with_a_key_refusals_and_answers_carry_the_headers(keyed: Server) -> None:
    refused = httpx.post(f"{keyed.url}/v1/audio/speech", json=SPEECH, headers={"Origin": ORIGIN}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert refused.headers["access-control-allow-origin"] == ORIGIN  # the page can read why
    assert "Origin" in refused.headers["vary"]
    spoken = httpx.post(f"{keyed.url}/v1/audio/speech", json=SPEECH, timeout=60,
                        headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"})
    assert spoken.status_code == 200 and spoken.headers["access-control-allow-origin"] == ORIGIN
    assert rms(pcm16(spoken.content)) > 0.02
    refused_tts = httpx.get(f"{keyed.url}/tts?text=hi", headers={"Origin": ORIGIN}, timeout=10)
    assert refused_tts.status_code == 401 and refused_tts.headers["access-control-allow-origin"] == ORIGIN


def test_a_cors_origins_list_lets_only_those_origins_in(keyed: Server) -> None:
    second = httpx.get(f"{keyed.url}/health", headers={"Origin": "http://second.example"}, timeout=10)
    assert second.headers["access-control-allow-origin"] == "http://second.example"
    other = httpx.get(f"{keyed.url}/health", headers={"Origin": OTHER}, timeout=10)
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    refused = preflight(f"{keyed.url}/v1/audio/speech", origin=OTHER)
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_an_unhandled_error_and_a_private_network_preflight_carry_the_headers() -> None:
    app = VoxgateAPI(title="t", cors_origins=["*"])

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    with TestClient(app, raise_server_exceptions=False) as client:
        crashed = client.get("/boom", headers={"Origin": ORIGIN})
        assert crashed.status_code == 500 and crashed.headers["access-control-allow-origin"] == "*"
        local = client.options("/boom", headers={"Origin": "https://public.example", "Access-Control-Request-"
                                                 "Method": "GET", "Access-Control-Request-Private-Network": "true"})
        assert local.status_code == 200 and local.headers["access-control-allow-private-network"] == "true"


def test_compat_port_apps_carry_the_headers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voxgate.app import build_context, build_dialects, close_context, compat_apps
    from voxgate.settings import Settings

    ctx = build_context(settings := Settings(data_dir=tmp_path, engines=["piper"], warmup=False, api_key=KEY,
                                 cors_origins=[ORIGIN]))
    try:
        apps: dict[int, FastAPI] = compat_apps(ctx, build_dialects(ctx, settings), 0)
        assert sorted(apps) == [7851, 8000, 9880, 12244]
        for port, app in apps.items():
            with TestClient(app) as client:
                asked = client.options("/tts", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": ASKED})
                assert asked.status_code == 200 and asked.headers["access-control-allow-origin"] == ORIGIN, port
                refused = client.get("/no/such/route", headers={"Origin": ORIGIN})
                assert refused.status_code == 401, port
                assert refused.headers["access-control-allow-origin"] == ORIGIN, port
    finally:
        close_context(ctx)

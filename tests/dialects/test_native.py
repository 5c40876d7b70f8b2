"""voxgate's own endpoints: health, readiness, Prometheus metrics, rescanning the voices folder."""

from __future__ import annotations

import httpx

from tests.conftest import Server, pcm16, rms
from tests.engines.test_piper import add_voice
from voxgate.settings import DEFAULT_VOICE


def test_health_and_ready(server: Server) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["default_voice"] == DEFAULT_VOICE == "hibari:heart"
    assert DEFAULT_VOICE in body["voices_loaded"] and body["workers"] == 2
    assert isinstance(body["active_requests"], int)
    slots = body["slots"]
    assert slots["total"] == body["workers"] + 32 and 0 <= slots["held"] <= slots["total"]
    assert slots["saturated_seconds"] == 0.0


def test_metrics_exposes_requests_latency_audio_and_queue(server: Server) -> None:
    speech = {"model": "tts-1", "input": "Counting this request.", "voice": "alloy", "response_format": "pcm"}
    assert httpx.post(f"{server.url}/v1/audio/speech", json=speech, timeout=60).status_code == 200
    assert httpx.post(f"{server.url}/v1/audio/speech", json={**speech, "voice": "x"}, timeout=60).status_code == 404
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['voxgate_requests_total{dialect="openai"}'] >= 2
    assert samples['voxgate_errors_total{dialect="openai",kind="voice_not_found"}'] >= 1
    assert samples["voxgate_first_audio_seconds_count"] >= 1
    assert samples['voxgate_first_audio_seconds_bucket{le="+Inf"}'] == samples["voxgate_first_audio_seconds_count"]
    assert samples["voxgate_audio_seconds_total"] > 1.0
    for gauge in ("voxgate_queue_depth", "voxgate_jobs_running", "voxgate_active_requests"):
        assert gauge in samples
    assert "voxgate_cancelled_total" in samples and "voxgate_rejected_busy_total" in samples


def test_reload_discovers_a_voice_dropped_into_the_folder(server: Server) -> None:
    model = add_voice(server.data_dir / "voices", "en_US-dropped-medium")
    try:
        _reload_and_speak(server)
    finally:  # the shared server's other tests expect the bundled voice alone
        model.unlink()
        model.with_name(model.name + ".json").unlink()
        httpx.post(f"{server.url}/v1/audio/voices/reload", timeout=30)
    assert "en_US-dropped-medium" not in httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"]


def _reload_and_speak(server: Server) -> None:
    before = httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"]
    assert "en_US-dropped-medium" not in before
    reloaded = httpx.post(f"{server.url}/v1/audio/voices/reload", timeout=30)
    assert reloaded.status_code == 200 and reloaded.json()["voices"] == len(before) + 1
    assert "en_US-dropped-medium" in httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"]
    speech = {"model": "tts-1", "input": "A new voice speaks.", "voice": "en_US-dropped-medium",
              "response_format": "pcm"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=speech, timeout=60)
    assert response.status_code == 200 and rms(pcm16(response.content)) > 0.02

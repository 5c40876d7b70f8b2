"""Kokoro and espeak-ng voices through real dialects (OpenAI and GPT-SoVITS) on a real server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, rms, start_server, stop_server


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with every engine enabled."""
    srv = start_server(tmp_path_factory.mktemp("engines"), "--engines", "piper", "kokoro", "espeak")
    yield srv
    stop_server(srv)


def openai_speech(server: Server, voice: str, text: str) -> tuple[np.ndarray, int]:
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": "wav"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=110)
    assert response.status_code == 200, response.text
    return decode(response.content)


def gsv_speech(server: Server, voice: str, text: str, lang: str) -> tuple[np.ndarray, int]:
    params = {"text": text, "text_lang": lang, "ref_audio_path": voice, "prompt_lang": lang, "media_type": "wav"}
    response = httpx.get(f"{server.url}/tts", params=params, timeout=110)
    assert response.status_code == 200, response.text
    return decode(response.content)


def check(samples: np.ndarray, rate: int, expected_rate: int, low: float, high: float) -> None:
    assert rate == expected_rate
    assert low < len(samples) / rate < high, len(samples) / rate
    assert rms(samples) > 0.02


def test_voices_of_every_engine_are_listed(multi: Server) -> None:
    listed = httpx.get(f"{multi.url}/v1/audio/voices", timeout=10).json()
    by_id = {v["id"]: v for v in listed["data"]}
    assert by_id["kokoro:jf_alpha"]["engine"] == "kokoro" and by_id["kokoro:jf_alpha"]["language"] == "ja"
    assert by_id["espeak:cmn"]["engine"] == "espeak" and by_id["espeak:cmn"]["language"] == "zh"
    assert "en_US-joe-medium" in by_id


def test_kokoro_japanese_and_english_through_openai(multi: Server) -> None:
    check(*openai_speech(multi, "kokoro:jf_alpha", "こんにちは。今日はいい天気ですね。"), 24000, 1.2, 6.0)
    check(*openai_speech(multi, "kokoro:jm_kumo", "Good morning, how are you?"), 24000, 0.8, 5.0)


def test_kokoro_blend_through_openai_and_gptsovits(multi: Server) -> None:
    spec = "kokoro:jf_alpha*0.7+jm_kumo*0.3"
    check(*openai_speech(multi, spec, "ありがとうございます。"), 24000, 0.6, 4.0)
    samples, rate = gsv_speech(multi, spec, "ありがとうございます。", "ja")
    check(samples, rate, 32000, 0.6, 4.0)  # GPT-SoVITS answers at its own 32 kHz


def test_espeak_chinese_and_korean_through_gptsovits_and_openai(multi: Server) -> None:
    check(*gsv_speech(multi, "espeak:cmn", "你好，世界。今天天气很好。", "all_zh"), 32000, 1.0, 8.0)
    check(*gsv_speech(multi, "espeak:ko", "안녕하세요. 반갑습니다.", "ko"), 32000, 1.0, 8.0)
    check(*openai_speech(multi, "espeak:cmn", "你好，世界。"), 24000, 0.5, 5.0)  # OpenAI answers at 24 kHz
    check(*openai_speech(multi, "espeak:ko+f3", "안녕하세요."), 24000, 0.4, 4.0)


def test_unknown_specs_are_clear_errors(multi: Server) -> None:
    body = {"model": "tts-1", "voice": "kokoro:jf_alpha*0.5+nobody*0.5", "input": "hi"}
    response = httpx.post(f"{multi.url}/v1/audio/speech", json=body, timeout=30)
    assert response.status_code == 404 or response.status_code == 400, response.text
    assert "nobody" in response.json()["error"]["message"]
    assert httpx.get(f"{multi.url}/health", timeout=10).status_code == 200  # still serving

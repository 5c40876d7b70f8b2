"""Small clients that several test files use to ask a live server for speech and check what came back."""

from __future__ import annotations

import httpx
import numpy as np

from tests.conftest import Server, decode, rms


def openai_speech(server: Server, voice: str, text: str) -> tuple[np.ndarray, int]:
    """WAV from OpenAI's /v1/audio/speech, decoded."""
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": "wav"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=110)
    assert response.status_code == 200, response.text
    return decode(response.content)


def gsv_speech(server: Server, voice: str, text: str, lang: str) -> tuple[np.ndarray, int]:
    """WAV from GPT-SoVITS's GET /tts (the voice as ref_audio_path), decoded."""
    params = {"text": text, "text_lang": lang, "ref_audio_path": voice, "prompt_lang": lang, "media_type": "wav"}
    response = httpx.get(f"{server.url}/tts", params=params, timeout=110)
    assert response.status_code == 200, response.text
    return decode(response.content)


def check(samples: np.ndarray, rate: int, expected_rate: int, low: float, high: float) -> None:
    """The rate is as expected, the length within (low, high) seconds, and there is sound."""
    assert rate == expected_rate
    assert low < len(samples) / rate < high, len(samples) / rate
    assert rms(samples) > 0.02

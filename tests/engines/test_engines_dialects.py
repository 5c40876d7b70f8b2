"""Kokoro, espeak-ng and the other engines' voices through real dialects (OpenAI, GPT-SoVITS, AllTalk)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, decode, rms, start_server, stop_server
from tests.requests import check, gsv_speech, openai_speech
from voxgate.engines.kokoro import DEFAULT_CHINESE


@pytest.fixture(scope="module")
def multi(server: Server) -> Server:
    """A server with every engine enabled (the default)."""
    return server


def test_voices_of_every_engine_are_listed(multi: Server) -> None:
    listed = httpx.get(f"{multi.url}/v1/audio/voices", timeout=10).json()
    by_id = {v["id"]: v for v in listed["data"]}
    assert by_id["kokoro:jf_alpha"]["engine"] == "kokoro" and by_id["kokoro:jf_alpha"]["language"] == "ja"
    assert by_id["espeak:cmn"]["engine"] == "espeak" and by_id["espeak:cmn"]["language"] == "zh"
    assert "en_US-joe-medium" in by_id and by_id["hibari:heart"]["engine"] == "hibari"
    assert by_id["kokoro-zh:jf_alpha"]["engine"] == "kokoro" and by_id["kokoro-zh:jf_alpha"]["language"] == "zh"
    assert by_id["pico:de-DE"]["engine"] == "pico" and by_id["pico:de-DE"]["sample_rate"] == 16000


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


MIXED = "Hello there, my good friend. 你好，朋友，今天天气很好。こんにちは、お元気ですか。"
PARTS = (("Hello there, my good friend.", "en_US-joe-medium"),
         ("你好，朋友，今天天气很好。", f"kokoro-zh:{DEFAULT_CHINESE}"),
         ("こんにちは、お元気ですか。", "kokoro:jf_alpha"))


@pytest.fixture(scope="module")
def preloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: nothing loaded but the default voice and the two preloaded ones, so /ready shows
    which voices a text reached."""
    srv = start_server(tmp_path_factory.mktemp("preloaded"), "--preload", "kokoro:jf_alpha", "espeak:ko",
                       "--default-voice", "en_US-joe-medium")
    yield srv
    stop_server(srv)


def espeak_segments(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.split()[1]) for line in text.splitlines()
               if line.startswith('voxgate_segments_total{engine="espeak"}'))


def test_mixed_script_auto_text_is_spoken_span_by_span_through_three_dialects(preloaded: Server) -> None:
    # The English part is joe's: the voice asked for speaks English.
    fresh = preloaded  # shared with the preload test below
    alone = sum(len(s) / r for s, r in (openai_speech(fresh, voice, text) for text, voice in PARTS))
    loaded_before = {s["voice"] for s in httpx.get(f"{fresh.url}/ready", timeout=10).json()["sessions"]}
    assert {v for _, v in PARTS} <= loaded_before  # the parts alone
    espeak_before = espeak_segments(fresh)  # espeak:ko is loaded (preloaded) but no part is its
    samples, rate = openai_speech(fresh, "echo", MIXED)  # OpenAI: no language field, routed by script
    check(samples, rate, 24000, 0.75 * alone, 1.3 * alone)
    samples, rate = gsv_speech(fresh, "en_US-joe-medium", MIXED, "auto")
    check(samples, rate, 32000, 0.75 * alone, 1.5 * alone)  # + GPT-SoVITS's 0.3 s between its pieces
    form = {"text_input": MIXED, "character_voice_gen": "en_US-joe-medium", "language": "auto",
            "output_file_name": "mixed", "text_filtering": "none"}
    made = httpx.post(f"{fresh.url}/api/tts-generate", data=form, timeout=110).json()
    assert made["status"] == "generate-success", made
    samples, rate = decode(httpx.get(f"{fresh.url}{made['output_file_url']}", timeout=10).content)
    assert 0.75 * alone < len(samples) / rate < 1.3 * alone and rms(samples) > 0.02
    sessions = httpx.get(f"{fresh.url}/ready", timeout=10).json()["sessions"]
    assert {s["voice"] for s in sessions} == loaded_before  # the parts' voices, nothing else loaded
    assert espeak_segments(fresh) == espeak_before  # and none spoken by a loaded voice of no part


def test_preloaded_voices_are_loaded_and_pinned_at_start_and_ready_reports_engines(preloaded: Server) -> None:
    srv = preloaded  # the test above loaded more voices, which the `<=` below allows
    ready = httpx.get(f"{srv.url}/ready", timeout=10).json()
    sessions = {(s["voice"], s["pinned"]) for s in ready["sessions"]}
    assert {("en_US-joe-medium", True), ("kokoro:jf_alpha", True), ("espeak:ko", True)} <= sessions
    assert ready["engines"]["kokoro"]["voices"] == 10 and ready["engines"]["kokoro"]["languages"] == ["ja", "zh"]
    assert ready["engines"]["hibari"] == {"voices": 1, "languages": ["en-US"]}
    assert ready["engines"]["pico"]["voices"] == 6
    assert ready["engines"]["espeak"]["voices"] >= 100 and "ko" in ready["engines"]["espeak"]["languages"]
    assert ready["engines"]["piper"]["languages"] == ["en-US"]

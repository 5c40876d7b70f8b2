"""Word timings served to clients: Kokoro-FastAPI's /dev/captioned_speech (both forms), the opt-in SSE
`speech.word` events, and the native API's caption files, against one live server (--word-timings) and
Piper's joe voice, whose words are timed."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt
from openai._streaming import SSEDecoder

from tests.conftest import Server, decode, pcm16, rms

JOE = "en_US-joe-medium"
TEXT = "The quick brown fox jumps over the lazy dog."  # one plain sentence: one segment
WORDS = TEXT.split()


@pytest.fixture(scope="module")
def timed(timed_server: Server) -> Server:
    """conftest's server with --word-timings (shared with the browser tests: one start for both)."""
    return timed_server


def _check_words(stamps: list[tuple[str, float, float]], duration: float) -> None:
    """Every word of TEXT once, in order, inside the audio, never going back in time."""
    assert [w for w, _, _ in stamps] == WORDS
    last = 0.0
    for _, start, end in stamps:
        assert last <= start <= end <= duration + 0.05
        last = start
    assert stamps[0][1] < 0.5 and stamps[-1][2] > 0.6 * duration  # they span the speech


def _words_sit_on_sound(samples: np.ndarray, rate: int, stamps: list[tuple[str, float, float]]) -> None:
    """The audio inside the timed words is louder than the lead-in before the first one."""
    inside = np.concatenate([samples[int(s * rate):int(e * rate)] for _, s, e in stamps])
    lead = samples[:max(int(stamps[0][1] * rate) - int(0.02 * rate), 1)]
    assert rms(inside) > 0.02 and rms(inside) > 3 * rms(lead)


def _post(server: Server, path: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=timeout)


def test_captioned_speech_whole_is_kokoros_object(timed: Server) -> None:
    response = _post(timed, "/dev/captioned_speech",
                     {"model": "kokoro", "input": TEXT, "voice": JOE, "response_format": "wav", "stream": False})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == "attachment; filename=speech.wav"
    assert response.headers["cache-control"] == "no-cache"
    body = response.json()
    assert set(body) == {"audio", "audio_format", "timestamps"} and body["audio_format"] == "audio/wav"
    samples, rate = decode(base64.b64decode(body["audio"]))
    assert rate == 24000 and 1.5 < len(samples) / rate < 6.0
    assert all(set(t) == {"word", "start_time", "end_time"} for t in body["timestamps"])
    stamps = [(t["word"], t["start_time"], t["end_time"]) for t in body["timestamps"]]
    _check_words(stamps, len(samples) / rate)
    _words_sit_on_sound(samples, rate, stamps)
    # return_timestamps false: Kokoro-FastAPI answers null in the whole form
    short = _post(timed, "/dev/captioned_speech", {"input": "Hi there.", "voice": JOE, "stream": False,
                                                   "return_timestamps": False, "response_format": "pcm"}).json()
    assert short["timestamps"] is None and short["audio_format"] == "audio/pcm"
    assert rms(pcm16(base64.b64decode(short["audio"]))) > 0.02


def _lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_captioned_speech_streams_json_lines_with_each_chunks_words(timed: Server) -> None:
    # Kokoro-FastAPI's defaults: stream true, mp3, timestamps on
    with httpx.stream("POST", f"{timed.url}/dev/captioned_speech", json={"input": TEXT, "voice": JOE},
                      timeout=60) as response:
        response.read()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["content-disposition"] == "attachment; filename=speech.mp3"
    lines = _lines(response)
    assert len(lines) >= 2 and all(set(line) == {"audio", "audio_format", "timestamps"} for line in lines)
    assert {line["audio_format"] for line in lines} == {"audio/mpeg"}
    samples, rate = decode(b"".join(base64.b64decode(line["audio"]) for line in lines), "mp3")
    assert rate == 24000 and rms(samples) > 0.02
    stamps = [(t["word"], t["start_time"], t["end_time"]) for line in lines for t in line["timestamps"]]
    _check_words(stamps, len(samples) / rate)
    # return_timestamps false: every line still has the key, as an empty list
    plain = httpx.post(f"{timed.url}/dev/captioned_speech", timeout=60,
                       json={"input": "Hi there.", "voice": JOE, "return_timestamps": False, "response_format": "pcm"})
    assert [line["timestamps"] for line in _lines(plain)] == [[]] * len(_lines(plain))


def _timestamps_field_by_field(body: dict[str, Any], duration: float) -> list[tuple[str, float, float]]:
    """Kokoro-FastAPI's timestamp objects: exactly {word, start_time, end_time}, a string and two numbers of
    seconds rounded to the millisecond; TEXT's words once each, in order, inside the audio."""
    stamps = []
    for stamp in body["timestamps"]:
        assert set(stamp) == {"word", "start_time", "end_time"}, stamp
        assert isinstance(stamp["word"], str) and stamp["word"] == stamp["word"].strip() and stamp["word"]
        for key in ("start_time", "end_time"):
            assert isinstance(stamp[key], (int, float)) and not isinstance(stamp[key], bool), stamp
            assert round(stamp[key], 3) == stamp[key], stamp
        stamps.append((stamp["word"], stamp["start_time"], stamp["end_time"]))
    _check_words(stamps, duration)
    return stamps


@pytest.mark.parametrize("voice", [None, "hibari:heart", "kokoro:jf_alpha"])
def test_captioned_speech_without_a_voice_and_with_hibari_and_kokoro(timed: Server, voice: str | None) -> None:
    # no voice: Kokoro-FastAPI's default af_heart, which the default table maps to hibari:heart
    body: dict[str, Any] = {"model": "kokoro", "input": TEXT, "response_format": "wav", "stream": False}
    if voice is not None:
        body["voice"] = voice
    whole = _post(timed, "/dev/captioned_speech", body, timeout=240)  # the first Kokoro call loads the model
    assert whole.status_code == 200, whole.text
    samples, rate = decode(base64.b64decode(whole.json()["audio"]))
    assert rate == 24000 and 1.5 < len(samples) / rate < 6.0
    stamps = _timestamps_field_by_field(whole.json(), len(samples) / rate)
    _words_sit_on_sound(samples, rate, stamps)
    if voice is None:  # the voice hibari:heart spoke
        heart = _post(timed, "/dev/captioned_speech", {**body, "voice": "hibari:heart"}).json()
        assert abs(len(decode(base64.b64decode(heart["audio"]))[0]) - len(samples)) <= 0.05 * len(samples)
    # streamed: the same words over the lines, every line with audio, together the whole audio
    with httpx.stream("POST", f"{timed.url}/dev/captioned_speech", timeout=60,
                      json={**body, "stream": True, "response_format": "pcm"}) as response:
        response.read()
    assert response.status_code == 200
    lines = _lines(response)
    assert lines and all(set(line) == {"audio", "audio_format", "timestamps"} and line["audio"] for line in lines)
    assert {line["audio_format"] for line in lines} == {"audio/pcm"}
    streamed = pcm16(b"".join(base64.b64decode(line["audio"]) for line in lines))
    assert abs(len(streamed) - len(samples)) <= 0.05 * len(samples)
    merged = {"timestamps": [t for line in lines for t in line["timestamps"]]}
    _timestamps_field_by_field(merged, len(streamed) / 24000)


BAD = [
    ({"input": TEXT, "voice": "nobody"}, 400, "validation_error"),
    ({"input": "   ", "voice": JOE}, 400, "validation_error"),
]


def test_captioned_speech_errors_are_kokoros(timed: Server) -> None:
    for body, status, error in BAD:
        response = _post(timed, "/dev/captioned_speech", body)
        assert response.status_code == status, body
        detail = response.json()["detail"]
        assert set(detail) == {"error", "message", "type"} and detail["error"] == error
        assert detail["type"] == "invalid_request_error" and detail["message"]
    # what FastAPI's validation refuses is its own 422, as on Kokoro-FastAPI
    for body, loc in (({"voice": JOE}, ["body", "input"]), ({"input": TEXT, "speed": "fast"}, ["body", "speed"]),
                      ({"input": TEXT, "speed": 9}, ["body", "speed"])):
        response = _post(timed, "/dev/captioned_speech", body)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == loc
    broken = httpx.post(f"{timed.url}/dev/captioned_speech", content=b"{not json", timeout=10,
                        headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"


def _events(raw: bytes) -> list[dict[str, Any]]:
    """The SSE body read by the openai SDK's own event decoder."""
    return [event.json() for event in SSEDecoder().iter_bytes(iter([raw]))]


def test_sse_word_events_only_when_asked_and_the_sdk_reads_them(timed: Server) -> None:
    client = openai.OpenAI(base_url=f"{timed.url}/v1", api_key="unused", timeout=60, max_retries=0)
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice=JOE, input=TEXT, response_format="pcm", stream_format="sse",
            extra_body={"timestamps": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.read())
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and set(kinds[:-1]) == {"speech.audio.delta", "speech.word"}
    # a client that knows only OpenAI's events keeps the whole audio
    audio = pcm16(b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"))
    words = [e for e in events if e["type"] == "speech.word"]
    assert all(set(e) == {"type", "word", "start", "end", "start_char", "end_char"} for e in words)
    assert all(TEXT[e["start_char"]:e["end_char"]] == e["word"] for e in words)
    _check_words([(e["word"], e["start"], e["end"]) for e in words], len(audio) / 24000)
    _words_sit_on_sound(audio, 24000, [(e["word"], e["start"], e["end"]) for e in words])
    sent = 0.0  # read as a client reads it: a word never comes before the audio holding its start
    for e in events:
        if e["type"] == "speech.audio.delta":
            sent += len(base64.b64decode(e["audio"])) / 2 / 24000
        elif e["type"] == "speech.word":
            assert e["start"] <= sent + 0.0005, (e, sent)
    # not asked: OpenAI's events only
    plain = httpx.post(f"{timed.url}/v1/audio/speech", timeout=60, json={
        "model": "tts-1", "voice": JOE, "input": "Hi there.", "response_format": "pcm", "stream_format": "sse"})
    assert {e["type"] for e in _events(plain.content)} == {"speech.audio.delta", "speech.audio.done"}


def test_native_speech_answers_audio_and_caption_files(timed: Server) -> None:
    response = _post(timed, "/v1/speech", {"text": TEXT, "voice": JOE, "format": "mp3", "captions": "vtt"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"object", "audio", "format", "content_type", "sample_rate", "duration", "captions",
                         "captions_format", "captions_content_type", "words"}
    assert (body["object"], body["format"], body["content_type"]) == ("speech.captioned", "mp3", "audio/mpeg")
    assert (body["captions_format"], body["captions_content_type"]) == ("vtt", "text/vtt; charset=utf-8")
    samples, rate = decode(base64.b64decode(body["audio"]), "mp3")
    assert rate == body["sample_rate"] == 22050 and abs(len(samples) / rate - body["duration"]) < 0.1
    words = body["words"]
    assert all(TEXT[w["start_char"]:w["end_char"]] == w["text"] for w in words)
    _check_words([(w["text"], w["start"], w["end"]) for w in words], body["duration"])
    cues = list(webvtt.from_buffer(io.StringIO(body["captions"])))
    assert " ".join(c.text.replace("\n", " ") for c in cues) == TEXT
    spans = [(c.start_time.in_milliseconds(), c.end_time.in_milliseconds()) for c in cues]
    assert spans == sorted(spans) and all(end > start for start, end in spans)
    assert spans[0][0] == round(words[0]["start"] * 1000) and spans[-1][1] == round(words[-1]["end"] * 1000)

    as_srt = _post(timed, "/v1/speech", {"text": TEXT, "voice": JOE, "captions": "srt", "speed": 2}).json()
    subtitles = list(srt.parse(as_srt["captions"]))
    assert " ".join(s.content.replace("\n", " ") for s in subtitles) == TEXT
    assert subtitles[-1].end.total_seconds() <= as_srt["duration"] + 0.05
    assert as_srt["duration"] < 0.7 * body["duration"]  # speed 2: the captions follow the faster audio

    plain = _post(timed, "/v1/speech", {"text": "Hi there.", "voice": JOE})
    assert plain.headers["content-type"] == "audio/wav" and decode(plain.content)[1] == 22050
    bad = _post(timed, "/v1/speech", {"text": TEXT, "captions": "txt"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "captions"

"""OpenAI dialect against a live server, driven by the official `openai` client and raw HTTP."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from tests.conftest import Server, decode, pcm16, rms

SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west."
TEN = " ".join(
    f"Sentence number {n} tells a small story about a traveller who walks along the quiet river."
    for n in range(1, 11)
)
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
RATES = {"mp3": 24000, "aac": 24000, "flac": 24000, "wav": 24000, "pcm": 24000, "opus": 48000}


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60, max_retries=0)


@pytest.fixture(scope="module")
def wav_duration(client: openai.OpenAI) -> float:
    data = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav").read()
    samples, rate = decode(data)
    return len(samples) / rate


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_with_right_rate_length_and_sound(
    client: openai.OpenAI, wav_duration: float, fmt: str
) -> None:
    data = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt).read()
    if fmt == "pcm":
        samples, rate = pcm16(data), 24000
    else:
        samples, rate = decode(data)
    assert rate == RATES[fmt]
    duration = len(samples) / rate
    assert abs(duration - wav_duration) <= 0.10 * wav_duration, (duration, wav_duration)
    assert wav_duration > 2.5  # a real sentence, not a blip
    assert rms(samples) > 0.02, "audio is silent"
    lossless = fmt in {"pcm", "wav", "flac"}
    # Lossy codecs overshoot the limited PCM: AAC peaks measured 0.94-1.17 over 13 runs of this sentence.
    assert float(abs(samples).max()) <= (1.0 if lossless else 1.25)


def test_wav_header_is_24k_mono_16bit_with_unknown_sizes(client: openai.OpenAI) -> None:
    data = client.audio.speech.create(model="tts-1", voice="echo", input="Hello there.", response_format="wav").read()
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    channels = int.from_bytes(data[22:24], "little")
    rate = int.from_bytes(data[24:28], "little")
    bits = int.from_bytes(data[34:36], "little")
    assert (channels, rate, bits) == (1, 24000, 16)
    assert data[36:40] == b"data" and data[40:44] == b"\xff\xff\xff\xff"  # streamed: length unknown


@pytest.mark.parametrize("speed", [0.5, 2.0, 4.0])
def test_speed_divides_duration(client: openai.OpenAI, wav_duration: float, speed: float) -> None:
    """speed=s makes speech s times as fast: Piper's length_scale up to 2x, a PSOLA tempo beyond."""
    data = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm",
                                      speed=speed).read()
    samples = pcm16(data)
    ratio = len(samples) / 24000 / wav_duration
    assert abs(ratio * speed - 1.0) < 0.12, ratio  # Piper's durations vary ~±3% run to run
    assert rms(samples) > 0.02


def test_installed_voice_id_as_voice_or_model(client: openai.OpenAI) -> None:
    for model, voice in (("tts-1-hd", "en_US-joe-medium"), ("en_US-joe-medium", "nova"),
                         ("gpt-4o-mini-tts", "en_US-joe-medium.onnx")):
        data = client.audio.speech.create(model=model, voice=voice, input="Hi there, friend.",
                                          response_format="pcm").read()
        assert rms(pcm16(data)) > 0.02


def test_voice_as_object(server: Server) -> None:
    body = {"model": "tts-1", "input": "Object voices work too.", "voice": {"id": "alloy"}, "response_format": "pcm"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/pcm"
    assert rms(pcm16(response.content)) > 0.02


def test_streaming_first_bytes_come_long_before_the_end(client: openai.OpenAI) -> None:
    arrivals: list[tuple[float, int]] = []
    start = time.monotonic()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEN, response_format="pcm"
    ) as response:
        for part in response.iter_bytes(4096):
            arrivals.append((time.monotonic() - start, len(part)))
    total_bytes = sum(n for _, n in arrivals)
    audio_seconds = total_bytes / 2 / 24000
    first, last = arrivals[0][0], arrivals[-1][0]
    assert audio_seconds > 40  # ten sentences of speech
    assert len(arrivals) > 10
    # First audio comes after roughly one clause of synthesis, not after all ten sentences.
    assert first < last / 4, (first, last)


def _sse_events(raw: str) -> list[dict[str, object]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("data: ")]
        assert lines, block
        events.append(json.loads("".join(line[6:] for line in lines)))
    return events


@pytest.mark.parametrize("fmt", ["mp3", "pcm"])
def test_sse_events_parse_and_concatenate_to_valid_audio(server: Server, fmt: str) -> None:
    body = {"model": "gpt-4o-mini-tts", "input": SENTENCE + " " + SENTENCE, "voice": "coral",
            "response_format": fmt, "stream_format": "sse"}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = _sse_events(raw)
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert len(events) >= 3
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert isinstance(usage, dict) and usage["input_tokens"] == len(body["input"])
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in events[:-1])
    samples, rate = (pcm16(audio), 24000) if fmt == "pcm" else decode(audio)
    assert rate == 24000
    assert len(samples) / rate > 5.0
    assert rms(samples) > 0.02


def test_a_flash_engine_name_as_model_on_openais_own_route(server: Server) -> None:
    """Flash-TTS's engine names are models OpenAI's route accepts too (app.py hands them over: no dialect
    imports another); an SSE request is OpenAI's even with such a model (Flash-TTS has no SSE)."""
    body = {"model": "Spark", "input": SENTENCE, "voice": "alloy", "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(response.read().decode())
    audio = pcm16(b"".join(base64.b64decode(str(e["audio"])) for e in events[:-1]))
    assert events[-1]["type"] == "speech.audio.done" and len(audio) / 24000 > 1.0 and rms(audio) > 0.02
    refused = httpx.post(f"{server.url}/v1/audio/speech", timeout=30, json={**body, "model": "sparky"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"


def test_models_and_voices_lists(server: Server) -> None:
    models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    assert models["object"] == "list"
    ids = [m["id"] for m in models["data"]]
    assert ids[:3] == ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    assert "en_US-joe-medium" in ids
    for entry in models["data"]:
        assert set(entry) == {"id", "object", "created", "owned_by"} and entry["object"] == "model"
    one = httpx.get(f"{server.url}/v1/models/tts-1", timeout=10)
    assert one.status_code == 200 and one.json()["id"] == "tts-1"
    missing = httpx.get(f"{server.url}/v1/models/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"

    voices = httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()
    joe = next(v for v in voices["data"] if v["id"] == "en_US-joe-medium")
    assert joe["engine"] == "piper" and joe["language"] == "en-US" and joe["sample_rate"] == 22050
    assert joe["object"] == "voice" and joe["speakers"] == [] and joe["speaker"] is None
    assert {"ash", "ballad", "cedar", "echo", "fable", "onyx", "verse"} == set(joe["aliases"])  # the male names
    hibari = next(v for v in voices["data"] if v["id"] == "hibari:heart")
    assert hibari["engine"] == "hibari" and hibari["sample_rate"] == 24000
    assert {"alloy", "coral", "marin", "nova", "sage", "shimmer"} == set(hibari["aliases"])  # the female names
    assert "en_US-joe-medium" in voices["voices"]


BAD = [
    ("empty input", {"input": ""}, 400, "input"),
    ("whitespace input", {"input": "   \n\t "}, 400, "input"),
    ("too long", {"input": "a" * 5000}, 400, "input"),
    ("unknown format", {"response_format": "mp4"}, 400, "response_format"),
    ("speed zero", {"speed": 0}, 400, "speed"),
    ("speed nine", {"speed": 9}, 400, "speed"),
    ("unknown voice", {"voice": "nobody"}, 404, "voice"),
    ("unknown model", {"model": "whisper-1"}, 404, "model"),
    ("input not a string", {"input": 123}, 400, "input"),
    ("speed not a number", {"speed": "fast"}, 400, "speed"),
    ("voice not a string", {"voice": 5}, 400, "voice"),
    ("unknown stream format", {"stream_format": "ws"}, 400, "stream_format"),
]


@pytest.mark.parametrize(("case", "change", "status", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_openai_envelope_and_server_keeps_serving(
    server: Server, case: str, change: dict[str, object], status: int, param: str
) -> None:
    body: dict[str, object] = {"model": "tts-1", "input": "Fine text.", "voice": "alloy", **change}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert isinstance(error["message"], str) and error["message"]
    good = httpx.post(f"{server.url}/v1/audio/speech", timeout=60,
                      json={"model": "tts-1", "input": "Still here.", "voice": "alloy", "response_format": "pcm"})
    assert good.status_code == 200 and rms(pcm16(good.content)) > 0.02


def test_malformed_json_and_non_object(server: Server) -> None:
    for raw in (b"{not json", b"[1, 2]", b""):
        response = httpx.post(f"{server.url}/v1/audio/speech", content=raw, timeout=10,
                              headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_voice_raises_not_found_in_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.audio.speech.create(model="tts-1", voice="definitely-not-a-voice", input="Hello.")
    assert info.value.status_code == 404
    assert "definitely-not-a-voice" in str(info.value)

"""Flash-TTS dialect against a live server, driven by a client written from the wire description (§3)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, pcm16, rms, start_server, stop_server
from tests.speech import RATE, other_speaker
from voxgate.audio.encoders import encode_all
from voxgate.audio.voiceshift import analyse

OUT_RATE = 16000  # Flash-TTS responses: Spark-TTS's rate
VOICE = "en_US-joe-medium"
SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west."
LONG = " ".join(f"Sentence number {n} tells a small story about a traveller by the river." for n in range(1, 7))
REFERENCE_TEXT = ("A clear voice reads these words aloud. It speaks slowly and calmly, "
                  "so that every sound can be heard. The weather was fine that morning.")
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}


@pytest.fixture(scope="module")
def reference() -> bytes:
    """A 'different speaker' as a WAV file: the bundled voice moved far up in pitch and formants."""
    return encode_all(other_speaker(REFERENCE_TEXT, f0_ratio=1.7, formant_ratio=1.18), RATE, "wav")


def post(server: Server, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def form(server: Server, path: str, files: dict[str, Any] | None = None, **fields: Any) -> httpx.Response:
    data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
    return httpx.post(f"{server.url}{path}", data=data, files=files, timeout=120)


def audio(response: httpx.Response, fmt: str = "wav") -> tuple[np.ndarray, int]:
    """Samples and rate of a whole response, after checking the original's headers."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPES[fmt]
    assert response.headers["content-disposition"] == f"attachment; filename=speech.{fmt}"
    assert response.headers["cache-control"] == "no-cache"
    if fmt == "pcm":
        return pcm16(response.content), OUT_RATE
    return decode(response.content, "aac" if fmt == "aac" else None)


def f0(samples: np.ndarray, rate: int) -> float:
    return analyse(samples, rate).f0_median


def roles(server: Server) -> list[str]:
    body = httpx.get(f"{server.url}/audio_roles", timeout=10).json()
    assert body["success"] is True
    return body["roles"]


# --- info and roles ------------------------------------------------------------------------------------------

def test_server_info_and_both_role_lists(server: Server) -> None:
    info = httpx.get(f"{server.url}/server_info", timeout=10).json()
    assert set(info) == {"success", "info"} and info["success"] is True
    assert set(info["info"]) == {"model", "roles", "sample_rate"}
    assert info["info"]["model"] == "spark" and info["info"]["sample_rate"] == OUT_RATE
    assert VOICE in info["info"]["roles"]
    listed = httpx.get(f"{server.url}/audio_roles", timeout=10).json()
    assert listed == {"success": True, "roles": info["info"]["roles"]}
    assert httpx.get(f"{server.url}/v1/audio_roles", timeout=10).json() == listed


# --- /speak ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_speak_every_format_is_one_whole_file(server: Server, fmt: str) -> None:
    response = post(server, "/speak", text=SENTENCE, name=VOICE, response_format=fmt)
    samples, rate = audio(response, fmt)
    assert rate == (48000 if fmt == "opus" else OUT_RATE)
    assert 2.0 < len(samples) / rate < 10.0 and rms(samples) > 0.02
    assert "x-accel-buffering" not in response.headers and "content-length" in response.headers
    if fmt == "wav":
        riff, data = struct.unpack("<I", response.content[4:8])[0], struct.unpack("<I", response.content[40:44])[0]
        assert riff == len(response.content) - 8 and data == len(response.content) - 44  # true sizes


def test_speak_default_format_is_mp3(server: Server) -> None:
    samples, _ = audio(post(server, "/speak", text="Short and sweet.", name=VOICE), "mp3")
    assert rms(samples) > 0.02


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3"])
def test_speak_stream_comes_chunk_by_chunk(server: Server, fmt: str) -> None:
    pieces: list[bytes] = []
    with httpx.stream("POST", f"{server.url}/speak", timeout=120,
                      json={"text": LONG, "name": VOICE, "stream": True, "response_format": fmt}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPES[fmt]
        assert response.headers["x-accel-buffering"] == "no" and response.headers["cache-control"] == "no-cache"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["content-disposition"] == f"attachment; filename=speech.{fmt}"
        pieces.extend(response.iter_raw())
    assert len(pieces) >= 3  # audio left as it was made, not as one block
    data = b"".join(pieces)
    if fmt == "wav":
        assert data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF
        assert struct.unpack("<HHI", data[20:28]) == (1, 1, OUT_RATE) and data[40:44] == b"\xff\xff\xff\xff"
        samples = pcm16(data[44:])
    elif fmt == "pcm":
        samples = pcm16(data)
    else:
        samples, rate = decode(data)
        assert rate == OUT_RATE
    assert len(samples) / OUT_RATE > 10.0 and rms(samples) > 0.02


def test_pitch_and_speed_levels_are_real_changes(server: Server) -> None:
    def say(**knobs: str) -> np.ndarray:
        return audio(post(server, "/speak", text=SENTENCE, name=VOICE, response_format="wav", **knobs))[0]

    plain, high, low, fast, slow = say(), say(pitch="very_high"), say(pitch="very_low"), \
        say(speed="very_high"), say(speed="very_low")
    base = f0(plain, OUT_RATE)
    assert 1.25 < f0(high, OUT_RATE) / base < 1.6  # +6 semitones = 1.41
    # −6 st from this ~90 Hz voice lands near the 60 Hz analysis floor, where the tracker reads high (0.82 seen)
    assert 0.6 < f0(low, OUT_RATE) / base < 0.88
    assert 0.5 < len(fast) / len(plain) < 0.75  # 1.6 × as fast
    assert 1.4 < len(slow) / len(plain) < 1.95  # 0.6 × as fast
    assert 0.85 < f0(fast, OUT_RATE) / base < 1.15  # rate changes keep the pitch


@pytest.mark.parametrize(("body", "needle"), [
    ({"name": "Nobody"}, '"Nobody" is not in the list of existing roles: '),
    ({}, '"name" is required; existing roles: '),
])
def test_speak_unknown_or_missing_name_is_400_listing_roles(server: Server, body: dict[str, str],
                                                            needle: str) -> None:
    response = post(server, "/speak", text=SENTENCE, **body)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith(needle) and VOICE in detail


@pytest.mark.parametrize(("change", "field"), [
    ({"response_format": "ogg"}, "response_format"), ({"pitch": "loud"}, "pitch"), ({"speed": 2}, "speed"),
    ({"text": None}, "text"), ({"stream": "maybe"}, "stream"), ({"top_k": "many"}, "top_k"),
])
def test_speak_wrong_fields_are_fastapi_422(server: Server, change: dict[str, Any], field: str) -> None:
    body = {"text": SENTENCE, "name": VOICE, **change}
    response = post(server, "/speak", **{k: v for k, v in body.items() if v is not None})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]


def test_sampling_knobs_are_accepted(server: Server) -> None:
    knobs = {"temperature": 0.5, "top_k": 10, "top_p": 0.5, "repetition_penalty": 1.2, "max_tokens": 100,
             "length_threshold": 10, "window_size": 10, "unknown_field": 1}
    samples, _ = audio(post(server, "/speak", text=SENTENCE, name=VOICE, response_format="pcm", **knobs), "pcm")
    assert rms(samples) > 0.02


# --- /clone_voice ---------------------------------------------------------------------------------------------

def test_clone_from_upload_speaks_in_the_reference_voice(server: Server, reference: bytes) -> None:
    plain = audio(post(server, "/speak", text=SENTENCE, name=VOICE, response_format="wav"))[0]
    response = form(server, "/clone_voice", files={"reference_audio_file": ("ref.wav", reference, "audio/wav")},
                    text=SENTENCE, reference_text=REFERENCE_TEXT, response_format="wav")
    cloned, rate = audio(response)
    assert rate == OUT_RATE and rms(cloned) > 0.02
    assert f0(cloned, OUT_RATE) > 1.3 * f0(plain, OUT_RATE)  # the reference is far higher than the base voice
    assert not any(r.startswith(("flash-clone-", "ref:")) for r in roles(server))  # the reference is no role
    voices = httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"]
    assert not any(v.startswith("flash-clone-") for v in voices)


def test_clone_from_base64_streamed_with_pitch(server: Server, reference: bytes) -> None:
    encoded = base64.b64encode(reference).decode()
    plain = form(server, "/clone_voice", text=SENTENCE, reference_audio=encoded, response_format="pcm")
    with httpx.stream("POST", f"{server.url}/clone_voice", timeout=120,
                      data={"text": SENTENCE, "reference_audio": encoded, "pitch": "very_low", "stream": "true",
                            "response_format": "pcm"}) as response:
        assert response.status_code == 200 and response.headers["x-accel-buffering"] == "no"
        lowered = pcm16(b"".join(response.iter_raw()))
    base = audio(plain, "pcm")[0]
    assert 0.6 < f0(lowered, OUT_RATE) / f0(base, OUT_RATE) < 0.8
    assert not any(r.startswith("flash-clone-") for r in roles(server))


def test_upload_wins_over_reference_audio_text(server: Server, reference: bytes) -> None:
    response = form(server, "/clone_voice", files={"reference_audio_file": ("ref.wav", reference, "audio/wav")},
                    text="Upload first.", reference_audio="not base64 at all!", response_format="pcm")
    assert rms(audio(response, "pcm")[0]) > 0.02


@pytest.mark.parametrize(("fields", "files", "status", "needle"), [
    ({"reference_audio": "https://example.com/voice.wav"}, None, 403, "reference URLs are not enabled"),
    ({"reference_audio": "!!!not*base64"}, None, 400, "reference file not found: !!!not*base64 (looked in "),
    ({"reference_audio": base64.b64encode(b"just some bytes, not audio").decode()}, None, 400, "could not decode"),
    ({}, {"reference_audio_file": ("ref.wav", b"", "audio/wav")}, 400, "参考音频文件为空"),
    ({}, None, 400, "reference audio is required"),
    ({"reference_audio": "/etc/passwd"}, None, 400, "could not decode"),  # base64 alphabet: read as base64
    # Other characters make it a file name, looked up in the reference folders only (a voxgate extension).
    ({"reference_audio": "/etc/hostname.wav"}, None, 403, "outside the allowed reference folders"),
])
def test_clone_reference_errors(server: Server, fields: dict[str, str], files: dict[str, Any] | None,
                                status: int, needle: str) -> None:
    response = form(server, "/clone_voice", files=files, text=SENTENCE, **fields)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]
    assert post(server, "/speak", text="Still here.", name=VOICE).status_code == 200


def test_clone_form_validation_is_422(server: Server, reference: bytes) -> None:
    files = {"reference_audio_file": ("ref.wav", reference, "audio/wav")}
    for fields, field in (({"text": SENTENCE, "speed": "warp"}, "speed"), ({}, "text"),
                          ({"text": SENTENCE, "response_format": "ogg"}, "response_format")):
        response = form(server, "/clone_voice", files=files, **fields)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", field]


# --- roles: /add_speaker, /delete_speaker, and pitch/speed on saved roles -----------------------------------

def test_add_speak_and_delete_a_role(server: Server, reference: bytes) -> None:
    added = form(server, "/add_speaker", files={"audio_file": ("ref.wav", reference, "audio/wav")},
                 name="Bright", reference_text=REFERENCE_TEXT)
    assert added.status_code == 200 and added.json() == {"success": True, "role": "Bright"}
    assert "Bright" in roles(server)
    stored = httpx.get(f"{server.url}/v1/audio/voices/Bright", timeout=10).json()
    assert stored["kind"] == "registered" and stored["transcript"] == REFERENCE_TEXT

    plain = audio(post(server, "/speak", text=SENTENCE, name="Bright", response_format="wav"))[0]
    high = audio(post(server, "/speak", text=SENTENCE, name="Bright", response_format="wav", pitch="high",
                      speed="high"))[0]
    assert 1.1 < f0(high, OUT_RATE) / f0(plain, OUT_RATE) < 1.35  # +3 semitones = 1.19, also on saved roles
    assert 0.65 < len(high) / len(plain) < 0.92  # 1.25 × as fast

    again = form(server, "/add_speaker", name="Bright", audio=base64.b64encode(reference).decode())
    assert again.json() == {"success": True, "role": "Bright"}  # overwrites, as the original does
    assert roles(server).count("Bright") == 1

    deleted = form(server, "/delete_speaker", name="Bright")
    assert deleted.status_code == 200 and deleted.json() == {"success": True, "role": "Bright"}
    assert "Bright" not in roles(server)
    missing = form(server, "/delete_speaker", name="Bright")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith('Failed to remove the voice character "Bright": ')


def test_role_errors(server: Server, reference: bytes) -> None:
    installed = form(server, "/delete_speaker", name=VOICE)
    assert installed.status_code == 400 and "installed voice" in installed.json()["detail"]
    assert form(server, "/delete_speaker").status_code == 422
    no_name = form(server, "/add_speaker", files={"audio_file": ("ref.wav", reference, "audio/wav")})
    assert no_name.status_code == 422 and no_name.json()["detail"][0]["loc"] == ["body", "name"]
    no_audio = form(server, "/add_speaker", name="Silent")
    assert no_audio.status_code == 400 and "reference audio is required" in no_audio.json()["detail"]
    clash = form(server, "/add_speaker", files={"audio_file": ("ref.wav", reference, "audio/wav")}, name=VOICE)
    assert clash.status_code == 409 and "installed voice" in clash.json()["detail"]
    silence = encode_all(np.zeros(RATE * 3, np.float32), RATE, "wav")
    quiet = form(server, "/add_speaker", files={"audio_file": ("s.wav", silence, "audio/wav")}, name="Quiet")
    assert quiet.status_code == 400 and "silent" in quiet.json()["detail"]
    assert "Quiet" not in roles(server) and "Silent" not in roles(server)


# --- /multi_speak ---------------------------------------------------------------------------------------------

SCRIPT_LOW_HIGH = (f"<role:{VOICE},pitch:very_low>{SENTENCE} It was a quiet morning in the valley."
                   f"<role:{VOICE},pitch:very_high>{SENTENCE} It was a quiet morning in the valley.")


def _halves_f0(samples: np.ndarray) -> tuple[float, float]:
    third = len(samples) // 3
    return f0(samples[:third], OUT_RATE), f0(samples[-third:], OUT_RATE)


@pytest.mark.parametrize("stream", [False, True])
def test_multi_speak_keeps_order_and_per_tag_pitch(server: Server, stream: bool) -> None:
    response = post(server, "/multi_speak", text=SCRIPT_LOW_HIGH, response_format="pcm", stream=stream)
    samples, _ = audio(response, "pcm")
    first, last = _halves_f0(samples)
    assert last / first > 1.4  # very_low first, very_high last (-6 then +6 semitones; reversed would be < 1)
    assert ("x-accel-buffering" in response.headers) == stream


def test_text_before_the_first_tag_is_spoken(server: Server) -> None:
    tagged = f"<role:{VOICE}>{SENTENCE}"
    alone = audio(post(server, "/multi_speak", text=tagged, response_format="wav"))[0]
    both = audio(post(server, "/multi_speak", text=f"{SENTENCE} {tagged}", response_format="wav"))[0]
    untagged = audio(post(server, "/multi_speak", text=SENTENCE, response_format="wav"))[0]
    # The text before the tag is spoken (by the default voice), then the tagged part by its role.
    assert 0.85 < len(both) / (len(untagged) + len(alone)) < 1.15
    default = httpx.get(f"{server.url}/ready", timeout=10).json()["default_voice"]
    reading = audio(post(server, "/multi_speak", text=f"<role:{default}>{SENTENCE}", response_format="wav"))[0]
    assert 0.8 < len(untagged) / len(reading) < 1.25 and rms(untagged) > 0.02


def test_multi_speak_unknown_roles_are_one_400_naming_them(server: Server) -> None:
    response = post(server, "/multi_speak", text="Hi. <role:Ghost>Boo. <role:Phantom,pitch:low>Wooo.")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert '"Ghost"' in detail and '"Phantom"' in detail and VOICE in detail


@pytest.mark.parametrize(("text", "needle"), [
    (f"<role:{VOICE},pitch:loud>Hi.", "invalid pitch 'loud'"),
    ("   ", "The multi-role text parsing result is empty"),
    (f"<role:{VOICE}>", "The multi-role text parsing result is empty"),
])
def test_multi_speak_script_errors(server: Server, text: str, needle: str) -> None:
    response = post(server, "/multi_speak", text=text)
    assert response.status_code == 400 and needle in response.json()["detail"]


def test_client_leaving_a_stream_stops_its_work(server: Server) -> None:
    before = server.metric("voxgate_cancelled_total")
    script = f"<role:{VOICE}>{LONG} " * 3
    with httpx.stream("POST", f"{server.url}/multi_speak", timeout=120,
                      json={"text": script, "stream": True, "response_format": "pcm"}) as response:
        assert response.status_code == 200
        next(response.iter_raw())
    for _ in range(100):  # bounded wait for the server to notice
        if server.metric("voxgate_cancelled_total") > before:
            break
        httpx.get(f"{server.url}/health", timeout=10)
    assert server.metric("voxgate_cancelled_total") > before


# --- /v1/audio/speech with Flash-TTS semantics ----------------------------------------------------------------

def openai_speech(server: Server, **body: Any) -> httpx.Response:
    return post(server, "/v1/audio/speech", **{"model": "spark", "input": SENTENCE, "voice": VOICE, **body})


def test_openai_route_takes_flash_model_pitch_and_stream_false(server: Server) -> None:
    plain = openai_speech(server, response_format="wav", stream=False)
    assert plain.status_code == 200 and plain.headers["content-type"] == "audio/wav"
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert struct.unpack("<I", plain.content[40:44])[0] == len(plain.content) - 44  # a whole file, true sizes
    raised = openai_speech(server, response_format="wav", pitch=1.5)
    assert raised.headers.get("transfer-encoding") == "chunked"  # streamed by default
    samples, rate = decode(plain.content)
    up, _ = decode(raised.content)
    assert 1.3 < f0(up, rate) / f0(samples, rate) < 1.7  # a ratio of 1.5 = +7 semitones


def test_openai_voice_as_base64_reference(server: Server, reference: bytes) -> None:
    plain = decode(openai_speech(server, response_format="wav").content)[0]
    response = openai_speech(server, voice=base64.b64encode(reference).decode(), response_format="wav")
    assert response.status_code == 200, response.text
    cloned, rate = decode(response.content)
    assert f0(cloned, rate) > 1.3 * f0(plain, rate)
    assert not any(r.startswith("flash-clone-") for r in roles(server))


@pytest.mark.parametrize(("change", "status", "param"), [
    ({"voice": "https://example.com/v.wav"}, 400, "voice"),
    ({"voice": "data:audio/wav;base64,AAAA"}, 400, "voice"),
    ({"voice": "nobody"}, 404, "voice"),
    ({"pitch": 0.1}, 400, "pitch"),
    ({"pitch": "high"}, 400, "pitch"),
    ({"model": "whisper-1"}, 404, "model"),
])
def test_openai_flash_errors_keep_openais_envelope(server: Server, change: dict[str, Any], status: int,
                                                   param: str) -> None:
    response = openai_speech(server, **change)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


# --- --role-dir -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def role_dir(tmp_path_factory: pytest.TempPathFactory, reference: bytes) -> Path:
    """A Flash-TTS role folder: two roles (one with a transcript, one Chinese-named), and a broken one."""
    root = tmp_path_factory.mktemp("roles")
    (root / "Alice").mkdir()
    (root / "Alice" / "alice.wav").write_bytes(reference)
    (root / "Alice" / "reference_text.txt").write_text(REFERENCE_TEXT + "\n", encoding="utf-8")
    (root / "小明").mkdir()
    low = encode_all(other_speaker(REFERENCE_TEXT, f0_ratio=0.8, formant_ratio=0.95), RATE, "wav")
    (root / "小明" / "b.wav").write_bytes(low)
    (root / "小明" / "a.txt").write_text("ignored", encoding="utf-8")
    (root / "NoAudio").mkdir()
    (root / "NoAudio" / "reference_text.txt").write_text("nothing", encoding="utf-8")
    (root / "Broken").mkdir()
    (root / "Broken" / "x.wav").write_bytes(b"RIFF not really")
    (root / "Female").mkdir()  # a built-in role's name: the setting, not a folder, chooses its voice
    (root / "Female" / "f.wav").write_bytes(reference)
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, role_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("flash-roles"), "--role-dir", str(role_dir),
                       "--no-warmup")  # nothing timed; the default voice is never used
    yield srv
    stop_server(srv)


def test_role_dir_is_imported_once_and_survives_restarts(imported: Server, role_dir: Path) -> None:
    names = roles(imported)
    assert {"Alice", "小明"} <= set(names) and "NoAudio" not in names and "Broken" not in names
    alice = httpx.get(f"{imported.url}/v1/audio/voices/Alice", timeout=10).json()
    assert alice["transcript"] == REFERENCE_TEXT and alice["kind"] == "registered"
    xiao = httpx.get(f"{imported.url}/v1/audio/voices/小明", timeout=10).json()
    assert xiao["transcript"] is None
    samples, _ = audio(post(imported, "/speak", text=SENTENCE, name="小明", response_format="pcm"), "pcm")
    assert rms(samples) > 0.02
    log = imported.log.read_text()
    assert "role NoAudio has no .wav file" in log and "role Broken not imported" in log
    assert "role Female has the name of a built-in role; skipped" in log
    assert "Female" not in names and names[:2] == ["female", "male"]
    assert httpx.get(f"{imported.url}/v1/audio/voices/Female", timeout=10).status_code == 404

    stop_server(imported)  # the same data folder again: nothing is registered twice
    again = start_server(imported.data_dir.parent, "--role-dir", str(role_dir), "--no-warmup")
    try:
        assert roles(again) == names
        assert httpx.get(f"{again.url}/v1/audio/voices/Alice", timeout=10).json()["created"] == alice["created"]
        assert "0 role(s) imported or updated" in again.log.read_text()
    finally:
        stop_server(again)


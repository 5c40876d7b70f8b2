"""CosyVoice streaming server, HTTP side, against a live server: every route, field and error, and /tts sharing."""

from __future__ import annotations

import base64
import io
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, pcm16, rms, serving, start_server, stop_server
from tests.speech import RATE, other_speaker
from voxgate.audio.encoders import encode_all

VOICE = "en_US-joe-medium"
SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west. Birds are singing."
REFERENCE_TEXT = ("A clear voice reads these words aloud. It speaks slowly and calmly, "
                  "so that every sound can be heard.")
GENERATED_ID = re.compile(r"^[0-9a-f]{7}_\d{4}-\d{2}-\d{2}$")
# Hertz each format's file carries when 16000 is asked for: Ogg Opus always decodes at 48 kHz.
FILE_RATE = {"wav": 16000, "pcm": 16000, "mp3": 16000, "opus": 48000, "flac": 16000, "aac": 16000, "m4a": 16000}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: these tests add and remove voices; reference URLs on loopback are allowed."""
    srv = start_server(tmp_path_factory.mktemp("cosyvoice"), "--stackflow-port", "0",
                       "--allow-reference-urls", "--allow-private-urls")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """About five seconds of 'another speaker' at 22.05 kHz."""
    return other_speaker(REFERENCE_TEXT, f0_ratio=1.5, formant_ratio=1.12)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def post(server: Server, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def speakers(server: Server) -> list[str]:
    response = httpx.get(f"{server.url}/speakers", timeout=10)
    assert response.status_code == 200
    return response.json()


def clone(server: Server, audio: str, **fields: Any) -> httpx.Response:
    return post(server, "/clone", {"prompt_audio": audio, "prompt_text": REFERENCE_TEXT, **fields})


def tts_audio(server: Server, fmt: str = "wav", rate: int | None = 16000, text: str = SENTENCE,
              voice: str = VOICE) -> bytes:
    body: dict[str, Any] = {"text": text, "prompt_id": voice, "audio_format": fmt}
    if rate is not None:
        body["sample_rate"] = rate
    response = post(server, "/tts", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["audio"]
    return base64.b64decode(response.json()["audio"], validate=True)


def wav_info(data: bytes) -> tuple[np.ndarray, int]:
    """Samples and the rate the header states, with the header's sizes checked against the file."""
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        frames = w.readframes(w.getnframes())
        assert len(frames) == w.getnframes() * 2 == len(data) - 44
        return pcm16(frames), w.getframerate()


def decode_as(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """A whole file of `fmt` decoded on its own (pcm: raw int16 at 16 kHz, as asked)."""
    if fmt == "pcm":
        return pcm16(data), 16000
    if fmt == "wav":
        return wav_info(data)
    return decode(data, "aac" if fmt == "aac" else None)


# --- simple routes --------------------------------------------------------------------------------------


def test_index_alive_and_speakers(server: Server) -> None:
    hello = httpx.get(f"{server.url}/", headers={"Accept": "*/*"}, timeout=10)
    assert hello.status_code == 200 and hello.json() == "Hello."
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")  # the web UI stays
    assert httpx.get(f"{server.url}/alive", timeout=10).json() == {"status": "alive"}
    listed = speakers(server)
    assert isinstance(listed, list) and VOICE in listed and all(isinstance(s, str) for s in listed)


# --- POST /tts ------------------------------------------------------------------------------------------


def test_tts_every_format_is_a_whole_file_at_the_asked_rate(server: Server) -> None:
    reference, rate = wav_info(tts_audio(server, "wav"))
    assert rate == 16000  # the header tells the true rate (the original's header always said 24000)
    assert 2.5 < len(reference) / rate < 12 and rms(reference) > 0.02
    for fmt in ("pcm", "mp3", "opus", "flac", "aac", "m4a"):
        samples, file_rate = decode_as(tts_audio(server, fmt), fmt)
        assert file_rate == FILE_RATE[fmt], fmt
        seconds = len(samples) / file_rate
        assert abs(seconds - len(reference) / rate) < 0.15 * len(reference) / rate, (fmt, seconds)
        assert rms(samples) > 0.02, fmt


def test_tts_defaults_are_wav_at_24khz(server: Server) -> None:
    samples, rate = wav_info(tts_audio(server, "wav", rate=None, text="Hello there, my friend."))
    assert rate == 24000 and len(samples) > 0.5 * rate and rms(samples) > 0.02


def test_tts_errors(server: Server) -> None:
    missing = post(server, "/tts", {"text": SENTENCE, "prompt_id": "nobody-here"})
    assert missing.status_code == 404 and missing.json() == "No such speaker."
    empty_id = post(server, "/tts", {"text": SENTENCE, "prompt_id": " "})
    assert empty_id.status_code == 404 and empty_id.json() == "No such speaker."  # never the default voice
    bad_format = post(server, "/tts", {"text": SENTENCE, "prompt_id": VOICE, "audio_format": "xyz"})
    assert bad_format.status_code == 400 and "unsupported audio_format 'xyz'" in bad_format.json()
    bad_rate = post(server, "/tts", {"text": SENTENCE, "prompt_id": VOICE, "sample_rate": 1000})
    assert bad_rate.status_code == 400 and "sample_rate 1000" in bad_rate.json()
    no_text = post(server, "/tts", {"text": "  ", "prompt_id": VOICE})
    assert no_text.status_code == 400 and isinstance(no_text.json(), str)
    no_field = post(server, "/tts", {"prompt_id": VOICE})
    assert no_field.status_code == 422
    assert [e["loc"] for e in no_field.json()["detail"]] == [["body", "text"]]
    wrong_type = post(server, "/tts", {"text": SENTENCE, "prompt_id": VOICE, "sample_rate": "fast"})
    assert wrong_type.status_code == 422 and wrong_type.json()["detail"][0]["loc"] == ["body", "sample_rate"]
    assert tts_audio(server, "pcm", text="Still serving.")  # and the server keeps serving


def test_post_tts_is_shared_with_gptsovits_by_body_shape(server: Server) -> None:
    gsv = {"text": "Hello from the other dialect.", "text_lang": "en", "ref_audio_path": VOICE, "prompt_lang": "en"}
    response = post(server, "/tts", gsv)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    samples, rate = decode(response.content)
    assert rate == 32000 and rms(samples) > 0.02  # GPT-SoVITS's own 32 kHz
    both = post(server, "/tts", {**gsv, "prompt_id": VOICE})  # text_lang present: GPT-SoVITS's request
    assert both.status_code == 200 and both.headers["content-type"] == "audio/wav"
    incomplete = post(server, "/tts", {"text": "No language."})  # no prompt_id: GPT-SoVITS's own error
    assert incomplete.status_code == 400 and incomplete.json() == {"message": "ref_audio_path is required"}
    form = httpx.post(f"{server.url}/tts", data=gsv, timeout=120)  # forms are GPT-SoVITS's only
    assert form.status_code == 200 and form.headers["content-type"] == "audio/wav"
    cosy = post(server, "/tts", {"text": "Hello.", "prompt_id": VOICE})
    assert cosy.status_code == 200 and list(cosy.json()) == ["audio"]
    get = httpx.get(f"{server.url}/tts", params=gsv, timeout=120)  # GET is GPT-SoVITS's only
    assert get.status_code == 200 and get.headers["content-type"] == "audio/wav"


# --- /clone ---------------------------------------------------------------------------------------------


def test_clone_base64_generated_id_existed_and_speak(server: Server, reference: np.ndarray) -> None:
    audio = b64(encode_all(reference, RATE, "wav"))
    first = clone(server, audio)
    assert first.status_code == 200, first.text
    body = first.json()
    assert list(body) == ["existed", "prompt_id"] and body["existed"] is False
    assert GENERATED_ID.match(body["prompt_id"]), body
    prompt_id = body["prompt_id"]
    assert prompt_id in speakers(server)
    again = clone(server, b64(b"not even audio"), prompt_id=prompt_id)  # existing id: audio not even read
    assert again.status_code == 200 and again.json() == {"existed": True, "prompt_id": prompt_id}
    installed = clone(server, audio, prompt_id=VOICE)
    assert installed.json() == {"existed": True, "prompt_id": VOICE}
    samples, rate = wav_info(tts_audio(server, "wav", text="Spoken by the cloned voice.", voice=prompt_id))
    assert rate == 16000 and rms(samples) > 0.02
    described = httpx.get(f"{server.url}/v1/audio/voices/{prompt_id}", timeout=10).json()
    assert described["transcript"] == REFERENCE_TEXT and described["kind"] == "registered"
    named = clone(server, audio, prompt_id="cosy-named", prompt_text="", loudness=16.0)
    assert named.json() == {"existed": False, "prompt_id": "cosy-named"}
    assert httpx.get(f"{server.url}/v1/audio/voices/cosy-named", timeout=10).json()["transcript"] is None


def test_clone_raw_pcm_is_read_at_the_given_rate(server: Server, reference: np.ndarray) -> None:
    raw = (np.clip(reference, -1, 1) * 32767).astype("<i2").tobytes()
    response = clone(server, b64(raw), prompt_id="cosy-pcm", audio_format="pcm", sample_rate=RATE)
    assert response.status_code == 200 and response.json() == {"existed": False, "prompt_id": "cosy-pcm"}
    described = httpx.get(f"{server.url}/v1/audio/voices/cosy-pcm", timeout=10).json()
    assert described["reference_sample_rate"] == RATE
    assert described["duration"] == pytest.approx(len(reference) / RATE, abs=0.01)
    # The same bytes declared as 44.1 kHz last half as long: the rate really is used.
    faster = clone(server, b64(raw), prompt_id="cosy-pcm-fast", audio_format="pcm", sample_rate=2 * RATE)
    assert faster.status_code == 200
    fast = httpx.get(f"{server.url}/v1/audio/voices/cosy-pcm-fast", timeout=10).json()
    assert fast["duration"] == pytest.approx(len(reference) / RATE / 2, abs=0.01)
    post(server, "/remove", {"prompt_ids": ["cosy-pcm", "cosy-pcm-fast"]})


def test_clone_from_a_server_path_and_a_url(server: Server, reference: np.ndarray) -> None:
    folder = server.data_dir / "refs"
    folder.mkdir(exist_ok=True)
    (folder / "speaker.wav").write_bytes(encode_all(reference, RATE, "wav"))
    by_path = clone(server, str(folder / "speaker.wav"), prompt_id="cosy-path")
    assert by_path.status_code == 200 and by_path.json() == {"existed": False, "prompt_id": "cosy-path"}
    with serving(encode_all(reference, RATE, "wav")) as files:
        by_url = clone(server, files.url("/speaker.wav"), prompt_id="cosy-url")
        assert by_url.status_code == 200 and by_url.json() == {"existed": False, "prompt_id": "cosy-url"}
    assert {"cosy-path", "cosy-url"} <= set(speakers(server))
    post(server, "/remove", {"prompt_ids": ["cosy-path", "cosy-url"]})


def test_clone_refusals_keep_nothing(server: Server, reference: np.ndarray) -> None:
    before = speakers(server)
    outside = clone(server, "/etc/hostname", prompt_id="cosy-bad")
    assert outside.status_code == 403 and isinstance(outside.json(), str)
    missing = clone(server, str(server.data_dir / "refs" / "nope.wav"), prompt_id="cosy-bad")
    assert missing.status_code == 400 and "not found" in missing.json()
    garbage = clone(server, b64(b"\x00\x01" * 4000), prompt_id="cosy-bad")
    assert garbage.status_code == 400
    short = clone(server, b64(encode_all(reference[: RATE // 4], RATE, "wav")), prompt_id="cosy-bad")
    assert short.status_code == 400 and "too short" in short.json()
    bad_id = clone(server, b64(encode_all(reference, RATE, "wav")), prompt_id="a/b")
    assert bad_id.status_code == 400 and "cannot be used" in bad_id.json()
    bad_rate = clone(server, b64(b"\x00\x00" * 100), prompt_id="cosy-bad", audio_format="pcm", sample_rate=5)
    assert bad_rate.status_code == 400 and "sample_rate" in bad_rate.json()
    no_text = post(server, "/clone", {"prompt_audio": "x"})
    assert no_text.status_code == 422 and no_text.json()["detail"][0]["loc"] == ["body", "prompt_text"]
    assert speakers(server) == before


# --- /remove --------------------------------------------------------------------------------------------


def test_remove_current_and_seed_shapes(server: Server, reference: np.ndarray) -> None:
    audio = b64(encode_all(reference, RATE, "wav"))
    for name in ("cosy-r1", "cosy-r2", "cosy-r3"):
        assert clone(server, audio, prompt_id=name).json()["existed"] is False
    native = httpx.post(f"{server.url}/v1/audio/voices", json={"name": "native-keep", "audio": audio}, timeout=120)
    assert native.status_code in (200, 201), native.text
    current = post(server, "/remove", {"prompt_ids": ["cosy-r1", "nobody", VOICE]})
    assert current.json() == {"removed_speakers": ["cosy-r1"]}  # unknown and installed ids are skipped
    seed = post(server, "/remove", {"prompt_id": "cosy-r2"})
    assert seed.json() == {"status": "ok", "removed_speakers": ["cosy-r2"]}
    listed = set(speakers(server))
    assert "cosy-r1" not in listed and "cosy-r2" not in listed and {"cosy-r3", VOICE} <= listed
    everything = post(server, "/remove", {"prompt_ids": []})
    assert "cosy-r3" in everything.json()["removed_speakers"]
    assert "native-keep" not in everything.json()["removed_speakers"]
    listed = set(speakers(server))
    assert {VOICE, "native-keep"} <= listed and not {v for v in listed if v.startswith("cosy-")}
    assert post(server, "/remove", {}).status_code == 422
    assert post(server, "/remove", {"prompt_ids": ["native-keep"]}).json() == {"removed_speakers": ["native-keep"]}


# --- /cache/save and /cache/load ------------------------------------------------------------------------


def test_cache_save_and_load_round_trip(server: Server, reference: np.ndarray) -> None:
    audio = b64(encode_all(reference, RATE, "wav"))
    for name in ("cosy-c1", "cosy-c2"):
        assert clone(server, audio, prompt_id=name).json()["existed"] is False
    saved = post(server, "/cache/save", {"prompt_ids": ["cosy-c1", "cosy-c2"], "filename": "both"})
    assert saved.json() == {"cache_path": "../assets/both.pt"}
    assert (server.data_dir / "cache" / "cosyvoice" / "both.pt").is_file()
    assert post(server, "/remove", {"prompt_ids": ["cosy-c1", "cosy-c2"]}).json()["removed_speakers"] == [
        "cosy-c1", "cosy-c2"]
    one = post(server, "/cache/load", {"cache_path": "../assets/both.pt", "prompt_ids": ["cosy-c2"]})
    assert one.json() == {"loaded_speakers": ["cosy-c2"]}
    listed = set(speakers(server))
    assert "cosy-c2" in listed and "cosy-c1" not in listed  # only what was asked for
    every = post(server, "/cache/load", {"cache_path": "../assets/both.pt", "prompt_ids": []})
    assert sorted(every.json()["loaded_speakers"]) == ["cosy-c1", "cosy-c2"]
    samples, _ = wav_info(tts_audio(server, "wav", text="Back from the cache.", voice="cosy-c1"))
    assert rms(samples) > 0.02
    generated = post(server, "/cache/save", {"cache_dir": "sub", "prompt_ids": []})
    path = generated.json()["cache_path"]
    assert re.fullmatch(r"sub/speaker_cache_[0-9a-f]{32}\.pt", path), path
    assert (server.data_dir / "cache" / "cosyvoice" / path).is_file()
    overwrite = post(server, "/cache/save", {"cache_dir": "sub", "filename": Path(path).stem,
                                             "prompt_ids": ["cosy-c1"]})
    assert overwrite.json() == {"cache_path": path}  # an existing file is replaced, as in the original
    empty = post(server, "/cache/save", {"cache_dir": "", "filename": "here", "prompt_ids": ["cosy-c1"]})
    assert empty.json() == {"cache_path": "here.pt"}  # the cache folder itself, not the file-system root
    assert (server.data_dir / "cache" / "cosyvoice" / "here.pt").is_file()
    post(server, "/remove", {"prompt_ids": ["cosy-c1", "cosy-c2"]})
    assert post(server, "/cache/load", {"cache_path": path, "prompt_ids": []}).json() == {
        "loaded_speakers": ["cosy-c1"]}
    post(server, "/remove", {"prompt_ids": ["cosy-c1"]})


def test_cache_paths_stay_in_the_cache_folder(server: Server) -> None:
    before = speakers(server)
    for cache_dir in ("/tmp", "../../..", "../assets/../../x"):
        response = post(server, "/cache/save", {"cache_dir": cache_dir, "prompt_ids": []})
        assert response.status_code == 403 and "cache folder" in response.json(), cache_dir
    bad_name = post(server, "/cache/save", {"filename": "../evil", "prompt_ids": []})
    assert bad_name.status_code == 400 and "plain file name" in bad_name.json()
    assert post(server, "/cache/load", {"cache_path": "/etc/passwd", "prompt_ids": []}).status_code == 403
    assert post(server, "/cache/load", {"cache_path": "../assets/none.pt", "prompt_ids": []}).json() == {
        "loaded_speakers": []}
    nothing = post(server, "/cache/save", {"prompt_ids": ["nobody"]})
    assert nothing.json() == {"cache_path": None}
    junk = server.data_dir / "cache" / "cosyvoice" / "junk.pt"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"\x80\x04 a pickle, which is never unpickled")
    refused = post(server, "/cache/load", {"cache_path": "junk.pt", "prompt_ids": []})
    assert refused.status_code == 400 and "voice archive" in refused.json()
    assert post(server, "/cache/save", {}).status_code == 422
    assert post(server, "/cache/load", {"prompt_ids": []}).status_code == 422
    for long in ("a" * 300, "/".join(["b" * 200] * 8), "../assets/" + "c" * 256):  # ENAMETOOLONG used to be a 500
        for path, body in (("/cache/load", {"cache_path": long}), ("/cache/save", {"cache_dir": long})):
            answer = post(server, path, {**body, "prompt_ids": []})
            assert answer.status_code == 400 and "longer than the file system allows" in answer.json(), path
    assert speakers(server) == before


# --- the compat port ------------------------------------------------------------------------------------


def test_compat_port_serves_cosyvoice_alone(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from voxgate.app import build_context, build_dialects, close_context, compat_apps
    from voxgate.settings import Settings

    ctx = build_context(settings := Settings(data_dir=tmp_path / "data"))
    try:
        apps = compat_apps(ctx, build_dialects(ctx, settings), 8001)
        assert 12244 in apps
        client = TestClient(apps[12244])
        hello = client.get("/", headers={"Accept": "text/html"})
        assert hello.status_code == 200 and hello.json() == "Hello."  # no web page on this port
        gsv = client.post("/tts", json={"text": "hi", "text_lang": "en", "ref_audio_path": VOICE,
                                        "prompt_lang": "en"})
        assert gsv.status_code == 422  # only CosyVoice lives here: its validation, not GPT-SoVITS's audio
        assert [e["loc"] for e in gsv.json()["detail"]] == [["body", "prompt_id"]]
        assert client.get("/tts").status_code == 405
        assert client.post("/v1/audio/speech", json={}).status_code == 404
        assert client.get("/alive").json() == {"status": "alive"}
    finally:
        close_context(ctx)

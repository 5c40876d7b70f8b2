"""The native voice API on a live server: register from reference audio, speak, fetch, delete, refuse."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, pcm16, rms, serving, start_server, stop_server
from tests.speech import RATE, other_speaker
from voxgate.audio.encoders import encode_all
from voxgate.voices.embedding import SpeakerEncoder, cosine

REFERENCE_TEXT = ("A clear voice reads these words aloud. It speaks slowly and calmly, "
                  "so that every sound can be heard. The weather was fine that morning.")
PROBE_TEXT = "Please read this other sentence, which the reference never said, in the new voice."


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, int]:
    """A 'different speaker': the bundled voice moved far up in pitch and formants."""
    return other_speaker(REFERENCE_TEXT, f0_ratio=1.7, formant_ratio=1.18), RATE


def wav(samples: np.ndarray, rate: int) -> bytes:
    return encode_all(samples, rate, "wav")


def add(server: Server, name: str, audio: bytes | str, **fields: str) -> httpx.Response:
    if isinstance(audio, bytes):
        return httpx.post(f"{server.url}/v1/audio/voices", data={"name": name, **fields},
                          files={"audio": ("ref.wav", audio, "audio/wav")}, timeout=120)
    return httpx.post(f"{server.url}/v1/audio/voices", json={"name": name, "audio": audio, **fields}, timeout=120)


def speak(server: Server, voice: str, text: str = PROBE_TEXT) -> httpx.Response:
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": "pcm"}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)


def test_register_speak_fetch_and_delete(server: Server, reference: tuple[np.ndarray, int]) -> None:
    created = add(server, "Bright Reader", wav(*reference), transcript=REFERENCE_TEXT, language="en")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["id"] == "Bright-Reader" and voice["name"] == "Bright Reader" and voice["object"] == "voice"
    assert voice["kind"] == "registered" and voice["base_voice"] == "en_US-joe-medium"
    assert voice["engine"] == "piper" and voice["language"] == "en" and voice["transcript"] == REFERENCE_TEXT
    assert abs(voice["duration"] - len(reference[0]) / reference[1]) < 0.01
    assert voice["reference_sample_rate"] == 22050 and -1.0 <= voice["similarity"] <= 1.0
    listed = httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()
    assert "Bright-Reader" in listed["voices"]
    assert httpx.get(f"{server.url}/v1/audio/voices/Bright-Reader", timeout=10).json() == voice

    spoken = speak(server, "Bright-Reader")
    assert spoken.status_code == 200 and rms(pcm16(spoken.content)) > 0.02

    stored = httpx.get(f"{server.url}/v1/audio/voices/Bright-Reader/reference", timeout=10)
    samples, rate = decode(stored.content)
    assert rate == 22050 and np.allclose(samples, reference[0], atol=2 / 32768)

    gone = httpx.delete(f"{server.url}/v1/audio/voices/Bright-Reader", timeout=10)
    assert gone.status_code == 200 and gone.json() == {"id": "Bright-Reader", "object": "voice", "deleted": True}
    assert httpx.get(f"{server.url}/v1/audio/voices/Bright-Reader", timeout=10).status_code == 404
    assert speak(server, "Bright-Reader").status_code == 404
    assert httpx.delete(f"{server.url}/v1/audio/voices/Bright-Reader", timeout=10).status_code == 404


def test_matched_voice_is_closer_to_the_reference_than_its_base(
    server: Server, reference: tuple[np.ndarray, int]
) -> None:
    assert add(server, "matcher", wav(*reference)).status_code == 201
    encoder = SpeakerEncoder()
    target = encoder.embed(*reference)
    base = encoder.embed(pcm16(speak(server, "en_US-joe-medium").content), 24000)
    matched = encoder.embed(pcm16(speak(server, "matcher").content), 24000)
    assert cosine(matched, target) > cosine(base, target) + 0.1, (cosine(base, target), cosine(matched, target))
    assert httpx.delete(f"{server.url}/v1/audio/voices/matcher", timeout=10).status_code == 200


def test_base64_json_and_existing_names(server: Server, reference: tuple[np.ndarray, int]) -> None:
    encoded = base64.b64encode(encode_all(*reference, "flac")).decode()
    first = add(server, "b64", "data:audio/flac;base64," + encoded)
    assert first.status_code == 201, first.text
    again = add(server, "b64", encoded)
    assert again.status_code == 409 and again.json()["error"]["code"] == "voice_exists"
    replaced = add(server, "b64", encoded, replace="true")
    assert replaced.status_code == 200 and replaced.json()["id"] == "b64"
    taken = add(server, "en_US-joe-medium", encoded)
    assert taken.status_code == 409 and taken.json()["error"]["param"] == "name"
    assert httpx.delete(f"{server.url}/v1/audio/voices/b64", timeout=10).status_code == 200
    installed = httpx.delete(f"{server.url}/v1/audio/voices/en_US-joe-medium", timeout=10)
    assert installed.status_code == 400


def test_server_side_path_inside_the_data_folder(server: Server, reference: tuple[np.ndarray, int]) -> None:
    folder = server.data_dir / "uploads"
    folder.mkdir(exist_ok=True)
    (folder / "ref.wav").write_bytes(wav(*reference))
    response = add(server, "from-path", "uploads/ref.wav")
    assert response.status_code == 201, response.text
    assert httpx.delete(f"{server.url}/v1/audio/voices/from-path", timeout=10).status_code == 200


def _silence(seconds: float) -> bytes:
    return wav(np.zeros(int(22050 * seconds), np.float32), 22050)


BAD = [
    ("bad base64", lambda ref: "!!!not*base64!!!" * 20, 400, "invalid_reference"),
    ("silent", lambda ref: _silence(3.0), 400, "invalid_reference"),
    ("too short", lambda ref: wav(ref[0][: int(0.5 * ref[1])], ref[1]), 400, "invalid_reference"),
    ("too long", lambda ref: wav(np.tile(ref[0], 8)[: 31 * ref[1]], ref[1]), 400, "invalid_reference"),
    ("corrupt", lambda ref: b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 50, 400, "invalid_reference"),
    ("empty file", lambda ref: b"", 400, "invalid_value"),
    ("traversal", lambda ref: "../../../etc/passwd", 403, "forbidden_reference"),
    ("absolute outside", lambda ref: "/etc/hostname", 403, "forbidden_reference"),
    ("url while disabled", lambda ref: "http://127.0.0.1:9/ref.wav", 403, "forbidden_reference"),
    ("missing file", lambda ref: "nowhere/ref.wav", 400, "invalid_reference"),
]


@pytest.mark.parametrize(("case", "make", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_references_are_refused_and_nothing_is_kept(
    server: Server, reference: tuple[np.ndarray, int], case: str, make, status: int, code: str  # type: ignore[no-untyped-def]
) -> None:
    before = set(httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"])
    files_before = set((server.data_dir / "references").iterdir())
    response = add(server, f"bad-{case.replace(' ', '-')}", make(reference))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in error["message"]
    if case == "missing file":  # the one error that names the reference folders: where to put the file
        assert error["message"].endswith(f"(looked in {server.data_dir.resolve()})")
    else:
        assert str(server.data_dir) not in error["message"]
    assert set(httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"]) == before
    assert set((server.data_dir / "references").iterdir()) == files_before


def test_missing_fields(server: Server) -> None:
    no_name = httpx.post(f"{server.url}/v1/audio/voices", json={"audio": "abc"}, timeout=10)
    assert no_name.status_code == 400 and no_name.json()["error"]["param"] == "name"
    no_audio = httpx.post(f"{server.url}/v1/audio/voices", data={"name": "x"}, timeout=10)
    assert no_audio.status_code == 400 and no_audio.json()["error"]["param"] == "audio"
    bad_name = httpx.post(f"{server.url}/v1/audio/voices", json={"name": "a/b", "audio": "abc"}, timeout=10)
    assert bad_name.status_code == 400


def test_concurrent_registrations_and_deletions(server: Server, reference: tuple[np.ndarray, int]) -> None:
    audio = wav(*reference)
    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(lambda i: add(server, f"crowd-{i}", audio).status_code, range(6)))
        assert created == [201] * 6
        deleted = list(pool.map(
            lambda i: httpx.delete(f"{server.url}/v1/audio/voices/crowd-{i}", timeout=30).status_code, range(0, 6, 2)))
    assert deleted == [200] * 3
    voices = set(httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"])
    assert {f"crowd-{i}" for i in range(6)} & voices == {"crowd-1", "crowd-3", "crowd-5"}
    for i in (1, 3, 5):
        httpx.delete(f"{server.url}/v1/audio/voices/crowd-{i}", timeout=10)


@pytest.fixture(scope="module")
def url_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """URLs allowed, private addresses not: the SSRF guard must hold."""
    srv = start_server(Path(tmp_path_factory.mktemp("urls")), "--allow-reference-urls", "--no-warmup")  # speaks nothing
    yield srv
    stop_server(srv)


def test_urls_to_internal_addresses_are_refused(url_server: Server, reference: tuple[np.ndarray, int]) -> None:
    with serving(wav(*reference)) as files:
        port = files.port
        for url in (f"http://127.0.0.1:{port}/ref.wav", f"http://localhost:{port}/ref.wav",
                    "http://169.254.169.254/latest/meta-data", f"http://[::1]:{port}/ref.wav"):
            response = add(url_server, "ssrf", url)
            assert response.status_code == 403, (url, response.text)
            assert response.json()["error"]["code"] == "forbidden_reference"
        assert files.hits == 0  # refused before any connection was made


def test_registered_voices_survive_a_restart(tmp_path: Path, reference: tuple[np.ndarray, int]) -> None:
    first = start_server(tmp_path, "--no-warmup")  # nothing timed; the default voice is never used
    try:
        assert add(first, "keeper", wav(*reference), transcript="kept").status_code == 201
        described = httpx.get(f"{first.url}/v1/audio/voices/keeper", timeout=10).json()
    finally:
        stop_server(first)
    second = start_server(tmp_path, "--no-warmup")
    try:
        assert httpx.get(f"{second.url}/v1/audio/voices/keeper", timeout=10).json() == described
        spoken = speak(second, "keeper")
        assert spoken.status_code == 200 and rms(pcm16(spoken.content)) > 0.02
    finally:
        stop_server(second)


def test_reference_download_of_unknown_voice(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/audio/voices/nobody/reference", timeout=10)
    assert response.status_code == 404



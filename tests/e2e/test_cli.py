"""The command line as a user runs it: say, voices, and refusing bad settings before loading anything."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import webvtt

from tests.conftest import decode, rms, seed_bases
from tests.e2e.many import run_many

CAPTIONED = "Captions follow every word we say."


def run(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxgate", *args], capture_output=True, text=True, input=stdin,
                          timeout=120, env={**os.environ, **(env or {})})


def test_say_writes_a_true_size_wav_and_other_formats(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = run("say", "Hello from the command line.", "-o", str(out), "--voice", "en_US-joe-medium",
                 "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        frames = wav.getnframes()
    assert 1.0 < frames / 22050 < 4.0
    assert out.stat().st_size == 44 + frames * 2  # the header tells the real length
    mp3 = tmp_path / "hello.mp3"
    result = run("say", "-", "-o", str(mp3), "--voice", "echo", "--data-dir", str(tmp_path / "d"),  # echo: joe
                 stdin="Text from standard input.")
    assert result.returncode == 0, result.stderr
    samples, rate = decode(mp3.read_bytes())
    assert rate == 22050 and rms(samples) > 0.02


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    """The commands of the tests below that need no process of their own, run in one (tests/e2e/many.py),
    with the folder they wrote in: the checks are each test's own."""
    tmp = tmp_path_factory.mktemp("cli-batch")
    closed = ("--stackflow-port", "0", "--wyoming-port", "0")  # see test_invalid_settings_are_refused_before_start
    commands = {
        "bad voice": ["say", "Hello.", "-o", str(tmp / "x.wav"), "--voice", "nobody", "--data-dir", str(tmp)],
        "captions": ["say", CAPTIONED, "-o", str(tmp / "out.mp3"), "--captions", str(tmp / "out.vtt"),
                     "--voice", "en_US-joe-medium", "--data-dir", str(tmp / "d")],
        "wrong captions": ["say", CAPTIONED, "-o", str(tmp / "out.mp3"), "--captions", str(tmp / "out.txt"),
                           "--data-dir", str(tmp)],
        "voices": ["voices", "--data-dir", str(tmp / "list")],
        "missing voice": ["serve", "--port", "0", *closed, "--data-dir", str(tmp), "--default-voice", "nope"],
        "missing preload": ["serve", "--port", "0", *closed, "--data-dir", str(tmp), "--preload", "kokoro:nobody"],
    }
    return tmp, dict(zip(commands, run_many(tmp, *commands.values()), strict=True))


def test_say_reports_bad_input_without_a_traceback(batch: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]
                                                   ) -> None:
    result = batch[1]["bad voice"]
    assert result.returncode == 2
    assert "nobody" in result.stderr and "Traceback" not in result.stderr


def test_say_writes_captions_beside_the_audio(batch: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]
                                              ) -> None:
    tmp, results = batch
    text = CAPTIONED
    out, vtt = tmp / "out.mp3", tmp / "out.vtt"
    result = results["captions"]
    assert result.returncode == 0, result.stderr
    samples, rate = decode(out.read_bytes())
    assert rms(samples) > 0.02
    cues = list(webvtt.read(str(vtt)))
    assert vtt.read_text().startswith("WEBVTT\n") and cues
    assert " ".join(c.text.replace("\n", " ") for c in cues) == text
    spans = [(c.start_time.in_milliseconds(), c.end_time.in_milliseconds()) for c in cues]
    assert spans == sorted(spans) and all(0 <= start < end for start, end in spans)
    assert spans[-1][1] <= len(samples) / rate * 1000 + 50
    wrong = results["wrong captions"]
    assert wrong.returncode == 2 and "--captions" in wrong.stderr and "Traceback" not in wrong.stderr


def test_voices_lists_the_default_voice_with_its_aliases(
        batch: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]) -> None:
    result = batch[1]["voices"]
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("en_US-joe-medium\t"))
    assert "piper" in line and "en-US" in line and "22050 Hz" in line and "echo" in line
    line = next(row for row in result.stdout.splitlines() if row.startswith("hibari:heart\t"))
    assert "hibari" in line and "en-US" in line and "24000 Hz" in line and "alloy" in line


def test_invalid_settings_are_refused_before_start(
        tmp_path: Path, batch: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]) -> None:
    bad_port = run("serve", "--port", "70000", "--data-dir", str(tmp_path))
    assert bad_port.returncode == 2 and "port" in bad_port.stderr
    bad_env = run("voices", "--data-dir", str(tmp_path), env={"VOXGATE_WORKERS": "0"})
    assert bad_env.returncode == 2 and "workers" in bad_env.stderr
    # --stackflow-port 0 --wyoming-port 0: ports are bound before the voices load, and 10001 or 10200 may be
    # taken on a shared machine
    missing_voice = batch[1]["missing voice"]
    assert missing_voice.returncode == 2 and "default voice" in missing_voice.stderr
    missing_preload = batch[1]["missing preload"]
    assert missing_preload.returncode == 2 and "preload" in missing_preload.stderr


def test_help_lists_every_setting_with_its_env_var() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--data-dir", "--voices-dir", "--workers", "--threads", "--max-queue"):
        assert flag in result.stdout
    assert "VOXGATE_WORKERS" in result.stdout


def test_voices_add_list_export_import_check_rm(tmp_path: Path) -> None:
    from tests.speech import RATE, other_speaker
    from voxgate.audio.encoders import encode_all

    shifted = other_speaker("A story is told slowly and clearly, one calm sentence after another.", 1.5, 1.1)
    ref = tmp_path / "ref.mp3"
    ref.write_bytes(encode_all(shifted, RATE, "mp3"))
    a, b = ["--data-dir", str(tmp_path / "a")], ["--data-dir", str(tmp_path / "b")]
    seed_bases(tmp_path / "a")  # what the suite's servers measured already (joe); the others are measured here
    archive, said = tmp_path / "v.zip", tmp_path / "said.wav"
    # The commands up to the damage in one process, the rest in another: the same checks, two starts, not ten.
    added, again, listed, exported, imported, checked, spoken = run_many(
        tmp_path,
        ["voices", "add", "Story Teller", str(ref), "--transcript", "hello", *a],
        ["voices", "add", "Story Teller", str(ref), *a],
        ["voices", "list", *a],
        ["voices", "export", str(archive), *a],
        ["voices", "import", str(archive), *b],
        ["voices", "check", *b],
        ["say", "Spoken in the imported voice.", "-o", str(said), "--voice", "Story-Teller", *b])
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("Story-Teller\tbase en_US-joe-medium")
    assert again.returncode == 1  # exists
    assert "Story-Teller\tregistered\tpiper" in listed.stdout
    assert exported.stdout.strip() == f"exported 1 voices to {archive}"
    assert imported.returncode == 0 and imported.stdout.strip() == "Story-Teller\timported"
    assert checked.stdout.strip().endswith("1 registered voices, 0 problems")
    assert spoken.returncode == 0, spoken.stderr
    samples, rate = decode(said.read_bytes())
    assert rate == 22050 and rms(samples) > 0.02
    for wav_file in (tmp_path / "b" / "references").glob("*.wav"):
        wav_file.write_bytes(b"damaged")
    damaged, removed, missing = run_many(tmp_path, ["voices", "check", *b], ["voices", "rm", "Story-Teller", *a],
                                         ["voices", "rm", "Story-Teller", *a])
    assert damaged.returncode == 1 and "Story-Teller: audio file is unreadable" in damaged.stdout
    assert removed.returncode == 0
    assert missing.returncode == 1


def test_compat_ports_serve_a_dialect_alone_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    import httpx

    from tests.conftest import start_server, stop_server

    # --no-warmup: nothing here is timed (the one server of this file; the default voice is not used)
    server = start_server(tmp_path, "--compat-ports", "--no-warmup")
    try:
        query = {"text": "Hello from the old port.", "text_lang": "en", "prompt_lang": "en",
                 "ref_audio_path": "en_US-joe-medium"}
        native = httpx.get("http://127.0.0.1:9880/tts", params=query, timeout=60)
        assert native.status_code == 200 and native.headers["content-type"] == "audio/wav"
        samples, rate = decode(native.content)
        assert rate == 32000 and rms(samples) > 0.02
        other = httpx.post("http://127.0.0.1:9880/v1/audio/speech", timeout=10,
                           json={"model": "tts-1", "voice": "alloy", "input": "Not here."})
        assert other.status_code == 404  # only the GPT-SoVITS dialect lives on 9880
        main = httpx.get(f"{server.url}/tts", params=query, timeout=60)
        assert main.status_code == 200  # and the main port serves it too
        # SIGTERM: uvicorn re-raises the captured SIGTERM once it has shut down gracefully (the compat-port
        # servers with it), so the process ends by it.
        server.process.terminate()
        assert server.process.wait(timeout=20) in (0, -15)
        assert "Application shutdown complete" in server.log.read_text()
    finally:
        stop_server(server)


def test_listening_socket_disables_nagle() -> None:
    import socket

    from voxgate.cli_serve import bind as _bind

    sock = _bind("127.0.0.1", 0)
    try:  # accepted connections inherit it; without it keep-alive responses stalled ~40 ms (measured)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()

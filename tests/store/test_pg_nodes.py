"""Two server processes sharing one PostgreSQL voice store (`--store`), each with its own data folder:
a voice registered through one is listed and spoken by the other within a second, a removal by the
command line reaches both, and the second uses the first's levelling gain and base-voice measurement."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import MEASURE_NOW, Server, pcm16, rms, start_server, stop_server
from tests.postgres import PASSWORD, Postgres

pytestmark = pytest.mark.postgres
VOICE = "en_US-joe-medium"
FLAGS = ("--engines", "piper", "--default-voice", VOICE)
SEEN_WITHIN = 1.0  # seconds for a change on one node to show on the other


def listed(server: Server) -> list[str]:
    return httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["voices"]


def until(condition, timeout: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `condition()` held (polled every 20 ms); fails past `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "not seen in time"
        time.sleep(0.02)
    return time.monotonic() - started


def speak(server: Server, voice: str) -> httpx.Response:
    body = {"model": "tts-1", "voice": voice, "input": "Both nodes speak the same registered voice.",
            "response_format": "pcm"}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)


def bases_measured(server: Server) -> None:
    """Wait for the background base-voice measurement (tests.conftest's wait_for_bases reads a SQLite file,
    which a server on this store has none of)."""
    deadline = time.monotonic() + 180
    while not httpx.get(f"{server.url}/ready", timeout=10).json()["match_bases"]["done"]:
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.5)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def gain_in_log(server: Server) -> str:
    found = re.findall(rf"voice {re.escape(VOICE)} levelled with gain ([\d.]+)", server.log.read_text())
    assert found, server.log.read_text()[-2000:]
    return str(found[-1])


def test_two_nodes_share_voices_removals_and_gains(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    servers: list[Server] = []
    try:
        servers.append(a := start_server(_folder(tmp_path / "a"), "--store", url, *FLAGS, *MEASURE_NOW))
        bases_measured(a)  # its base-voice measurement is in the store: the second node reads it, not measures
        servers.append(b := start_server(_folder(tmp_path / "b"), "--store", url, *FLAGS))
        assert a.data_dir != b.data_dir
        assert "measured base voice" in a.log.read_text() and "measured base voice" not in b.log.read_text()
        # One gain for the default voice, measured by the first node, kept in the store, used by the second.
        with psycopg.connect(url) as conn:
            kept = conn.execute("SELECT gain FROM voxgate_gains WHERE starts_with(key, %s)", (VOICE + "@",)).fetchall()
        assert len(kept) == 1 and gain_in_log(a) == gain_in_log(b) == f"{kept[0][0]:.2f}"
        assert "(from the voice store)" in b.log.read_text()

        said = {"model": "tts-1", "voice": VOICE, "response_format": "wav",
                "input": "A voice registered on one node is heard on every other node, read slowly and clearly."}
        reference = httpx.post(f"{a.url}/v1/audio/speech", json=said, timeout=120).content  # its loaded voice
        created = httpx.post(f"{a.url}/v1/audio/voices", data={"name": "Shared Voice", "language": "en"},
                             files={"audio": ("ref.wav", reference, "audio/wav")}, timeout=120)
        assert created.status_code == 201, created.text
        assert until(lambda: "Shared-Voice" in listed(b)) < SEEN_WITHIN
        described = httpx.get(f"{b.url}/v1/audio/voices/Shared-Voice", timeout=10).json()
        assert described == created.json()
        fetched = httpx.get(f"{b.url}/v1/audio/voices/Shared-Voice/reference", timeout=10)
        assert fetched.status_code == 200 and fetched.content[:4] == b"RIFF"  # copied out of the database
        spoken = speak(b, "Shared-Voice")
        assert spoken.status_code == 200 and rms(pcm16(spoken.content)) > 0.02
        assert len(pcm16(spoken.content)) / 24000 > 1.0  # seconds of speech (the native rate of the API)

        # The command line works on the same store; its removal reaches both servers.
        env = {**os.environ, "VOXGATE_STORE": url}
        removed = subprocess.run([sys.executable, "-m", "voxgate", "voices", "rm", "Shared-Voice", "--data-dir",
                                  str(tmp_path / "cli"), *FLAGS], capture_output=True, text=True, env=env,
                                 timeout=120)
        assert removed.returncode == 0, removed.stderr
        assert until(lambda: "Shared-Voice" not in listed(a) and "Shared-Voice" not in listed(b)) < SEEN_WITHIN
        assert speak(b, "Shared-Voice").status_code == 404
        for text in (removed.stdout, removed.stderr, a.log.read_text(), b.log.read_text(), *a.output, *b.output):
            assert PASSWORD not in text
        assert any("voice store  PostgreSQL postgresql://voxgate@127.0.0.1" in line for line in a.output)
    finally:
        for server in servers:
            stop_server(server)


def test_an_unreachable_store_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://voxgate:{PASSWORD}@127.0.0.1:{port}/voices"
    expected = (f"voxgate: --store postgresql://voxgate@127.0.0.1:{port}/voices: cannot use the database: ",
                "voxgate: --store: unknown store URL scheme sqlite://; give postgresql://")
    for args, start in zip((["voices", "list", "--store", url], ["lexicon", "list", "--store", "sqlite:///x.db"]),
                           expected, strict=True):
        done = subprocess.run([sys.executable, "-m", "voxgate", *args, "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(start) and PASSWORD not in done.stderr, done.stderr

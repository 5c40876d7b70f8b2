"""Issue 12: kill -9 (by PID) while voices are registered, imported (/cache/load) and exported (/cache/save);
after a restart nothing acknowledged is lost and the store is intact."""

from __future__ import annotations

import io
import os
import random
import signal
import sqlite3
import threading
import time
import wave
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.speech import RATE, piper_speech
from voxgate.audio.encoders import encode_all
from voxgate.voices.store import VoiceStore

SEED = 1204
FLAGS = ("--no-warmup",)  # nothing here is timed: no server start warms the default voice it never uses
TEXT = "A clear voice reads these words aloud. It speaks slowly and calmly, so that every sound is heard."


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio = piper_speech(TEXT)[0]
    return (audio / np.abs(audio).max() * 0.8).astype(np.float32)


def register(server: Server, name: str, audio: np.ndarray) -> httpx.Response:
    wav = encode_all(audio, RATE, "wav")
    return httpx.post(f"{server.url}/v1/audio/voices", data={"name": name, "transcript": TEXT},
                      files={"audio": ("ref.wav", wav, "audio/wav")}, timeout=120)


def post(server: Server, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def writers(server: Server, speech: np.ndarray, stop: threading.Event, acked: dict[str, set[str]],
            round_: int) -> list[threading.Thread]:
    def registrations() -> None:
        for i in range(100):
            if stop.is_set():
                return
            name = f"crash-{round_}-{i}"
            try:
                if register(server, name, speech * (0.5 + 0.004 * i)).status_code in (200, 201):
                    acked["voices"].add(name)  # distinct audio each time: a new reference file each time
            except httpx.TransportError:
                return

    def caches() -> None:
        for i in range(200):
            if stop.is_set():
                return
            try:
                if i % 2:
                    name = f"save-{round_}-{i}"
                    answer = post(server, "/cache/save", {"filename": name, "prompt_ids": []})
                    if answer.status_code == 200 and answer.json()["cache_path"]:
                        acked["saves"].add(f"{name}.pt")
                else:
                    answer = post(server, "/cache/load", {"cache_path": "base.pt", "prompt_ids": []})
                    if answer.status_code == 200:
                        acked["voices"].update(answer.json()["loaded_speakers"])
            except httpx.TransportError:
                return

    return [threading.Thread(target=registrations), threading.Thread(target=caches)]


def test_kill_minus_nine_during_registration_import_and_export(tmp_path: Path, speech: np.ndarray) -> None:
    rng = random.Random(SEED)
    acked: dict[str, set[str]] = {"voices": set(), "saves": set()}
    server = start_server(tmp_path, *FLAGS)
    try:
        for name in ("seed-a", "seed-b"):
            assert register(server, name, speech * (0.3 if name == "seed-a" else 0.35)).status_code == 201
            acked["voices"].add(name)
        assert post(server, "/cache/save", {"filename": "base", "prompt_ids": []}).status_code == 200
        for round_ in range(2):
            stop = threading.Event()
            threads = writers(server, speech, stop, acked, round_)
            voices, saves = len(acked["voices"]), len(acked["saves"])
            for thread in threads:
                thread.start()
            # Both writers are under way (each has had a write acknowledged this round; they keep writing):
            # then a random moment among their next writes.
            deadline = time.monotonic() + 120
            while len(acked["voices"]) == voices or len(acked["saves"]) == saves:
                assert time.monotonic() < deadline and all(t.is_alive() for t in threads), acked
                time.sleep(0.02)
            time.sleep(rng.uniform(0.2, 1.5))
            os.kill(server.process.pid, signal.SIGKILL)  # mid-write, by its own PID
            server.process.wait(timeout=10)
            stop.set()
            for thread in threads:
                thread.join(timeout=130)
            server = start_server(tmp_path, *FLAGS)  # the same data folder
            check_acknowledged(server, acked)
    finally:
        stop_server(server)
    data = tmp_path / "data"
    with sqlite3.connect(data / "registry.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = VoiceStore(data)
    try:
        assert store.check() == []  # every voice's reference present, readable and matching its hash
        assert {v.id for v in store.list()} >= acked["voices"]
    finally:
        store.close()
    assert len(acked["voices"]) > 2 and acked["saves"], acked  # the kill really landed among writes


def check_acknowledged(server: Server, acked: dict[str, set[str]]) -> None:
    for voice in sorted(acked["voices"]):
        assert httpx.get(f"{server.url}/v1/audio/voices/{voice}", timeout=10).status_code == 200, voice
        audio = httpx.get(f"{server.url}/v1/audio/voices/{voice}/reference", timeout=10)
        assert audio.status_code == 200, voice
        with wave.open(io.BytesIO(audio.content)) as wav:
            assert wav.getnframes() > wav.getframerate()  # over a second of reference audio
    cache = server.data_dir / "cache" / "cosyvoice"
    for name in sorted(acked["saves"]):
        with zipfile.ZipFile(cache / name) as archive:
            assert archive.testzip() is None and "manifest.json" in archive.namelist()

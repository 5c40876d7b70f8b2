"""The registered-voice store: persistence, dedupe, concurrency, crash safety, export/import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from voxgate.errors import InvalidInput
from voxgate.voices.archive import BadArchive, export_voices, import_voices
from voxgate.voices.store import StoredVoice, VoiceStore, audio_sha256, make_id

RATE = 16_000


def tone(freq: float, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def voice(vid: str, **extra: object) -> StoredVoice:
    return StoredVoice(id=vid, name=vid.title(), language="en", transcript="Hello there.", audio_sha256="",
                       sample_rate=RATE, duration=1.5, **extra)  # type: ignore[arg-type]


def files(store: VoiceStore) -> set[str]:
    return {p.name for p in store.references.iterdir()}


def test_round_trip_across_restart(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    stored, existed = store.add(voice("anna", features={"base_voice": "x", "embedding": [0.1, 0.2]},
                                      meta={"origin": "cosyvoice"}), tone(220))
    assert not existed and stored.audio_sha256 == audio_sha256(tone(220), RATE) and stored.created > 0
    store.set_value("openai_aliases", {"alloy": "anna"})
    store.close()
    reopened = VoiceStore(tmp_path)
    again = reopened.get("anna")
    assert again == stored
    assert again is not None and again.features["embedding"] == [0.1, 0.2] and again.meta["origin"] == "cosyvoice"
    assert reopened.get_value("openai_aliases") == {"alloy": "anna"}
    assert reopened.get_value("missing", 7) == 7
    assert reopened.check() == []
    reopened.close()


def test_same_audio_is_stored_once_and_removed_with_its_last_voice(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    a, _ = store.add(voice("a"), tone(300))
    b, _ = store.add(voice("b"), tone(300))
    assert a.audio_sha256 == b.audio_sha256 and files(store) == {f"{a.audio_sha256}.wav"}
    assert store.remove("a") and files(store) == {f"{a.audio_sha256}.wav"}
    assert store.remove("b") and files(store) == set()
    assert not store.remove("b")
    store.close()


def test_existing_id_is_kept_unless_replaced(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    first, _ = store.add(voice("v"), tone(200))
    kept, existed = store.add(voice("v"), tone(400))
    assert existed and kept == first
    replaced, existed = store.add(voice("v"), tone(400), replace=True)
    assert existed and replaced.audio_sha256 == audio_sha256(tone(400), RATE)
    assert files(store) == {f"{replaced.audio_sha256}.wav"}  # the old audio went with the old version
    store.close()


def test_concurrent_adds_and_removes_stay_consistent(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for i in range(15):
                vid = f"w{worker}-{i}"
                store.add(voice(vid), tone(100 + (worker * 15 + i) % 7 * 50))  # shared audio across threads
                if i % 3:
                    assert store.remove(vid)
        except BaseException as exc:  # collected for the main thread to report
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    kept = {v.id for v in store.list()}
    assert kept == {f"w{w}-{i}" for w in range(8) for i in range(15) if i % 3 == 0}
    assert files(store) == {f"{v.audio_sha256}.wav" for v in store.list()}
    assert store.check() == []
    store.close()


WRITER = """
import sys, numpy as np
from voxgate.voices.store import StoredVoice, VoiceStore
store = VoiceStore(__import__("pathlib").Path(sys.argv[1]))
print("ready", flush=True)
for i in range(100000):
    audio = np.random.default_rng(i).uniform(-0.5, 0.5, 48000 * 20).astype(np.float32)
    store.add(StoredVoice(f"v{i}", "n", None, None, "", 48000, 20.0), audio)
    if i % 2:
        store.remove(f"v{i - 1}")
"""


def test_kill_minus_nine_mid_write_leaves_a_consistent_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 0.8)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        store = VoiceStore(tmp_path)  # opening sweeps leftovers of the interrupted write
        assert store.check() == []
        assert files(store) == {f"{v.audio_sha256}.wav" for v in store.list()}
        assert not any(name.endswith(".tmp") for name in files(store))
        store.close()


def test_check_reports_missing_corrupt_and_altered_audio(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    for vid, freq in (("gone", 200), ("broken", 300), ("altered", 400), ("fine", 500)):
        store.add(voice(vid), tone(freq))
    by_id = {v.id: v for v in store.list()}
    store.audio_path(by_id["gone"].audio_sha256).unlink()
    store.audio_path(by_id["broken"].audio_sha256).write_bytes(b"RIFF garbage")
    altered = store.audio_path(by_id["altered"].audio_sha256)
    data = bytearray(altered.read_bytes())
    data[1000] ^= 0x55
    altered.write_bytes(bytes(data))
    problems = store.check()
    assert len(problems) == 3
    assert any(p.startswith("gone: audio file is missing") for p in problems)
    assert any(p.startswith("broken: audio file is unreadable") for p in problems)
    assert any(p.startswith("altered: audio file does not match") for p in problems)
    store.close()


def test_export_then_import_into_a_fresh_store(tmp_path: Path) -> None:
    source = VoiceStore(tmp_path / "a")
    for vid, freq in (("one", 200), ("two", 300), ("三", 400)):
        source.add(voice(vid, features={"f": freq}), tone(freq))
    archive = tmp_path / "voices.zip"
    assert export_voices(source, archive, ["one", "三"]) == ["one", "三"]
    target = VoiceStore(tmp_path / "b")
    results = import_voices(target, archive)
    assert [(v.id, existed) for v, existed in results] == [("one", False), ("三", False)]
    assert target.get("三") == source.get("三") and target.check() == []
    again = import_voices(target, archive)
    assert [existed for _, existed in again] == [True, True]
    with pytest.raises(InvalidInput):
        export_voices(source, archive, ["nobody"])
    source.close()
    target.close()


def _archive(path: Path, manifest: object, members: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("manifest.json", json.dumps(manifest))
        for name, data in (members or {}).items():
            out.writestr(name, data)
    return path


def test_bad_archives_are_refused_and_add_nothing(tmp_path: Path) -> None:
    source = VoiceStore(tmp_path / "src")
    source.add(voice("good"), tone(250))
    good = source.list()[0]
    wav = source.audio_path(good.audio_sha256).read_bytes()
    entry = good.to_dict()
    target = VoiceStore(tmp_path / "dst")
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello")
    cases = [
        not_zip,
        _archive(tmp_path / "fmt.zip", {"format": "other", "version": 1, "voices": []}),
        _archive(tmp_path / "ver.zip", {"format": "voxgate-voices", "version": 99, "voices": []}),
        _archive(tmp_path / "trav.zip", {"format": "voxgate-voices", "version": 1,
                                         "voices": [{**entry, "audio_sha256": "../../../etc/passwd"}]}),
        _archive(tmp_path / "hash.zip", {"format": "voxgate-voices", "version": 1,
                                         "voices": [{**entry, "id": "evil"}, {**entry, "audio_sha256": "0" * 64}]},
                 {f"references/{good.audio_sha256}.wav": wav, f"references/{'0' * 64}.wav": wav}),
        _archive(tmp_path / "field.zip", {"format": "voxgate-voices", "version": 1, "voices": [{"id": "x"}]}),
        _archive(tmp_path / "id.zip", {"format": "voxgate-voices", "version": 1, "voices": [{**entry, "id": "a/b"}]},
                 {f"references/{good.audio_sha256}.wav": wav}),
    ]
    for case in cases:
        with pytest.raises((BadArchive, InvalidInput)):
            import_voices(target, case)
    assert target.list() == [] and files(target) == set()
    source.close()
    target.close()


def test_ids_from_names() -> None:
    assert make_id("  My  Voice ") == "My-Voice"
    assert make_id("赞助商") == "赞助商"
    assert make_id("abc1234_2025-01-01") == "abc1234_2025-01-01"
    for bad in ("", "   ", "a/b", "..", ".hidden", "x" * 101, "tab\x00", "what?", "a:b"):
        with pytest.raises(InvalidInput):
            make_id(bad)

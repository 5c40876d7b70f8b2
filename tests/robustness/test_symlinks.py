"""Issue 12: no writer of the server follows a symlink planted in the data folder (each writer, one test)."""

from __future__ import annotations

import asyncio
import os
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest

from voxgate.dialects.alltalk.outputs import OutputStore
from voxgate.dialects.stackflow.sinks import FileSink
from voxgate.safefs import UnsafePath, atomic_file, write_atomic
from voxgate.voices.archive import export_voices
from voxgate.voices.store import StoredVoice, VoiceStore, audio_sha256

RATE = 16_000
SECRET = b"outside the data folder: must never change"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the data folder that planted links point at."""
    target = tmp_path / "outside" / "victim.txt"
    target.parent.mkdir()
    target.write_bytes(SECRET)
    return target


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def untouched(outside: Path) -> None:
    assert outside.read_bytes() == SECRET
    assert sorted(p.name for p in outside.parent.iterdir()) == ["victim.txt"]  # nothing new beside it either


def tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def add_voice(store: VoiceStore, vid: str = "v1") -> StoredVoice:
    record = StoredVoice(id=vid, name=vid, language="en", transcript=None, audio_sha256="", sample_rate=RATE,
                         duration=1.0)
    return store.add(record, tone())[0]


def test_atomic_file_replaces_a_link_and_leaves_nothing_on_error(data: Path, outside: Path) -> None:
    target = data / "file.bin"
    target.symlink_to(outside)
    write_atomic(target, b"new", root=data)
    assert not target.is_symlink() and target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_file(data / "other.bin", root=data) as out:
        out.write(b"half")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in data.iterdir()) == ["file.bin"]  # no temporary left, no half file
    untouched(outside)


def test_a_folder_link_out_of_the_root_is_refused(data: Path, outside: Path) -> None:
    (data / "sub").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        write_atomic(data / "sub" / "x.bin", b"escape", root=data)
    untouched(outside)


def test_export_never_writes_through_a_planted_link(data: Path, outside: Path) -> None:
    store = VoiceStore(data)
    add_voice(store)
    cache = data / "cache"
    cache.mkdir()
    dest = cache / "voices.pt"
    (cache / ".voices.pt.tmp").symlink_to(outside)  # the old predictable temporary name
    dest.symlink_to(outside)  # and the destination itself
    assert export_voices(store, dest, root=cache) == ["v1"]
    assert not dest.is_symlink() and zipfile.is_zipfile(dest)
    untouched(outside)
    escape = cache / "escape"
    escape.symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        export_voices(store, escape / "voices.pt", root=cache)
    untouched(outside)
    store.close()


def test_store_replaces_a_planted_reference_link(data: Path, outside: Path) -> None:
    store = VoiceStore(data)
    sha = audio_sha256(tone(), RATE)
    planted = store.audio_path(sha)
    planted.symlink_to(outside)
    add_voice(store)
    assert not planted.is_symlink()
    with wave.open(str(planted)) as wav:
        assert wav.getframerate() == RATE and wav.getnframes() == RATE
    assert store.check() == []
    untouched(outside)
    store.close()


def test_store_refuses_linked_references_folder_or_index(tmp_path: Path, outside: Path) -> None:
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "references").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        VoiceStore(linked)
    index = tmp_path / "index"
    index.mkdir()
    (index / "registry.sqlite").symlink_to(outside)
    with pytest.raises(UnsafePath):
        VoiceStore(index)
    untouched(outside)


def test_alltalk_outputs_replace_a_planted_link(data: Path, outside: Path) -> None:
    store = OutputStore(data / "outputs")
    (data / "outputs").mkdir()
    (data / "outputs" / "speech.wav").symlink_to(outside)
    path = store.write("speech.wav", b"RIFF....WAVE")
    assert path == store.root / "speech.wav" and not path.is_symlink() and path.read_bytes() == b"RIFF....WAVE"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    untouched(outside)


def test_stackflow_file_sink_never_writes_through_a_link(data: Path, outside: Path) -> None:
    sink = FileSink(data / "sf")

    async def play() -> Path:
        playback = sink.open("tts.1", RATE)
        path = sink._files[-1]
        path.with_suffix(".part").symlink_to(outside)  # the old predictable temporary name
        path.symlink_to(outside)  # and the final name, planted while the utterance plays
        await playback.write(np.zeros(RATE // 10, "<i2").tobytes())
        await playback.close()
        return path

    path = asyncio.run(play())
    assert not path.is_symlink()
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == RATE and wav.getnframes() == RATE // 10
    untouched(outside)


def test_kokoro_model_assembly_replaces_planted_links(tmp_path: Path, outside: Path) -> None:
    from voxgate.engines import kokoro

    cache = tmp_path / "kokoro"
    cache.mkdir()
    (cache / kokoro.MODEL_NAME).symlink_to(outside)
    (cache / f"{kokoro.MODEL_NAME}.sha256").symlink_to(outside)
    model = kokoro.assemble_model(cache)
    assert not model.is_symlink() and model.stat().st_size > 1_000_000
    assert not (cache / f"{kokoro.MODEL_NAME}.sha256").is_symlink()
    assert sorted(os.listdir(cache)) == [kokoro.MODEL_NAME, f"{kokoro.MODEL_NAME}.sha256"]
    untouched(outside)


def test_reference_cache_replaces_planted_links_and_refuses_a_linked_folder(data: Path, outside: Path) -> None:
    from voxgate.voices.refcache import ReferenceCache

    cache = ReferenceCache(data / "cache" / "references", within=data)
    sha = "ab" * 32
    (cache.root / f"{sha}.wav").symlink_to(outside)  # planted after the start-up sweep, at both entry names
    (cache.root / f"{sha}.json").symlink_to(outside)
    cache.put(sha, tone(), RATE, {"match": "v1"})
    assert not cache.audio_path(sha).is_symlink() and not (cache.root / f"{sha}.json").is_symlink()
    assert cache.get(sha) == {"match": "v1"} and cache.audio(sha)[1] == RATE
    (cache.root / f"{sha}.json").unlink()
    (cache.root / f"{sha}.json").symlink_to(outside)
    cache.update(sha, {"match": "v2"})
    assert cache.get(sha) == {"match": "v2"}
    untouched(outside)
    linked = data / "linked"
    (linked / "cache").mkdir(parents=True)
    (linked / "cache" / "references").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):  # refused before the start-up sweep could delete anything out there
        ReferenceCache(linked / "cache" / "references", within=linked)
    untouched(outside)


def test_patched_model_cache_replaces_planted_links_and_skips_a_linked_folder(tmp_path: Path, outside: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from voxgate.engines import patched

    base = tmp_path / "cache"
    monkeypatch.setenv("VOXGATE_MODEL_CACHE", str(base))
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"original")
    stat = model.stat()
    made = b"original+patched"
    folder = base / "patched-models"
    folder.mkdir(parents=True)
    planted = folder / f"voice-{stat.st_size}-{stat.st_mtime_ns}-durations-{len(made)}.onnx"
    planted.symlink_to(outside)  # the very name the patched model is stored under
    assert patched.patched_model(model, "durations", lambda p: made) == made
    assert not planted.is_symlink() and planted.read_bytes() == made
    untouched(outside)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.symlink_to(outside.parent, target_is_directory=True)  # the folder itself linked out of the cache
    assert patched.patched_model(model, "durations", lambda p: made) == made  # patched in memory, not stored
    untouched(outside)


def test_a_linked_reference_cache_folder_is_one_clear_line_at_start(tmp_path: Path, outside: Path) -> None:
    """The refusal above reaches the user of `voxgate voices` / `serve` as one line naming the folder and what to
    do (exit 2), not a traceback; nothing out there is touched."""
    import subprocess
    import sys

    data = tmp_path / "data"
    (data / "cache").mkdir(parents=True)
    (data / "cache" / "references").symlink_to(outside.parent, target_is_directory=True)
    run = subprocess.run([sys.executable, "-m", "voxgate", "voices", "--data-dir", str(data), "list"],
                         capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert "reference cache" in lines[0] and "outside" in lines[0] and "--data-dir" in lines[0]
    assert "Traceback" not in run.stderr
    untouched(outside)

"""engines/patched.py: a model is patched once, then read from the disk cache (no onnx import later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxgate.engines import patched


def test_a_model_is_patched_once_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXGATE_MODEL_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"original")
    calls: list[Path] = []

    def patch(path: Path) -> bytes:
        calls.append(path)
        return path.read_bytes() + b"+patched"

    first = patched.patched_model(model, "durations", patch)
    assert first == b"original+patched" and calls == [model]
    second = patched.patched_model(model, "durations", patch)
    assert isinstance(second, str) and Path(second).read_bytes() == b"original+patched" and len(calls) == 1
    assert Path(second).parent == tmp_path / "cache" / "patched-models"
    model.write_bytes(b"changed!!")  # another size: the old patch is not used
    assert patched.patched_model(model, "durations", patch) == b"changed!!+patched" and len(calls) == 2
    assert patched.patched_model(model, "alignments", patch) == b"changed!!+patched" and len(calls) == 3


def test_a_patch_that_gives_the_path_or_an_unwritable_cache_still_loads(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VOXGATE_MODEL_CACHE", str(blocker))  # mkdir under a file fails
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"m")
    assert patched.patched_model(model, "x", lambda p: b"patched") == b"patched"
    assert patched.patched_model(model, "x", lambda p: str(p)) == str(model)  # nothing to patch: the path
    assert not list(tmp_path.glob("**/*.tmp"))


def test_a_model_named_by_its_content_is_patched_once_in_any_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Kokoro's model is joined anew in each data folder (a new file time each time): keyed by its checked hash.
    monkeypatch.setenv("VOXGATE_MODEL_CACHE", str(tmp_path / "cache"))
    calls: list[Path] = []

    def patch(path: Path) -> bytes:
        calls.append(path)
        return path.read_bytes() + b"+patched"

    for folder in ("a", "b"):
        model = tmp_path / folder / "kokoro.onnx"
        model.parent.mkdir()
        model.write_bytes(b"joined")
        made = patched.patched_model(model, "durations", patch, "0123abcd")
        assert (made if isinstance(made, bytes) else Path(made).read_bytes()) == b"joined+patched"
    assert len(calls) == 1  # the second folder's copy was read from the cache
    other = tmp_path / "a" / "kokoro.onnx"
    other.write_bytes(b"joined, other")
    assert patched.patched_model(other, "durations", patch, "4567ef01") == b"joined, other+patched" and len(calls) == 2


def test_a_cached_file_cut_short_is_patched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXGATE_MODEL_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "voice[1].onnx"  # glob characters in a model's name are names, not patterns
    model.write_bytes(b"original")
    calls: list[Path] = []

    def patch(path: Path) -> bytes:
        calls.append(path)
        return path.read_bytes() + b"+patched"

    patched.patched_model(model, "durations", patch)
    (cached,) = (tmp_path / "cache" / "patched-models").glob("*.onnx")
    cached.write_bytes(b"origi")  # a crash or a full disk left part of it
    assert patched.patched_model(model, "durations", patch) == b"original+patched" and len(calls) == 2
    again = patched.patched_model(model, "durations", patch)
    assert Path(again).read_bytes() == b"original+patched" and len(calls) == 2


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXGATE_MODEL_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"m")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(patched.os, "fsync", full_disk)
    assert patched.patched_model(model, "x", lambda p: b"patched") == b"patched"
    assert not list((tmp_path / "cache").glob("**/*.tmp"))
    assert not list((tmp_path / "cache").glob("**/*.onnx"))

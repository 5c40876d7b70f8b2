"""Kokoro-82M engine: the model joined from its PyPI parts, Japanese and English speech, voice blends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import rms
from voxgate.engines.base import EngineParams
from voxgate.engines.kokoro import MODEL_NAME, KokoroEngine, assemble_model, parse_blend
from voxgate.errors import VoiceNotFound

JAPANESE = "こんにちは。今日はとてもいい天気ですね。"
ENGLISH = "Hello there. This sentence is spoken by Kokoro."


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> KokoroEngine:
    return KokoroEngine(cache_dir=tmp_path_factory.mktemp("kokoro-cache"))


def spoken(engine: KokoroEngine, spec: str, text: str, speed: float = 1.0) -> list[np.ndarray]:
    voice = engine.voice_for(spec)
    assert voice is not None
    loaded = engine.load(voice, threads=2)
    try:
        return [p.samples for p in loaded.synthesize(text, EngineParams(speed=speed))]
    finally:
        loaded.close()


def test_voices_are_listed_without_loading_the_model(engine: KokoroEngine) -> None:
    ids = [v.id for v in engine.voices() if v.language == "ja"]
    assert ids == ["kokoro:jf_alpha", "kokoro:jf_gongitsune", "kokoro:jf_nezumi", "kokoro:jf_tebukuro",
                   "kokoro:jm_kumo"]
    assert [v.id.removeprefix("kokoro-zh:") for v in engine.voices() if v.language == "zh"] == \
        [i.removeprefix("kokoro:") for i in ids]  # every style reads Mandarin too (test_mandarin.py)
    voice = engine.voices()[0]
    assert voice.language == "ja" and tuple(voice.languages) == ("ja", "en") and voice.sample_rate == 24000
    assert engine.capabilities().speed_range == (0.5, 2.0)
    assert not engine._sessions


def test_model_parts_are_joined_once_with_the_checksum_checked(tmp_path: Path) -> None:
    model = assemble_model(tmp_path)
    assert model == tmp_path / MODEL_NAME and model.stat().st_size > 90_000_000
    stamp = model.with_name(MODEL_NAME + ".sha256")
    mtime = model.stat().st_mtime_ns
    assert assemble_model(tmp_path) == model and model.stat().st_mtime_ns == mtime  # not joined again
    stamp.write_text("0" * 64)  # a stamp that does not match: the model is joined and checked anew
    assert assemble_model(tmp_path) == model and model.stat().st_mtime_ns != mtime
    assert len(stamp.read_text().strip()) == 64 and stamp.read_text().strip() != "0" * 64
    assert not list(tmp_path.glob("*.part"))


def test_blend_specs() -> None:
    names = ("jf_alpha", "jm_kumo")
    assert parse_blend("jf_alpha*0.7+jm_kumo*0.3", names) == (("jf_alpha", 0.7), ("jm_kumo", 0.3))
    assert parse_blend("jf_alpha*2+jm_kumo*2", names) == (("jf_alpha", 0.5), ("jm_kumo", 0.5))
    assert parse_blend("jf_alpha", names) == (("jf_alpha", 1.0),)
    assert parse_blend("jf_alpha*x", names) is None
    with pytest.raises(VoiceNotFound, match="no voice 'af_bella'"):
        parse_blend("af_bella*0.5+jm_kumo*0.5", names)
    with pytest.raises(VoiceNotFound, match="no positive weight"):
        parse_blend("jf_alpha*0", names)


def test_specs_resolve(engine: KokoroEngine) -> None:
    blend = engine.voice_for("kokoro:jf_alpha*0.7+jm_kumo*0.3")
    assert blend is not None and blend.id == "kokoro:jf_alpha*0.7+jm_kumo*0.3" and blend.engine == "kokoro"
    assert engine.voice_for(blend.id) == blend  # the canonical id resolves to the same voice
    assert engine.voice_for("jm_kumo").id == "kokoro:jm_kumo"
    assert engine.voice_for("en_US-joe-medium") is None
    with pytest.raises(VoiceNotFound):
        engine.voice_for("kokoro:nobody")
    with pytest.raises(VoiceNotFound, match="not a Kokoro voice"):
        engine.voice_for("kokoro:jf_alpha*?")


def test_japanese_speaks_a_sentence_at_a_time(engine: KokoroEngine) -> None:
    pieces = spoken(engine, "kokoro:jf_alpha", JAPANESE)
    assert len(pieces) == 2
    for piece in pieces:
        assert piece.dtype == np.float32 and 0.5 < len(piece) / 24000 < 5.0 and rms(piece) > 0.02
    fast = spoken(engine, "kokoro:jf_alpha", JAPANESE, speed=2.0)
    ratio = sum(map(len, fast)) / sum(map(len, pieces))
    assert 0.45 < ratio < 0.75


def test_english_and_mixed_text_speak(engine: KokoroEngine) -> None:
    english = np.concatenate(spoken(engine, "kokoro:jm_kumo", ENGLISH))
    assert 2.0 < len(english) / 24000 < 7.0 and rms(english) > 0.02
    mixed = np.concatenate(spoken(engine, "kokoro:jf_alpha", "私はAppleが好きです。"))
    assert 1.0 < len(mixed) / 24000 < 5.0 and rms(mixed) > 0.02


def test_a_blend_sits_between_its_voices(engine: KokoroEngine) -> None:
    text = "今日はいい天気です。"
    alpha, kumo = (np.concatenate(spoken(engine, f"kokoro:{v}", text)) for v in ("jf_alpha", "jm_kumo"))
    blend = np.concatenate(spoken(engine, "kokoro:jf_alpha*0.5+jm_kumo*0.5", text))
    assert rms(blend) > 0.02

    def pitch(audio: np.ndarray) -> float:  # median autocorrelation pitch of voiced frames, Hertz
        import parselmouth

        values = parselmouth.Sound(audio.astype(np.float64), 24000).to_pitch().selected_array["frequency"]
        return float(np.median(values[values > 0]))

    low, high = sorted((pitch(alpha), pitch(kumo)))
    assert high > low * 1.3  # a female and a male voice
    assert low * 1.05 < pitch(blend) < high * 0.95


def test_voices_share_one_session_per_thread_count(engine: KokoroEngine) -> None:
    first = engine.load(engine.voice_for("kokoro:jf_alpha"), threads=1)
    second = engine.load(engine.voice_for("kokoro:jm_kumo"), threads=1)
    assert first._kokoro is second._kokoro and engine._sessions[1][1] == 2
    first.close()
    second.close()
    assert 1 not in engine._sessions

"""espeak-ng engine: every language as a voice, variants on demand, real audio, one lock for its state."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.conftest import rms
from voxgate.engines.base import EngineParams
from voxgate.engines.espeak import ESPEAK_LOCK, EspeakEngine
from voxgate.engines.registry import create_engine


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    made = create_engine("espeak")
    assert isinstance(made, EspeakEngine)
    return made


def speak(engine: EspeakEngine, voice_id: str, text: str, speed: float = 1.0) -> tuple[list[np.ndarray], int]:
    voice = engine.voice_for(voice_id)
    assert voice is not None, voice_id
    loaded = engine.load(voice, threads=1)
    return [p.samples for p in loaded.synthesize(text, EngineParams(speed=speed))], loaded.sample_rate


def test_every_language_is_a_voice(engine: EspeakEngine) -> None:
    voices = {v.id: v for v in engine.voices()}
    assert len(voices) > 100
    assert voices["espeak:cmn"].language == "zh" and voices["espeak:yue"].language == "yue"
    assert voices["espeak:ko"].language == "ko" and voices["espeak:en-us"].language == "en-US"
    assert all(v.engine == "espeak" and v.sample_rate == 22050 for v in voices.values())
    assert {"zh", "yue", "ja", "ko", "en-US", "fr-FR", "de", "ru", "ar", "hi"} <= set(engine.capabilities().languages)
    assert "f3" in engine.variants() and "klatt" in engine.variants()


def test_specs_resolve_variants_and_tags(engine: EspeakEngine) -> None:
    assert engine.voice_for("espeak:zh").id == "espeak:cmn"  # the BCP-47 tag finds espeak's name
    variant = engine.voice_for("espeak:en-us+f3")
    assert variant is not None and variant.id == "espeak:en-us+f3" and variant.language == "en-US"
    assert engine.voice_for("espeak:en-us+nobody") is None
    assert engine.voice_for("espeak:tlh") is None
    assert engine.voice_for("en_US-joe-medium") is None


@pytest.mark.parametrize(("voice", "text"), [
    ("espeak:cmn", "你好，世界。今天天气很好。"),
    ("espeak:ko", "안녕하세요. 만나서 반갑습니다."),
    ("espeak:yue", "你好，今日天氣好好。"),
    ("espeak:ja", "こんにちは。"),
])
def test_chinese_korean_cantonese_japanese_speak(engine: EspeakEngine, voice: str, text: str) -> None:
    pieces, rate = speak(engine, voice, text)
    audio = np.concatenate(pieces)
    assert rate == 22050 and audio.dtype == np.float32
    assert 0.5 < len(audio) / rate < 8.0
    assert rms(audio) > 0.03 and np.abs(audio).max() <= 1.0
    if text.count("。") == 2:
        assert len(pieces) == 2  # one piece per sentence


def test_speed_and_variants_change_the_audio(engine: EspeakEngine) -> None:
    text = "The rain in Spain stays mainly in the plain."
    normal = np.concatenate(speak(engine, "espeak:en-us", text)[0])
    fast = np.concatenate(speak(engine, "espeak:en-us", text, speed=2.0)[0])
    assert 0.4 < len(fast) / len(normal) < 0.65
    female = np.concatenate(speak(engine, "espeak:en-us+f3", text)[0])
    assert len(female) != len(normal) or not np.allclose(female, normal)


def test_threads_share_the_library_without_corrupting_it(engine: EspeakEngine) -> None:
    jobs = [("espeak:cmn", "你好，世界。"), ("espeak:en-us", "Hello there, world."), ("espeak:ko", "안녕하세요.")]
    expected = {voice: np.concatenate(speak(engine, voice, text)[0]) for voice, text in jobs}
    results: dict[str, list[np.ndarray]] = {voice: [] for voice, _ in jobs}

    def run(voice: str, text: str) -> None:
        for _ in range(5):
            results[voice].append(np.concatenate(speak(engine, voice, text)[0]))

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for voice, outputs in results.items():
        assert len(outputs) == 5
        # espeak-ng varies by a few samples run to run; crossed state would mix voices' audio wholesale
        assert all(abs(len(out) - len(expected[voice])) < 0.02 * len(expected[voice]) for out in outputs), voice
        assert all(abs(rms(out) - rms(expected[voice])) < 0.1 * rms(expected[voice]) for out in outputs), voice
    assert not ESPEAK_LOCK.locked()


def test_every_listed_voice_speaks_even_where_its_language_is_no_voice_name(engine: EspeakEngine) -> None:
    """en-gb and fr-fr are language names, not voice names: voices load by their file (gmw/en, roa/fr)."""
    silent = []
    for voice in engine.voices():
        pieces = [p.samples for p in engine.load(voice, threads=1).synthesize("a b c.", EngineParams())]
        if not pieces or rms(np.concatenate(pieces)) < 0.01:
            silent.append(voice.id)
    assert silent == []
    pieces, _ = speak(engine, "espeak:en-gb+f3", "Good morning.")
    assert rms(np.concatenate(pieces)) > 0.02

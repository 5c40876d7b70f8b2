"""Real speech for tests: the bundled Piper voice, and 'other speakers' made by shifting it."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

RATE = 22050  # Hertz of the bundled voice


@functools.cache
def _voice() -> Any:
    """The bundled Piper voice, loaded once for the test process (~0.5 CPU-s a load; a dozen modules speak)."""
    from voxgate.engines.piper import PiperEngine

    engine = PiperEngine()
    return engine.load(engine.voices()[0], threads=1)


def piper_speech(*texts: str) -> list[np.ndarray]:
    """One float32 array per text, spoken by the bundled Piper voice (unnormalised; a new take each call)."""
    from voxgate.engines.base import EngineParams

    voice = _voice()
    return [np.concatenate([p.samples for p in voice.synthesize(text, EngineParams())]) for text in texts]


def other_speaker(text: str, f0_ratio: float, formant_ratio: float) -> np.ndarray:
    """Speech that sounds like someone else: Piper's voice moved in pitch and formants (no second voice ships)."""
    from voxgate.audio.voiceshift import Shift, apply_shift

    speech = piper_speech(text)[0]
    speech = speech / np.abs(speech).max() * 0.8
    return apply_shift(speech, RATE, Shift(f0_ratio, 1.0, formant_ratio, (0.0,) * 48))

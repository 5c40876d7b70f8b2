"""Plain data types shared by the core, the dialects and the scheduler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from voxgate.core.parts import Part


class Segmentation(StrEnum):
    """How text is cut into pieces the engine synthesizes one at a time."""

    FAST_START = "fast_start"  # first clause alone, then sentences grown for efficiency
    SENTENCE = "sentence"  # one sentence per piece
    NONE = "none"  # the whole text as one piece (the engine may still split it)


@dataclass(frozen=True)
class SynthesisRequest:
    """One thing to say, in the terms every dialect converts into."""

    text: str
    voice: str  # voice id, alias or name, resolved by the voice registry
    language: str | None = None  # BCP-47-ish tag; None = the voice's own language
    speed: float = 1.0  # 1.0 = the voice's natural rate; 2.0 = twice as fast
    pitch: float = 0.0  # semitones
    volume: float = 1.0  # linear gain applied after levelling
    sample_rate: int | None = None  # Hertz of the output; None = the engine's own rate
    segmentation: Segmentation = Segmentation.FAST_START
    segments: tuple[str, ...] | None = None  # text already cut by the dialect; overrides `segmentation`
    seed: int | None = None  # for engines that sample; None = engine default
    engine_options: Mapping[str, Any] = field(default_factory=dict)  # engine knobs; absent = default
    parts: tuple[Part, ...] | None = None  # several parts in order, one slot; overrides text (core/parts.py)


@dataclass(frozen=True)
class PcmChunk:
    """A piece of mono float32 audio in [-1, 1] plus where it came from."""

    samples: np.ndarray  # float32, shape (n,)
    rate: int  # Hertz
    index: int = 0  # position of the text segment this audio belongs to (in request.segments when given)
    text: str = ""  # the text segment that produced it

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Pcm:
    """A whole utterance of mono float32 audio."""

    samples: np.ndarray  # float32, shape (n,)
    rate: int  # Hertz

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

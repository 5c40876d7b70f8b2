"""The engine interface: small, blocking, and free of any server concern.

An engine lists its voices and loads one into a `LoadedVoice`; a loaded voice turns text into float32
PCM, one array per sentence or finer piece. Calls block and run on scheduler worker threads, never on
the event loop. Heavy imports happen only inside the adapters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class VoiceInfo:
    """What an engine says about one of its voices."""

    id: str  # stable id, unique across engines, e.g. "en_US-joe-medium" or "en_US-libritts-high@p123"
    name: str  # display name
    engine: str  # engine name, e.g. "piper"
    language: str  # BCP-47-ish tag, e.g. "en-US"
    sample_rate: int  # Hertz of what the engine emits
    model_path: Path | None = None  # the model file, for file-based engines
    speaker: str | None = None  # speaker name inside a multi-speaker model
    speakers: tuple[str, ...] = ()  # every speaker of the model this voice belongs to
    quality: str | None = None  # e.g. "medium"
    extra: Mapping[str, Any] = field(default_factory=dict)
    session_key: str | None = None  # voices with the same key share loaded sessions (a matched voice and its base)

    @property
    def load_key(self) -> str:
        """What loaded sessions are cached under."""
        return self.session_key or self.id


@dataclass(frozen=True)
class EngineParams:
    """Per-call synthesis knobs; None means the voice's default."""

    speed: float = 1.0  # 1.0 = natural rate
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, for routing and for honest capability reports."""

    languages: tuple[str, ...]
    streaming: str = "sentence"  # finest piece synthesize() yields: "sentence", "chunk" or "utterance"
    multi_speaker: bool = False
    reference_voices: bool = False  # can speak in the voice of reference audio (zero-shot cloning)
    speed_range: tuple[float, float] = (0.1, 10.0)  # rates synthesize() honours; the core stretches beyond
    match_base: bool = True  # its voices may be the base a registered voice is shifted from (not robotic ones)
    phonemes: bool = False  # reads `[[ipa]]` blocks in its text as phonemes (engines/phonemes.py)


class LoadedVoice(Protocol):
    """A voice ready to synthesize; called from several worker threads at once (lock inside if unsafe)."""

    sample_rate: int  # Hertz

    def synthesize(self, text: str, params: EngineParams) -> Iterator[np.ndarray]:
        """Yield float32 mono PCM in [-1, 1], unnormalised, one array per sentence or finer piece."""
        ...

    def close(self) -> None:
        """Release the model's memory."""
        ...


class Engine(Protocol):
    """An engine plugin: a catalogue of voices and a way to load them."""

    name: str

    def capabilities(self) -> Capabilities:
        """What this engine can do."""
        ...

    def voices(self) -> list[VoiceInfo]:
        """Every voice this engine can load right now (rescans its sources)."""
        ...

    def load(self, voice: VoiceInfo, threads: int) -> LoadedVoice:
        """Load a voice for one worker; `threads` is the compute threads it may use."""
        ...

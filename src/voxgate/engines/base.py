"""The engine interface: small, blocking, and free of any server concern.

An engine lists its voices (`VoiceInfo`) and loads one into a `LoadedVoice`; a loaded voice turns text
into `Piece`s of float32 PCM, one per sentence or finer, with timings when the engine knows them. Calls
block and run on scheduler worker threads, never on the event loop. Heavy imports happen only inside the
adapters. `VoiceInfo` and `Piece` live in `core.types` (the one module of core an engine may import).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from voxgate.core.types import Output, Piece, Reference, VoiceInfo, as_piece

# Re-exported: scheduling and voices speak of voices and pieces through the engine interface.
__all__ = ["Capabilities", "Engine", "EngineParams", "LoadedVoice", "Output", "Piece", "Reference", "VoiceInfo",
           "as_piece"]


@dataclass(frozen=True)
class EngineParams:
    """Per-call synthesis knobs; None means the voice's default."""

    speed: float = 1.0  # 1.0 = natural rate
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    seed: int | None = None
    # Whether the caller reads the pieces' word timings (SynthesisRequest.timings): False lets an engine skip
    # the work of finding them (Piece.timings is then None); True: as the engine knows them.
    timings: bool = True


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
    # CPU seconds a 1-thread session spends per second of audio, when it is known and steady (None: unknown);
    # the service leaves a busy server's first segment whole when the engine makes it cheaply anyway.
    compute_per_second: float | None = None


class LoadedVoice(Protocol):
    """A voice ready to synthesize; called from several worker threads at once (lock inside if unsafe)."""

    sample_rate: int  # Hertz

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        """Yield float32 mono PCM in [-1, 1], unnormalised, one Piece per sentence or finer; its timings'
        character offsets are into `text`, and are None unless the engine really knows them."""
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

"""A fake engine behind the real Engine interface: deterministic audio, controllable timing, a call log."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from voxgate.core.types import Piece, Timing
from voxgate.engines.base import Capabilities, EngineParams, VoiceInfo

RATE = 16_000  # Hertz


@dataclass
class Log:
    """What the fake engine was asked to do, in order."""

    calls: list[tuple[str, int, str]] = field(default_factory=list)  # (voice id, threads, text)
    pieces: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: threading.Event = field(default_factory=threading.Event)  # texts starting "WAIT" block on it

    def texts(self) -> list[str]:
        with self.lock:
            return [text for _, _, text in self.calls]


class FakeLoaded:
    """Each word becomes 0.1 s of a tone (a piece timed to its word); `piece_seconds` of compute per word."""

    def __init__(self, voice: VoiceInfo, threads: int, log: Log, piece_seconds: float) -> None:
        self.sample_rate = voice.sample_rate
        self._voice, self._threads, self._log, self._piece = voice, threads, log, piece_seconds

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        with self._log.lock:
            self._log.calls.append((self._voice.id, self._threads, text))
        if text.startswith("WAIT"):
            self._log.gate.wait(10)
        if text.startswith("FAIL"):
            raise RuntimeError("engine exploded")
        for word in re.finditer(r"\S+", text):
            time.sleep(self._piece)
            with self._log.lock:
                self._log.pieces += 1
            n = int(self.sample_rate * 0.1 / params.speed)
            tone = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / self.sample_rate)).astype(np.float32)
            yield Piece(tone, self.sample_rate, (Timing(word.start(), word.end(), 0.0, n / self.sample_rate),))

    def close(self) -> None:
        pass


class FakeEngine:
    """Two voices; loads are recorded so tests can see which sessions were used."""

    name = "fake"

    def __init__(self, log: Log | None = None, piece_seconds: float = 0.005) -> None:
        self.log = log or Log()
        self.piece_seconds = piece_seconds

    def capabilities(self) -> Capabilities:
        return Capabilities(languages=("en-US",))

    def voices(self) -> list[VoiceInfo]:
        english = [VoiceInfo(id=v, name=v, engine="fake", language="en-US", sample_rate=RATE) for v in ("a", "b")]
        return [*english, VoiceInfo(id="ja", name="ja", engine="fake", language="ja-JP", sample_rate=2 * RATE)]

    def load(self, voice: VoiceInfo, threads: int) -> FakeLoaded:
        return FakeLoaded(voice, threads, self.log, self.piece_seconds)

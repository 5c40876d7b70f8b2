"""SVOX Pico (py-nanotts): six languages from the Pico language files inside the wheel, 16 kHz.

Voice ids are `pico:<language>`: `pico:en-US`, `pico:en-GB`, `pico:de-DE`, `pico:es-ES`, `pico:fr-FR`,
`pico:it-IT`. Every call sets up a fresh Pico system from those files (a few ms), so nothing is shared
between calls; the extension holds the GIL while it synthesizes, so Pico calls run one at a time. Which
languages routing sends to Pico ahead of espeak-ng is decided by `ROUTED` (measured: see docs/engines.md).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator

import numpy as np

from voxgate.core.types import Piece, estimate_words, offset_timings
from voxgate.engines.base import Capabilities, EngineParams, VoiceInfo

PREFIX = "pico:"
SAMPLE_RATE = 16000  # Hertz
LANGUAGES = ("en-US", "en-GB", "de-DE", "es-ES", "fr-FR", "it-IT")
SPEED_RANGE = (0.2, 5.0)  # what py-nanotts accepts
MAX_CHARS = 600  # Pico's input buffer is finite: longer sentences are cut at spaces
# Languages routing sends to Pico ahead of espeak-ng: lower Whisper WER than espeak-ng on
# bench/data/sentences_*.txt (bench/bench_pico.py; figures in docs/engines.md).
ROUTED = frozenset({"en-US", "en-GB", "de-DE", "es-ES", "fr-FR", "it-IT"})
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_NAMES = {"en-US": "American English", "en-GB": "British English", "de-DE": "German", "es-ES": "Spanish",
          "fr-FR": "French", "it-IT": "Italian"}


def _pieces(text: str) -> Iterator[str]:
    """Sentences, each cut at spaces into pieces of at most MAX_CHARS."""
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        while len(sentence) > MAX_CHARS:
            cut = sentence.rfind(" ", 0, MAX_CHARS)
            cut = cut if cut > 0 else MAX_CHARS
            yield sentence[:cut]
            sentence = sentence[cut:].strip()
        if sentence:
            yield sentence


class PicoLoadedVoice:
    """A Pico language; each sentence is one call into the extension."""

    def __init__(self, voice: VoiceInfo) -> None:
        from py_nanotts import NanoTTS

        self._tts = NanoTTS()
        self._language = str(voice.engine_data.get("pico_language", voice.id.removeprefix(PREFIX)))
        self.sample_rate = SAMPLE_RATE

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        """One float32 array per sentence; `params.speed` is Pico's own rate factor."""
        speed = min(max(params.speed, SPEED_RANGE[0]), SPEED_RANGE[1])
        pos = 0
        for piece in _pieces(text):
            start = text.find(piece, pos)
            pos = start + len(piece) if start >= 0 else pos
            if not any(c.isalnum() for c in piece):
                continue  # only punctuation: Pico says nothing
            pcm = self._tts.speak(piece, voice=self._language, speed=speed)
            audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
            if len(audio):
                # Pico cannot say when a word is spoken: shared out over the sound by length, marked estimated
                timings = offset_timings(estimate_words(piece, audio, self.sample_rate), chars=start) \
                    if start >= 0 and params.timings else None
                yield Piece(audio, self.sample_rate, timings)

    def close(self) -> None:
        """Nothing to free: every call set up and disposed of its own Pico system."""


class PicoEngine:
    """The six Pico languages, one voice each."""

    name = "pico"

    def available(self) -> bool:
        """True when py-nanotts (and so its language files) is installed."""
        return importlib.util.find_spec("py_nanotts") is not None

    def capabilities(self) -> Capabilities:
        """Six languages, a sentence at a time; formant-like, so never a base for registered voices."""
        return Capabilities(languages=LANGUAGES if self.available() else (), streaming="sentence",
                            speed_range=SPEED_RANGE, match_base=False)

    def voices(self) -> list[VoiceInfo]:
        """`pico:<language>` for each language file pair in the wheel."""
        if not self.available():
            return []
        return [VoiceInfo(id=PREFIX + tag, name=f"Pico {_NAMES[tag]}", engine=self.name, language=tag,
                          sample_rate=SAMPLE_RATE, quality="low", routed=tag in ROUTED,
                          engine_data={"pico_language": tag})
                for tag in LANGUAGES]

    def load(self, voice: VoiceInfo, threads: int) -> PicoLoadedVoice:
        """Pico needs no loading ahead; `threads` is irrelevant (it is single-threaded)."""
        return PicoLoadedVoice(voice)

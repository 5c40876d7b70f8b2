"""Wire models of Flash-TTS (`flashtts serve`), with its defaults and enum values, and the pitch/speed mapping."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voxgate.core.types import SynthesisRequest

_LOG = logging.getLogger(__name__)

Level = Literal["very_low", "low", "moderate", "high", "very_high"]
LEVELS: tuple[str, ...] = ("very_low", "low", "moderate", "high", "very_high")
ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

# Spark's five labels as real changes: semitones of pitch shift, and speaking-rate multipliers.
PITCH_SEMITONES: Mapping[str, float] = {"very_low": -6.0, "low": -3.0, "moderate": 0.0, "high": 3.0,
                                        "very_high": 6.0}
SPEED_FACTORS: Mapping[str, float] = {"very_low": 0.6, "low": 0.8, "moderate": 1.0, "high": 1.25,
                                      "very_high": 1.6}
MAX_SEMITONES = 12.0  # the core's pitch range
ENGINES = ("spark", "orpheus", "mega")  # Flash-TTS's engine names: what its clients send as `model`
# Fields of Flash-TTS's OpenAISpeechRequest that OpenAI's speech API does not have.
OWN_FIELDS = frozenset({"pitch", "stream", "temperature", "top_k", "top_p", "repetition_penalty", "max_tokens",
                        "length_threshold", "window_size"})

# Content types exactly as Flash-TTS sends them (opus is Ogg Opus, but labelled audio/opus).
CONTENT_TYPES: Mapping[str, str] = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac",
                                    "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}


def semitones_of_ratio(ratio: float) -> float:
    """A pitch given as a frequency ratio (OpenAI-route float, 1.0 = unchanged) in semitones, within ±12."""
    return max(-MAX_SEMITONES, min(MAX_SEMITONES, 12.0 * math.log2(ratio)))


class Generation(BaseModel):
    """Fields every synthesis route of Flash-TTS shares (sampling knobs are LLM-only: accepted, no-ops)."""

    model_config = ConfigDict(extra="allow")

    temperature: float = 0.9
    """LLM sampling temperature; no-op (Piper has no token sampler)."""
    top_k: int = 50
    """LLM top-k; no-op."""
    top_p: float = 0.95
    """LLM top-p; no-op."""
    repetition_penalty: float = 1.0
    """LLM repetition penalty; no-op."""
    max_tokens: int = 4096
    """LLM token budget per segment; no-op."""
    length_threshold: int = 50
    """Tokens below which the text is one segment; no-op (voxgate's segmenter decides)."""
    window_size: int = 50
    """Tokens per segment window; no-op."""
    stream: bool = False
    """true: audio as it is made, chunked; false: one whole file."""
    response_format: ResponseFormat = "mp3"
    """mp3, opus (Ogg), aac (ADTS), flac, wav, pcm (raw int16 LE mono)."""

    @model_validator(mode="after")
    def _log_unknown(self) -> Generation:
        if self.model_extra:
            _LOG.info("ignoring unknown Flash-TTS fields: %s", ", ".join(sorted(self.model_extra)))
        return self


class Prosody(BaseModel):
    """The pitch/speed pair of /clone_voice and /speak (per tag in /multi_speak)."""

    pitch: Level | None = None
    """very_low … very_high, a real pitch shift (see PITCH_SEMITONES); None = unchanged."""
    speed: Level | None = None
    """very_low … very_high, a real rate change (see SPEED_FACTORS); None = unchanged."""


def synthesis_request(text: str, voice: str, rate: int, pitch: str | None = None,
                      speed: str | None = None) -> SynthesisRequest:
    """The internal request for one voice, with a Flash-TTS pitch/speed level pair."""
    return SynthesisRequest(text=text, voice=voice, speed=SPEED_FACTORS[speed or "moderate"],
                            pitch=PITCH_SEMITONES[pitch or "moderate"], sample_rate=rate)


class CloneRequest(Generation, Prosody):
    """POST /clone_voice form (files `reference_audio_file` and `latent_file` travel beside it)."""

    text: str
    """The text to speak."""
    reference_audio: str | None = None
    """Reference audio as an http(s) URL or base64; `reference_audio_file` wins when both are sent."""
    reference_text: str | None = None
    """Transcript of the reference audio (kept with the temporary voice)."""


class SpeakRequest(Generation, Prosody):
    """POST /speak JSON body."""

    text: str
    """The text to speak."""
    name: str | None = None
    """The role (any voice of the registry); required in practice."""


class MultiSpeakRequest(Generation):
    """POST /multi_speak JSON body: `text` with <role:NAME,pitch:P,speed:S> tags."""

    text: str
    """The script; text before the first tag is spoken in the default voice."""


class SpeechRequest(Generation):
    """POST /v1/audio/speech as Flash-TTS takes it (its OpenAISpeechRequest); OpenAI's shape of the path is the
    OpenAI dialect's (`Flash.claims` tells them apart)."""

    model: str = Field(min_length=1)
    """A Flash-TTS engine name (spark, orpheus, mega) or a model name the OpenAI route accepts."""
    input: str = Field(min_length=1)
    """The text to speak."""
    voice: str = Field(min_length=1)
    """A role (any voice of the registry; female/male are the built-in roles), or reference audio as an http(s)
    URL, a data: URI or base64, spoken through the reference cache."""
    pitch: float = Field(1.0, ge=0.25, le=4.0)
    """Pitch as a frequency ratio (1.0 unchanged, 2.0 an octave up), at most ±12 semitones."""
    speed: float = Field(1.0, ge=0.25, le=4.0)
    """Speaking rate, 0.25 to 4.0."""
    stream: bool = True
    """true (this route's default, unlike the others): audio as it is made, chunked; false: one whole file."""
    normalize: bool = True
    """voxgate: false speaks the text as written (as on OpenAI's shape of the path)."""

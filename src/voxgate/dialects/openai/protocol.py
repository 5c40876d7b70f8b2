"""Wire models of OpenAI's speech API, in the order of OpenAI's API reference."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voxgate.core.types import SynthesisRequest

_LOG = logging.getLogger(__name__)

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
PCM_RATE = 24_000  # OpenAI documents `pcm` as raw 24 kHz 16-bit mono little-endian; we use it for all formats


class VoiceId(BaseModel):
    """A voice given as an object, as newer OpenAI clients send custom voices."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)


class SpeechRequest(BaseModel):
    """POST /v1/audio/speech body: OpenAI's fields and voxgate's `normalize`. (Flash-TTS's shape of the path,
    with pitch, stream or reference audio, is the Flash dialect's: dialects/compose.py asks it first.)"""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    """tts-1, tts-1-hd, gpt-4o-mini-tts, or an installed voice id (then it is the voice)."""
    input: str = Field(min_length=1)
    """The text to speak, at most 4096 characters."""
    voice: str | VoiceId
    """An OpenAI voice name (mapped by the alias table), an installed voice id, or {"id": ...}."""
    instructions: str | None = None
    """Style instructions; accepted, but Piper voices cannot follow them."""
    response_format: ResponseFormat = "mp3"
    """Container and codec of the audio."""
    speed: float = Field(1.0, ge=0.25, le=4.0)
    """Speaking rate, 0.25 to 4.0."""
    stream_format: Literal["audio", "sse"] = "audio"
    """`audio`: the file, chunked; `sse`: speech.audio.delta events with base64 audio."""
    normalize: bool = True
    """voxgate: false speaks the text as written (no numbers, dates, symbols or markdown read out)."""

    @field_validator("speed", mode="before")
    @classmethod
    def _int_speed(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _log_unknown(self) -> SpeechRequest:
        if self.model_extra:
            _LOG.info("ignoring unknown speech fields: %s", ", ".join(sorted(self.model_extra)))
        return self

    @property
    def voice_name(self) -> str:
        """The voice as a plain name."""
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice

    def to_request(self, voice: str) -> SynthesisRequest:
        """The internal request; `voice` is the resolved voice id."""
        return SynthesisRequest(text=self.input, voice=voice, speed=self.speed, sample_rate=PCM_RATE,
                                normalize=self.normalize)

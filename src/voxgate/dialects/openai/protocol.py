"""Wire models of OpenAI's speech API, in the order of OpenAI's API reference."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voxgate.audio.encoders import PCM16_FORMATS
from voxgate.core.types import SynthesisRequest

_LOG = logging.getLogger(__name__)

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
MAX_SEMITONES = 12.0  # the core's pitch range
PCM_RATE = 24_000  # OpenAI documents `pcm` as raw 24 kHz 16-bit mono little-endian; we use it for all formats


class VoiceId(BaseModel):
    """A voice given as an object, as newer OpenAI clients send custom voices."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)


class SpeechRequest(BaseModel):
    """POST /v1/audio/speech body: OpenAI's fields and voxgate's `normalize`, `timestamps` and `pitch`.
    (Flash-TTS's shape of the path, with pitch, stream or reference audio and no SSE, is the Flash dialect's:
    dialects/compose.py asks it first; voxgate's web page sends pitch with SSE read-along, which only this
    dialect streams.)"""

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
    timestamps: bool = False
    """voxgate: with stream_format sse, also send a speech.word event per word (docs/timestamps.md)."""
    pitch: float = Field(1.0, ge=0.25, le=4.0)
    """voxgate (as Flash-TTS): pitch as a frequency ratio (1.0 unchanged, 2.0 an octave up), at most ±12 semitones."""

    @field_validator("speed", "pitch", mode="before")
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
        semitones = max(-MAX_SEMITONES, min(MAX_SEMITONES, 12.0 * math.log2(self.pitch)))
        timed = self.timestamps and self.stream_format == "sse"  # word events need the PCM's timings
        return SynthesisRequest(text=self.input, voice=voice, speed=self.speed, pitch=semitones,
                                sample_rate=PCM_RATE, normalize=self.normalize,
                                output=None if timed else self.response_format,  # an upstream's bytes pass through
                                timings=timed, int16_chunks=self.response_format in PCM16_FORMATS)


# -- Kokoro-FastAPI's POST /dev/captioned_speech (its api/src/structures/schemas.py), in its field order --

KOKORO_AUDIO_FORMATS = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                        "wav": "audio/wav", "pcm": "audio/pcm"}  # its `audio_format` strings


class NormalizationOptions(BaseModel):
    """Kokoro-FastAPI's normalisation switches; only `normalize` changes anything here."""

    model_config = ConfigDict(extra="allow")

    normalize: bool = True
    """false speaks the text as written (voxgate's normalize: false)."""
    unit_normalization: bool = False
    """Accepted; voxgate's normaliser reads units whenever `normalize` is on."""
    url_normalization: bool = True
    """Accepted; as above for URLs."""
    email_normalization: bool = True
    """Accepted; as above for e-mail addresses."""
    optional_pluralization_normalization: bool = True
    """Accepted; as above for "(s)"."""
    phone_normalization: bool = True
    """Accepted; as above for phone numbers."""
    replace_remaining_symbols: bool = True
    """Accepted; as above for symbols."""


class VoiceAlias(BaseModel):
    """A voice alias's target with its own pace."""

    voice: str
    rate: float | None = Field(None, ge=0.25, le=4.0)


class CaptionedSpeechRequest(BaseModel):
    """POST /dev/captioned_speech body: Kokoro-FastAPI's fields, with its names, defaults and coercion."""

    model_config = ConfigDict(extra="allow")

    model: str = "kokoro"
    """Any name: Kokoro-FastAPI does not check it here either."""
    input: str
    """The text to speak; timestamps name its words as written."""
    voice: str = "af_heart"
    """A voice id or alias, or a Kokoro-FastAPI name or blend (the kokoro_voice_aliases table)."""
    response_format: ResponseFormat = "mp3"
    """Container and codec of the audio."""
    speed: float = Field(1.0, ge=0.25, le=4.0)
    """Speaking rate, 0.25 to 4.0."""
    stream: bool = True
    """true: one JSON object per line as audio is made; false: one JSON object."""
    return_timestamps: bool = True
    """false: `timestamps` is [] in each line (streaming) or null (whole)."""
    return_download_link: bool = False
    """Accepted and ignored: voxgate keeps no download files for this route."""
    lang_code: str | None = None
    """Accepted and ignored: the voice's language and script routing decide."""
    volume_multiplier: float | None = 1.0
    """Linear gain on the levelled audio."""
    normalization_options: NormalizationOptions | None = Field(default_factory=NormalizationOptions)
    """Only `normalize` is read."""
    allow_voice_tags: bool = False
    """Accepted; [voice:name] tags are not read (spoken as written)."""
    ssml: bool = False
    """Accepted; voxgate reads SSML input (<speak>...) whatever this says (docs/ssml.md)."""
    voice_aliases: dict[str, str | VoiceAlias] | None = None
    """Short names for voices, matched without regard to case; a {voice, rate} target also sets the pace."""

    @model_validator(mode="after")
    def _log_unknown(self) -> CaptionedSpeechRequest:
        if self.model_extra:
            _LOG.info("ignoring unknown captioned_speech fields: %s", ", ".join(sorted(self.model_extra)))
        return self

    def aliased(self) -> tuple[str, float]:
        """The voice after `voice_aliases`, and the speed with the alias's rate."""
        for name, target in (self.voice_aliases or {}).items():
            if name.strip().lower() == self.voice.strip().lower():
                if isinstance(target, VoiceAlias):
                    return target.voice, min(max(self.speed * (target.rate or 1.0), 0.25), 4.0)
                return target, self.speed
        return self.voice, self.speed

    def to_request(self, voice: str, speed: float) -> SynthesisRequest:
        """The internal request."""
        options = self.normalization_options
        volume = 1.0 if self.volume_multiplier is None else self.volume_multiplier
        return SynthesisRequest(text=self.input, voice=voice, speed=speed, volume=volume, sample_rate=PCM_RATE,
                                normalize=options.normalize if options is not None else True,
                                timings=self.return_timestamps)

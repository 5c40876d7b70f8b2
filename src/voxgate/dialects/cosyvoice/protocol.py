"""Wire models of the CosyVoice streaming server (`shenduldh/CosyVoice2-Lightning` `api/bases.py`), in its order."""

from __future__ import annotations

import logging
import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from voxgate.audio.encoders import get_format, output_rate
from voxgate.core.types import Segmentation, SynthesisRequest
from voxgate.errors import InvalidInput

_LOG = logging.getLogger(__name__)

AUDIO_FORMATS = ("wav", "pcm", "mp3", "opus", "flac", "aac", "m4a")  # what the original's encoder table has
DEFAULT_RATE = 24_000  # Hertz: CosyVoice2's native output rate, the default of every audio request
DEFAULT_CACHE_DIR = "../assets"  # the original's default `cache_dir`; here, the dialect's cache folder
NO_SUCH_SPEAKER = "No such speaker."


class WireModel(BaseModel):
    """Unknown fields are logged, not refused (clients of newer or older versions send more)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> WireModel:
        if self.model_extra:
            _LOG.info("cosyvoice %s: ignoring unknown fields %s", type(self).__name__,
                      ", ".join(sorted(self.model_extra)))
        return self


class RemoveInput(WireModel):
    """POST /remove: the current `{"prompt_ids": [...]}` (empty = all) or the seed doc's `{"prompt_id": "x"}`."""

    prompt_ids: list[str] | None = None
    """Voices to remove; an empty list removes every voice registered through this dialect."""
    prompt_id: str | None = None
    """One voice to remove (the first published version of the API)."""

    @model_validator(mode="after")
    def _one_shape(self) -> RemoveInput:
        if self.prompt_ids is None and self.prompt_id is None:
            raise ValueError("prompt_ids (or prompt_id) is required")
        return self


class SaveCacheInput(WireModel):
    """POST /cache/save."""

    cache_dir: str | None = DEFAULT_CACHE_DIR
    """Folder inside the server's CosyVoice cache folder (the default means that folder itself)."""
    filename: str | None = None
    """File name without extension; `.pt` is appended. Default: `speaker_cache_<hex>`."""
    prompt_ids: list[str]
    """Voices to save; empty = every registered voice."""


class LoadCacheInput(WireModel):
    """POST /cache/load."""

    cache_path: str
    """A file written by /cache/save (or `voxgate voices export`) inside the CosyVoice cache folder."""
    prompt_ids: list[str]
    """Voices to load from it; empty = all of them."""


class CloneInput(WireModel):
    """POST /clone."""

    prompt_audio: str
    """Reference audio: a server-side path (inside the reference folders), an http(s) URL (when enabled),
    or base64 of a file — or, with audio_format "pcm", of raw 16-bit mono PCM at `sample_rate`."""
    prompt_text: str
    """Transcript of the reference (required, may be empty); stored with the voice."""
    prompt_id: str | None = None
    """Id of the new voice; default `<7 hex>_<YYYY-MM-DD>`."""
    loudness: float = 20.0
    """Target loudness the original normalises the reference to; recorded, not needed (output is levelled)."""
    audio_format: str = "wav"
    """Format of base64 `prompt_audio`; only "pcm" changes anything (files are recognised by content)."""
    sample_rate: int = 16_000
    """Hertz of raw "pcm" `prompt_audio`."""

    def voice_id(self) -> str:
        """The requested id, or a fresh `<7 hex>_<YYYY-MM-DD>` one."""
        if self.prompt_id is not None and self.prompt_id.strip():
            return self.prompt_id.strip()
        return f"{uuid.uuid4().hex[:7]}_{date.today().isoformat()}"


class OutputParams(WireModel):
    """What the audio of a /tts answer or WebSocket session looks like, and who speaks it."""

    prompt_id: str
    """Voice id: a cloned prompt_id or any voxgate voice id."""
    audio_format: str = "wav"
    """wav, pcm, mp3, opus, flac, aac or m4a; every message is a complete file of this format."""
    sample_rate: int = DEFAULT_RATE
    """Hertz of the audio (opus files are always 48000 Hz; mp3/aac use the nearest rate they support)."""
    instruct_text: str | None = None
    """Style instruction (CosyVoice2 instruct mode); accepted and logged — Piper voices cannot follow it."""

    @field_validator("instruct_text")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None  # the original treats "" as no instruction

    def check(self) -> int:
        """Validate the format and rate; returns the rate the files will really carry."""
        fmt = self.audio_format.strip().lower()
        if fmt not in AUDIO_FORMATS:
            raise InvalidInput(f"unsupported audio_format {self.audio_format!r}; supported: "
                               f"{', '.join(AUDIO_FORMATS)}", param="audio_format")
        self.audio_format = fmt
        if not 8000 <= self.sample_rate <= 192_000:
            raise InvalidInput(f"sample_rate {self.sample_rate} Hz is outside 8000–192000", param="sample_rate")
        if self.instruct_text:
            _LOG.info("cosyvoice: instruct_text accepted but not followed: %.80r", self.instruct_text)
        return output_rate(get_format(fmt), self.sample_rate)

    def to_request(self, voice: str, text: str = "") -> SynthesisRequest:
        """The internal request; `voice` is the resolved voice id (text is fed later for a stream)."""
        return SynthesisRequest(text=text, voice=voice, sample_rate=self.sample_rate,
                                segmentation=Segmentation.SENTENCE)


class TtsInput(OutputParams):
    """POST /tts: the whole text in, one base64 file out."""

    text: str
    """The text to speak."""


class StreamStart(WireModel):
    """First WebSocket message of a session."""

    req_params: OutputParams


class StreamText(WireModel):
    """Every further WebSocket message of a session."""

    text: str
    """More text (any chunking, may be empty)."""
    done: bool
    """True on the last message of the session."""


def validation_message(exc: ValidationError) -> str:
    """One line naming every offending field, for the WebSocket's `"ValidationError: ..."` messages."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)

"""Wire model of AllTalk v2 `/api/tts-generate`: form fields in the original's order, defaults, checks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxgate.dialects.common import body_model, missing_field

_LOG = logging.getLogger(__name__)

LANGUAGE_CODES = ("auto", "ar", "zh-cn", "zh", "cs", "nl", "en", "fr", "de", "hu", "hi", "it", "ja", "ko", "pl",
                  "pt", "ru", "es", "tr")
VOICE_PATTERN = r'^[^<>"|?*]+$'
NAME_PATTERN = r"^[a-zA-Z0-9_]+$"


def language_tag(code: str) -> str | None:
    """AllTalk's language code as the core's tag; `auto` means the voice's own language (None)."""
    if code == "auto":
        return None
    return "zh" if code == "zh-cn" else code


class FormTypes(BaseModel):
    """The form's typed fields before defaults are merged: FastAPI answers a wrong type with 422, as upstream."""

    model_config = ConfigDict(extra="ignore")

    text_input: str
    text_filtering: str | None = None
    character_voice_gen: str | None = None
    rvccharacter_voice_gen: str | None = None
    rvccharacter_pitch: float | None = None
    narrator_enabled: str | None = None
    narrator_voice_gen: str | None = None
    rvcnarrator_voice_gen: str | None = None
    rvcnarrator_pitch: float | None = None
    text_not_inside: str | None = None
    language: str | None = None
    output_file_name: str | None = None
    output_file_timestamp: bool | None = None
    autoplay: bool | None = None
    autoplay_volume: float | None = None
    streaming: bool = False
    speed: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    pitch: float | None = None


def _description(field: str, limit: int = 2000) -> str:
    return {
        "text_input": f"text_input needs to be {limit} characters or less.",
        "text_filtering": "text_filtering needs to be 'none', 'standard' or 'html'.",
        "character_voice_gen": "character_voice_gen needs to be the name of a valid voice for the loaded TTS engine.",
        "narrator_voice_gen": "narrator_voice_gen needs to be the name of a valid voice for the loaded TTS engine.",
        "narrator_enabled": "narrator_enabled needs to be 'true', 'false' or 'silent'.",
        "text_not_inside": "text_not_inside needs to be 'character', 'narrator' or 'silent'.",
        "language": "language needs to be one of the following: " + ", ".join(LANGUAGE_CODES) + ".",
        "output_file_name": "output_file_name needs to be the name without any special characters or file "
                            "extension, e.g., 'filename' (at most 150 characters).",
        "autoplay_volume": "autoplay_volume needs to be from 0.1 to 1.0.",
        "speed": "speed needs to be between 0.25 and 2.0.",
        "pitch": "pitch needs to be between -10 and 10.",
        "temperature": "temperature needs to be between 0.1 and 1.0.",
        "repetition_penalty": "repetition_penalty needs to be between 1.0 and 20.0.",
    }.get(field, f"{field} is not valid.")


class GenerateParams(BaseModel):
    """The merged request (form over defaults), checked as a whole like the original's JSONInput."""

    text_input: str
    """The text to speak; `alltalk_max_characters` at most."""
    text_filtering: str = Field(pattern="^(none|standard|html)$")
    """none: as sent; standard: keep AllTalk's allowed characters; html: unescape and strip markup first."""
    character_voice_gen: str = Field(pattern=VOICE_PATTERN)
    """The voice of the character (and of everything in standard mode)."""
    rvccharacter_voice_gen: str = "Disabled"
    """RVC model of the character: accepted, not applied (no RVC here)."""
    rvccharacter_pitch: float = 0
    """RVC pitch of the character: accepted, not applied."""
    narrator_enabled: str = Field(pattern="^(true|false|silent)$")
    """true: *narration* and "speech" get their own voices; silent: narration is skipped."""
    narrator_voice_gen: str = Field(pattern=VOICE_PATTERN)
    """The voice of the narrator."""
    rvcnarrator_voice_gen: str = "Disabled"
    """RVC model of the narrator: accepted, not applied."""
    rvcnarrator_pitch: float = 0
    """RVC pitch of the narrator: accepted, not applied."""
    text_not_inside: str = Field(pattern="^(character|narrator|silent)$")
    """Who speaks text outside *…* and "…" in narrator mode."""
    language: str = Field(pattern="^(" + "|".join(LANGUAGE_CODES) + ")$")
    """Language of the text; auto = the voice's own language."""
    output_file_name: str = Field(pattern=NAME_PATTERN, max_length=150)  # room for _combined and a time stamp
    """Base name of the output file."""
    output_file_timestamp: bool = True
    """Append a unique time stamp to the name (else the file is overwritten by the next request)."""
    autoplay: bool = False
    """Play on the server's speakers: accepted, never done (a server has no business making noise)."""
    autoplay_volume: float = Field(0.5, ge=0.1, le=1.0)
    """Volume of autoplay."""
    speed: float = Field(1.0, ge=0.25, le=2.0)
    """Speaking rate: 2.0 = twice as fast."""
    temperature: float = Field(0.75, ge=0.1, le=1.0)
    """Sampling temperature: accepted; Piper has no sampler to apply it to."""
    repetition_penalty: float = Field(10.0, ge=1.0, le=20.0)
    """Repetition penalty: accepted; Piper has no sampler to apply it to."""
    pitch: float = Field(0.0, ge=-10, le=10)
    """Pitch change, one AllTalk step = one semitone (a real pitch shift that keeps the tempo)."""
    streaming: bool = False
    """true: the answer is the audio itself (streamed WAV), not JSON with a file URL."""


class ParamError(Exception):
    """The merged parameters fail the original's checks: 400 {"error": "<field>: <description>\\n…"}."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_form(fields: Mapping[str, Any], defaults: Mapping[str, Any], max_characters: int) -> GenerateParams:
    """Type-check the form (422), merge it over `defaults`, then check the whole set (400)."""
    present = {k: v for k, v in fields.items() if not (isinstance(v, str) and v == "" and k != "text_input")}
    typed = body_model(FormTypes, present)
    unknown = sorted(set(fields) - set(FormTypes.model_fields))
    if unknown:
        _LOG.info("ignoring unknown /api/tts-generate fields: %s", ", ".join(unknown))
    given = typed.model_dump(exclude_none=True)
    merged = {**defaults, **given}
    bad: list[str] = []
    if len(typed.text_input) > max_characters:
        bad.append("text_input")
    try:
        params = GenerateParams.model_validate(merged)
    except ValidationError as exc:
        bad += [str(e["loc"][0]) for e in exc.errors(include_url=False) if e["loc"]]
        params = None
    if bad:
        seen = list(dict.fromkeys(bad))
        raise ParamError("\n".join(f"{f}: {_description(f, max_characters)}" for f in seen))
    assert params is not None
    return params


def missing_form_error(field: str, body_is_json: bool) -> RequestValidationError:
    """FastAPI's 422 for a required form field, with a hint when the client sent JSON instead of a form."""
    msg = "Field required"
    if body_is_json:
        msg += " (send the fields as a form: application/x-www-form-urlencoded or multipart/form-data, not JSON)"
    return missing_field(field, msg)

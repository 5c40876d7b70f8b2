"""`POST /v1/speech`: voxgate's own synthesis route, in the core's terms; with `captions` ("vtt" or "srt") it
answers the audio, its caption file and its timed words in one JSON object (docs/timestamps.md)."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voxgate.audio.encoders import encode_all, get_format, output_rate
from voxgate.core import captions
from voxgate.core.types import SynthesisRequest
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import JSON, json_object, request_body, unless_disconnected
from voxgate.errors import InvalidInput

_LOG = logging.getLogger(__name__)


class SpeechBody(BaseModel):
    """POST /v1/speech body."""

    model_config = ConfigDict(extra="allow", strict=True)

    text: str = Field(min_length=1)
    """What to say (plain text or SSML)."""
    voice: str | None = None
    """A voice id, alias or spec; none: the default voice."""
    language: str | None = None
    """A language tag the text is read in; none: the voice's own, with script routing."""
    speed: float = 1.0
    """1.0 the voice's natural rate, 2.0 twice as fast (0.1–10)."""
    pitch: float = 0.0
    """Semitones (-12–12)."""
    volume: float = Field(1.0, ge=0.0, le=4.0)
    """Linear gain after levelling."""
    format: str = "wav"
    """wav, mp3, opus, aac, flac, ogg, m4a or pcm (raw 16-bit little-endian mono)."""
    sample_rate: int | None = None
    """Hertz of the audio; none: the voice's own rate."""
    normalize: bool = True
    """false speaks the text as written (no numbers, dates or symbols read out)."""
    captions: Literal["vtt", "srt"] | None = None
    """With a caption format the answer is JSON: the audio (base64), the caption file and the timed words."""

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):  # integers are numbers too (1 for 1.0)
            return {k: float(v) if k in ("speed", "pitch", "volume") and type(v) is int else v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _log_unknown(self) -> SpeechBody:
        if self.model_extra:
            _LOG.info("ignoring unknown speech fields: %s", ", ".join(sorted(self.model_extra)))
        return self

    def to_request(self, default_voice: str) -> SynthesisRequest:
        """The internal request (timings asked for when captions are)."""
        return SynthesisRequest(text=self.text, voice=self.voice or default_voice, language=self.language,
                                speed=self.speed, pitch=self.pitch, volume=self.volume, sample_rate=self.sample_rate,
                                normalize=self.normalize, timings=self.captions is not None)


def _parsed(payload: dict[str, Any]) -> SpeechBody:
    try:
        return SpeechBody.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidInput(f"'{param}': {first['msg']}", param=param) from None


def word_json(word: captions.Word) -> dict[str, Any]:
    """A timed word as the native API shows it."""
    shown = {"text": word.text, "start": round(word.start, 3), "end": round(word.end, 3),
             "start_char": word.start_char, "end_char": word.end_char}
    return {**shown, "estimated": True} if word.estimated else shown


# On the native dialect's keyed router (key check, counting, native errors): native/routes.py includes it.
routes = Routes()
NativeDep = Annotated[Dialect, Depends(this_dialect)]  # the native dialect (its module imports this one)


@routes.post("/v1/speech", tags=["native"], openapi_extra=request_body(SpeechBody, JSON))
async def speech(request: Request, dialect: NativeDep) -> Response:
    ctx = dialect.ctx
    body = _parsed(await json_object(request, invalid="the request body is not valid JSON",
                                     not_object="the request body must be a JSON object"))
    try:
        spec = get_format(body.format)
    except InvalidInput as exc:
        exc.param = "format"
        raise
    wanted = body.to_request(ctx.voices.default_voice)
    pcm, timed = await unless_disconnected(request, captions.synthesize(ctx.service, wanted))
    data = await asyncio.to_thread(encode_all, pcm.samples, pcm.rate, spec.name)
    if body.captions is None:
        return Response(data, media_type=spec.content_type,
                        headers={"Content-Disposition": f"attachment; filename=speech.{spec.extension}"})
    return JSONResponse({
        "object": "speech.captioned",
        "audio": base64.b64encode(data).decode("ascii"),
        "format": spec.name,
        "content_type": spec.content_type,
        "sample_rate": output_rate(spec, pcm.rate),
        "duration": round(pcm.duration, 3),
        "captions": captions.caption_file(body.text, timed, body.captions),
        "captions_format": body.captions,
        "captions_content_type": captions.CONTENT_TYPES[body.captions],
        "words": [word_json(w) for w in timed],
    })


__all__ = ["SpeechBody", "routes"]

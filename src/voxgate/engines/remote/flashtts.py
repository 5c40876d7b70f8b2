"""Flash-TTS (`flashtts serve`, port 8000) as an upstream.

Wire (docs/upstreams.md, specs/dialects.md §3): `GET /server_info` gives the roles and the engine's sample
rate (`/audio_roles` the roles alone); `POST /speak` JSON `{text, name, stream, response_format}` answers
audio — with `stream: true` a chunked WAV whose header is written before its size is known; `POST
/add_speaker` (multipart `name`, `audio_file`, `reference_text`) saves reference audio as a role. Errors are
FastAPI's `{"detail": ...}`; a wrong API key is 401 `{"error": "Unauthorized"}`. Spark takes speed only as
five levels; a float speed is mapped onto them as Flash-TTS's own OpenAI route does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voxgate.core.types import Piece
from voxgate.engines.remote import httpwire
from voxgate.engines.remote.base import UpstreamConfig, UpstreamDefaults, UpstreamError, UpstreamRequest, UpstreamVoice
from voxgate.engines.remote.pcmstream import AudioFormatError, WavStream, decode_file

_LOG = logging.getLogger(__name__)
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")  # Flash-TTS's response_format values


def speed_level(speed: float) -> str | None:
    """Flash-TTS's level for a speed factor, as its OpenAI route maps floats; None for 1.0 (the default)."""
    if speed == 1.0:
        return None
    speed = min(max(speed, 0.25), 4.0)
    if speed <= 0.5:
        return "very_low"
    if speed < 1.0:
        return "low"
    if speed < 2.0:
        return "moderate"
    return "high" if speed < 3.0 else "very_high"


class FlashTtsUpstream(UpstreamDefaults):
    """A client of one Flash-TTS server."""

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._stream = config.options.get("stream", "true").lower() not in ("0", "false", "no")
        self._rate: int | None = None  # the engine's rate as /server_info last said it (every format is at it)

    async def voices(self) -> list[UpstreamVoice]:
        try:
            info = await httpwire.request_json(self._http, self.config, "GET", "/server_info", "listing roles")
            roles, rate = info["info"]["roles"], info["info"].get("sample_rate")
        except UpstreamError as exc:
            if exc.status != 404:
                raise
            answer = await httpwire.request_json(self._http, self.config, "GET", "/audio_roles", "listing roles")
            roles, rate = _roles(answer), None
        except (KeyError, TypeError):
            raise httpwire.failed(self.config, "listing roles", 200, "unexpected /server_info answer") from None
        self._rate = int(rate) if rate else None
        return [UpstreamVoice(id=str(r), name=str(r), sample_rate=self._rate) for r in roles]

    def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        return self._speak(request)

    def _body(self, request: UpstreamRequest, fmt: str) -> dict[str, Any]:
        body: dict[str, Any] = {"text": request.text, "name": request.voice, "stream": self._stream,
                                "response_format": fmt}
        level = speed_level(request.speed)
        if level is not None:
            body["speed"] = level
        return body

    async def _speak(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        body = self._body(request, "wav")
        url = httpwire.http_base(self.config) + "/speak"
        async with httpwire.open_stream(self._http, self.config, "POST", url, "synthesis", json=body) as response:
            if self._stream:
                async for piece in httpwire.stream_pieces(self.config, response, WavStream()):
                    yield piece
                return
            data = await httpwire.read_bounded(response, httpwire.MAX_FILE)
            try:
                samples, rate = decode_file(data)
            except AudioFormatError as exc:
                raise httpwire.failed(self.config, "synthesis", response.status_code, str(exc)) from None
            yield Piece(samples, rate)

    # -- passthrough (engines/remote/base.py EncodingKind): the server's own bytes in the client's format --

    def encodes(self, fmt: str, rate: int) -> bool:
        """Every Flash-TTS format, streamed (one container per answer, as the Flash-TTS dialect's streamed
        /speak sends), at the engine's rate as /server_info said it: Flash-TTS encodes every format at its
        engine's rate (Spark 16 kHz), so only a client asking for that rate gets the upstream's bytes. Not with
        `stream=false` (the dialect streams these; a whole file's container differs)."""
        return self._stream and fmt in FORMATS and rate == self._rate

    async def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        url = httpwire.http_base(self.config) + "/speak"
        async for data in httpwire.stream_bytes(self._http, self.config, "POST", url,
                                                lambda exc: exc.status == 422, json=self._body(request, fmt)):
            yield data  # 422: FastAPI refused the body, whose only field that can be wrong is response_format

    async def clone(self, name: str, audio: bytes, transcript: str | None, language: str | None) -> str:
        """POST /add_speaker: the reference saved as a role (Flash-TTS replaces a role of the same name)."""
        fields = {"name": name}
        if transcript:
            fields["reference_text"] = transcript
        answer = await httpwire.request_json(self._http, self.config, "POST", "/add_speaker", "adding a speaker",
                                             data=fields, files={"audio_file": ("reference.wav", audio, "audio/wav")})
        if not isinstance(answer, dict) or not answer.get("success") or not answer.get("role"):
            raise httpwire.failed(self.config, "adding a speaker", 200, f"unexpected answer {answer!r:.80}")
        return str(answer["role"])

    async def health(self) -> bool:
        return await httpwire.answers(self._http, self.config, "/server_info") or \
            await httpwire.answers(self._http, self.config, "/audio_roles")


def _roles(answer: Any) -> list[str]:
    if isinstance(answer, dict) and isinstance(answer.get("roles"), list):
        return [str(r) for r in answer["roles"]]
    raise UpstreamError(f"unexpected /audio_roles answer {answer!r:.80}", status=200)


"""`openai` upstreams: any server of OpenAI's POST /v1/audio/speech (Kokoro-FastAPI, speaches, LocalAI,
openedai-speech, vLLM-Omni, another voxgate).

URL: the API's base, e.g. `http://kokoro-host:8880/v1` (a URL with no path gets `/v1`). Options:
- `model` (default `tts-1`): the `model` field sent;
- `voices`: a comma-separated list of voice names, when the server cannot list them (then GET /models
  only probes that it answers);
- `format`: `pcm` (default; raw 16-bit at `pcm_rate`, OpenAI's 24 kHz) or `wav`; when the server refuses
  `pcm` (a 400/422 that names it), this upstream asks for `wav` from then on;
- `pcm_rate` (default 24000): the rate of the server's `pcm`;
- `language`: the language of its voices when the listing does not say.

Voices are listed from GET /audio/voices (Kokoro-FastAPI: {"voices": [names]}; voxgate: {"data": [{id,
name, language, …}]}), else GET /models (LocalAI, vLLM-Omni: each model id is a voice), else `voices`.
The API key goes as `Authorization: Bearer`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from voxgate.core.types import Piece
from voxgate.engines.remote import httpwire
from voxgate.engines.remote.base import (
    UpstreamConfig,
    UpstreamDefaults,
    UpstreamError,
    UpstreamRequest,
    UpstreamVoice,
)
from voxgate.engines.remote.pcmstream import Int16Decoder, WavStream
from voxgate.engines.remote.wire import OPENAI_PCM_RATE

# Kokoro's voice names: the first letter is the language, the second the gender (af_bella: American female).
_KOKORO = re.compile(r"^([abjzefhip])([fm])_[a-z0-9]+$")
_KOKORO_LANGUAGES = {"a": "en-US", "b": "en-GB", "j": "ja", "z": "zh", "e": "es", "f": "fr", "h": "hi",
                     "i": "it", "p": "pt-BR"}
_MODELS_NOT_VOICES = {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1"}
PASSED_FORMATS = ("mp3", "opus", "aac", "flac", "wav")  # OpenAI's response_format files (pcm: see encodes)


class OpenAIUpstream(UpstreamDefaults):
    """A client of one OpenAI-speech server."""

    no_clone = "an OpenAI-speech server has no call to register a voice"

    speed_range = (0.25, 4.0)
    sample_rate = OPENAI_PCM_RATE

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.prefix = "" if urlsplit(config.url).path else "/v1"  # a URL with no path gets /v1
        self.model = config.options.get("model", "tts-1")
        self.format = config.options.get("format", "pcm").lower()
        if self.format not in ("pcm", "wav"):
            raise UpstreamError(f"format must be pcm or wav (got {self.format!r})", upstream=config.name)
        self.pcm_rate = int(config.options.get("pcm_rate", OPENAI_PCM_RATE))

    async def _get_json(self, path: str) -> Any:
        return await httpwire.request_json(self.http, self.config, "GET", self.prefix + path, f"GET {path}")

    async def _probe(self) -> None:
        """Raise UpstreamError unless the server answers HTTP at all (GET /models: any answer below 500)."""
        async with httpwire.transport(self.config):
            response = await self.http.get(httpwire.http_base(self.config) + self.prefix + "/models",
                                           headers=httpwire.bearer(self.config), timeout=httpwire.timeout(self.config))
        if response.status_code >= 500:
            raise httpwire.failed(self.config, "GET /models", response.status_code,
                                  httpwire.message_of(response.content, response.reason_phrase))

    def configured_voices(self) -> list[UpstreamVoice] | None:
        """The voices the operator named (`voices`), listed even while the server is down; None: none named."""
        fixed = [v.strip() for v in self.config.options.get("voices", "").split(",") if v.strip()]
        return [_voice(name) for name in fixed] or None

    async def voices(self) -> list[UpstreamVoice]:
        fixed = [v.strip() for v in self.config.options.get("voices", "").split(",") if v.strip()]
        if fixed:
            await self._probe()
            return [_voice(name) for name in fixed]
        try:
            listed = _voices_from(await self._get_json("/audio/voices"))
        except UpstreamError as exc:
            if exc.status is None or exc.status >= 500:
                raise
            listed = None
        if listed is None:
            models = await self._get_json("/models")
            data = models.get("data") if isinstance(models, dict) else None
            listed = [_voice(str(m["id"])) for m in data or [] if isinstance(m, dict) and m.get("id")
                      and str(m["id"]) not in _MODELS_NOT_VOICES]
        return listed

    async def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        url = httpwire.http_base(self.config) + self.prefix + "/audio/speech"
        while True:
            fmt = self.format
            body = {"model": self.model, "input": request.text, "voice": request.voice,
                    "response_format": fmt, "speed": request.speed}
            decoder = Int16Decoder(rate=self.pcm_rate) if fmt == "pcm" else WavStream()
            try:
                async with httpwire.open_stream(self.http, self.config, "POST", url, "synthesis",
                                                json=body) as response:
                    async for piece in httpwire.stream_pieces(self.config, response, decoder):
                        yield piece
                return
            except UpstreamError as exc:
                if fmt == "pcm" and exc.status in (400, 422) and "pcm" in exc.message.lower():
                    self.format = "wav"  # this server has no raw PCM: WAV from now on
                    continue
                raise

    # -- passthrough (engines/remote/base.py EncodingKind): the server's own bytes in the client's format --

    def encodes(self, fmt: str, rate: int) -> bool:
        """OpenAI's formats at the server's rate (`pcm_rate`: a server's files are at the rate of its pcm), so a
        dialect of another rate (Flash-TTS's 16 kHz) gets no file of 24 kHz; raw pcm only while the server has
        not refused it."""
        if rate != self.pcm_rate:
            return False
        return self.format == "pcm" if fmt == "pcm" else fmt in PASSED_FORMATS

    async def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        url = httpwire.http_base(self.config) + self.prefix + "/audio/speech"
        body = {"model": self.model, "input": request.text, "voice": request.voice, "response_format": fmt,
                "speed": request.speed}
        async for data in httpwire.stream_bytes(self.http, self.config, "POST", url,
                                                lambda exc: fmt in exc.message.lower(), json=body):
            yield data  # a 400/422 naming the format: this server has no such format


def _voice(name: str, display: str | None = None, language: str | None = None,
           gender: str | None = None, rate: int | None = None) -> UpstreamVoice:
    kokoro = _KOKORO.match(name)
    if kokoro:
        language = language or _KOKORO_LANGUAGES[kokoro[1]]
        gender = gender or ("female" if kokoro[2] == "f" else "male")
    return UpstreamVoice(id=name, name=display or name, language=language, gender=gender, sample_rate=rate)


def _voices_from(data: Any) -> list[UpstreamVoice] | None:
    """Voices from a /audio/voices answer of any of the known shapes; None when it is none of them."""
    items = None
    if isinstance(data, dict):
        items = data.get("data") if isinstance(data.get("data"), list) else data.get("voices")
    elif isinstance(data, list):
        items = data
    if not isinstance(items, list):
        return None
    voices = []
    for item in items:
        if isinstance(item, str):
            voices.append(_voice(item))
        elif isinstance(item, dict):
            ident = item.get("id") or item.get("voice_id") or item.get("name")
            if ident:
                rate = item.get("sample_rate")
                voices.append(_voice(str(ident), str(item.get("name") or ident), item.get("language") or None,
                                     item.get("gender") or None, rate if isinstance(rate, int) else None))
    return voices


__all__ = ["OpenAIUpstream"]

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

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from voxgate.core.types import Piece
from voxgate.engines.remote.base import NotSupported, UpstreamConfig, UpstreamError, UpstreamRequest, UpstreamVoice
from voxgate.engines.remote.wire import OPENAI_PCM_RATE, PcmAssembler, WavFormatError, WavStream

# Kokoro's voice names: the first letter is the language, the second the gender (af_bella: American female).
_KOKORO = re.compile(r"^([abjzefhip])([fm])_[a-z0-9]+$")
_KOKORO_LANGUAGES = {"a": "en-US", "b": "en-GB", "j": "ja", "z": "zh", "e": "es", "f": "fr", "h": "hi",
                     "i": "it", "p": "pt-BR"}
_MODELS_NOT_VOICES = {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1"}
PASSED_FORMATS = ("mp3", "opus", "aac", "flac", "wav")  # OpenAI's response_format files (pcm: see encodes)
MIN_PIECE = 960  # samples: pieces handed on as they arrive, at least 40 ms each (the last may be shorter)


def error_text(response: httpx.Response, body: bytes) -> str:
    """The message of an error answer: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, GPT-SoVITS's
    {"message", "Exception"}, or the start of the text."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("detail", "message", "Exception"):
            if data.get(key):
                detail = data[key]
                extra = data.get("Exception") if key == "message" and data.get("Exception") else None
                return f"{detail}: {extra}" if extra else str(detail)
    text = body.decode("utf-8", "replace").strip()
    return text[:300] or response.reason_phrase


def http_error(config: UpstreamConfig, exc: httpx.HTTPError) -> UpstreamError:
    """A transport failure as an UpstreamError (no status: the upstream's fault, retried)."""
    if isinstance(exc, httpx.TimeoutException):
        what = "could not connect in time" if isinstance(exc, httpx.ConnectTimeout) else "timed out"
        return UpstreamError(f"{what} ({type(exc).__name__})", upstream=config.name)
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError(f"cannot connect to {config.url}: {exc}", upstream=config.name)
    return UpstreamError(f"{type(exc).__name__}: {exc}", upstream=config.name)


def timeouts(config: UpstreamConfig) -> httpx.Timeout:
    return httpx.Timeout(config.timeout, connect=config.connect_timeout)


class OpenAIUpstream:
    """A client of one OpenAI-speech server."""

    speed_range = (0.25, 4.0)
    sample_rate = OPENAI_PCM_RATE

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        base = config.url if urlsplit(config.url).path else config.url + "/v1"
        self.base = base.rstrip("/")
        self.model = config.options.get("model", "tts-1")
        self.format = config.options.get("format", "pcm").lower()
        if self.format not in ("pcm", "wav"):
            raise UpstreamError(f"format must be pcm or wav (got {self.format!r})", upstream=config.name)
        self.pcm_rate = int(config.options.get("pcm_rate", OPENAI_PCM_RATE))
        self.headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    async def _get_json(self, path: str) -> Any:
        try:
            response = await self.http.get(self.base + path, headers=self.headers, timeout=timeouts(self.config))
        except httpx.HTTPError as exc:
            raise http_error(self.config, exc) from exc
        if response.status_code >= 400:
            raise UpstreamError(f"GET {path}: {response.status_code} {error_text(response, response.content)}",
                                upstream=self.config.name, status=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"GET {path}: not JSON", upstream=self.config.name) from None

    async def _probe(self) -> None:
        """Raise UpstreamError unless the server answers HTTP at all (GET /models: any answer below 500)."""
        try:
            response = await self.http.get(self.base + "/models", headers=self.headers, timeout=timeouts(self.config))
        except httpx.HTTPError as exc:
            raise http_error(self.config, exc) from exc
        if response.status_code >= 500:
            raise UpstreamError(f"GET /models: {response.status_code}", upstream=self.config.name,
                                status=response.status_code)

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
        fmt = self.format
        while True:
            body = {"model": self.model, "input": request.text, "voice": request.voice,
                    "response_format": fmt, "speed": request.speed}
            try:
                async with self.http.stream("POST", self.base + "/audio/speech", json=body, headers=self.headers,
                                            timeout=timeouts(self.config)) as response:
                    if response.status_code >= 400:
                        text = error_text(response, await response.aread())
                        if fmt == "pcm" and response.status_code in (400, 422) and "pcm" in text.lower():
                            self.format = fmt = "wav"  # this server has no raw PCM: WAV from now on
                            continue
                        raise UpstreamError(f"{response.status_code} {text}", upstream=self.config.name,
                                            status=response.status_code)
                    decoder: PcmAssembler | WavStream = (PcmAssembler(self.pcm_rate, 1, MIN_PIECE) if fmt == "pcm"
                                                         else WavStream(MIN_PIECE))
                    try:
                        async for data in response.aiter_bytes():
                            piece = decoder.feed(data)
                            if piece is not None:
                                yield piece
                        piece = decoder.finish()
                    except WavFormatError as exc:
                        raise UpstreamError(f"its audio is not 16-bit WAV: {exc}", upstream=self.config.name) from None
                    if piece is not None:
                        yield piece
                    return
            except httpx.HTTPError as exc:
                raise http_error(self.config, exc) from exc

    async def clone(self, name: str, audio: bytes, transcript: str | None, language: str | None) -> str:
        raise NotSupported("an OpenAI-speech server has no call to register a voice", upstream=self.config.name)

    async def health(self) -> bool:
        try:
            await self.voices()
        except UpstreamError:
            return False
        return True

    async def aclose(self) -> None:
        return None

    # -- passthrough (engines/remote/base.py EncodingKind): the server's own bytes in the client's format --

    def encodes(self, fmt: str, rate: int) -> bool:
        """OpenAI's formats: raw pcm only at the server's `pcm_rate` (and while it has not refused pcm)."""
        if fmt == "pcm":
            return self.format == "pcm" and rate == self.pcm_rate
        return fmt in PASSED_FORMATS

    async def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        body = {"model": self.model, "input": request.text, "voice": request.voice, "response_format": fmt,
                "speed": request.speed}
        try:
            async with self.http.stream("POST", self.base + "/audio/speech", json=body, headers=self.headers,
                                        timeout=timeouts(self.config)) as response:
                if response.status_code >= 400:
                    text = error_text(response, await response.aread())
                    if response.status_code in (400, 422) and fmt in text.lower():
                        raise NotSupported(f"{response.status_code} {text}", upstream=self.config.name,
                                           status=response.status_code)
                    raise UpstreamError(f"{response.status_code} {text}", upstream=self.config.name,
                                        status=response.status_code)
                async for data in response.aiter_bytes():
                    yield data
        except httpx.HTTPError as exc:
            raise http_error(self.config, exc) from exc


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


__all__ = ["OpenAIUpstream", "error_text", "http_error", "timeouts"]

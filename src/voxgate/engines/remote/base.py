"""Upstream TTS servers as engines: the small interface every upstream kind implements.

An upstream is a TTS server the operator runs elsewhere (GPT-SoVITS, CosyVoice, Flash-TTS, AllTalk, any
OpenAI-compatible server, a Wyoming server, another voxgate) and names on the command line
(`--upstream NAME=KIND+URL`). Each kind speaks that server's own wire format; the framework around the
kinds (`engines/remote/`: configuration, the backend that routes jobs to them, retries, circuit breaker,
fallback, metrics) is the same for all of them. Kinds are async (they run on the event loop and only
wait on sockets); they never decode or resample beyond turning the upstream's audio into float32 Pieces.

Kinds are registered by import path in `KINDS`, like engines in `engines/registry.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from voxgate.core.types import Piece
from voxgate.errors import VoxgateError

KINDS: dict[str, str] = {
    "openai": "voxgate.engines.remote.openai:OpenAIUpstream",
    "gptsovits": "voxgate.engines.remote.gptsovits:GptSovitsUpstream",
    "wyoming": "voxgate.engines.remote.wyoming:WyomingUpstream",
    "cosyvoice": "voxgate.engines.remote.cosyvoice:CosyVoiceUpstream",
    "flashtts": "voxgate.engines.remote.flashtts:FlashTtsUpstream",
    "alltalk": "voxgate.engines.remote.alltalk:AllTalkUpstream",
}


class UpstreamError(VoxgateError):
    """An upstream failed: refused, timed out, answered an error, or sent audio that does not decode.

    `sent` is True once any audio reached the caller (then the request must not be retried)."""

    def __init__(self, message: str, *, upstream: str = "", status: int | None = None, sent: bool = False) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.status = status  # the upstream's HTTP status, when it answered one
        self.sent = sent


class NotSupported(UpstreamError):
    """The upstream kind cannot do this (e.g. clone a voice)."""


@dataclass(frozen=True)
class UpstreamConfig:
    """One operator-configured upstream (never built from a client's request)."""

    name: str  # voxgate's name for it: its voices are listed as "NAME:voice"
    kind: str  # a key of KINDS
    url: str  # base URL: http(s)://host:port[/prefix], ws(s)://host:port, tcp://host:port
    api_key: str | None = None  # sent the way the kind's server expects (Bearer for openai)
    timeout: float = 30.0  # seconds: the longest wait for the next bytes of an answer (read timeout)
    connect_timeout: float = 5.0  # seconds to open a connection
    concurrency: int = 4  # requests in flight to it at once; more wait in voxgate's queue
    options: Mapping[str, str] = field(default_factory=dict)  # kind-specific extras (e.g. model=tts-1)
    # Added by the framework (engines/remote/backend.py reads them; kinds may ignore them):
    retries: int = 1  # further attempts of a request that failed before any of its audio was sent
    breaker_failures: int = 3  # consecutive failures that open the circuit breaker
    breaker_cooldown: float = 30.0  # seconds the breaker stays open before one request may probe
    fallback: bool | None = None  # speak with a local voice when it fails before any audio (None: --upstream-fallback)


@dataclass(frozen=True)
class UpstreamVoice:
    """A voice as the upstream lists it."""

    id: str  # the upstream's own name for it (speaker id, voice name, role name)
    name: str  # display name
    language: str | None = None  # BCP-47-ish when the upstream says
    gender: str | None = None
    sample_rate: int | None = None  # Hertz, when the upstream says


@dataclass(frozen=True)
class UpstreamRequest:
    """One segment of text to speak on an upstream."""

    text: str
    voice: str  # an UpstreamVoice.id
    speed: float = 1.0
    language: str | None = None  # the language voxgate routed the text to, when known


class UpstreamKind(Protocol):
    """A client of one upstream server. Built as `Kind(config, http)` where `http` is a shared
    `httpx.AsyncClient` (kinds that speak WebSocket or TCP open their own connections, with the config's
    timeouts)."""

    config: UpstreamConfig

    async def voices(self) -> list[UpstreamVoice]:
        """Every voice the upstream offers now. Raises UpstreamError."""
        ...

    def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        """Its audio as float32 mono Pieces, in order, as they arrive (stream when the upstream streams).
        Raises UpstreamError from the iterator; closing the iterator early closes the upstream request."""
        ...

    async def clone(self, name: str, audio: bytes, transcript: str | None, language: str | None) -> str:
        """Register reference audio (a WAV file's bytes) as a new upstream voice; its UpstreamVoice.id.
        Raises NotSupported when the kind cannot clone."""
        ...

    async def health(self) -> bool:
        """True when the upstream answers now (a cheap call)."""
        ...

    async def aclose(self) -> None:
        """Close connections the kind opened itself."""
        ...

    # Optional (read with getattr; engines/remote/backend.py): a kind whose upstream can send its audio in a
    # client's format has `encodes(fmt, rate) -> bool` and `encoded(request, fmt) -> AsyncIterator[bytes]`
    # (the upstream's own bytes in `fmt`, passed through to the client untouched; NotSupported before any
    # bytes when the upstream refuses the format, then PCM is asked for). See EncodingKind.

class UpstreamDefaults:
    """Defaults a kind may inherit: health() is a voice listing that succeeds, aclose() closes nothing (the
    HTTP connections belong to the shared client), clone() is NotSupported with the kind's `no_clone` reason."""

    config: UpstreamConfig
    no_clone = "this kind of upstream has no call to register a voice"

    async def clone(self, name: str, audio: bytes, transcript: str | None, language: str | None) -> str:
        raise NotSupported(self.no_clone, upstream=self.config.name)

    async def voices(self) -> list[UpstreamVoice]:
        raise NotImplementedError

    async def health(self) -> bool:
        try:
            await self.voices()
        except UpstreamError:
            return False
        return True

    async def aclose(self) -> None:
        return None


class EncodingKind(Protocol):
    """The optional methods of a kind that can pass its upstream's own bytes through (docs/upstreams.md)."""

    def encodes(self, fmt: str, rate: int) -> bool:
        """Whether the upstream can be asked for format `fmt` (an audio/encoders FORMATS name) at `rate` Hertz
        (for raw pcm; a file format says its own rate)."""
        ...

    def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        """The upstream's answer in `fmt`, its bytes as they arrive. Raises UpstreamError (NotSupported, with
        nothing yielded, when the upstream refuses the format)."""
        ...


__all__ = ["KINDS", "EncodingKind", "NotSupported", "UpstreamConfig", "UpstreamDefaults", "UpstreamError",
           "UpstreamKind",
           "UpstreamRequest", "UpstreamVoice"]

"""`wyoming` upstreams: a Wyoming text-to-speech server (wyoming-piper, another voxgate, …) at tcp://host:port.

Voices come from `describe` → `info` (each TTS program's voices; a multi-speaker voice is listed once per
speaker as `voice@speaker`). A request opens its own connection (closed when the request ends, which is
how a Wyoming server learns its client left) and sends `synthesize`, or — when the server says
`supports_synthesize_streaming` and the option `streaming` is not 0 — `synthesize-start`, the text as one
`synthesize-chunk`, and `synthesize-stop`. The audio comes as `audio-start`, `audio-chunk`s and
`audio-stop` (streaming servers may send several audio-start/stop pairs, one per sentence, then
`synthesize-stopped`). An `error` event fails the request. Options: `streaming` (1 or 0), `language`
(the voices' language when `info` does not say), `voices` (comma-separated names or fnmatch patterns: only
these are listed; wyoming-piper lists its whole download catalogue, ~2700 voices and speakers, and
downloads a voice when it is first asked for one it does not have).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import AsyncIterable, AsyncIterator
from urllib.parse import urlsplit

import httpx
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

from voxgate.core.types import Piece
from voxgate.engines.remote.base import UpstreamConfig, UpstreamDefaults, UpstreamError, UpstreamRequest, UpstreamVoice
from voxgate.engines.remote.pcmstream import Int16Decoder
from voxgate.engines.remote.wire import WYOMING_RATE

SPEAKER_MARK = "@"


class WyomingUpstream(UpstreamDefaults):
    """A client of one Wyoming TTS server."""

    no_clone = "Wyoming has no call to register a voice"

    speed_range = (1.0, 1.0)  # Wyoming's synthesize has no rate: the core time-stretches
    sample_rate = WYOMING_RATE

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        parts = urlsplit(config.url)
        if not parts.hostname or parts.port is None:
            raise UpstreamError("a wyoming URL is tcp://host:port", upstream=config.name)
        self.host, self.port = parts.hostname, parts.port
        self.streaming_allowed = config.options.get("streaming", "1") not in ("0", "false", "no")
        self.streaming = False  # the server said supports_synthesize_streaming at the last describe
        self._speakers: dict[str, tuple[str, str | None]] = {}  # listed id → (voice name, speaker)

    def _client(self) -> AsyncTcpClient:
        return AsyncTcpClient(self.host, self.port, connect_timeout=self.config.connect_timeout,
                              read_timeout=self.config.timeout)

    async def _read(self, client: AsyncTcpClient, texts: object = None,
                    sender: asyncio.Task[None] | None = None) -> Event:
        """The next event; Error events, a closed connection and silence past the timeout as UpstreamError.
        While a streamed-text session's `texts` waits for its client (`waiting`), silence is no timeout."""
        while True:
            try:
                event = await client.read_event()
            except TimeoutError:
                if getattr(texts, "waiting", False):
                    continue  # nothing to say until the client's next text
                raise UpstreamError(f"no event within {self.config.timeout:g} s (timeout)",
                                    upstream=self.config.name) from None
            break
        if event is None:
            if sender is not None and sender.done() and not sender.cancelled() and sender.exception() is not None:
                raise UpstreamError(f"sending text failed: {sender.exception()}", upstream=self.config.name)
            raise UpstreamError("the server closed the connection", upstream=self.config.name)
        if Error.is_type(event.type):
            error = Error.from_event(event)
            raise UpstreamError(f"{error.text} ({error.code})" if error.code else error.text,
                                upstream=self.config.name, status=500)
        return event

    async def _audio(self, client: AsyncTcpClient, streaming: bool, texts: object = None,
                     sender: asyncio.Task[None] | None = None) -> AsyncIterator[Piece]:
        """The answer's audio as Pieces, to `audio-stop` (one synthesize) or `synthesize-stopped` (streaming)."""
        rate = WYOMING_RATE
        while True:
            event = await self._read(client, texts, sender)
            if AudioStart.is_type(event.type):
                start = AudioStart.from_event(event)
                rate = start.rate
                if start.width != 2:
                    raise UpstreamError(f"audio of {8 * start.width}-bit samples; only 16-bit is read",
                                        upstream=self.config.name)
            elif AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                if chunk.width != 2:
                    raise UpstreamError("audio chunk of another sample width", upstream=self.config.name)
                samples = Int16Decoder(chunk.channels).feed(chunk.audio)
                if len(samples):
                    yield Piece(samples, chunk.rate or rate)
            elif AudioStop.is_type(event.type):
                if not streaming:
                    return
            elif SynthesizeStopped.is_type(event.type):
                return

    async def _connect(self, client: AsyncTcpClient) -> None:
        try:
            await client.connect()
        except TimeoutError:
            raise UpstreamError(f"could not connect within {self.config.connect_timeout:g} s",
                                upstream=self.config.name) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.config.url}: {exc.strerror or exc}",
                                upstream=self.config.name) from None

    async def voices(self) -> list[UpstreamVoice]:
        client = self._client()
        await self._connect(client)
        try:
            await client.write_event(Describe().event())
            while True:
                event = await self._read(client)
                if Info.is_type(event.type):
                    break
        except OSError as exc:
            raise UpstreamError(f"connection failed: {exc}", upstream=self.config.name) from None
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
        info = Info.from_event(event)
        voices: list[UpstreamVoice] = []
        speakers: dict[str, tuple[str, str | None]] = {}
        streaming = False
        default_language = self.config.options.get("language")
        wanted = [p.strip() for p in self.config.options.get("voices", "").split(",") if p.strip()]
        for program in info.tts or []:
            streaming = streaming or bool(getattr(program, "supports_synthesize_streaming", False))
            for voice in program.voices or []:
                if voice.installed is False:
                    continue
                language = _tag(voice.languages[0]) if voice.languages else default_language
                for speaker in [s.name for s in voice.speakers or []] or [None]:
                    ident = f"{voice.name}{SPEAKER_MARK}{speaker}" if speaker else voice.name
                    if ident in speakers or (wanted and not any(fnmatch.fnmatchcase(ident, p)
                                                                or fnmatch.fnmatchcase(voice.name, p) for p in wanted)):
                        continue
                    speakers[ident] = (voice.name, speaker)
                    label = voice.description or voice.name
                    voices.append(UpstreamVoice(id=ident, name=f"{label} ({speaker})" if speaker else label,
                                                language=language))
        self._speakers, self.streaming = speakers, streaming and self.streaming_allowed
        return voices

    async def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        name, speaker = self._speakers.get(request.voice, (request.voice, None))
        voice = SynthesizeVoice(name=name, speaker=speaker)
        streaming = self.streaming
        client = self._client()
        await self._connect(client)
        try:
            if streaming:
                await client.write_event(SynthesizeStart(voice=voice).event())
                await client.write_event(SynthesizeChunk(text=request.text).event())
                await client.write_event(SynthesizeStop().event())
            else:
                await client.write_event(Synthesize(text=request.text, voice=voice).event())
            async for piece in self._audio(client, streaming):
                yield piece
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"connection failed: {exc}", upstream=self.config.name) from None
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    # -- streamed text (engines/remote/backend.py): a client's text as it arrives, in one synthesize-start … stop --

    def accepts_text(self) -> bool:
        """Text can go on as it arrives when the server said it streams (and `streaming` is not 0)."""
        return self.streaming

    async def stream_text(self, request: UpstreamRequest, texts: AsyncIterable[str]) -> AsyncIterator[Piece]:
        """`synthesize-start`, one `synthesize-chunk` per piece of text as it comes (`request.text` first), then
        `synthesize-stop`; the audio as `synthesize` reads it, to `synthesize-stopped`. While `texts` waits for
        its client (`waiting`), the server's silence is no timeout."""
        name, speaker = self._speakers.get(request.voice, (request.voice, None))
        client = self._client()
        await self._connect(client)
        sender: asyncio.Task[None] | None = None
        try:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name=name, speaker=speaker)).event())
            sender = asyncio.create_task(self._send_texts(client, request.text, texts))
            async for piece in self._audio(client, True, texts, sender):
                yield piece
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"connection failed: {exc}", upstream=self.config.name) from None
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def _send_texts(self, client: AsyncTcpClient, first: str, texts: AsyncIterable[str]) -> None:
        if first:
            await client.write_event(SynthesizeChunk(text=first).event())
        async for text in texts:
            if text:
                await client.write_event(SynthesizeChunk(text=text).event())
        await client.write_event(SynthesizeStop().event())


def _tag(language: str) -> str:
    """wyoming-piper's `en_US` as `en-US`."""
    return language.replace("_", "-")


__all__ = ["WyomingUpstream"]

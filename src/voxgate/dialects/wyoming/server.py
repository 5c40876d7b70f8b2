"""The Wyoming TCP server: `describe`, one-shot `synthesize` and streamed `synthesize-start/chunk/stop`.

Each connection has a reader (this handler) that never waits for synthesis: `describe` is answered at once
from memory, text chunks go straight into the stream's TextStream, and the end of the connection is noticed
at once, which cancels its work. Synthesis runs in tasks that write audio as it comes; they run one after
another per connection (a client that sends two requests gets two answers, in order). Every event written
waits for the socket to take it (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from voxgate.audio.pcm import int16_bytes
from voxgate.core.context import Context
from voxgate.core.textstream import TextStream, open_text_stream
from voxgate.core.types import SynthesisRequest
from voxgate.dialects.base import TcpDialect
from voxgate.dialects.common import TcpListener
from voxgate.dialects.wyoming.framing import MAX_HEADER, BadEvent, read_event
from voxgate.dialects.wyoming.voices import Catalogue, choose, ssml_text
from voxgate.errors import InvalidInput, VoxgateError

_LOG = logging.getLogger(__name__)
DIALECT = "wyoming"
WIDTH, CHANNELS = 2, 1  # 16-bit mono, as wyoming-piper sends
SAMPLES_PER_CHUNK = 1024  # samples per audio-chunk event (wyoming-piper's default --samples-per-chunk)
MAX_JOBS = 8  # requests one connection may have waiting; past it: BadRequest
LINGER = 1.0  # seconds a connection closed for a bad event still reads what was already on its way
MAX_LINGER_BYTES = 4 * 1024 * 1024


class BadRequest(InvalidInput):
    """A well-formed event that makes no sense here (e.g. a text chunk outside a stream)."""


def _code(exc: BaseException) -> str:
    return type(exc).__name__  # as wyoming-piper: the exception's class name


class Connection:
    """One client: serialised writes, its queue of synthesis tasks, and the open text stream if any."""

    def __init__(self, server: WyomingServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.ctx = server.ctx
        self.writer = writer
        self.closed = False
        self._lock = asyncio.Lock()
        self._jobs: list[asyncio.Task[None]] = []  # one-shot and stream tasks, run in order
        self._stream: TextStream | None = None  # open between synthesize-start and synthesize-stop
        self._stream_failed = False  # the open stream hit an error: its text is dropped until synthesize-stop
        self._streams: set[TextStream] = set()  # every stream not yet closed (cancelled on disconnect)
        self._stopped: set[TextStream] = set()  # streams whose synthesize-stop came: theirs to answer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # -- writing ------------------------------------------------------------------------------------

    async def send(self, event: Event) -> bool:
        """Write one event and wait until the socket takes it; False (and the connection marked gone)
        when the client has left."""
        if self.closed:
            return False
        async with self._lock:
            try:
                await async_write_event(event, self.writer)
            except (ConnectionError, OSError, RuntimeError):
                self.closed = True
        return not self.closed

    async def error(self, exc: BaseException, code: str | None = None) -> None:
        """Answer an error event {text, code} and count it."""
        code = code or _code(exc)
        self.ctx.metrics.errors.labels(DIALECT, code).inc()
        text = getattr(exc, "message", None) or str(exc) or code
        await self.send(Error(text=text, code=code).event())

    async def _audio(self, samples: np.ndarray, rate: int) -> bool:
        pcm = int16_bytes(samples)
        step = SAMPLES_PER_CHUNK * WIDTH * CHANNELS
        for offset in range(0, len(pcm), step):
            chunk = AudioChunk(rate=rate, width=WIDTH, channels=CHANNELS, audio=pcm[offset: offset + step])
            if not await self.send(chunk.event()):
                return False
        return True

    # -- reading ------------------------------------------------------------------------------------

    async def run(self, reader: asyncio.StreamReader) -> None:
        """Read events until the client leaves or sends something unreadable."""
        try:
            while not self.closed:
                try:
                    event = await read_event(reader)
                except BadEvent as exc:
                    _LOG.info("wyoming: %s sent a bad event (%s); closing", self.peer, exc.message)
                    await self.error(exc, exc.code)
                    await self._linger(reader)
                    break
                if event is None:
                    break
                await self._on_event(event)
        except (ConnectionError, OSError):
            pass
        finally:
            await self.close()

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        """Say no more and read (and drop) what the client still sends for a moment: closing with unread
        input would reset the connection and could destroy the error event before the client reads it."""
        with contextlib.suppress(ConnectionError, OSError, RuntimeError, TimeoutError, ValueError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            dropped = 0
            async with asyncio.timeout(LINGER):
                while dropped < MAX_LINGER_BYTES and (part := await reader.read(65536)):
                    dropped += len(part)

    async def _on_event(self, event: Event) -> None:
        try:
            if Describe.is_type(event.type):
                await self.send(self.server.catalogue.info())
            elif Ping.is_type(event.type):
                await self.send(Pong(text=event.data.get("text")).event())
            elif Synthesize.is_type(event.type):
                if self._stream is not None or self._stream_failed:
                    return  # the copy of the whole text a streaming client also sends: ignored
                self._queue(self._one_shot(self._request(event.data)))
            elif SynthesizeStart.is_type(event.type):
                await self._start(event.data)
            elif SynthesizeChunk.is_type(event.type):
                self._chunk(event.data)
            elif SynthesizeStop.is_type(event.type):
                await self._stop()
            # anything else is dropped, as the protocol asks of a server that does not know it
        except VoxgateError as exc:
            await self.error(exc)

    def _request(self, data: dict[str, Any], text: str | None = None) -> SynthesisRequest:
        voice = choose(self.ctx, data.get("voice"))
        if text is None:
            text = data.get("text")
            if not isinstance(text, str):
                raise BadRequest("synthesize needs a text string", param="text")
            text = ssml_text(text, data.get("text_format"))
        # One rate for the whole answer: the voice's own; other voices (language routing) are resampled to it.
        return SynthesisRequest(text=text, voice=voice.id, sample_rate=voice.sample_rate)

    def _queue(self, work: Any) -> None:
        self._jobs = [job for job in self._jobs if not job.done()]
        if len(self._jobs) >= MAX_JOBS:
            work.close()
            raise BadRequest(f"{MAX_JOBS} requests of this connection are already waiting")
        previous = self._jobs[-1] if self._jobs else None
        self._jobs.append(asyncio.create_task(self._after(previous, work)))

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, work: Any) -> None:
        """Run `work` once `previous` has ended, however it ended; a cancel while waiting drops `work`."""
        try:
            if previous is not None:
                await asyncio.wait({previous})
        except BaseException:
            work.close()
            raise
        await work

    # -- one-shot -----------------------------------------------------------------------------------

    async def _one_shot(self, request: SynthesisRequest) -> None:
        """audio-start, audio-chunks, one audio-stop for the whole text."""
        try:
            stream = await self.ctx.service.open(request)
        except VoxgateError as exc:
            await self.error(exc)
            return
        self.ctx.metrics.requests.labels(DIALECT).inc()
        try:
            async with stream:
                rate = stream.sample_rate
                if not await self.send(AudioStart(rate=rate, width=WIDTH, channels=CHANNELS).event()):
                    return
                async for chunk in stream:
                    if not await self._audio(chunk.samples, rate):
                        return
                await self.send(AudioStop().event())
        except VoxgateError as exc:  # the engine failed midway
            await self.error(exc)

    # -- streaming ----------------------------------------------------------------------------------

    async def _start(self, data: dict[str, Any]) -> None:
        if self._stream is not None:
            raise BadRequest("synthesize-start inside a stream: send synthesize-stop first")
        self._stream_failed = False
        request = self._request(data, text="")
        stream = await open_text_stream(self.ctx.service, request, ssml=data.get("text_format") == "ssml")
        self.ctx.metrics.requests.labels(DIALECT).inc()
        self._stream = stream
        self._streams.add(stream)
        try:
            self._queue(self._pump(stream))
        except BaseException:
            self._stream = None
            self._streams.discard(stream)
            await stream.aclose()
            raise

    def _chunk(self, data: dict[str, Any]) -> None:
        if self._stream_failed:
            return
        if self._stream is None:
            raise BadRequest("synthesize-chunk outside a stream: send synthesize-start first")
        text = data.get("text")
        if not isinstance(text, str):
            raise BadRequest("synthesize-chunk needs a text string", param="text")
        try:
            self._stream.feed(text)  # any split, even mid-word: the segmenter waits for the end of a clause
        except VoxgateError:  # too much text, or the server is full: drop the stream's text up to its stop
            self._stream.cancel()
            self._stream, self._stream_failed = None, True
            raise

    async def _stop(self) -> None:
        if self._stream_failed:  # its error was sent; end it the way a client waits for
            self._stream_failed = False
            await self.send(SynthesizeStopped().event())
            return
        if self._stream is None:
            raise BadRequest("synthesize-stop outside a stream")
        self._stopped.add(self._stream)
        self._stream.finish()
        self._stream = None

    async def _pump(self, stream: TextStream) -> None:
        """Audio of a text stream as it comes: audio-start … audio-stop per sentence, all at one rate, then
        synthesize-stopped once the text has ended and been spoken."""
        rate = stream.sample_rate
        index: int | None = None
        try:
            async for chunk in stream:
                if index is None or chunk.index not in (index, -1):  # -1: the resampler's last samples
                    if index is not None and not await self.send(AudioStop().event()):
                        return
                    if not await self.send(AudioStart(rate=rate, width=WIDTH, channels=CHANNELS).event()):
                        return
                    index = chunk.index
                if not await self._audio(chunk.samples, rate):
                    return
            if stream in self._stopped:  # ended by synthesize-stop, not cut off by an error
                if index is not None and not await self.send(AudioStop().event()):
                    return
                await self.send(SynthesizeStopped().event())
        except VoxgateError as exc:  # the engine failed, or the stream was refused
            if self._stream is stream:
                self._stream, self._stream_failed = None, True  # its synthesize-stop is answered by _stop
            await self.error(exc)
            if stream in self._stopped:  # synthesize-stop already came: nothing else will end the client's wait
                await self.send(SynthesizeStopped().event())
        finally:
            self._streams.discard(stream)
            self._stopped.discard(stream)
            await stream.aclose()

    # -- end ----------------------------------------------------------------------------------------

    async def close(self) -> None:
        """The client left (or must go): its work is cancelled and the socket closed."""
        self.closed = True
        for stream in list(self._streams):
            stream.cancel()
        for job in self._jobs:
            job.cancel()
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)
        self._jobs.clear()
        self._stream = None
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self.writer.wait_closed()


@dataclass(frozen=True)
class WyomingConfig:
    """The settings this dialect reads (filled by the composition root)."""

    host: str  # the address it listens on (host)
    port: int  # its TCP port; 0 turns Wyoming off (wyoming_port)
    zeroconf: bool  # advertise the port over mDNS (wyoming_zeroconf)


class WyomingServer:
    """The listening socket, the zeroconf advertisement and every connection; `close()` stops all of it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.catalogue = Catalogue(ctx)
        self._listener = TcpListener(self._accept, limit=MAX_HEADER)
        self._zeroconf: Any = None

    @property
    def port(self) -> int:
        """The bound port."""
        return self._listener.port

    async def listen(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Bind (or take the already bound `sock`) and start accepting."""
        await self._listener.listen(host, port, sock)

    async def advertise(self, host: str) -> None:
        """Announce `_wyoming._tcp.local.` over mDNS (Home Assistant discovers it); a failure is logged."""
        from voxgate.dialects.wyoming.zeroconf import Advertisement

        try:
            self._zeroconf = await Advertisement.start(host, self.port)
        except Exception as exc:  # no multicast route, no interface: serve anyway
            _LOG.warning("wyoming: zeroconf advertisement failed: %s", exc)

    async def close(self) -> None:
        """Stop listening and advertising, drop every connection and its work."""
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):
                await self._zeroconf.stop()
        await self._listener.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, writer)
        _LOG.debug("wyoming: client %s connected", conn.peer)
        try:
            await conn.run(reader)
        finally:
            _LOG.debug("wyoming: client %s disconnected", conn.peer)


async def start(ctx: Context, config: WyomingConfig, sock: socket.socket | None = None) -> WyomingServer:
    """Listen for Wyoming clients on config.host:config.port (0 binds a free port), or on the already bound
    `sock`; advertise it if asked."""
    server = WyomingServer(ctx)
    await server.listen(config.host, config.port, sock)
    if config.zeroconf:
        await server.advertise(config.host)
    _LOG.info("wyoming listening on %s:%d", config.host, server.port)
    return server


class Wyoming(TcpDialect):
    """Wyoming (Home Assistant) on its own TCP port (no HTTP routes, no key: the CLI refuses to open it with
    --api-key unless told to); the server starts and stops with voxgate's."""

    name = "wyoming"
    title = "Wyoming"
    port_setting = "wyoming_port"
    default_port = 10200
    door = "TCP: Wyoming (Home Assistant text-to-speech), no authentication"
    unauthenticated_setting = "wyoming_allow_unauthenticated"

    @classmethod
    def describe(cls, config: WyomingConfig) -> str:
        return cls.door + (", advertised over mDNS" if config.zeroconf else "")

    config: WyomingConfig
    server: WyomingServer | None

    async def listen(self) -> WyomingServer:
        return await start(self.ctx, self.config, self.sock)

"""WebSocket /tts of the CosyVoice streaming server: text streamed in, standalone audio files streamed out.

A connection carries sessions one after another: `{"req_params": {...}}`, then `{"text", "done"}` messages,
answered by one JSON message per piece of audio (each a complete file of the requested format, base64) and a
final `is_end` message. The text goes into a core TextStream, so the first clause is spoken while the rest is
still being typed. A reader task queues incoming messages, so a disconnect is noticed (and the synthesis
cancelled) at once, even while the server waits for the end of a session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import WebSocket
from pydantic import ValidationError

from voxgate.audio.encoders import encode_all
from voxgate.core.context import Context
from voxgate.core.textstream import TextStream, open_text_stream
from voxgate.dialects.common import ErrorSpec, lookup, parse_json
from voxgate.dialects.cosyvoice.errors import DIALECT, ERRORS, speaker
from voxgate.dialects.cosyvoice.protocol import (
    NO_SUCH_SPEAKER,
    OutputParams,
    StreamStart,
    StreamText,
    validation_message,
)
from voxgate.errors import VoiceNotFound, VoxgateError

_LOG = logging.getLogger(__name__)
INBOX = 256  # messages read ahead of the session loop; past it the socket is not read (backpressure)
MIN_MESSAGE = 0.02  # seconds: shorter pieces wait to be sent with the next one (the end is sent anyway)
PEEK_YIELDS = 3  # event-loop turns a finished piece waits for one that is already computed


def error_text(exc: BaseException) -> str:
    """`"<Type>: <message>"` as the original formats exceptions; an unknown speaker is its ValueError."""
    if isinstance(exc, VoiceNotFound) and exc.message == NO_SUCH_SPEAKER:
        return f"ValueError: {NO_SUCH_SPEAKER}"
    if isinstance(exc, ValidationError):
        return f"ValidationError: {validation_message(exc)}"
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Session:
    """One req_params … done exchange: the text stream and the task that sends its audio."""

    def __init__(self, link: Link, stream: TextStream, params: OutputParams, file_rate: int) -> None:
        self.id = uuid.uuid4().hex
        self.count = 0  # audio messages sent
        self.cancelled = False  # set before the sender is cancelled: nothing more may be sent
        self._link = link
        self._stream = stream
        self._format = params.audio_format
        self._rate = params.sample_rate  # Hertz of the PCM the stream produces
        self._file_rate = file_rate  # Hertz written in (or implied by) each file
        self.task = asyncio.create_task(self._pump())

    def feed(self, text: str) -> None:
        """More text (raises InputTooLong when the unspoken backlog is full)."""
        self._stream.feed(text)

    def finish(self) -> None:
        """No more text: the rest is spoken, then `is_end` is sent."""
        self._stream.finish()

    async def cancel(self) -> None:
        """Drop everything queued and stop the sender."""
        self.cancelled = True  # a cancellation can be lost in a race with the chunk it interrupts
        self._stream.cancel()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def _file(self, audio: np.ndarray | bytes) -> str:
        data = audio if isinstance(audio, bytes) else encode_all(audio, self._rate, self._format)
        return base64.b64encode(data).decode("ascii")

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.cancelled:
            await self._link.send(message)

    async def _send_audio(self, audio: np.ndarray | bytes) -> None:
        """One message: samples encoded as a file of the session's format, or raw pcm bytes an upstream sent
        (passed through: they are already that file)."""
        data = self._file(audio) if isinstance(audio, bytes) else await asyncio.to_thread(self._file, audio)
        await self._send({"id": self.id, "error": False, "is_end": False, "index": self.count, "data": data,
                               "audio_format": self._format, "sample_rate": self._file_rate})
        self.count += 1

    async def _next_chunk(self) -> np.ndarray | bytes | None:
        """The next piece: samples, or an upstream's own raw pcm bytes (request.output, set for pcm)."""
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            return None
        return chunk.encoded if chunk.encoded is not None else chunk.samples

    async def _pump(self) -> None:
        """Send each piece of audio as it comes; a piece that is ready at once (such as the resampler's last
        few milliseconds) joins the one before it, so no message is delayed and none is a sliver."""
        held: np.ndarray | bytes | None = None
        nxt: asyncio.Future[np.ndarray | bytes | None] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(self._next_chunk())
                if held is not None:
                    for _ in range(PEEK_YIELDS):  # the next piece may already be computed: let it arrive
                        if nxt.done():
                            break
                        await asyncio.sleep(0)
                    if not nxt.done() and _samples(held) >= MIN_MESSAGE * self._rate:
                        await self._send_audio(held)
                        held = None
                samples = await nxt
                if samples is None:
                    break
                if held is not None and isinstance(held, bytes) != isinstance(samples, bytes):
                    await self._send_audio(held)  # passed bytes and samples never share a message
                    held = None
                held = samples if held is None else _join(held, samples)
            if held is not None and len(held):
                await self._send_audio(held)
            await self._send({"id": self.id, "error": False, "is_end": True, "index": self.count,
                                   "data": None, "audio_format": None, "sample_rate": None})
        except VoxgateError as exc:  # the engine failed, or the stream was refused: tell the client now
            self._link.count_error(exc)
            await self._send({"error": True, "message": error_text(exc)})
        finally:
            if nxt is not None and not nxt.done():
                nxt.cancel()
            await self._stream.aclose()


def _samples(audio: np.ndarray | bytes) -> int:
    return len(audio) // 2 if isinstance(audio, bytes) else len(audio)


def _join(held: np.ndarray | bytes, more: np.ndarray | bytes) -> np.ndarray | bytes:
    if isinstance(held, bytes) and isinstance(more, bytes):
        return held + more  # raw pcm joins
    assert isinstance(held, np.ndarray) and isinstance(more, np.ndarray)
    return np.concatenate([held, more])


class Link:
    """One WebSocket connection: a reader task, the session loop, and serialised sends."""

    def __init__(self, ws: WebSocket, ctx: Context) -> None:
        self._ws = ws
        self._ctx = ctx
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(INBOX)
        self._gone = asyncio.Event()
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON text frame; a vanished client ends the connection instead of raising."""
        async with self._send_lock:
            if self._gone.is_set():
                return
            try:
                await self._ws.send_text(json.dumps(message, ensure_ascii=False))
            except Exception:  # any send failure means the client is gone
                _LOG.debug("cosyvoice: send failed, client gone")
                self._gone.set()

    def count_error(self, exc: BaseException) -> None:
        spec = lookup(ERRORS, exc, ErrorSpec(500, code="internal_error"))
        self._ctx.metrics.errors.labels(DIALECT, spec.code or "error").inc()

    async def _read(self) -> None:
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("text")
                await self._inbox.put(data if data is not None else message.get("bytes") or b"")
        finally:
            self._gone.set()

    async def _next(self) -> Any | None:
        """The next message, decoded; None once the client is gone."""
        getter = asyncio.ensure_future(self._inbox.get())
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not getter.done():
                getter.cancel()
        if not getter.done() or getter.cancelled():
            return None
        raw = getter.result()
        return parse_json(raw)

    async def _start(self, message: Any) -> Session:
        params = StreamStart.model_validate(message).req_params
        voice = speaker(self._ctx, params.prompt_id)
        file_rate = params.check()
        request = params.to_request(voice)
        if params.audio_format == "pcm":  # raw pcm joins: an upstream's own bytes may pass (core passthrough)
            request = replace(request, output="pcm")
        stream = await open_text_stream(self._ctx.service, request)
        self._ctx.metrics.requests.labels(DIALECT).inc()
        return Session(self, stream, params, file_rate)

    async def _until_end(self, session: Session) -> bool:
        """Wait for a finished session's last message; False (and the work cancelled) if the client left."""
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({session.task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if session.task.done():
            return not self._gone.is_set()
        await session.cancel()
        return False

    async def run(self) -> None:
        """The session loop: sequential sessions; an error cancels the session and the loop goes on."""
        reader = asyncio.create_task(self._read())
        session: Session | None = None
        draining = False  # after an error: the dead session's text messages are dropped up to its `done`
        try:
            while not self._gone.is_set():
                try:
                    message = await self._next()
                    if message is None:
                        break
                    if session is not None and session.task.done():  # failed, or stopped by the server
                        session, draining = None, True
                    if session is None:
                        if draining and isinstance(message, dict) and "req_params" not in message:
                            draining = not StreamText.model_validate(message).done
                            continue
                        session, draining = await self._start(message), False
                        continue
                    piece = StreamText.model_validate(message)
                    session.feed(piece.text)
                    if piece.done:
                        session.finish()
                        ended = await self._until_end(session)
                        session = None
                        if not ended:
                            break
                except Exception as exc:  # as the original: report it, keep the connection
                    if not isinstance(exc, VoxgateError | ValidationError | ValueError):
                        _LOG.exception("cosyvoice: unexpected error in a WebSocket session")
                    if session is not None:
                        await session.cancel()  # the original cancels the synthesis before answering
                        session = None
                    draining = True
                    self.count_error(exc)
                    await self.send({"error": True, "message": error_text(exc)})
        finally:
            if session is not None:
                await session.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

"""The CosyVoice streaming server (`shenduldh/CosyVoice2-Lightning`, port 12244) as an upstream.

Wire (docs/upstreams.md, specs/dialects.md §5): `GET /speakers` lists prompt ids; synthesis is a session on
the WebSocket `/tts` — `{"req_params": {prompt_id, audio_format, sample_rate}}`, then `{"text", "done"}`
messages, answered by one JSON message per piece of audio (`data`: base64 of a complete file) and an
`is_end` message; errors are `{"error": true, "message": "Type: text"}` on the open socket. Raw PCM is asked
for, because the original's per-message WAV header states 24 kHz whatever rate was asked. `POST /clone`
registers reference audio as a new prompt id. Text can be streamed in (`stream_text`): each piece goes on
as a `{"text", "done": false}` message while audio comes back, as the server's own segmenter expects; the
core forwards a client's streamed text this way (SynthesisService.forwards_text). While the text source
says it is `waiting` for its client, the upstream's silence is no timeout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import httpx
import numpy as np

from voxgate.core.types import Piece
from voxgate.engines.remote import httpwire
from voxgate.engines.remote.base import NotSupported, UpstreamConfig, UpstreamError, UpstreamRequest, UpstreamVoice
from voxgate.engines.remote.pcmstream import AudioFormatError, Int16Decoder, decode_file

_LOG = logging.getLogger(__name__)
NATIVE_RATE = 24_000  # Hertz: CosyVoice2's output rate; asked for unless the option sample_rate says else
CLONE_RATE = 16_000  # Hertz the original resamples a base64 reference to (its default sample_rate)
MAX_MESSAGE = 32 * 2**20  # bytes of one WebSocket message (one piece of audio as base64)
NO_SUCH_SPEAKER = "No such speaker"


class CosyVoiceUpstream:
    """A client of one CosyVoice streaming server."""

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._rate = int(config.options.get("sample_rate", NATIVE_RATE))
        self._passes = True  # its messages were pcm at the asked rate (once not, it is decoded from then on)
        self._instruct = config.options.get("instruct_text") or None  # style instruction for every session
        self._idle: list[Any] = []  # open sockets between sessions, at most `concurrency`

    async def voices(self) -> list[UpstreamVoice]:
        ids = await httpwire.request_json(self._http, self.config, "GET", "/speakers", "listing speakers")
        if not isinstance(ids, list):
            raise httpwire.failed(self.config, "listing speakers", 200, f"expected a list, got {ids!r:.80}")
        return [UpstreamVoice(id=str(i), name=str(i), sample_rate=self._rate) for i in ids]

    def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        return self._pieces(request, None)

    def stream_text(self, request: UpstreamRequest, texts: AsyncIterable[str]) -> AsyncIterator[Piece]:
        """Text that arrives in pieces (`request.text` first, then each of `texts`) spoken in one session:
        every piece is sent as soon as it comes, so the upstream starts on the first clause."""
        return self._pieces(request, texts)

    # -- passthrough (engines/remote/base.py EncodingKind): the server's own bytes in the client's format --

    def encodes(self, fmt: str, rate: int) -> bool:
        """Raw pcm at the rate this kind asks for (`sample_rate`, default 24 kHz): each message's data is
        int16 mono, and raw joins, so the messages' bytes are the client's whatever the front's message
        boundaries. Not the other formats: each of the original's messages is a file of its own (a WAV header
        that always says 24 kHz, an mp3 with its own padding), so they pass only message for message."""
        return fmt == "pcm" and rate == self._rate and self._passes

    def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        return self._raw(request, None)

    def stream_encoded(self, request: UpstreamRequest, texts: AsyncIterable[str],
                       fmt: str) -> AsyncIterator[bytes]:
        """stream_text's session, its messages' raw pcm bytes as they are (see encodes)."""
        return self._raw(request, texts)

    async def _pieces(self, request: UpstreamRequest, texts: AsyncIterable[str] | None) -> AsyncIterator[Piece]:
        sent = False
        async with contextlib.aclosing(self._session(request, texts)) as messages:
            async for message in messages:
                samples, rate = self._audio(message, sent)
                if len(samples):
                    sent = True
                    yield Piece(samples, rate)

    async def _raw(self, request: UpstreamRequest, texts: AsyncIterable[str] | None) -> AsyncIterator[bytes]:
        sent = False
        async with contextlib.aclosing(self._session(request, texts)) as messages:
            async for message in messages:
                fmt = str(message.get("audio_format") or "pcm").lower()
                rate = int(message.get("sample_rate") or self._rate)
                if fmt != "pcm" or rate != self._rate:
                    self._passes = False  # not asked to pass bytes again: each ask would cost a refused session
                    error = f"it sent {fmt} at {rate} Hz for pcm at {self._rate} Hz"
                    if not sent:
                        raise NotSupported(error, upstream=self.config.name)
                    raise httpwire.failed(self.config, "synthesis", None, error, sent=True)
                try:
                    blob = base64.b64decode(message["data"], validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise httpwire.failed(self.config, "synthesis", None, f"audio that does not decode: {exc}",
                                          sent=sent) from None
                if blob:
                    sent = True
                    yield blob

    async def _connect(self) -> Any:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        url = httpwire.ws_base(self.config) + "/tts"
        try:
            return await connect(url, additional_headers=httpwire.bearer(self.config), proxy=None,
                                 open_timeout=self.config.connect_timeout, max_size=MAX_MESSAGE,
                                 compression=None, ping_interval=None, close_timeout=2)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = httpwire.message_of(exc.response.body or b"")
            raise httpwire.failed(self.config, "opening /tts", status, body) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise httpwire.failed(self.config, "opening /tts", None, f"{type(exc).__name__}: {exc}") from exc

    async def _acquire(self) -> Any:
        """An idle socket whose last session ended cleanly (sessions run one after another on a socket, so
        no handshake per segment), else a new one."""
        from websockets.protocol import State

        while self._idle:
            ws = self._idle.pop()
            if ws.state is State.OPEN:
                return ws
            await ws.close()
        return await self._connect()

    async def _release(self, ws: Any, clean: bool) -> None:
        if clean and len(self._idle) < max(self.config.concurrency, 1):
            self._idle.append(ws)
        else:  # mid-session: the only way to stop the upstream's synthesis is to close the socket
            await ws.close()

    async def _begin(self, request: UpstreamRequest, whole: bool) -> Any:
        """A socket with the session's opening messages sent; a pooled socket that turns out closed is
        replaced once (nothing was asked of it yet)."""
        from websockets.exceptions import ConnectionClosed

        params = {"prompt_id": request.voice, "audio_format": "pcm", "sample_rate": self._rate,
                  "instruct_text": self._instruct}
        opening = [json.dumps({"req_params": params})]
        if whole:
            opening.append(json.dumps({"text": request.text, "done": True}, ensure_ascii=False))
        for attempt in (1, 2):
            ws = await self._acquire() if attempt == 1 else await self._connect()
            try:
                for message in opening:
                    await ws.send(message)
                return ws
            except ConnectionClosed as exc:
                await ws.close()
                if attempt == 2:
                    raise httpwire.failed(self.config, "opening a session", None, f"connection closed ({exc})") \
                        from exc
        raise AssertionError("unreachable")

    async def _session(self, request: UpstreamRequest,
                       texts: AsyncIterable[str] | None) -> AsyncIterator[dict[str, Any]]:
        """The session's audio messages (those with data), in order."""
        from websockets.exceptions import ConnectionClosed

        ws = await self._begin(request, whole=texts is None)
        sender = None if texts is None else asyncio.create_task(self._feed(ws, request.text, texts))
        sent = clean = False
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), self.config.timeout)  # cancelling recv loses nothing
                except TimeoutError:
                    if getattr(texts, "waiting", False):
                        continue  # the client's next text has not come: the upstream has nothing to say yet
                    raise httpwire.failed(self.config, "synthesis", None,
                                          f"no answer for {self.config.timeout:g} s", sent=sent) from None
                except ConnectionClosed as exc:
                    if sender is not None and sender.done() and not sender.cancelled() and sender.exception():
                        raise sender.exception() from exc  # type: ignore[misc]
                    raise httpwire.failed(self.config, "synthesis", None, f"connection closed ({exc})",
                                          sent=sent) from exc
                message = self._parse(raw, sent)
                if message.get("is_end"):
                    clean = sender is None or sender.done()
                    return
                if message.get("data"):
                    sent = True
                    yield message
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            await self._release(ws, clean)

    async def _feed(self, ws: Any, first: str, texts: AsyncIterable[str]) -> None:
        """Send the text as it comes; the last message says done. A failing source closes the session."""
        try:
            if first:
                await ws.send(json.dumps({"text": first, "done": False}, ensure_ascii=False))
            async for text in texts:
                if text:
                    await ws.send(json.dumps({"text": text, "done": False}, ensure_ascii=False))
            await ws.send(json.dumps({"text": "", "done": True}))
        except Exception:
            await ws.close(1011, "text source failed")
            raise

    def _parse(self, raw: str | bytes, sent: bool) -> dict[str, Any]:
        try:
            message = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise httpwire.failed(self.config, "synthesis", None, f"not a JSON message: {raw[:80]!r}",
                                  sent=sent) from None
        if not isinstance(message, dict):
            raise httpwire.failed(self.config, "synthesis", None, f"unexpected message {message!r:.80}", sent=sent)
        if message.get("error"):
            text = str(message.get("message") or "error")
            # the two errors with a clear class: an unknown voice, and a voxgate upstream refusing the key
            status = 404 if NO_SUCH_SPEAKER in text else 401 if text.startswith("PermissionError") else None
            raise httpwire.failed(self.config, "synthesis", status, text, sent=sent)
        return message

    def _audio(self, message: dict[str, Any], sent: bool) -> tuple[np.ndarray, int]:
        """One message's audio: a complete file (raw PCM as asked for, or whatever the server sent)."""
        data = message.get("data")
        if not data:
            return np.zeros(0, np.float32), self._rate
        try:
            blob = base64.b64decode(data, validate=True)
            rate = int(message.get("sample_rate") or self._rate)
            if str(message.get("audio_format") or "pcm").lower() == "pcm":
                return Int16Decoder().feed(blob), rate
            samples, file_rate = decode_file(blob)
            return samples, file_rate
        except (binascii.Error, ValueError, AudioFormatError) as exc:
            raise httpwire.failed(self.config, "synthesis", None, f"audio that does not decode: {exc}",
                                  sent=sent) from None

    async def clone(self, name: str, audio: bytes, transcript: str | None, language: str | None) -> str:
        """POST /clone with the WAV as base64 (the original resamples it to 16 kHz); the new prompt id. An id
        the upstream already has is not cloned again by it, so that is refused here rather than silently
        speaking another voice."""
        body = {"prompt_audio": base64.b64encode(audio).decode("ascii"), "prompt_text": transcript or "",
                "prompt_id": name, "audio_format": "wav", "sample_rate": CLONE_RATE}
        answer = await httpwire.request_json(self._http, self.config, "POST", "/clone", "cloning", json=body)
        if not isinstance(answer, dict) or not answer.get("prompt_id"):
            raise httpwire.failed(self.config, "cloning", 200, f"unexpected answer {answer!r:.80}")
        if answer.get("existed"):
            raise UpstreamError(f"upstream {self.config.name} (cosyvoice) already has a voice "
                                f"{answer['prompt_id']!r}; remove it there or choose another name",
                                upstream=self.config.name, status=409)
        return str(answer["prompt_id"])

    async def health(self) -> bool:
        return await httpwire.answers(self._http, self.config, "/alive")

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for ws in idle:
            await ws.close()

"""Word timings on the OpenAI dialect: Kokoro-FastAPI's `POST /dev/captioned_speech` and the opt-in
`speech.word` events of `stream_format: "sse"` (docs/timestamps.md).

Words come from core/captions.py: each names the span of the client's `input` it times, so "25" is "25".
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from voxgate.audio.encoders import Encoder, encode_all, open_encoder
from voxgate.core import captions
from voxgate.core.captions import Word, WordTrack
from voxgate.core.context import Context
from voxgate.core.types import PcmChunk
from voxgate.dialects.common import (
    ClosingStreamingResponse,
    ErrorSpec,
    body_model,
    encode_stream,
    failure,
    first_then_rest,
    parse_json,
    unless_disconnected,
)
from voxgate.dialects.openai.peers import kokoro_voice
from voxgate.dialects.openai.protocol import KOKORO_AUDIO_FORMATS, PCM_RATE, CaptionedSpeechRequest
from voxgate.errors import (
    EngineFailure,
    InputTooLong,
    InvalidInput,
    Overloaded,
    Unauthorized,
    VoiceNotFound,
)

CAPTIONED_PATH = "/dev/captioned_speech"

# Kokoro-FastAPI answers its own errors as HTTPException(detail={"error", "message", "type"}): a bad voice or
# text is a 400 "validation_error", anything else a 500 "processing_error". The rest are voxgate's own.
KOKORO_ERRORS: dict[type[BaseException], ErrorSpec] = {
    InputTooLong: ErrorSpec(400, "invalid_request_error", "validation_error"),
    InvalidInput: ErrorSpec(400, "invalid_request_error", "validation_error"),
    VoiceNotFound: ErrorSpec(400, "invalid_request_error", "validation_error"),
    Unauthorized: ErrorSpec(401, "invalid_request_error", "unauthorized"),
    Overloaded: ErrorSpec(503, "server_error", "server_overloaded"),
    EngineFailure: ErrorSpec(500, "server_error", "processing_error"),
}


def kokoro_error(ctx: Context, dialect: str, exc: BaseException) -> JSONResponse:
    """An error of /dev/captioned_speech in Kokoro-FastAPI's shape: {"detail": {"error", "message", "type"}}."""
    found = failure(ctx.metrics, dialect, exc, KOKORO_ERRORS, ErrorSpec(500, "server_error", "processing_error"))
    detail = {"error": found.spec.code, "message": found.message, "type": found.spec.type}
    return JSONResponse({"detail": detail}, status_code=found.spec.status, headers=found.headers)


def stamps(timed: list[Word]) -> list[dict[str, Any]]:
    """Kokoro-FastAPI's `timestamps`: {word, start_time, end_time}, seconds from the start of the audio."""
    return [{"word": w.text, "start_time": round(w.start, 3), "end_time": round(w.end, 3)} for w in timed]


def word_event(word: Word) -> bytes:
    """One SSE `speech.word` event (a voxgate extension; clients that do not know the type skip it)."""
    event: dict[str, Any] = {"type": "speech.word", "word": word.text, "start": round(word.start, 3),
                             "end": round(word.end, 3), "start_char": word.start_char, "end_char": word.end_char}
    if word.estimated:
        event["estimated"] = True
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


TAIL_HOLD = 0.01  # seconds of each chunk's audio sent with the next chunk (see with_words)


async def with_words(chunks: AsyncIterator[PcmChunk], encoder: Encoder,
                     text: str) -> AsyncIterator[tuple[bytes, list[Word]]]:
    """Encoded audio as it is made, each piece with the words whose timings arrived with the audio before it
    (a codec may hold a chunk's bytes back; its words wait for the next bytes).

    The last TAIL_HOLD seconds of each chunk go to the encoder with the next one, and the very last ones after
    the stream ends, so the stream's last bytes always carry audio: words that arrive at the end (a chunk with
    timings and no samples, a codec whose flush writes nothing) ride on real audio, never on an empty piece
    (Kokoro-FastAPI sends no `/dev/captioned_speech` line without audio). Nothing waits for that: the held
    samples are already made, and the first audio leaves as soon as before."""
    track = WordTrack(text)
    pending: list[Word] = []

    async def tap() -> AsyncIterator[PcmChunk]:
        held: PcmChunk | None = None  # samples kept back from the chunk before
        try:
            async for chunk in chunks:
                pending.extend(track.add(chunk.timings))
                if chunk.encoded is not None:  # an upstream's own bytes (no samples to hold back), after the
                    if held is not None and len(held.samples):  # samples held back from before them (a local
                        yield held  # voice's), which are said first
                    held = None
                    yield chunk
                    continue
                samples = chunk.samples if held is None else np.concatenate([held.samples, chunk.samples])
                keep = min(len(samples), int(TAIL_HOLD * chunk.rate))
                held = replace(chunk, samples=samples[len(samples) - keep:], timings=None)
                if len(samples) > keep:
                    yield replace(chunk, samples=samples[:len(samples) - keep])
            if held is not None and len(held.samples):
                yield held
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async for data in encode_stream(tap(), encoder):
        ready, pending[:] = list(pending), []
        yield data, ready
    if pending:  # only after an upstream's passed-through bytes, which carry no timings: not seen in practice
        yield b"", list(pending)


async def sse_with_words(parts: AsyncIterator[tuple[bytes, list[Word]]], wrap: Callable[[bytes], bytes],
                         chars: int) -> AsyncIterator[bytes]:
    """`speech.audio.delta` events with a `speech.word` event per word after the audio it came with, then
    `speech.audio.done` (as the plain SSE body ends)."""
    async for data, timed in parts:
        if data:
            yield wrap(data)
        for word in timed:
            yield word_event(word)
    usage = {"input_tokens": chars, "output_tokens": 0, "total_tokens": chars}
    yield b"data: " + json.dumps({"type": "speech.audio.done", "usage": usage}).encode() + b"\n\n"


def _line(content: dict[str, Any]) -> bytes:
    """One JSON line as Kokoro-FastAPI's JSONStreamingResponse renders it."""
    return (json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode()


async def _lines(parts: AsyncIterator[tuple[bytes, list[Word]]], audio_format: str,
                 timestamps: bool) -> AsyncIterator[bytes]:
    """One line per piece of audio. As Kokoro-FastAPI does, words of a piece without audio wait for the next
    line with audio; with_words ends every stream on audio, so none are left over (if some were, they would
    come on a last line of their own rather than be lost)."""
    waiting: list[Word] = []
    async for data, timed in parts:
        waiting += timed
        if not data:
            continue
        yield _line({"audio": base64.b64encode(data).decode("ascii"), "audio_format": audio_format,
                     "timestamps": stamps(waiting) if timestamps else []})
        waiting = []
    if waiting:
        yield _line({"audio": "", "audio_format": audio_format, "timestamps": stamps(waiting) if timestamps else []})


def _voice(ctx: Context, table: Mapping[str, str], name: str) -> str:
    """A registry voice first, then a Kokoro-FastAPI name or blend (kokoro_voice_aliases)."""
    try:
        return ctx.voices.resolve(name).id
    except VoiceNotFound:
        spec = kokoro_voice(table, name)
        if spec is None:
            raise
    try:
        return ctx.voices.resolve(spec).id
    except VoiceNotFound:
        raise VoiceNotFound(f"voice {name!r} stands for {spec!r}, which is not installed (see the setting "
                            f"kokoro_voice_aliases)", param="voice") from None


async def _body(request: Request) -> CaptionedSpeechRequest:
    """The body validated as FastAPI would (a 422 with its `detail` list, as Kokoro-FastAPI answers)."""
    raw = await request.body()
    try:
        payload = parse_json(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", position), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": str(exc)}}]) from None
    return body_model(CaptionedSpeechRequest, payload)


async def captioned_speech(ctx: Context, kokoro_table: Mapping[str, str], request: Request) -> Response:
    """POST /dev/captioned_speech: audio and word timestamps, streamed as JSON lines or as one object."""
    body = await _body(request)
    name, speed = body.aliased()
    wanted = body.to_request(_voice(ctx, kokoro_table, name), speed)
    fmt = body.response_format
    audio_format = KOKORO_AUDIO_FORMATS[fmt]
    headers = {"Content-Disposition": f"attachment; filename=speech.{fmt}", "Cache-Control": "no-cache"}
    if not body.stream:
        pcm, timed = await unless_disconnected(request, captions.synthesize(ctx.service, wanted))
        data = await asyncio.to_thread(encode_all, pcm.samples, PCM_RATE, fmt)
        content = {"audio": base64.b64encode(data).decode("ascii"), "audio_format": audio_format,
                   "timestamps": stamps(timed) if body.return_timestamps else None}
        return JSONResponse(content, headers=headers)
    stream = await ctx.service.open(wanted)
    chunks = await first_then_rest(stream)

    async def close() -> None:
        await stream.aclose()

    parts = with_words(chunks, open_encoder(fmt, PCM_RATE, streaming=True), wanted.text)
    return ClosingStreamingResponse(_lines(parts, audio_format, body.return_timestamps), close,
                                    media_type="application/json", headers={**headers, "X-Accel-Buffering": "no"})


__all__ = ["CAPTIONED_PATH", "captioned_speech", "kokoro_error", "sse_with_words", "with_words"]

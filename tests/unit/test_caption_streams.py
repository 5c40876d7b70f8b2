"""Words riding with streamed audio (dialects/openai/captioned.py), on hand-made chunks: each word once, after
the audio it came with; chunks without timings still stream all their audio, with no words."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import numpy as np

from voxgate.audio.encoders import open_encoder
from voxgate.core.captions import Word
from voxgate.core.types import PcmChunk, Timing
from voxgate.dialects.openai.captioned import _lines, sse_with_words, with_words
from voxgate.dialects.openai.routes import _sse

RATE = 24000
TEXT = "Hello world. Again here."


def _chunk(seconds: float, timings: tuple[Timing, ...] | None) -> PcmChunk:
    t = np.arange(int(seconds * RATE)) / RATE
    return PcmChunk((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE, timings=timings)


async def _chunks(*chunks: PcmChunk) -> AsyncIterator[PcmChunk]:
    for chunk in chunks:
        yield chunk


async def _collect(chunks: AsyncIterator[PcmChunk]) -> list[tuple[bytes, list[Word]]]:
    return [part async for part in with_words(chunks, open_encoder("pcm", RATE), TEXT)]


def test_words_follow_the_audio_they_came_with() -> None:
    first = _chunk(1.0, (Timing(0, 5, 0.1, 0.4), Timing(6, 12, 0.5, 0.9)))
    second = _chunk(0.5, None)  # an engine that cannot say: audio, no words
    third = _chunk(1.0, (Timing(13, 18, 1.6, 1.9), Timing(19, 24, 2.0, 2.4)))
    parts = asyncio.run(_collect(_chunks(first, second, third)))
    audio = b"".join(data for data, _ in parts)
    assert len(audio) == 2 * int(2.5 * RATE)  # every sample, 16-bit
    assert [w.text for _, timed in parts for w in timed] == ["Hello", "world.", "Again", "here."]
    owner = next(i for i, (_, timed) in enumerate(parts) if timed and timed[0].text == "Again")
    assert sum(len(data) for data, _ in parts[:owner + 1]) >= 2 * int(1.5 * RATE)  # after the audio before it


def test_samples_held_back_go_before_an_upstream_s_passed_through_bytes() -> None:
    # A local voice's piece, then an upstream's own bytes: the piece's held-back tail was sent after them.
    local = _chunk(1.0, (Timing(0, 5, 0.1, 0.4),))
    upstream = PcmChunk(np.zeros(0, np.float32), RATE, encoded=b"\x7f\x01" * 600)
    parts = asyncio.run(_collect(_chunks(local, upstream)))
    audio = b"".join(data for data, _ in parts)
    assert len(audio) == 2 * int(1.0 * RATE) + 1200
    assert audio.endswith(b"\x7f\x01" * 600)  # every local sample first, in order
    assert np.abs(np.frombuffer(audio[:2 * RATE], np.int16) - local.samples * 32767).max() <= 1


def test_sse_body_has_word_events_between_audio_and_a_done_event_last() -> None:
    async def body() -> list[dict[str, object]]:
        parts = with_words(_chunks(_chunk(1.0, (Timing(0, 5, 0.1, 0.4),)), _chunk(0.5, None)),
                           open_encoder("pcm", RATE), TEXT)
        raw = b"".join([event async for event in sse_with_words(parts, _sse, len(TEXT))])
        return [json.loads(block.removeprefix(b"data: ")) for block in raw.split(b"\n\n") if block]

    events = asyncio.run(body())
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    assert [e for e in events if e["type"] == "speech.word"] == [
        {"type": "speech.word", "word": "Hello", "start": 0.1, "end": 0.4, "start_char": 0, "end_char": 5}]
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in events if e["type"] == "speech.audio.delta")
    assert len(audio) == 2 * int(1.5 * RATE)


def test_no_timings_at_all_still_streams_everything() -> None:
    parts = asyncio.run(_collect(_chunks(_chunk(0.5, None), _chunk(0.5, None))))
    assert sum(len(d) for d, _ in parts) == 2 * RATE and all(not timed for _, timed in parts)


def _captioned_lines(chunks: AsyncIterator[PcmChunk], fmt: str) -> list[dict[str, object]]:
    async def body() -> bytes:
        parts = with_words(chunks, open_encoder(fmt, RATE), TEXT)
        return b"".join([line async for line in _lines(parts, "audio/pcm", True)])

    return [json.loads(line) for line in asyncio.run(body()).splitlines()]


def test_words_arriving_after_the_last_audio_ride_on_the_last_audio_line() -> None:
    # The last chunk carries the last words and no samples: the words still come on a line with audio (Kokoro-
    # FastAPI sends no line with empty audio), and no sample is lost.
    first = _chunk(1.0, (Timing(0, 5, 0.1, 0.4), Timing(6, 12, 0.5, 0.9)))
    last = PcmChunk(np.zeros(0, np.float32), RATE, timings=(Timing(13, 18, 1.0, 1.3), Timing(19, 24, 1.4, 1.8)))
    for fmt in ("pcm", "wav", "mp3"):
        lines = _captioned_lines(_chunks(first, last), fmt)
        assert lines and all(line["audio"] for line in lines), fmt
        assert [t["word"] for line in lines for t in line["timestamps"]] == ["Hello", "world.", "Again", "here."]
        assert [t["word"] for t in lines[-1]["timestamps"]][-2:] == ["Again", "here."], fmt
    audio = b"".join(base64.b64decode(line["audio"]) for line in _captioned_lines(_chunks(first, last), "pcm"))
    assert len(audio) == 2 * RATE  # every sample once, 16-bit


def test_held_tail_keeps_every_sample_in_order() -> None:
    chunks = [_chunk(0.3, None), PcmChunk(np.zeros(0, np.float32), RATE), _chunk(0.004, None), _chunk(0.5, None)]
    parts = asyncio.run(_collect(_chunks(*chunks)))
    expected = np.concatenate([c.samples for c in chunks])
    got = np.frombuffer(b"".join(d for d, _ in parts), "<i2").astype(np.float32) / 32767
    assert len(got) == len(expected) and np.abs(got - expected).max() < 1e-3
    assert all(data for data, _ in parts)

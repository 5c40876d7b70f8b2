"""Timings ride with the audio: every step that changes time maps them, and nothing invents them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.unit.fake_engine import RATE, FakeEngine
from voxgate.audio.encoders import encode_all
from voxgate.audio.resample import resample
from voxgate.core.metrics import Metrics
from voxgate.core.service import MID_SENTENCE_GAP, Limits, SynthesisService, _trimmed, post_processing
from voxgate.core.types import (
    Piece,
    SynthesisRequest,
    Timing,
    as_piece,
    join_pieces,
    offset_timings,
    scale_timings,
    stretched,
    trim_timings,
    trimmed,
    with_audio,
)
from voxgate.scheduling.backend import LocalBackend
from voxgate.scheduling.pool import WorkerPool
from voxgate.voices.registry import VoiceRegistry

from ..conftest import decode

SR = 24000
WORDS = (Timing(0, 5, 0.10, 0.40), Timing(6, 11, 0.45, 0.90))  # "hello world" in one second of audio


def flat(timings: tuple[Timing, ...] | None) -> list[float]:
    """Timings as one list of numbers, for pytest.approx."""
    assert timings is not None
    return [x for t in timings for x in (t.start_char, t.end_char, t.start, t.end)]


def burst_piece(seconds: float = 1.0) -> Piece:
    """Silence with a loud 440 Hz tone exactly where each word of WORDS is said."""
    x = np.zeros(int(seconds * SR), np.float32)
    for t in WORDS:
        n = np.arange(int(t.start * SR), int(t.end * SR))
        x[n] = 0.5 * np.sin(2 * np.pi * 440 * n / SR)
    return Piece(x, SR, WORDS)


def loud_spans(x: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of sound, from a 5 ms envelope."""
    hop = rate // 200
    env = np.array([np.abs(x[i:i + hop]).max(initial=0.0) for i in range(0, len(x), hop)]) > 0.1
    edges = np.flatnonzero(np.diff(np.concatenate([[0], env.astype(int), [0]])))
    return [(a * hop / rate, b * hop / rate) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def test_tempo_two_halves_every_start_and_end() -> None:
    halved = scale_timings(WORDS, 0.5)
    assert flat(halved) == pytest.approx([0, 5, 0.05, 0.20, 6, 11, 0.225, 0.45])
    piece = stretched(burst_piece(), np.zeros(SR // 2, np.float32))  # the same audio at tempo 2.0
    assert piece.timings == halved and piece.rate == SR
    assert scale_timings(None, 0.5) is None


def test_trimming_leading_silence_shifts_and_clamps() -> None:
    assert flat(trim_timings(WORDS, 0.1, 1.0)) == pytest.approx([0, 5, 0.0, 0.30, 6, 11, 0.35, 0.80])
    # a word inside the cut-off silence keeps its place, at zero length, at the edge
    assert trim_timings((Timing(0, 1, 0.0, 0.05),), 0.1, 1.0) == (Timing(0, 1, 0.0, 0.0),)
    # and one past the kept end is clamped to it
    assert flat(trim_timings(WORDS, 0.0, 0.6)) == pytest.approx([0, 5, 0.10, 0.40, 6, 11, 0.45, 0.6])
    cut = trimmed(burst_piece(), int(0.1 * SR), int(0.95 * SR))
    assert len(cut.samples) == int(0.85 * SR)
    assert flat(cut.timings) == pytest.approx(flat(trim_timings(WORDS, 0.1, 0.95)))


def test_resampling_keeps_seconds() -> None:
    piece = burst_piece()
    out = with_audio(piece, resample(piece.samples, SR, 16000), 16000)
    assert out.rate == 16000 and out.timings == WORDS
    for (start, end), t in zip(loud_spans(out.samples, out.rate), out.timings, strict=True):
        assert abs(start - t.start) <= 0.006 and abs(end - t.end) <= 0.006


def test_joining_offsets_by_the_previous_length_and_the_segment_start_in_the_text() -> None:
    first, second = burst_piece(1.0), Piece(np.zeros(SR // 2, np.float32), SR, (Timing(0, 3, 0.1, 0.3),))
    joined = join_pieces([first, second], char_starts=[0, 12])  # "hello world new": "new" starts at 12
    assert len(joined.samples) == SR + SR // 2
    assert flat(joined.timings) == pytest.approx([*flat(WORDS), 12, 15, 1.1, 1.3])
    assert flat(offset_timings(WORDS, 2.0, 3)) == pytest.approx([3, 8, 2.1, 2.4, 9, 14, 2.45, 2.9])
    # one piece that cannot say when its words are spoken: the whole has no timings, none half-missing
    assert join_pieces([first, Piece(np.zeros(10, np.float32), SR)]).timings is None
    with pytest.raises(ValueError, match="different rates"):
        join_pieces([first, Piece(np.zeros(10, np.float32), 16000)])


def test_a_bare_array_from_an_old_engine_has_no_timings() -> None:
    piece = as_piece(np.zeros(100, np.float64), 22050)
    assert piece.timings is None and piece.samples.dtype == np.float32 and piece.rate == 22050


def test_seam_trim_maps_the_timings_of_what_it_keeps() -> None:
    out = _trimmed(None, tail=True, head=True)(burst_piece())
    gap = MID_SENTENCE_GAP
    assert out.timings is not None
    assert flat(out.timings) == pytest.approx([0, 5, gap, 0.30 + gap, 6, 11, 0.35 + gap, 0.80 + gap], abs=2 / SR)
    spans = loud_spans(out.samples, SR)
    assert abs(spans[0][0] - out.timings[0].start) <= 0.006 and abs(spans[-1][1] - out.timings[-1].end) <= 0.006


@pytest.mark.parametrize(("semitones", "tempo"), [(0.0, 2.0), (3.0, 1.0), (-2.0, 0.5)])
def test_the_praat_pass_maps_timings_to_where_the_words_land(semitones: float, tempo: float) -> None:
    voice = FakeEngine().voices()[0]
    post = post_processing(voice, semitones=semitones, tempo=tempo)
    assert post is not None
    out = post(burst_piece())
    assert out.timings is not None and abs(out.duration - 1.0 / tempo) < 0.01
    assert flat(out.timings) == pytest.approx(flat(scale_timings(WORDS, out.duration)))
    spans = loud_spans(out.samples, SR)
    assert len(spans) == 2
    for (start, end), t in zip(spans, out.timings, strict=True):
        assert abs(start - t.start) <= 0.02 and abs(end - t.end) <= 0.02, (spans, out.timings)


def test_the_encoder_keeps_seconds() -> None:
    piece = burst_piece()
    for fmt in ("wav", "flac"):
        samples, rate = decode(encode_all(piece.samples, piece.rate, fmt))
        for (start, end), t in zip(loud_spans(samples, rate), WORDS, strict=True):
            assert abs(start - t.start) <= 0.006 and abs(end - t.end) <= 0.006, fmt


async def test_stream_chunks_carry_timings_on_the_stream_axis_through_resampling() -> None:
    engine = FakeEngine()  # every word is 0.1 s / speed of tone, timed to its word
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, express=0)
    service = SynthesisService(VoiceRegistry({"fake": engine}, {}, "a"), LocalBackend(pool), Metrics(), Limits())
    try:
        text = "one two three. four five."
        request = SynthesisRequest(text=text, voice="a", sample_rate=24000, speed=5.0, timings=True)
        chunks = [c async for c in service.stream(request)]
        # "25" is read "twenty five" (two engine words): one timing with the offsets of "25"; "Dr." is one word
        said = "Dr. Smith paid $3.50 for  25 apples."
        spoken = [c async for c in service.stream(SynthesisRequest(text=said, voice="a", timings=True))]
    finally:
        pool.close()
    assert all(c.timings is not None for c in chunks)
    timed = [(text[t.start_char:t.end_char], t) for c in chunks for t in c.timings or ()]
    assert [w for w, _ in timed] == ["one", "two", "three.", "four", "five."]
    # speed 5 → the fake engine makes 0.02 s words itself: each starts where the previous ends
    for n, (_, t) in enumerate(timed):
        assert (t.start, t.end) == pytest.approx((n * 0.02, (n + 1) * 0.02), abs=1 / RATE)
        assert not t.estimated
    total = sum(len(c.samples) for c in chunks) / 24000
    assert total == pytest.approx(timed[-1][1].end, abs=0.002)
    words = [t for c in spoken for t in c.timings or ()]
    assert [said[t.start_char:t.end_char] for t in words] == ["Dr.", "Smith", "paid", "$3.50", "for", "25",
                                                               "apples."]
    # one 0.1 s engine word each, except $3.50 (three dollars and fifty cents: 5 words)
    lengths = [round(t.end - t.start, 3) for t in words]
    assert lengths == pytest.approx([0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1], abs=0.002)
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(words))


class _LateWords(FakeEngine):
    """Each word a piece of 0.3 s of tone, said in its last 10 ms: its start sits in the resampler's hold."""

    def load(self, voice, threads):  # type: ignore[no-untyped-def]
        loaded = super().load(voice, threads)

        def synthesize(text, params):  # type: ignore[no-untyped-def]
            for word in text.split():
                start = text.index(word)
                tone = (0.3 * np.sin(np.arange(int(0.3 * RATE)) * 0.2)).astype(np.float32)
                yield Piece(tone, RATE, (Timing(start, start + len(word), 0.29, 0.3),))

        loaded.synthesize = synthesize  # type: ignore[method-assign]
        return loaded


async def test_a_word_never_comes_before_the_audio_holding_its_start() -> None:
    engine = _LateWords()
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, express=0)
    service = SynthesisService(VoiceRegistry({"fake": engine}, {}, "a"), LocalBackend(pool), Metrics(), Limits())
    try:
        chunks = [c async for c in service.stream(SynthesisRequest(text="one two three", voice="a",
                                                                   sample_rate=24000, timings=True))]
    finally:
        pool.close()
    heard, words = 0.0, []
    for c in chunks:  # the stream as a client reads it, chunk by chunk
        heard += len(c.samples) / 24000
        assert all(t.start <= heard + 1e-6 for t in c.timings or ()), (heard, c.timings)
        words += c.timings or ()
    assert [t.start_char for t in words] == [0, 4, 8]
    assert [t.start for t in words] == pytest.approx([0.29, 0.59, 0.89], abs=1e-3)


class _Untimed(FakeEngine):
    """The fake engine's audio with no timings (an engine that cannot say): the core would estimate them."""

    def load(self, voice, threads):  # type: ignore[no-untyped-def]
        loaded = super().load(voice, threads)
        timed = loaded.synthesize

        def synthesize(text, params):  # type: ignore[no-untyped-def]
            for piece in timed(text, params):
                yield Piece(piece.samples, piece.rate)

        loaded.synthesize = synthesize  # type: ignore[method-assign]
        return loaded


@pytest.mark.parametrize("engine_timed", [True, False])
async def test_timing_work_is_done_only_for_a_request_that_reads_timings(
        monkeypatch: pytest.MonkeyPatch, engine_timed: bool) -> None:
    import voxgate.core.service as service_module

    made: list[str] = []  # word timers constructed and estimates made, by the core
    real_timer, real_estimate = service_module.WordTimer, service_module.estimate_words

    def timer(text):  # type: ignore[no-untyped-def]
        made.append("timer")
        return real_timer(text)

    def estimate(*args):  # type: ignore[no-untyped-def]
        made.append("estimate")
        return real_estimate(*args)

    monkeypatch.setattr(service_module, "WordTimer", timer)
    monkeypatch.setattr(service_module, "estimate_words", estimate)
    engine = FakeEngine() if engine_timed else _Untimed()
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, express=0)
    service = SynthesisService(VoiceRegistry({"fake": engine}, {}, "a"), LocalBackend(pool), Metrics(), Limits())
    text = "Dr. Smith paid $3.50. Then 25 apples went home."
    try:
        plain = [c async for c in service.stream(SynthesisRequest(text=text, voice="a", sample_rate=24000))]
        assert made == []  # no word timer, no estimate: nothing the client would not read
        timed = [c async for c in service.stream(SynthesisRequest(text=text, voice="a", sample_rate=24000,
                                                                  timings=True))]
    finally:
        pool.close()
    assert "timer" in made and ("estimate" in made) is not engine_timed
    assert all(c.timings is None for c in plain)
    assert all(c.timings is not None for c in timed)
    words = [text[t.start_char:t.end_char] for c in timed for t in c.timings or ()]
    assert words == text.split()
    assert all(t.estimated is not engine_timed for c in timed for t in c.timings or ())
    # the audio is the same either way: asking for timings changes nothing else
    assert [c.index for c in plain] == [c.index for c in timed]
    assert np.array_equal(np.concatenate([c.samples for c in plain]), np.concatenate([c.samples for c in timed]))


def test_fast_loudness_marks_the_same_frames_as_the_exact_sums() -> None:
    # wordtiming._loud sums squares in float32 and compares powers; _loud_exact (float64 sums, dB levels) is the
    # rule it must agree with frame for frame, also for frames built to sit within 1e-9..1e-2 of the loudness edge
    # (where _loud hands the clip to _loud_exact) and for clips with inf, nan or overflowing squares.
    from voxgate.engines.wordtiming import _loud, _loud_exact

    draw = np.random.default_rng(5)
    for n in range(600):
        rate = (8000, 11025, 16000, 22050, 24000, 48000)[n % 6]
        floor = (-35.0, -45.0)[n % 2]
        hop, win = rate // 200, rate // 100
        length = int(draw.integers(win * 3, rate))
        x = (draw.standard_normal(length) * np.repeat(np.exp(draw.uniform(-5, 0, length // hop + 1)), hop)[:length])
        x = x.astype(np.float32)
        if n % 3 == 0:  # move one frame next to the edge
            count = (length - win) // hop + 1
            power = np.array([np.mean(x[i * hop:i * hop + win].astype(np.float64) ** 2) for i in range(count)])
            j = int(draw.integers(0, count))
            if j != int(power.argmax()) and power[j] > 0:
                target = power.max() * 10 ** (floor / 10) * (1 + draw.choice([-1, 1]) * 10 ** draw.uniform(-9, -2))
                x[j * hop:j * hop + win] = (x[j * hop:j * hop + win] * np.sqrt(target / power[j])).astype(np.float32)
        assert np.array_equal(_loud(x, rate, floor)[0], _loud_exact(x, rate, floor)[0]), (n, rate)
    for odd in (np.inf, np.nan, 3e19):
        x = np.sin(np.arange(2400, dtype=np.float32) / 9).astype(np.float32)
        x[1000] = odd
        assert np.array_equal(_loud(x, 24000, -35.0)[0], _loud_exact(x, 24000, -35.0)[0])

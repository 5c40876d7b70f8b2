"""Piper's word timings (on by default): the model's own phoneme sample counts, grouped into the text's words."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from voxgate.core.types import Piece
from voxgate.engines.base import EngineParams
from voxgate.engines.piper import MAX_LEAD, PiperEngine, PiperLoadedVoice, WordAligner, phoneme_words

JOE = "en_US-joe-medium"
TEXT = ("The weather today is mild and sunny, with a light breeze coming in from the west, 25 km/h. "
        "Temperatures will climb slowly through the morning and peak in the early afternoon.")
QUIET = EngineParams(noise_scale=0.0, noise_w_scale=0.0)  # deterministic audio, to compare with and without


def test_phoneme_words_span_their_sounds_not_the_pauses_between() -> None:
    phonemes = ["h", "ˈ", "i", ",", " ", "j", "o", "ː", "."]
    samples = [10, 0, 20, 50, 5, 10, 10, 5, 40]
    # the comma's and period's pauses are left out; stress and length marks are not compared
    assert phoneme_words(phonemes, samples) == [(0, 30, "hi"), (85, 110, "jo")]
    assert phoneme_words(phonemes) == [(0, 0, "hi"), (0, 0, "jo")]
    assert phoneme_words([",", " ", "-", " "]) == []  # punctuation alone is no word


READINGS = {"I": ["aɪ"], "paid": ["peɪd"], "25": ["twɛnti", "faɪv"], "from": ["fɹʌm"], "the": ["ðə"],
            "shop.": ["ʃɑp"], "—": []}


def test_numbers_and_run_together_words_are_matched_to_the_words_of_the_text() -> None:
    text = "I paid 25 — from the shop."
    aligner = WordAligner(text, lambda word: READINGS[word])
    spoken = [(0, 10, "aɪ"), (12, 30, "peɪd"), (30, 50, "twɛnti"), (52, 70, "faɪv"), (80, 100, "fɹʌmðə"),
              (100, 130, "ʃɑp")]
    timed = aligner.take(spoken, rate=100)
    assert timed is not None
    assert [(text[t.start_char:t.end_char], t.start, t.end) for t in timed] == [
        ("I", 0.0, 0.1), ("paid", 0.12, 0.3), ("25", 0.3, 0.7), ("from the", 0.8, 1.0), ("shop.", 1.0, 1.3)]


def test_words_that_do_not_match_get_no_timings() -> None:
    aligner = WordAligner("I paid 25", lambda word: READINGS[word])
    assert aligner.take([(0, 10, "aɪ"), (10, 20, "blʌb"), (20, 30, "zuz")], rate=100) is None  # not the text
    # a short word read differently in the sentence is taken between two that match
    reduced = WordAligner("I paid", lambda word: READINGS[word]).take([(0, 10, "ə"), (10, 20, "peɪd")], rate=100)
    assert reduced is not None and [(t.start_char, t.end_char) for t in reduced] == [(0, 1), (2, 6)]
    short = WordAligner("25", lambda word: READINGS[word])
    assert short.take([(0, 10, "twɛnti")], rate=100) is None  # "25" would run past the sentence


def test_a_sentence_that_matches_nothing_is_paired_in_order_and_marked_estimated() -> None:
    aligner = WordAligner("I paid 25", lambda word: READINGS[word])
    spoken = [(0, 10, "blʌb"), (10, 20, "zuz"), (20, 30, "kɹɑk")]
    assert aligner.take(spoken, rate=100) is None  # the words are left for the estimate
    guessed = aligner.estimate(spoken, rate=100)
    assert [(t.start_char, t.end_char, t.start, t.end, t.estimated) for t in guessed] == [
        (0, 1, 0.0, 0.1, True), (2, 6, 0.1, 0.2, True), (7, 9, 0.2, 0.3, True)]


@pytest.fixture(scope="module")
def voices() -> Iterator[tuple[PiperLoadedVoice, PiperLoadedVoice]]:
    plain, timed = PiperEngine(alignments=False), PiperEngine()
    voice = next(v for v in plain.voices() if v.id == JOE)
    loaded = plain.load(voice, threads=1), timed.load(voice, threads=1)
    yield loaded
    for one in loaded:
        one.close()


def _check(pieces: list[Piece], text: str) -> list[str]:
    """Each piece's timings in order, inside its audio, not overlapping; returns the words they name."""
    words = []
    for piece in pieces:
        assert piece.timings is not None
        ends = 0.0
        for t in piece.timings:
            assert ends <= t.start < t.end <= piece.duration + 1e-9
            ends = t.end
            words.append(text[t.start_char:t.end_char])
    return words


@pytest.mark.parametrize("speed", [1.0, 0.5, 2.0])
def test_every_word_of_the_text_is_timed_once_in_order(voices: tuple[PiperLoadedVoice, PiperLoadedVoice],
                                                      speed: float) -> None:
    _, timed = voices
    pieces = list(timed.synthesize(TEXT, EngineParams(speed=speed, noise_scale=0.0, noise_w_scale=0.0)))
    assert len(pieces) == 2
    # "25" is one word though Piper says two; "from the" and "in the" are said as one word, so timed as one
    assert " ".join(_check(pieces, TEXT)) == TEXT
    west = next(t for t in pieces[0].timings or () if TEXT[t.start_char:t.end_char] == "km/h.")
    assert pieces[0].duration - west.end < 0.5  # the last word ends near the end of its sentence's audio


def test_timings_change_no_sample(voices: tuple[PiperLoadedVoice, PiperLoadedVoice]) -> None:
    plain, timed = voices
    without = list(plain.synthesize(TEXT, QUIET))
    with_timings = list(timed.synthesize(TEXT, QUIET))
    assert all(p.timings is None for p in without)
    assert [len(p.samples) for p in without] == [len(p.samples) for p in with_timings]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(without, with_timings, strict=True))


def test_words_sit_where_the_sound_is(voices: tuple[PiperLoadedVoice, PiperLoadedVoice]) -> None:
    _, timed = voices
    text = "Stop. Go."
    pieces = list(timed.synthesize(text, QUIET))
    for piece in pieces:
        assert piece.timings is not None and len(piece.timings) == 1
        t = piece.timings[0]
        x = piece.samples
        inside = x[int(t.start * piece.rate):int(t.end * piece.rate)]
        before = x[:max(int(t.start * piece.rate) - int(0.02 * piece.rate), 0)]
        assert np.sqrt(np.mean(inside**2)) > 4 * (np.sqrt(np.mean(before**2)) if len(before) else 0.0) + 0.005


def test_the_silence_before_a_sentence_is_cut_to_a_short_lead_in(
        voices: tuple[PiperLoadedVoice, PiperLoadedVoice]) -> None:
    # Piper draws the start token's duration: for this sentence 0.3-0.75 s in about one draw in ten (0.06 s
    # mostly). Wider duration noise draws it long more often; every piece must still start speaking within
    # MAX_LEAD, with its first word's timing moved along with the audio: at the piece's first sound (the first
    # 10 ms frame within 35 dB of the loudest, written out here), also when the decoder starts the first
    # phoneme inside the kept lead, before the alignment says (the aligned start was up to 90 ms late then).
    _, timed = voices
    text = "This sentence is spoken at one rate."
    for _ in range(10):
        (piece,) = timed.synthesize(text, EngineParams(noise_w_scale=2.0))
        x = piece.samples
        onset = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())[0] / piece.rate
        assert onset < MAX_LEAD + 0.03, onset
        win, hop = piece.rate // 100, piece.rate // 200
        power = np.array([np.mean(x[i:i + win].astype(np.float64) ** 2) for i in range(0, len(x) - win + 1, hop)])
        sound = np.flatnonzero(power >= power.max() * 10 ** -3.5)[0] * hop / piece.rate
        assert piece.timings is not None and abs(piece.timings[0].start - sound) < 0.006, (piece.timings[0], sound)

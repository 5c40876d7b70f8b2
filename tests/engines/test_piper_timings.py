"""Piper's word timings (opt-in): the model's own phoneme sample counts, grouped into the text's words."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest

from voxgate.core.types import Piece, Timing
from voxgate.engines.base import EngineParams
from voxgate.engines.piper import PiperEngine, PiperLoadedVoice, phoneme_words, word_plan, word_timings

JOE = "en_US-joe-medium"
TEXT = "The quick brown fox, aged 25, jumps over the lazy dog. How are you?"
QUIET = EngineParams(noise_scale=0.0, noise_w_scale=0.0)  # deterministic audio, to compare with and without


def test_phoneme_words_span_their_sounds_not_the_pauses_between() -> None:
    phonemes = ["h", "i", ",", " ", "j", "o", "."]
    samples = [10, 20, 50, 5, 10, 10, 40]
    assert phoneme_words(phonemes, samples) == [(0, 30), (85, 105)]  # the comma's and period's pauses left out
    assert phoneme_words(phonemes) == [(0, 0), (0, 0)]  # counting only
    assert phoneme_words([",", " ", "-", " "]) == []  # punctuation alone is no word


def test_a_plan_is_made_only_when_every_word_is_accounted_for() -> None:
    readings = {"25": [["t", "w", "e", "n", "t", "i", " ", "f", "a", "i", "v"]], "cats": [["k", "a", "t", "s"]],
                "25 cats": [["t", "w", "e", " ", "f", "a", "i", " ", "k", "a", "t", "s"]], "a-b": [["a", "b"]]}
    plan = word_plan("25 cats", lambda text: readings[text])
    assert plan == deque([(0, 2, 2), (3, 7, 1)])  # "25" is one word of the text, said as two
    readings["cats"] = [["k", "a", " ", "t", "s"]]  # read differently alone than in the sentence
    assert word_plan("25 cats", lambda text: readings[text]) is None


def test_word_timings_take_words_in_order_and_refuse_to_straddle_a_sentence() -> None:
    plan = deque([(0, 2, 2), (3, 7, 1)])
    timed = word_timings(plan, [(0, 100), (120, 200), (250, 400)], rate=100)
    assert timed == [Timing(0, 2, 0.0, 2.0), Timing(3, 7, 2.5, 4.0)] and not plan
    assert word_timings(deque([(0, 2, 2)]), [(0, 100)], rate=100) is None  # "25" would run past the sentence


@pytest.fixture(scope="module")
def voices() -> Iterator[tuple[PiperLoadedVoice, PiperLoadedVoice]]:
    plain, timed = PiperEngine(), PiperEngine(alignments=True)
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
    assert _check(pieces, TEXT) == TEXT.split()  # "25," is one word, though Piper says two
    dog = next(t for t in pieces[0].timings or () if TEXT[t.start_char:t.end_char] == "dog.")
    assert pieces[0].duration - dog.end < 0.5  # the last word ends near the end of its sentence's audio


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

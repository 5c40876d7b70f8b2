"""bench_timestamps' PocketSphinx reference: what it is given to align and how its words come back to ours
(issue 16). The decoder here replays an alignment; the real one needs the bench extra (pocketsphinx)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench = pytest.importorskip("bench_timestamps")


class Replay:
    """A pocketsphinx.Decoder stand-in: records what it is asked to align and returns fixed segments."""

    def __init__(self, segments: list[tuple[str, int]] | None) -> None:
        self.segments = segments
        self.text: str | None = None
        self.raw = b""

    def set_align_text(self, text: str) -> None:
        self.text = text

    def start_utt(self) -> None:
        self.raw = b""

    def process_raw(self, data: bytes, full_utt: bool = False) -> None:
        assert full_utt
        self.raw += data

    def end_utt(self) -> None:
        pass

    def seg(self) -> list[SimpleNamespace] | None:  # None: pocketsphinx found no alignment
        return None if self.segments is None else [SimpleNamespace(word=w, start_frame=f) for w, f in self.segments]


WORDS = frozenset({"she", "scored", "eighty", "seven", "points", "doctor", "smith"})


def test_numbers_are_aligned_as_said_and_take_their_first_spoken_word_s_start() -> None:
    text = "She scored 87 points."
    decoder = Replay([("<s>", 0), ("she", 4), ("scored(2)", 21), ("<sil>", 51), ("eighty", 56), ("seven", 81),
                      ("points", 111), ("</s>", 151)])
    sphinx = bench.Sphinx(decoder, WORDS)
    audio = np.full(22050, 0.25, np.float32)  # one second at Piper's rate

    starts = bench.sphinx_words(sphinx, audio, 22050, text)

    assert decoder.text == "she scored eighty seven points"  # the text as voxgate reads it, in dictionary spelling
    assert len(decoder.raw) == pytest.approx(2 * 16000, abs=64)  # int16 at 16 kHz
    assert abs(int(np.frombuffer(decoder.raw, np.int16)[8000]) - 0.25 * 32767) <= 2  # the level kept
    # each of our words (by its offset in `text`) takes the start of its first aligned word: "87" is "eighty"
    assert starts == [(0, 0.04), (4, 0.21), (11, 0.56), (14, 1.11)]
    assert sphinx.missing == []


def test_a_clip_with_a_word_outside_the_dictionary_or_no_or_another_alignment_is_left_out() -> None:
    audio = np.zeros(1600, np.float32)
    sphinx = bench.Sphinx(Replay([]), WORDS)
    assert bench.sphinx_words(sphinx, audio, 16000, "She scored zebras.") == []
    assert sphinx.missing == ["zebras"]
    assert sphinx.decoder.text is None  # never aligned

    swapped = bench.Sphinx(Replay([("she", 0), ("points", 10), ("scored", 20)]), frozenset({"she", "scored"}))
    assert bench.sphinx_words(swapped, audio, 16000, "She scored.") == []
    assert swapped.missing == ["She scored."]

    failed = bench.Sphinx(Replay(None), frozenset({"she", "scored"}))
    assert bench.sphinx_words(failed, audio, 16000, "She scored.") == []
    assert failed.missing == ["She scored."]


def test_abbreviations_and_leading_apostrophes_keep_their_offsets() -> None:
    said = "Doctor Smith 'twas"
    assert bench.sphinx_tokens(said) == [(0, "doctor"), (7, "smith"), (14, "twas")]
    decoder = Replay([("doctor", 10), ("smith", 40)])
    starts = bench.sphinx_words(bench.Sphinx(decoder, WORDS), np.zeros(8000, np.float32), 16000, "Dr. Smith")
    assert starts == [(0, 0.1), (4, 0.4)]  # "Dr." is read "Doctor": the offsets are the text's

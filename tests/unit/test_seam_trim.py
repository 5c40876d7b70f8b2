"""Where the service cut a first sentence in two, the engine's silences at the seam are cut to a short gap."""

from __future__ import annotations

import numpy as np

from voxgate.core.service import MID_SENTENCE_GAP, _trimmed
from voxgate.core.types import Piece

RATE = 24000


def _speech_between(lead: float, tail: float) -> Piece:
    tone = np.full(RATE, 0.5, np.float32)  # one second of sound, loud in every sample
    silences = np.zeros(int(lead * RATE), np.float32), np.zeros(int(tail * RATE), np.float32)
    return Piece(np.concatenate([silences[0], tone, silences[1]]), RATE)


def test_the_part_before_the_cut_loses_its_end_silence_only() -> None:
    out = _trimmed(None, tail=True, head=False)(_speech_between(0.3, 0.5)).samples
    assert len(out) == int(0.3 * RATE) + RATE + int(MID_SENTENCE_GAP * RATE)


def test_the_part_after_the_cut_loses_its_start_silence_only() -> None:
    out = _trimmed(None, tail=False, head=True)(_speech_between(0.3, 0.5)).samples
    assert len(out) == int(MID_SENTENCE_GAP * RATE) + RATE + int(0.5 * RATE)
    assert np.abs(out[int(MID_SENTENCE_GAP * RATE) + 10]) > 0  # the speech itself is kept


def test_post_processing_runs_first_and_silence_alone_is_kept() -> None:
    # the post-processing drops the silence itself
    halved = _trimmed(lambda p: Piece(p.samples[: len(p.samples) // 2], p.rate), tail=True, head=True)
    assert len(halved(_speech_between(0.0, 1.0)).samples) == RATE
    silent = np.zeros(RATE, np.float32)
    assert len(_trimmed(None, tail=True, head=True)(Piece(silent, RATE)).samples) == RATE

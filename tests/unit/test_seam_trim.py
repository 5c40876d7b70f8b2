"""Where the service cut a first sentence in two, the engine's silences at the seam are cut to a short gap."""

from __future__ import annotations

import numpy as np

from voxgate.core.service import MID_SENTENCE_GAP, _trimmed

RATE = 24000


def _speech_between(lead: float, tail: float) -> np.ndarray:
    tone = np.full(RATE, 0.5, np.float32)  # one second of sound, loud in every sample
    return np.concatenate([np.zeros(int(lead * RATE), np.float32), tone, np.zeros(int(tail * RATE), np.float32)])


def test_the_part_before_the_cut_loses_its_end_silence_only() -> None:
    out = _trimmed(None, tail=True, head=False)(_speech_between(0.3, 0.5), RATE)
    assert len(out) == int(0.3 * RATE) + RATE + int(MID_SENTENCE_GAP * RATE)


def test_the_part_after_the_cut_loses_its_start_silence_only() -> None:
    out = _trimmed(None, tail=False, head=True)(_speech_between(0.3, 0.5), RATE)
    assert len(out) == int(MID_SENTENCE_GAP * RATE) + RATE + int(0.5 * RATE)
    assert np.abs(out[int(MID_SENTENCE_GAP * RATE) + 10]) > 0  # the speech itself is kept


def test_post_processing_runs_first_and_silence_alone_is_kept() -> None:
    halved = _trimmed(lambda x, rate: x[: len(x) // 2], tail=True, head=True)  # drops the silence itself
    assert len(halved(_speech_between(0.0, 1.0), RATE)) == RATE
    silent = np.zeros(RATE, np.float32)
    assert len(_trimmed(None, tail=True, head=True)(silent, RATE)) == RATE

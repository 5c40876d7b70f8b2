"""Session options: hibari's sessions run without onnxruntime's CPU arena, Piper's keep it (engines/ortsession.py);
the mallinfo figures the memory log prints are read."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from voxgate.engines.ortsession import ARENA_ENV, session_options
from voxgate.memtrace import mallinfo


def test_arena_choice_and_the_switch_that_turns_every_arena_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ARENA_ENV, raising=False)
    options = session_options(2, 3)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 3)
    assert options.enable_cpu_mem_arena is True
    assert session_options(1, arena=False).enable_cpu_mem_arena is False
    monkeypatch.setenv(ARENA_ENV, "off")
    assert session_options(1).enable_cpu_mem_arena is False
    monkeypatch.setenv(ARENA_ENV, "on")
    assert session_options(1, arena=False).enable_cpu_mem_arena is True


def test_hibari_session_has_no_arena_and_still_speaks() -> None:
    from voxgate.engines.base import EngineParams
    from voxgate.engines.hibari import HibariEngine

    engine = HibariEngine()
    voice = next(v for v in engine.voices() if v.id == "hibari:heart")
    loaded = engine.load(voice, 1)
    try:
        assert loaded._tts.sess.get_session_options().enable_cpu_mem_arena is False
        pieces = list(loaded.synthesize("Hello there.", EngineParams(seed=1)))
        samples = np.concatenate([piece.samples for piece in pieces])
        assert len(samples) > 0.5 * loaded.sample_rate and float(np.abs(samples).max()) > 0.05  # speech, not silence
    finally:
        getattr(loaded, "close", lambda: None)()


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's mallinfo2")
def test_mallinfo_reads_the_heap() -> None:
    info = mallinfo()
    if info is None:
        pytest.skip("no mallinfo2 (glibc < 2.33 or not glibc)")
    assert info["heap_mb"] > 0 and 0 < info["in_use_mb"] <= info["heap_mb"]
    assert info["free_mb"] >= 0 and info["mmapped_mb"] >= 0

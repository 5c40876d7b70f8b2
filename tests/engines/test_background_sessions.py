"""Background housekeeping leaves no engine sessions behind: measuring a base voice for matching loads that
voice's model for a minute's work, and an idle server used to keep it (a 60-minute soak gained ~290 MB at
minute 55, the first pause long enough to start measuring Kokoro). Real engines (hibari, Piper joe); the
sessions are counted, not RSS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from voxgate.app import build_context, close_context
from voxgate.engines.base import EngineParams
from voxgate.scheduling.backend import LocalBackend
from voxgate.scheduling.pool import Job, WorkerPool, is_done
from voxgate.settings import Settings

JOE = "en_US-joe-medium"
pytestmark = pytest.mark.timeout(600)  # two voices' profile text, synthesized on a loaded 2-core machine


def _sessions(pool: WorkerPool) -> list[tuple[str, int]]:
    return sorted((str(s["voice"]), int(s["threads"])) for s in pool.sessions())  # type: ignore[call-overload]


def _pool(ctx: object) -> WorkerPool:
    backend = ctx.service.backend  # type: ignore[attr-defined]
    assert isinstance(backend, LocalBackend)
    return backend.pool


async def _run(pool: WorkerPool, voice: object, text: str, background: bool) -> np.ndarray:
    job = pool.submit(Job(voice, text, EngineParams(), 0.0, asyncio.get_running_loop(),  # type: ignore[arg-type]
                          background=background))
    pieces = []
    for _ in range(1000):  # bounded: a sentence is a few pieces
        item = await asyncio.wait_for(job.queue.get(), 120)
        if is_done(item):
            break
        assert not isinstance(item, BaseException), item
        pieces.append(item.samples)  # type: ignore[union-attr]
    audio = np.concatenate(pieces)
    assert float(np.sqrt(np.mean(audio**2))) > 0.01  # speech, not silence
    return audio


async def test_measuring_base_voices_in_the_background_leaves_only_the_warm_up_sessions(tmp_path: Path) -> None:
    # match_bases_quiet=0: nothing else runs here, so no 10 s quiet spell before each voice's measurement
    ctx = build_context(Settings(data_dir=tmp_path / "data", warmup=False, default_voice="hibari:heart",
                                 match_bases=[JOE], solo_threads=2, match_bases_quiet=0.0))
    try:
        assert ctx.voicebank.bases.quiet_s == 0.0  # the setting reaches the background measurement
        await ctx.service.warm_up()  # the default voice's sessions, pinned: they stay
        pool = _pool(ctx)
        before = _sessions(pool)
        assert before and all(voice == "hibari:heart" for voice, _ in before)
        bases = ctx.voicebank.bases
        measured = await bases.measure_missing(background=True)
        assert measured == 2 and bases.complete()  # hibari (the default voice) and joe, each measured
        assert _sessions(pool) == before  # joe's session (and its levelling run's) went with the work
        assert ctx.service._gains.get(JOE) is not None  # joe was levelled too, on a session that went as well
    finally:
        close_context(ctx)


async def test_a_session_a_request_used_is_kept_and_one_only_background_work_used_is_unloaded(tmp_path: Path) -> None:
    # No solo session: a lone request would take it, and background work never does (one session to share).
    ctx = build_context(Settings(data_dir=tmp_path / "data", warmup=False, default_voice="hibari:heart",
                                 match_bases=[JOE], solo_threads=0))
    try:
        pool = _pool(ctx)
        joe = ctx.voices.resolve(JOE)
        await _run(pool, joe, "Measured in the background.", background=True)
        assert _sessions(pool) == [(joe.load_key, 1)]
        assert pool.release_background() == 1
        assert _sessions(pool) == []
        await _run(pool, joe, "Loaded by background work.", background=True)
        await _run(pool, joe, "Then a request used it.", background=False)
        assert pool.release_background() == 0  # a request's session is the request's: the budget decides
        assert _sessions(pool) == [(joe.load_key, 1)]
        await _run(pool, joe, "Background work on a request's session.", background=True)
        assert pool.release_background() == 0
        assert _sessions(pool) == [(joe.load_key, 1)]
    finally:
        close_context(ctx)

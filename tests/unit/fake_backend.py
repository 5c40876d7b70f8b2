"""A fake synthesis backend: the service's side of the seam tested without threads or engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from voxgate.engines.base import Piece, VoiceInfo
from voxgate.errors import EngineFailure
from voxgate.scheduling.backend import BackendHealth, Chunk, Load, SegmentJob

WORD_SECONDS = 0.1  # each word becomes this much of a tone


@dataclass
class Record:
    """What the fake backend was asked to do."""

    started: list[SegmentJob] = field(default_factory=list)  # in generate order
    aborted: list[SegmentJob] = field(default_factory=list)
    closed_early: list[SegmentJob] = field(default_factory=list)  # iterators closed before their end
    finished: list[SegmentJob] = field(default_factory=list)  # iterators read to their end
    preloaded: list[str] = field(default_factory=list)

    def texts(self) -> list[str]:
        return [job.text for job in self.started]


class FakeBackend:
    """Yields WORD_SECONDS of tone per word, one chunk per word. Texts starting "WAIT" hold until `gate` is
    set; texts starting "FAIL" raise as an engine would. `busy` makes load() report every worker busy."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.record = Record()
        self.gate = asyncio.Event()
        self.busy = False
        self.closed = False
        self._live: dict[int, SegmentJob] = {}
        self._aborts: dict[int, asyncio.Event] = {}

    @property
    def capacity(self) -> int:
        return self.workers

    def load(self) -> Load:
        running = self.workers if self.busy else min(len(self._live), self.workers)
        return Load(queued=max(0, len(self._live) - self.workers), running=running,
                    completed=len(self.record.finished), dropped=len(self.record.aborted))

    def generate(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        self.record.started.append(job)
        self._live[id(job)] = job
        self._aborts[id(job)] = asyncio.Event()
        return self._run(job)

    async def _run(self, job: SegmentJob) -> AsyncIterator[Chunk]:
        aborted = self._aborts[id(job)]
        rate = job.voice.sample_rate
        job.rate = rate
        ended = False
        try:
            if job.text.startswith("WAIT"):
                await self.gate.wait()
            if job.text.startswith("FAIL"):
                try:
                    raise RuntimeError("engine exploded")
                except RuntimeError as exc:
                    raise EngineFailure(f"{job.voice.engine} failed: {exc}") from exc
            for _ in job.text.split():
                if aborted.is_set():
                    break
                await asyncio.sleep(0)
                n = int(rate * WORD_SECONDS / job.params.speed)
                samples = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.float32)
                piece = Piece(samples, rate)
                yield job.post(piece) if job.post else piece
            ended = True
        finally:
            self._live.pop(id(job), None)
            (self.record.finished if ended else self.record.closed_early).append(job)

    def abort(self, job: SegmentJob) -> None:
        if id(job) in self._live:
            self.record.aborted.append(job)
            self._aborts[id(job)].set()

    async def preload(self, voice: VoiceInfo) -> None:
        self.record.preloaded.append(voice.id)

    def health(self) -> BackendHealth:
        return BackendHealth(ready=not self.closed, workers=self.workers, loaded_voices=self.loaded_voices(),
                             sessions=(), memory_mb=0.0, memory_budget_mb=0, load=self.load())

    def loaded_voices(self) -> frozenset[str]:
        return frozenset(self.record.preloaded)

    def close(self) -> None:
        self.closed = True

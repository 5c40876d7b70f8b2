"""Candidate base voices for voice matching, measured once ahead of time and never on a request.

A reference voice is spoken by the installed voice nearest to it (see voices/matching.py). Finding the
nearest needs every candidate's speaker embedding and profile, measured on ~25 s of speech each: far
too slow for a request (a new GPT-SoVITS reference once took 106 s, measuring every Kokoro style). So
the candidates are measured in the background after start-up, one sentence at a time, only while no
request is running, and kept in the store (keyed by voice, model file and embedding model, so a
restart reuses them and a changed model is measured again). A reference matched before its language's
candidates are measured gets the best of what is measured, or the default voice for its language
unshifted, and is matched again once the measurement is done.

Which voices are candidates is a setting (`match_bases`: voice ids or fnmatch patterns, in the order
they are measured), so adding an engine's voice is one entry in that list, not code.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from voxgate.audio.voiceshift import analyse
from voxgate.core.routing import best_voice
from voxgate.engines.base import EngineParams, VoiceInfo
from voxgate.errors import EngineFailure, VoxgateError
from voxgate.scheduling.backend import Backend, SegmentJob
from voxgate.text.segment import SENTENCE_POLICY, split_text
from voxgate.voices.embedding import SpeakerEncoder, default_model_path
from voxgate.voices.matching import PROFILE_TEXT, Candidate, primary_language
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import VoiceStore

_LOG = logging.getLogger(__name__)
DEFAULT_MATCH_BASES = ("*",)  # the server passes the `match_bases` setting (settings.DEFAULT_MATCH_BASES)
MAX_PER_LANGUAGE = 32  # candidates per primary language: a 900-speaker model must not mean 900 syntheses
IDLE_POLL = 0.2  # seconds between checks for an idle server while measuring in the background
# A measurement that has waited this long for a pause lets go of the sessions it loaded (reloaded at the next
# pause): a short pause in a busy hour otherwise left a base voice's model loaded until the next long one.
RELEASE_AFTER_S = 10.0
# Loading a voice's model for measuring (at a voice's start, and again after that release) waits for this long a
# spell with no request in flight, not just a gap between two requests: a busy server's gaps last milliseconds,
# and a 60-minute soak of two clients had Kokoro (+~200 MB) reloaded at one and kept for the 25 minutes its
# measurement took in such gaps. A busy server now never loads it; an idle one waits this long once per voice
# (the default of the setting match_bases_quiet).
QUIET_S = 10.0
# ... but not for ever: a server that never pauses for QUIET_S would otherwise never finish measuring, and its
# registered voices would stay provisional. After this long a wait, the next gap between requests will do.
QUIET_GIVE_UP_S = 300.0
KEY_PREFIX = "candidate:"


def _text_stamp() -> str:
    return hashlib.sha256(PROFILE_TEXT.encode()).hexdigest()[:8]


class BaseVoices:
    """The candidate base voices, their measurements, and the background task that makes them."""

    quiet_s: float | None = None  # setting match_bases_quiet (None: QUIET_S)

    def __init__(self, registry: VoiceRegistry, store: VoiceStore, backend: Backend, encoder: SpeakerEncoder,
                 patterns: Sequence[str] = DEFAULT_MATCH_BASES, busy: Callable[[], bool] | None = None,
                 calibrate: Callable[[VoiceInfo], Awaitable[float]] | None = None,
                 quiet_s: float | None = None) -> None:
        self.registry = registry
        self.store = store
        self.backend = backend
        self.encoder = encoder
        self.patterns = tuple(patterns)
        self._busy = busy  # True while requests are in flight (background work waits)
        self._calibrate = calibrate  # levels a base voice (a reference voice is levelled as its base)
        self.quiet_s = quiet_s  # the quiet spell before loading a voice for measuring (None: QUIET_S)
        self._measured: dict[str, Candidate] = {}  # voice id → measurement, for voices still wanted
        self._encoder_stamp: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one measuring pass at a time
        self._released_once = False  # the voice being measured had its sessions unloaded by a long wait
        self._needs_quiet = True  # the voice being measured has no sessions loaded (see _until_idle)
        self._held: str | None = None  # its load key while the backend reported it loaded after a sentence
        self.done = asyncio.Event()  # set when every wanted voice is measured (or failed)
        self.generation = 0  # bumped whenever a measurement is added

    # ------------------------------------------------------------------ which voices

    def wanted(self) -> list[VoiceInfo]:
        """The candidate base voices, in measuring order: the default voice, then by the patterns."""
        installed = [v for v in self.registry.installed() if self.registry.capabilities(v).match_base]
        ordered: list[VoiceInfo] = []
        seen: set[str] = set()
        default = self.registry.resolve(None)
        first = [default] if any(v.id == default.id for v in installed) else []
        for pattern in ("\0default", *self.patterns):
            group = first if pattern == "\0default" else [v for v in installed if fnmatch.fnmatchcase(v.id, pattern)]
            for voice in group:
                if voice.id not in seen:
                    seen.add(voice.id)
                    ordered.append(voice)
        counts: dict[str, int] = {}
        capped = []
        for voice in ordered:
            language = primary_language(voice.language)
            counts[language] = counts.get(language, 0) + 1
            if counts[language] <= MAX_PER_LANGUAGE:
                capped.append(voice)
        return capped

    def measured(self) -> list[Candidate]:
        """Measurements made so far of the voices still wanted (never waits)."""
        wanted = {v.id for v in self.wanted()}
        return [c for vid, c in self._measured.items() if vid in wanted]

    def progress(self) -> dict[str, object]:
        """For /ready: how many candidates are measured."""
        wanted = self.wanted()
        measured = sum(1 for v in wanted if v.id in self._measured)
        return {"measured": measured, "total": len(wanted), "done": self.done.is_set()}

    def complete(self) -> bool:
        """Every wanted voice is measured (a match made now is final)."""
        measured = self._measured
        return all(v.id in measured for v in self.wanted())

    def fallback(self, language: str | None) -> VoiceInfo:
        """The base a reference gets while nothing of its language is measured: the default voice, or
        routing's best voice for the language (unshifted until measured)."""
        default = self.registry.resolve(None)
        if not language:
            return default
        try:
            voice = best_voice(self.registry, language, default)
        except VoxgateError:
            return default
        return voice if self.registry.capabilities(voice).match_base else default

    # ------------------------------------------------------------------ measuring

    def _key(self, voice: VoiceInfo) -> str:
        stamp = "builtin"
        path = voice.model_path
        if path is not None and path.exists():
            info = path.stat()
            stamp = f"{info.st_size}-{int(info.st_mtime)}"
        if self._encoder_stamp is None:
            self._encoder_stamp = _file_stamp(default_model_path())
        return f"{KEY_PREFIX}{voice.id}:{stamp}:{self._encoder_stamp}:{_text_stamp()}"

    def load_cached(self) -> int:
        """Read stored measurements of the wanted voices (blocking: run it off the loop); drop stale ones."""
        found = 0
        for voice in self.wanted():
            key = self._key(voice)
            cached = self.store.get_value(key)
            if cached is not None:
                self._measured[voice.id] = Candidate.from_dict(cached)
                found += 1
            for old in self.store.keys(f"{KEY_PREFIX}{voice.id}:"):
                if old != key:  # the model file or the embedding model changed: measured again
                    self.store.delete_value(old)
        if found:
            self.generation += 1
        return found

    def start(self) -> asyncio.Task[None]:
        """Measure the missing candidates in the background (call once the server is warm)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.measure_missing(background=True),
                                                                name="voxgate-match-bases")
        return self._task

    async def stop(self) -> None:
        """Cancel the background task (at shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    @property
    def running(self) -> bool:
        """True while the background task measures."""
        return self._task is not None and not self._task.done()

    async def measure_missing(self, background: bool = False, languages: set[str] | None = None) -> int:
        """Measure every wanted voice not measured yet (only those of `languages`' primary subtags, when
        given: the command line measures what one registration needs); returns how many were measured."""
        async with self._lock:
            await asyncio.to_thread(self.load_cached)
            count = 0
            for voice in self.wanted():
                if voice.id in self._measured:
                    continue
                if languages is not None and primary_language(voice.language) not in languages:
                    continue
                started = time.monotonic()
                self._released_once = False  # this voice's sessions not yet unloaded by a long wait
                self._needs_quiet = True  # its sessions are not loaded: the first sentence waits for a quiet spell
                self._held = None
                try:
                    candidate = await self._measure(voice, background)
                except (VoxgateError, RuntimeError, ValueError) as exc:
                    _LOG.warning("could not measure base voice %s: %s", voice.id, exc)
                    await self._release(background)
                    continue
                await asyncio.to_thread(self.store.set_value, self._key(voice), candidate.to_dict())
                self._measured[voice.id] = candidate
                self.generation += 1
                count += 1
                if self._calibrate is not None and background:
                    await self._until_idle()
                    await self._calibrate(voice)
                await self._release(background)
                _LOG.info("measured base voice %s for matching in %.1f s (%s)", voice.id,
                          time.monotonic() - started, "background" if background else "foreground")
            self.done.set()
            return count

    async def _measure(self, voice: VoiceInfo, background: bool) -> Candidate:
        """Synthesize the profile text one sentence at a time (in the background only while idle) and
        measure it off the loop."""
        parts: list[np.ndarray] = []
        rate = voice.sample_rate
        for sentence in split_text(PROFILE_TEXT, SENTENCE_POLICY):
            if background:
                await self._until_idle()
            job = SegmentJob(voice, sentence, EngineParams(noise_scale=None, timings=False), math.inf,
                             background=background)
            try:
                parts += [item.samples async for item in self.backend.generate(job)]
            except EngineFailure as exc:
                raise RuntimeError(str(exc)) from exc.__cause__
            if background:
                self._held = voice.load_key if voice.load_key in self._loaded_voices() else None
            rate = job.rate or rate
        if not parts:
            raise ValueError("no audio")
        samples = np.concatenate(parts)
        embedding = await asyncio.to_thread(self.encoder.embed, samples, rate)
        profile = await asyncio.to_thread(analyse, samples, rate)
        return Candidate(voice.id, voice.language, embedding, profile)

    async def _release(self, background: bool) -> None:
        """After a voice's background measurement: unload the engine sessions loaded only for it (a request
        that used one meanwhile made it its own), so an idle server is not left holding every base voice."""
        release = getattr(self.backend, "release_background", None)
        if background and release is not None:
            await release()

    async def _until_idle(self) -> None:
        """Return once no request is in flight and the workers are free (polled: requests come and go).
        The first long wait of a voice's measurement unloads the sessions loaded only for it (see _release); later
        waits of the same voice keep them, so a busy server reloads a voice at most once for its 16 sentences
        instead of once per sentence (~2 CPU-s per Kokoro load, on a worker just as requests come back). While the
        voice's sessions are not loaded (its first sentence, and after that release) it waits for QUIET_S with
        nothing in flight, so a busy server's millisecond gaps never load a model for background work, unless it
        has found no such spell in QUIET_GIVE_UP_S (then a gap will do: the measurement must end some time). The
        sessions also count as not loaded once the backend stops reporting the voice loaded after a sentence (the
        memory budget or idle unloading took them), so their reload waits for the quiet spell too."""
        quiet = 0  # polls in a row with nothing in flight
        quiet_s = QUIET_S if self.quiet_s is None else self.quiet_s
        for waited in itertools.count():
            busy = self._is_busy()
            if self._held is not None and self._held not in self._loaded_voices():
                self._held = None  # unloaded under us (the memory budget, idle unloading): reloading waits too
                self._needs_quiet = True
            if busy:
                quiet = 0
            else:
                quiet += 1
                gave_up = self._needs_quiet and waited * IDLE_POLL >= QUIET_GIVE_UP_S
                if gave_up:
                    _LOG.info("base voice measurement: no quiet spell of %g s in %g s; loading in a gap", quiet_s,
                              QUIET_GIVE_UP_S)
                if not self._needs_quiet or gave_up or quiet * IDLE_POLL >= quiet_s:
                    self._needs_quiet = False  # a sentence runs now: the voice's sessions are loaded
                    return
            if not self._released_once and waited * IDLE_POLL >= RELEASE_AFTER_S:
                self._released_once = True
                self._needs_quiet = True  # reloading waits for a quiet spell (QUIET_S)
                await self._release(True)
            await asyncio.sleep(IDLE_POLL)

    def _loaded_voices(self) -> frozenset[str]:
        """Load keys of the voices the backend has loaded (none known for a backend that does not say: a
        cluster's front reports none, and then only the unloads this class makes are seen). Polled every
        IDLE_POLL while a voice is measured, so it asks for that set alone, not the backend's whole health."""
        loaded = getattr(self.backend, "loaded_voices", None)
        return loaded() if loaded is not None else frozenset()

    def _is_busy(self) -> bool:
        stats = self.backend.load()
        requests = self._busy() if self._busy is not None else False
        return requests or stats.queued > 0 or stats.running > 0


def _file_stamp(path: Path) -> str:
    """A short hash of a file's bytes (the embedding model: a few MB, read once)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"

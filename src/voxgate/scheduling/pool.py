"""A pool of worker threads that run engine calls, most urgent first.

Why this shape: onnxruntime releases the GIL, and on a 2-core machine two 1-thread runs side by side
give more total throughput than one 2-thread session, while a 2-thread session gives the lowest latency
for a request running alone. So workers run jobs on a 1-thread session, and a job that finds the pool
otherwise idle runs on a "solo" session with more threads. Sessions are shared by every worker
(onnxruntime's Run is thread-safe; measured within ~3% of one session per worker), so a voice costs
two sessions however many workers there are, which bounds memory.

Urgency is a deadline: the moment the job's stream would run out of audio to play. The stream
nearest to running dry goes first; a new stream's first segment (deadline = now) beats a running
stream's tenth (deadline = start + audio already delivered).

An engine call cannot be preempted, so a first segment arriving while every worker is busy would wait
for a whole sentence to finish. "Express" workers take only first segments (jobs of streams that have
no audio yet): they run beside the regular workers, briefly oversubscribing the cores and taking CPU
from streams that are ahead of real time, so a newcomer's first audio does not queue behind them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from voxgate.engines.base import Engine, EngineParams, LoadedVoice, Piece, VoiceInfo, as_piece

_LOG = logging.getLogger(__name__)
_DONE = object()  # end-of-job marker on a job's queue
# malloc_trim(0) every so often after jobs ran: glibc keeps freed pages of its arenas until the top of a heap
# is free, so a mixed load's RSS crept (10-minute soak: 772 → 779 MB with it every 20 s, 884 → 913 MB without).
# A trim holds each arena's lock while it walks the free chunks (measured 0.2–160 ms in a loaded server), and
# every thread that allocates meanwhile waits: so it runs when the pool is idle (no job running or queued), at
# most every TRIM_EVERY_S, and under a load that never pauses only every TRIM_BUSY_S.
TRIM_EVERY_S = 30.0
TRIM_BUSY_S = 300.0
# A session no job has used for this long is unloaded (the default and preloaded voices stay) when the pool is idle:
# a burst across many voices, or a stretch of CPU starvation with requests queueing, loads sessions the steady
# load does not need, and within the memory budget nothing else ever unloaded them. 0 turns it off.
IDLE_UNLOAD_S = 600.0
WARM_USES = 2  # a session's first runs whose RSS growth counts toward its cost (arena, lazy tables)


@dataclass(eq=False)
class Job:
    """One piece of text for one voice, and where its audio goes."""

    voice: VoiceInfo
    text: str
    params: EngineParams
    deadline: float  # time.monotonic() seconds by which the stream needs this audio
    loop: asyncio.AbstractEventLoop
    urgent: bool = False  # the first segment of a stream that has no audio yet (express workers take it)
    post: Callable[[Piece], Piece] | None = None  # per-piece processing, run on the worker
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)  # Pieces, then an error or _DONE
    cancelled: threading.Event = field(default_factory=threading.Event)
    rate: int = 0  # Hertz of the pieces, set by the worker
    background: bool = False  # housekeeping (measuring voices): never the solo session, never counted as load
    # Where the worker posts for the loop: one mailbox per event loop, shared by every job of that loop (see _post).
    _box: _Mailbox = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._box = _mailbox(self.loop)

    def cancel(self) -> None:
        """Mark the job cancelled: a worker stops it after its current piece (see WorkerPool.cancel)."""
        self.cancelled.set()

    def _post(self, item: object) -> None:
        """Hand `item` to the loop (see _Mailbox: pieces of several jobs share a wake-up)."""
        if not self._box.post(self, item):  # the event loop is closed: nobody is listening any more
            self.cancelled.set()


class _Mailbox:
    """What workers post for one event loop. One wake-up of the loop (a write to its self-pipe, a GIL hand-off
    to the loop thread and back) carries everything posted until the loop takes it: a sentence's piece and its
    job's end, posted a few microseconds apart, and the pieces other workers finish meanwhile for other jobs
    (under load the loop is slow to take them: that is when they pile up) cost one wake-up, not one each."""

    __slots__ = ("_items", "_lock", "_loop", "_waking")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # not a strong one: the loops' table would keep every loop alive
        self._items: list[tuple[Job, object]] = []  # posted, in order, not yet moved onto their jobs' queues
        self._lock = threading.Lock()
        self._waking = False  # the loop has been woken for what is in _items

    def post(self, job: Job, item: object) -> bool:
        """Queue `item` for `job` on the loop; False if the loop is closed."""
        with self._lock:
            self._items.append((job, item))
            if self._waking:
                loop = self._loop()
                if loop is None or loop.is_closed():  # the wake-up already asked for will never run
                    self._items.clear()
                    return False
                return True
            self._waking = True
        try:
            loop = self._loop()
            if loop is None:
                raise RuntimeError("the event loop is gone")
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            with self._lock:
                self._items.clear()
                self._waking = False
            return False
        return True

    def _deliver(self) -> None:
        """On the loop: move the posted items onto their jobs' queues, in order."""
        with self._lock:
            items, self._items, self._waking = self._items, [], False
        for job, item in items:
            job.queue.put_nowait(item)


_BOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()
_BOXES_LOCK = threading.Lock()


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    """The mailbox of `loop` (one per loop, made on first use)."""
    box = _BOXES.get(loop)
    if box is None:
        with _BOXES_LOCK:
            box = _BOXES.get(loop)
            if box is None:
                box = _BOXES[loop] = _Mailbox(loop)
    return box


@dataclass
class PoolStats:
    """Counters a metrics endpoint reads; written by workers under the pool lock."""

    queued: int = 0  # jobs waiting
    running: int = 0  # jobs on a worker now
    completed: int = 0
    dropped: int = 0  # cancelled jobs discarded before they ran
    interrupted: int = 0  # cancelled jobs stopped while running
    failed: int = 0
    evicted: int = 0  # sessions unloaded to stay within the memory budget


class WorkerPool:
    """Runs jobs on `workers` threads in deadline order, each with its own engine sessions."""

    def __init__(
        self,
        engines: Callable[[str], Engine],
        workers: int = 2,
        threads: int = 1,
        solo_threads: int = 2,
        express: int = 0,
        memory_budget_mb: int = 0,
        idle_unload_s: float = IDLE_UNLOAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engines = engines
        self._idle_unload_s = idle_unload_s
        self._clock = clock  # for the idle-unload ages (a test injects its own)
        self._threads = threads
        self._solo_threads = solo_threads
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Job]] = []
        self._running: set[Job] = set()
        self._seq = itertools.count()
        # (voice load key, threads) → session, least recently used first
        self._sessions: OrderedDict[tuple[str, int], LoadedVoice] = OrderedDict()
        self._users: Counter[tuple[str, int]] = Counter()  # jobs on each session now (never evicted then)
        self._costs: dict[tuple[str, int], int] = {}  # bytes of RSS each session's load and first runs added
        # Bytes the first runs of sessions sharing the process's onnxruntime arena (Piper's, engines/ortsession.py)
        # grew it by: that arena outlives any one session, so this is counted in the total for good, never
        # given back when such a session is unloaded.
        self._shared_cost = 0
        self._uses: Counter[tuple[str, int]] = Counter()  # runs on each session so far (see _charge)
        self._used: dict[tuple[str, int], float] = {}  # when each session last had a job (self._clock)
        self._pinned: set[str] = set()  # load keys kept loaded whatever the budget (default, preloaded)
        # Sessions loaded by background work (measuring base voices) that no request has used since: the
        # work unloads them when done (release_background), so an idle server does not keep them.
        self._background_only: set[tuple[str, int]] = set()
        self._budget = memory_budget_mb * 1024 * 1024  # 0 = no limit
        self._loading: dict[tuple[str, int], threading.Lock] = {}  # so a session is loaded once
        self._solo_lock = threading.Lock()  # one job at a time on the solo session
        self._load_lock = threading.Lock()
        self._closing = False
        self.stats = PoolStats()
        self._size = workers
        self._workers = [
            threading.Thread(target=self._run, args=(i >= workers,), daemon=True,
                             name=f"voxgate-{'express' if i >= workers else 'worker'}-{i}")
            for i in range(workers + express)
        ]
        for thread in self._workers:
            thread.start()
        self._closed = threading.Event()
        self._idle = threading.Event()  # set when the last running job ends with none queued (see _trim_when_idle)
        threading.Thread(target=self._trim_when_idle, daemon=True, name="voxgate-malloc-trim").start()

    @property
    def size(self) -> int:
        """Number of regular worker threads (express workers are extra)."""
        return self._size

    @property
    def memory_budget_mb(self) -> int:
        """The memory budget of the loaded sessions in MB (0: no limit)."""
        return self._budget // (1024 * 1024)

    def submit(self, job: Job) -> Job:
        """Queue a job; its audio arrives on job.queue."""
        with self._cond:
            if self._closing:
                raise RuntimeError("worker pool is closed")
            heapq.heappush(self._heap, (job.deadline, next(self._seq), job))
            self.stats.queued += 1
            self._cond.notify_all()  # an idle express worker may be the one that can take it
        return job

    def cancel(self, job: Job) -> None:
        """Cancel a job: drop it from the queue now if it waits, or stop it after its current piece."""
        with self._cond:
            job.cancel()
            if self._remove(job):
                self.stats.dropped += 1
                job._post(_DONE)

    def _remove(self, job: Job) -> bool:
        """Take a queued job out of the heap (caller holds the lock); False if it is not queued."""
        for i, (_, _, queued) in enumerate(self._heap):
            if queued is job:
                self._heap[i] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                self.stats.queued -= 1
                return True
        return False

    def preload(self, voice: VoiceInfo, pin: bool = True) -> None:
        """Load `voice`'s worker and solo sessions now (blocking; call off the loop); pinned ones stay."""
        if pin:
            with self._load_lock:
                self._pinned.add(voice.load_key)
        for threads in (self._threads, self._solo_threads) if self._solo_threads else (self._threads,):
            self._release(self._loaded(voice, threads))

    def loaded_voices(self) -> set[str]:
        """Load keys of voices whose worker session is loaded."""
        with self._load_lock:
            return {key for key, threads in self._sessions if threads == self._threads}

    def sessions(self) -> list[dict[str, object]]:
        """Every loaded session, least recently used first: voice load key, threads, MB, jobs on it."""
        with self._load_lock:
            return [{"voice": key, "threads": threads, "mb": round(self._costs.get((key, threads), 0) / 2**20, 1),
                     "in_use": self._users[(key, threads)], "pinned": key in self._pinned}
                    for key, threads in self._sessions]

    def _loaded(self, voice: VoiceInfo, threads: int, background: bool = False) -> tuple[tuple[str, int], LoadedVoice]:
        """The session of `voice` with `threads` threads, loading it on first use (once, even if raced).
        The caller holds it until _release; past the memory budget, idle sessions are unloaded."""
        key = (voice.load_key, threads)
        with self._load_lock:
            if (held := self._hold(key, background)) is not None:
                return held
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._load_lock:
                if (held := self._hold(key, background)) is not None:
                    return held  # another thread loaded it while we waited for the gate
            before = _rss()
            loaded = self._engines(voice.engine).load(voice, threads)
            with self._load_lock:
                self._sessions[key] = loaded
                if background:
                    self._background_only.add(key)
                self._costs[key] = max(0, _rss() - before)
                self._users[key] += 1
                self._used[key] = self._clock()
                self._loading.pop(key, None)
                evicted = self._evict()
        _unload(evicted)
        return key, loaded

    def _hold(self, key: tuple[str, int], background: bool = False) -> tuple[tuple[str, int], LoadedVoice] | None:
        """A loaded session, marked used now and held by one more job (lock held); None if not loaded. A
        request's job makes a session loaded by background work its own (release_background keeps it)."""
        if key not in self._sessions:
            return None
        if not background:
            self._background_only.discard(key)
        self._sessions.move_to_end(key)
        self._users[key] += 1
        self._used[key] = self._clock()
        return key, self._sessions[key]

    def _charge(self, key: tuple[str, int], grown: int) -> None:
        """Add what a session's first runs grew the process by to its cost: an ONNX session's arena, a
        G2P dictionary loaded on first use. Concurrent runs may both be charged: the budget errs high."""
        with self._load_lock:
            self._uses[key] += 1
            if key in self._costs and grown > 0:
                if getattr(self._sessions.get(key), "shares_arena", False):
                    self._shared_cost += grown  # the process's arena, not this session's: it stays when it goes
                else:
                    self._costs[key] += grown

    def _release(self, held: tuple[tuple[str, int], LoadedVoice]) -> None:
        """One job less on the session; a session left idle while over the budget (its first runs may have
        grown its cost after it loaded) is unloaded now rather than at the next load."""
        with self._load_lock:
            self._users[held[0]] -= 1
            self._used[held[0]] = self._clock()
            evicted = self._evict() if not self._users[held[0]] else []
        _unload(evicted)

    def _evict(self) -> list[tuple[tuple[str, int], LoadedVoice]]:
        """Unload idle, unpinned sessions, least recently used first, until within budget (lock held)."""
        if not self._budget:
            return []
        total = self._shared_cost + sum(self._costs.get(key, 0) for key in self._sessions)
        evicted = []
        for key in list(self._sessions):
            if total <= self._budget:
                break
            if self._users[key] or key[0] in self._pinned:
                continue  # a running job keeps its session; it goes when idle and still over budget
            total -= self._costs.get(key, 0)
            evicted.append(self._drop(key))
            self.stats.evicted += 1
        return evicted

    def _drop(self, key: tuple[str, int]) -> tuple[tuple[str, int], LoadedVoice]:
        """Forget an idle session (lock held); the caller closes it with _unload outside the lock."""
        loaded = self._sessions.pop(key)
        self._costs.pop(key, None)
        del self._users[key]  # idle: its count is zero
        self._uses.pop(key, None)
        self._used.pop(key, None)
        self._background_only.discard(key)
        return key, loaded

    def release_background(self) -> int:
        """Unload the sessions that only background work used (loaded for it, no request since), once idle;
        pinned ones stay. Measuring a base voice loads its sessions for a minute's work, and without this
        an idle server kept them for ever: +290 MB at minute 55 of a 60-minute soak. Returns how many."""
        with self._load_lock:
            dropped = [self._drop(key) for key in list(self._background_only)
                       if key in self._sessions and not self._users[key] and key[0] not in self._pinned]
        for (voice_key, threads), old in dropped:
            _LOG.info("unloaded %s (%d threads): loaded only to measure it", voice_key, threads)
            old.close()
        if dropped:
            _trim()
        return len(dropped)

    def unload_idle(self) -> int:
        """Unload the sessions no job has used for idle_unload_s (pinned ones stay; none with a job on it), then
        give their memory back (_trim). The trim thread calls it only while the pool is idle, so closing a
        session and trimming do not hold the malloc lock under running jobs. Returns how many."""
        if not self._idle_unload_s:
            return 0
        with self._load_lock:
            cutoff = self._clock() - self._idle_unload_s
            dropped = [self._drop(key) for key in list(self._sessions)
                       if not self._users[key] and key[0] not in self._pinned
                       and self._used.get(key, cutoff) <= cutoff]
        for (voice_key, threads), old in dropped:
            _LOG.info("unloaded %s (%d threads): unused for %.0f s", voice_key, threads, self._idle_unload_s)
            old.close()
        if dropped:
            _trim()
        return len(dropped)

    def _is_idle(self) -> bool:
        with self._cond:
            return not self._running and not self._heap

    def _trim_when_idle(self) -> None:
        """Give freed heap pages back to the system (see _trim) when jobs have run since the last trim and the
        pool is idle, at most every TRIM_EVERY_S; if it is never idle, every TRIM_BUSY_S anyway."""
        every, busy, clock = TRIM_EVERY_S, TRIM_BUSY_S, time.monotonic
        last, done = clock(), self._finished()
        while not self._closed.is_set():
            wait = max(every - (clock() - last), 0.0)
            if self._closed.wait(wait):  # no trim sooner than `every` after the last
                break
            if self._is_idle() and self.unload_idle():  # sessions a burst loaded go once unused long enough
                done, last = self._finished(), clock()  # (unload_idle trimmed)
                continue
            if self._finished() == done:  # nothing ran since: nothing new was freed
                self._idle.clear()
                self._closed.wait(every)
                continue
            self._idle.clear()
            if not self._is_idle():  # wait for a pause, but not for ever
                self._idle.wait(max(busy - (clock() - last), 0.0))
            if self._closed.is_set():
                break
            done, last = self._finished(), clock()
            _trim()

    def _finished(self) -> int:
        return self.stats.completed + self.stats.interrupted + self.stats.failed

    def close(self) -> None:
        """Stop the workers after their current piece; queued jobs are dropped."""
        self._closed.set()
        self._idle.set()  # the trim thread may be waiting for a pause
        with self._cond:
            self._closing = True
            for _, _, job in self._heap:
                job.cancel()
                job._post(_DONE)
            self._heap.clear()
            self._cond.notify_all()
        for thread in self._workers:
            thread.join(timeout=5)

    def _take(self, express: bool) -> Job | None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled.is_set():
                    _, _, dropped = heapq.heappop(self._heap)
                    self.stats.queued -= 1
                    self.stats.dropped += 1
                    dropped._post(_DONE)
                job = self._pick(express)
                if job is not None:
                    self._remove(job)
                    self.stats.running += 1
                    self._running.add(job)
                    return job
                if self._closing:
                    return None
                self._cond.wait()

    def _pick(self, express: bool) -> Job | None:
        """The heap's most urgent job; for an express worker, the most urgent first segment."""
        if not express:
            return self._heap[0][2] if self._heap else None
        firsts = [entry for entry in self._heap if entry[2].urgent and not entry[2].cancelled.is_set()]
        return min(firsts)[2] if firsts else None

    def _session(self, job: Job) -> tuple[tuple[tuple[str, int], LoadedVoice], bool]:
        """The solo session when this job runs alone, else the shared worker session."""
        alone = False
        if self._solo_threads and not job.background and self._solo_lock.acquire(blocking=False):
            with self._cond:
                # A cancelled job is only finishing its last piece, and background work yields to
                # requests: neither counts as load.
                others = [j for j in self._running
                          if j is not job and not j.cancelled.is_set() and not j.background]
                alone = not others and not self._heap
            if not alone:
                self._solo_lock.release()
        return self._loaded(job.voice, self._solo_threads if alone else self._threads, job.background), alone

    def _run(self, express: bool) -> None:
        while (job := self._take(express)) is not None:
            alone, held = False, None
            outcome, final = "completed", _DONE
            try:
                held, alone = self._session(job)
                loaded = held[1]
                job.rate = loaded.sample_rate
                warming = self._uses[held[0]] < WARM_USES
                before = _rss() if warming else 0
                for made in loaded.synthesize(job.text, job.params):
                    if job.cancelled.is_set():
                        break
                    piece = as_piece(made, loaded.sample_rate)
                    job._post(job.post(piece) if job.post else piece)
                if warming:
                    self._charge(held[0], _rss() - before)
                if job.cancelled.is_set():
                    outcome = "interrupted"  # its audio is unwanted, even if the last piece got done
            except Exception as exc:  # the job's consumer decides what an engine error means
                _LOG.exception("engine failed on %r", job.text[:80])
                outcome, final = "failed", exc
            finally:
                if held is not None:
                    self._release(held)
                if alone:
                    self._solo_lock.release()
                with self._cond:  # counters settle before the consumer can see the end
                    self.stats.running -= 1
                    self._running.discard(job)
                    setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
                    if not self._running and not self._heap:
                        self._idle.set()
                job._post(final)


def _libc_trim() -> Callable[[], None]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def run() -> None:
        trim(0)

    return run


_trim = _libc_trim()

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENA_MAX = 2  # malloc arenas for the whole server (glibc's default is 8 per core)


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas (call before the worker threads start); False where it does not apply.

    Every thread that allocates (event loop, worker threads, onnxruntime's intra-op threads, asyncio's
    to_thread pool) gets an arena of its own, up to 8 per core, and memory freed in one is rarely given
    back while its neighbours are live, so RSS crept up for as long as a mixed load ran: 906 → 1,076 MB
    over a 60-minute soak. With two, a 10-minute soak started 120 MB lower (741 against 861 MB at its first
    minute) and grew 2.5% over minutes 3–9, with no change in latency; the trim when idle does the rest
    (see TRIM_EVERY_S). MALLOC_ARENA_MAX in the environment wins over this."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def _unload(evicted: list[tuple[tuple[str, int], LoadedVoice]]) -> None:
    """Close sessions the budget evicted (outside the pool's lock) and give their memory back to the system,
    or reloads only add to the heap."""
    for (voice_key, threads), old in evicted:
        _LOG.info("unloaded %s (%d threads) to stay within the memory budget", voice_key, threads)
        old.close()
    if evicted:
        _trim()


def _rss() -> int:
    """Resident memory of this process in bytes."""
    return psutil.Process().memory_info().rss


def is_done(item: object) -> bool:
    """True for the marker that ends a job's queue."""
    return item is _DONE

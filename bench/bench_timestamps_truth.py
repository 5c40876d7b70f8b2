"""Word-start ground truth: how far off Whisper base's word starts are, and how far off ours are.

Against Whisper alone (bench_timestamps.py) an error could be either side's. Here the true start of a word is
known: each sentence is cut into chunks of 1, 2 and 3 words (in turn; the text as written, punctuation kept),
each chunk is synthesised on its own through the real SynthesisService, and the chunks are joined with known
silences (200–350 ms, in turn). A chunk's first word then truly starts where the chunk's audio first sounds
(`wordtiming.first_sound`, the energy the project uses elsewhere: the first 10 ms frame within 35 dB of the
chunk's loudest), placed at the chunk's offset in the joined clip. Measured on those words:

- whisper: Whisper base (faster-whisper `word_timestamps=True`, the options of bench_timestamps) on the
  joined clip, start − truth;
- forced: faster-whisper's word-timestamp step on the words the clip says (bench_timestamps' "forced"),
  start − truth;
- sphinx: PocketSphinx's forced alignment of the words the clip says (bench_timestamps' second independent
  aligner, an HMM one), start − truth;
- ours: voxgate's start of the word (the chunk's own timings, moved by the chunk's offset) − truth;
- ours_durations (Kokoro, hibari): the same with the first word not moved to the piece's first sound
  (`start_at_first_sound` off): what the durations alone give, the mechanism every later word's start uses.

On the joined clip's other words (inside a chunk: connected speech, truth unknown) it reports how far
Whisper and we disagree (PocketSphinx and we too), for comparison with the disagreement on the words whose
truth is known.

    .venv/bin/python bench/bench_timestamps_truth.py [--quick] [--only piper] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_timestamps import Case, Tally, build_service, common_args, load_sphinx, plan, score, speak  # noqa: E402
from voxgate.core.types import Timing, word_spans  # noqa: E402
from voxgate.engines.wordtiming import first_sound  # noqa: E402

SIZES = (1, 2, 3)
GAPS = (0.25, 0.35, 0.2)


def chunks(text: str) -> list[tuple[int, int]]:
    """Character spans of the chunks `text` is cut into: 1, 2, 3 words in turn."""
    spans = word_spans(text)
    out, n, k = [], 0, 0
    while n < len(spans):
        size = SIZES[k % len(SIZES)]
        group = spans[n:n + size]
        out.append((group[0][0], group[-1][1]))
        n, k = n + size, k + 1
    return out


async def joined_case(service, voice: str, speed: float, text: str,  # type: ignore[no-untyped-def]
                      plain: bool) -> tuple[Case, list[float], list[int], list[Timing] | None]:
    """The sentence said chunk by chunk with silences between: (the case with the joined audio and our
    timings on the sentence's offsets, the true starts of the chunks' first words, their word indices,
    with `plain` the timings again with Kokoro's and hibari's first-sound anchoring off)."""
    import voxgate.engines.hibari as hibari_mod
    import voxgate.engines.kokoro as kokoro_mod

    case = Case(voice, speed, text)
    assert service is not None
    parts: list[np.ndarray] = []
    offset = 0
    truth, firsts = [], []
    timings: list[Timing] = []
    plain_timings: list[Timing] = []
    for k, (lo, hi) in enumerate(chunks(text)):
        piece = Case(voice, speed, text[lo:hi])
        await speak(service, piece)
        assert piece.audio is not None
        rate = case.rate = piece.rate
        if k:
            gap = np.zeros(int(GAPS[k % len(GAPS)] * rate), np.float32)
            parts.append(gap)
            offset += len(gap)
        sound = first_sound(piece.audio, rate)
        at = offset / rate
        if piece.timings and sound is not None:
            firsts.append(len(timings))
            truth.append(at + sound)
        timings += [Timing(t.start_char + lo, t.end_char + lo, t.start + at, t.end + at, t.estimated)
                    for t in piece.timings]
        if plain:
            now = kokoro_mod.start_at_first_sound
            kokoro_mod.start_at_first_sound = hibari_mod.start_at_first_sound = lambda t, a, r: t
            try:
                again = Case(voice, speed, text[lo:hi])
                await speak(service, again)
            finally:
                kokoro_mod.start_at_first_sound = hibari_mod.start_at_first_sound = now
            plain_timings += [Timing(t.start_char + lo, t.end_char + lo, t.start + at, t.end + at, t.estimated)
                              for t in again.timings]
        parts.append(piece.audio)
        offset += len(piece.audio)
    case.audio = np.concatenate(parts)
    case.timings = timings
    return case, truth, firsts, (plain_timings if plain else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    args = parser.parse_args()

    from bench_engines import load_whisper

    service, pool, _engines = build_service(args.threads)
    whisper = load_whisper(args.threads)
    sphinx = None if args.no_sphinx else load_sphinx()
    clips = plan(args.quick, args.only)
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    worst: list[tuple[float, str, str, float, str, float, float]] = []
    loop = asyncio.new_event_loop()  # one loop for the service throughout
    try:
        for voice in dict.fromkeys(v for v, _, _ in clips):
            made: list[tuple] = []  # type: ignore[type-arg]

            async def run_all(voice: str = voice, made: list = made) -> None:  # type: ignore[type-arg]
                for v, speed, text in clips:
                    if v == voice:
                        plain = voice.startswith(("kokoro", "hibari"))
                        made.append((voice, speed, await joined_case(service, voice, speed, text, plain)))

            loop.run_until_complete(run_all())
            tally = Tally()
            add = tally.add
            for _, speed, (case, truth, firsts, plain_timings) in made:
                text = case.text
                true_at = dict(zip(firsts, truth, strict=True))
                scored = score(whisper, case, forced=not args.no_forced, sphinx=sphinx)
                versus = dict(scored.signed)  # word → ours − Whisper's
                snapped = scored.snapped
                for k, t in true_at.items():
                    add("ours_snapped", [snapped[k].start - t])
                for k, t in true_at.items():
                    ours = case.timings[k].start - t
                    add("ours", [ours])
                    add(f"ours_speed_{speed}", [ours])
                    if k in versus:
                        whisper_start = case.timings[k].start - versus[k]
                        add("whisper", [whisper_start - t])
                        add(f"whisper_speed_{speed}", [whisper_start - t])
                        add("ours_vs_whisper_known", [versus[k]])
                    word = case.text[case.timings[k].start_char:case.timings[k].end_char]
                    worst.append((abs(ours), voice, word, speed, text, ours,
                                  (case.timings[k].start - versus[k] - t) if k in versus else float("nan")))
                    if plain_timings is not None and len(plain_timings) == len(case.timings):
                        add("ours_durations", [plain_timings[k].start - t])
                        add(f"ours_durations_speed_{speed}", [plain_timings[k].start - t])
                add("ours_vs_whisper_inside", [e for k, e in versus.items() if k not in true_at])
                forced = dict(scored.forced_signed)
                for k, t in true_at.items():
                    if k in forced:
                        add("forced", [case.timings[k].start - forced[k] - t])
                aligned = dict(scored.aligned_signed)  # word → ours − PocketSphinx's
                for k, t in true_at.items():
                    if k in aligned:
                        add("sphinx", [case.timings[k].start - aligned[k] - t])
                        add(f"sphinx_speed_{speed}", [case.timings[k].start - aligned[k] - t])
                        add("ours_vs_sphinx_known", [aligned[k]])
                add("ours_vs_sphinx_inside", [e for k, e in aligned.items() if k not in true_at])
            results[voice] = tally.rows()
            print(f"{voice}:", flush=True)
            tally.print(28)
        worst.sort(reverse=True, key=lambda w: w[0])
        print("our largest |errors| against the truth (word, speed, ours, Whisper's):", flush=True)
        for _, voice, word, speed, _text, ours, whisp in worst[:12]:
            print(f"    {voice:18} {word!r:14} speed {speed}: ours {1000 * ours:+.0f} ms, "
                  f"whisper {1000 * whisp:+.0f} ms", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        loop.close()
        pool.close()


if __name__ == "__main__":
    main()

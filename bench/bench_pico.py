"""SVOX Pico against espeak-ng, language by language: Whisper base WER on the same sentences, and RTF.

For each Pico language, the sentences of bench/data/sentences_<lang>.txt are spoken by `pico:<tag>` and by
espeak-ng's voice for the same language, each sentence synthesized and transcribed on its own (Whisper
base, the model shipped on PyPI, told the language); word errors are summed over the set. Where Pico's
WER is lower it is the route for that language ahead of espeak-ng (`voxgate.engines.pico.ROUTED`).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_pico.py [--threads 1] [--out bench/results/pico.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench_engines import errors, load_whisper, sentences, transcribe
from voxgate.engines.base import EngineParams
from voxgate.engines.registry import create_engine

PAIRS = [  # (Pico voice, espeak-ng voice, Whisper language, sentence set)
    ("pico:en-US", "espeak:en-us", "en", "en"),
    ("pico:en-GB", "espeak:en-gb", "en", "en"),
    ("pico:de-DE", "espeak:de", "de", "de"),
    ("pico:es-ES", "espeak:es", "es", "es"),
    ("pico:fr-FR", "espeak:fr-fr", "fr", "fr"),
    ("pico:it-IT", "espeak:it", "it", "it"),
]


def run(engine, voice_id: str, language: str, texts: list[str], whisper) -> dict:  # type: ignore[no-untyped-def,type-arg]
    voice = {v.id: v for v in engine.voices()}.get(voice_id) or engine.voice_for(voice_id)
    loaded = engine.load(voice, 1)
    edits = length = 0
    synth = audio_s = 0.0
    heard = []
    for sentence in texts:
        start = time.perf_counter()
        audio = np.concatenate([p.samples for p in loaded.synthesize(sentence, EngineParams())])
        synth += time.perf_counter() - start
        audio_s += len(audio) / loaded.sample_rate
        hypothesis = transcribe(whisper, audio, loaded.sample_rate, language)
        heard.append(hypothesis)
        e, n = errors(sentence, hypothesis, language)
        edits, length = edits + e, length + n
    loaded.close()
    return {"voice": voice_id, "wer": round(edits / max(1, length), 3), "rtf": round(synth / audio_s, 4),
            "heard": heard}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="Whisper's threads")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    engines = {"pico": create_engine("pico"), "espeak": create_engine("espeak")}
    whisper = load_whisper(args.threads)
    rows = []
    for pico_id, espeak_id, language, data in PAIRS:
        texts = sentences(data)
        pico = run(engines["pico"], pico_id, language, texts, whisper)
        espeak = run(engines["espeak"], espeak_id, language, texts, whisper)
        rows.append({"language": pico_id.removeprefix("pico:"), "sentences": len(texts), "pico": pico,
                     "espeak": espeak, "pico_better": pico["wer"] < espeak["wer"]})
        print(f"{pico_id:11} WER {pico['wer']:.3f} RTF {pico['rtf']:.4f} | {espeak_id:13} WER {espeak['wer']:.3f} "
              f"RTF {espeak['rtf']:.4f} | {'pico' if pico['wer'] < espeak['wer'] else 'espeak'}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

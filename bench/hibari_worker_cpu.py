#!/usr/bin/env python3
"""What a server worker does per sentence that raw hibari does not, in CPU time: one thread, interleaved.

    python bench/hibari_worker_cpu.py [--rounds 7]

Each variant speaks bench_server's medium texts on one thread and is charged its thread CPU time per second of
audio (time.thread_time: other threads and other load do not count), the variants' order reversed every round:

- raw: hibari's own Hibari.stream on each whole text (bench_server's raw side);
- raw on the server's segments: the same, on the segments the server cuts the text into (first clause, then
  sentences gathered up to ~240 characters): what the segmentation alone costs;
- worker: HibariLoadedVoice.synthesize on those segments (the server's session: durations output, no CPU arena,
  the shared G2P), then levelling and int16 bytes as SynthesisStream._finishing does on the worker;
- worker without levelling/int16: the engine call alone;
- worker session, audio outputs only: the server's session run for the six audio outputs (no durations fetched);
- worker with hibari's own noise draw: the engine call with its vocoder's noise drawn by numpy's float32
  ziggurat, as stock hibari does, instead of voxgate's Box-Muller (engines/hibari.py NormalDraws).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
from hibari import Hibari, dsp

from bench_server import MEDIUM
from voxgate.audio.pcm import Leveller, int16_bytes
from voxgate.engines import hibari as hibari_engine
from voxgate.engines.base import EngineParams
from voxgate.engines.hibari import HibariEngine, bundled_model
from voxgate.text import normalize, split_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    engine = HibariEngine()
    served = engine.load(engine.voices()[0], 1)
    raw = Hibari(model=str(bundled_model()), threads=1)
    leveller = Leveller(1.3)
    params = EngineParams(speed=1.0, timings=False)
    segments = [segment for text in MEDIUM for segment in split_text(normalize(text))]
    audio_outputs = [o.name for o in served._tts.sess.get_outputs()][:6]

    def raw_texts() -> int:
        return sum(len(a) for text in MEDIUM for a in raw.stream(text))

    def raw_segments() -> int:
        return sum(len(a) for segment in segments for a in raw.stream(segment))

    def worker(post: bool = True) -> int:
        n = 0
        for segment in segments:
            for piece in served.synthesize(segment, params):
                if post:
                    int16_bytes(leveller.process(piece.samples))
                n += len(piece.samples)
        return n

    def audio_only() -> int:
        n, rng = 0, np.random.default_rng()
        for segment in segments:
            for phonemes in served._tts.phonemize(segment):
                feeds = {"ids": np.asarray([served._tts.ids(phonemes)], np.int64),
                         "speed": np.asarray([1.0], np.float32)}
                n += len(dsp.synth(*(o[0] for o in served._tts.sess.run(audio_outputs, feeds)), rng))
        return n

    def stock_draw() -> int:
        draws = hibari_engine.NormalDraws
        hibari_engine.NormalDraws = lambda rng: rng  # type: ignore[assignment,misc]
        try:
            return worker(False)
        finally:
            hibari_engine.NormalDraws = draws  # type: ignore[misc]

    variants: dict[str, Callable[[], int]] = {
        "raw (Hibari.stream, whole texts)": raw_texts, "raw on the server's segments": raw_segments,
        "worker (synthesize + levelling + int16)": worker, "worker without levelling/int16": lambda: worker(False),
        "worker session, audio outputs only": audio_only, "worker with hibari's own noise draw": stock_draw}
    for run in variants.values():
        run()  # warm
    got: dict[str, list[float]] = {name: [] for name in variants}
    for n in range(args.rounds):
        for name, run in (list(variants.items()) if n % 2 == 0 else list(variants.items())[::-1]):
            start = time.thread_time()
            samples = run()
            got[name].append((time.thread_time() - start) / (samples / raw.sample_rate) * 1000)
    base = float(np.median(got["raw (Hibari.stream, whole texts)"]))
    print("| variant | CPU ms per audio s (median) | × raw | per round |\n|---|---:|---:|---|")
    for name, values in got.items():
        print(f"| {name} | {np.median(values):.3f} | {np.median(values) / base:.3f} | "
              f"{', '.join(f'{v:.2f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How Piper's onnxruntime memory arena variants compare: RSS after warm-up against after the runs, and CPU
time per run, on the same seeded mix of texts (the soak's four, a 200- and a 400-character sentence) and
length scales (1.0, 1.0, 1.5, 2.0: slow speeds make the longest runs).

Variants (each in its own process, since an environment allocator is per process; `--all` starts them side by
side so they share the machine's load, and reports CPU seconds per run, which load changes less than wall time):
  today    per-session arena, extended in power-of-two regions, never given back (the code before)
  shrink   today + run option memory.enable_memory_arena_shrinkage=cpu:0 on every run
  same     one arena for every session (environment allocator), extended by what is asked, never given back
  bounded  one arena for every session with a first region of --chunk MB that is never given back; regions
           added for a larger run are given back when that run ends (shrinkage on every run)
  current  the sessions voxgate makes now (engines/piper.py), whatever VOXGATE_ORT_ARENA says

    nice -n 10 .venv/bin/python bench/piper_arena.py --all --warmup 20 --runs 150
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil

TEXTS = ["The weather today is mild and sunny, with a light breeze from the west.",
         "Hello there. How are you doing today?",
         "A short one.",
         "Reading aloud helps, she said, because every sound is heard, and nothing is rushed.",
         ("When the morning train finally pulled into the quiet station, the travellers gathered their bags and "
          "stepped out into the cold air, glad to be home at last"),
         ("When the morning train finally pulled into the quiet station after a long night crossing the mountains, "
          "the weary travellers gathered their heavy bags and coats, thanked the conductor who had kept them "
          "company through the storm, and stepped out onto the frozen platform, where their families stood "
          "waiting under the yellow lamps with flasks of hot tea and blankets for the long drive home")]
SCALES = [1.0, 1.0, 1.5, 2.0]
VARIANTS = ("today", "shrink", "same", "bounded", "current")  # bounded:<MB> sets that variant's first region


def plan(seed: int, count: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    return [(rng.choice(TEXTS), rng.choice(SCALES)) for _ in range(count)]


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def voice_for(variant: str, sessions: int, chunk_mb: int) -> list:
    """`sessions` Piper voices of the bundled model, made the variant's way."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from voxgate.engines.piper import PiperEngine

    engine = PiperEngine(alignments=False)
    info = next(v for v in engine.voices() if v.id.startswith("en_US-joe"))
    if variant.startswith("bounded:"):
        variant, chunk_mb = "bounded", int(variant.split(":")[1])
    if variant == "current":
        return [engine.load(info, 1)._voice for _ in range(sessions)]
    import onnxruntime
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    if variant in ("same", "bounded"):
        cfg = ({"arena_extend_strategy": 1} if variant == "same"
               else {"arena_extend_strategy": 0, "initial_chunk_size_bytes": chunk_mb * 2**20})
        onnxruntime.create_and_register_allocator(
            onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                      onnxruntime.OrtMemType.DEFAULT), onnxruntime.OrtArenaCfg(cfg))
    run_options = None
    if variant in ("shrink", "bounded"):
        run_options = onnxruntime.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    config = PiperConfig.from_dict(json.loads(Path(str(info.model_path) + ".json").read_text()))
    voices = []
    for _ in range(sessions):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False
        if variant in ("same", "bounded"):
            options.add_session_config_entry("session.use_env_allocators", "1")
        session = onnxruntime.InferenceSession(str(info.model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        voices.append(PiperVoice(config=config, session=_Runner(session, run_options)))
    return voices


class _Runner:
    """A session whose run() passes the variant's run options."""

    def __init__(self, session, run_options) -> None:
        self._session, self._options = session, run_options

    def run(self, names, feeds, run_options=None):
        return self._session.run(names, feeds, run_options or self._options)

    def __getattr__(self, name):
        return getattr(self._session, name)


def one(variant: str, warmup: int, runs: int, seed: int, sessions: int, chunk_mb: int) -> dict:
    from piper.voice import SynthesisConfig

    start = rss_mb()
    voices = voice_for(variant, sessions, chunk_mb)
    loaded = rss_mb()
    times: list[float] = []
    marks = {}
    for i, (text, scale) in enumerate(plan(seed, warmup + runs)):
        voice = voices[i % len(voices)]
        config = SynthesisConfig(length_scale=voice.config.length_scale * scale, noise_w_scale=0.8)
        cpu = time.process_time()
        for _ in voice.synthesize(text, config):
            pass
        if i >= warmup:
            times.append(time.process_time() - cpu)
        if i + 1 == warmup:
            marks["warm"] = rss_mb()
        if i + 1 in (warmup + runs // 2, warmup + runs):
            marks[f"run{i + 1 - warmup}"] = rss_mb()
    times.sort()
    return {"variant": variant, "start_mb": round(start), "loaded_mb": round(loaded),
            **{k: round(v) for k, v in marks.items()},
            "cpu_s_mean": round(sum(times) / len(times), 3), "cpu_s_median": round(times[len(times) // 2], 3),
            "cpu_s_total": round(sum(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", help=f"one of {', '.join(VARIANTS)}")
    parser.add_argument("--all", nargs="?", const="today,shrink,same,bounded",
                        help="start these variants side by side (default: the four measured ones)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--sessions", type=int, default=2, help="sessions per process, used in turn")
    parser.add_argument("--chunk", type=int, default=128, help="bounded: the kept first region, MB")
    args = parser.parse_args()
    if args.all:
        common = ["--warmup", str(args.warmup), "--runs", str(args.runs), "--seed", str(args.seed),
                  "--sessions", str(args.sessions), "--chunk", str(args.chunk)]
        procs = [subprocess.Popen([sys.executable, __file__, "--variant", v, *common], stdout=subprocess.PIPE,
                                  text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                 for v in args.all.split(",")]
        for proc in procs:
            out, _ = proc.communicate()
            print(out.strip(), flush=True)
        return
    print(json.dumps(one(args.variant, args.warmup, args.runs, args.seed, args.sessions, args.chunk)), flush=True)


if __name__ == "__main__":
    main()

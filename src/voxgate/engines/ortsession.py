"""onnxruntime session options shared by the engines: thread counts, and whether a session keeps a CPU arena.

An onnxruntime session's CPU memory arena grows to the largest run it has seen and never gives memory back
(it extends in power-of-two steps). Runs of a TTS model change shape with every text, so the arena only ever
climbs towards a high-water mark, slowly under a mixed load: in 8-minute soaks of every dialect (2 clients,
loaded machine) RSS climbed 770 → 836 MB with every session's arena, against 550–650 MB, going up and down, with
none. Without the arena, onnxruntime allocates each run's tensors from malloc and frees them after (the
server trims the malloc heap when idle). What that costs depends on the model, measured run for run on the
same texts (interleaved, one process, loaded machine): hibari 1.00× (120 against 119 ms median), Piper 1.16×
(3.07 against 2.39 s) — so hibari has none, and Piper's sessions share one bounded arena:

Piper's arena (`shared=True`) is one arena for every Piper session of the process (onnxruntime's environment
allocator, `session.use_env_allocators`), whose first region of PIPER_ARENA_MB is kept for good, and every run
ends with the run option `memory.enable_memory_arena_shrinkage` (`ShrinkingSession`). onnxruntime's BFCArena
never gives back the first region of a power-of-two arena on a shrink, and gives back every later region none of
whose chunks is in use (bfc_arena.cc, Shrink): ordinary runs stay inside the kept region, so they pay nothing, and
what a long run (400 characters said slowly) adds is unmapped when it ends instead of staying for ever. Memory is
then bounded by the kept region plus the runs in flight, not by the largest run ever seen. Measured with
bench/piper_arena.py (docs/engines.md; 2 sessions, 60 mixed runs after 8, long slow sentences included): RSS
1,347 → 1,737 MB with per-session arenas, 439 → 444 MB bounded, at 1.03× and 0.98× the median CPU time per run
in two runs (1.07× and 1.05× the mean: a run longer than the kept region maps its extra regions afresh; 256 MB
kept: 1.03× the mean for 115 MB more). A shrink on every run of a per-session
arena (first region 1 MB) cost 1.13× the median: every run re-mapped and re-touched the regions beyond it.

VOXGATE_ORT_ARENA=off turns every arena off, =on turns every one on (hibari's too; Piper's stays the shared one),
=grow gives Piper's sessions each their own arena that keeps what it grows to (the code before), for measuring.
"""

from __future__ import annotations

import os
import threading
from typing import Any

ARENA_ENV = "VOXGATE_ORT_ARENA"
PIPER_ARENA_MB = 128  # the shared arena's first region, kept for good: what ordinary runs of every session fit in
SHRINK_KEY = "memory.enable_memory_arena_shrinkage"

_shared_lock = threading.Lock()
_shared_registered = False


def session_options(threads: int, inter_threads: int = 1, arena: bool = True, shared: bool = False) -> Any:
    """SessionOptions with these thread counts, the CPU arena on if `arena` (unless VOXGATE_ORT_ARENA says);
    with `shared`, that arena is the process's bounded one (run the session through ShrinkingSession)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_threads
    choice = os.environ.get(ARENA_ENV, "")
    options.enable_cpu_mem_arena = choice in ("on", "grow") or (arena and choice != "off")
    if shared and options.enable_cpu_mem_arena and choice != "grow":
        _register_shared_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def _register_shared_arena() -> None:
    """Register the process's shared CPU arena once: power-of-two regions, the first PIPER_ARENA_MB kept."""
    global _shared_registered
    with _shared_lock:
        if _shared_registered:
            return
        import onnxruntime

        info = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                         onnxruntime.OrtMemType.DEFAULT)
        config = onnxruntime.OrtArenaCfg({"arena_extend_strategy": 0,  # kNextPowerOfTwo: its first region stays
                                          "initial_chunk_size_bytes": PIPER_ARENA_MB * 2**20})
        onnxruntime.create_and_register_allocator(info, config)
        _shared_registered = True


def uses_shared_arena(session: Any) -> bool:
    """Whether `session` allocates from the shared arena (and so should give back what a run added)."""
    entries = session.get_session_options().get_session_config_entry
    try:
        return entries("session.use_env_allocators") == "1"
    except RuntimeError:  # onnxruntime's answer for a key never set
        return False


class ShrinkingSession:
    """An InferenceSession whose every run gives back the arena regions it added beyond the kept first one
    (for callers that call session.run(None, feeds) themselves, as Piper's PiperVoice does)."""

    def __init__(self, session: Any) -> None:
        import onnxruntime

        self.session = session
        self._options = None
        self.shared = uses_shared_arena(session)  # allocates from the process's shared arena
        if self.shared:
            self._options = onnxruntime.RunOptions()
            self._options.add_run_config_entry(SHRINK_KEY, "cpu:0")

    def run(self, output_names: Any, input_feed: dict[str, Any], run_options: Any = None) -> Any:
        return self.session.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

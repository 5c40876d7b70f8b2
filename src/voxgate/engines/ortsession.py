"""onnxruntime session options shared by the engines: thread counts, and whether a session keeps a CPU arena.

An onnxruntime session's CPU memory arena grows to the largest run it has seen and never gives memory back
(it extends in power-of-two steps). Runs of a TTS model change shape with every text, so the arena only ever
climbs towards a high-water mark, slowly under a mixed load: in 8-minute soaks of every dialect (2 clients,
loaded machine) RSS climbed 770 → 836 MB with every session's arena, against 550–650 MB, going up and down, with
none. Without the arena, onnxruntime allocates each run's tensors from malloc and frees them after (the
server trims the malloc heap when idle). What that costs depends on the model, measured run for run on the
same texts (interleaved, one process, loaded machine): hibari 1.00× (120 against 119 ms median), Piper 1.16×
(3.07 against 2.39 s) — so Piper keeps its arena (bounded instead by sharing sessions, see scheduling.pool)
and hibari has none. VOXGATE_ORT_ARENA=off turns every session's arena off, =on turns every one on (hibari's
too, as before), for measuring.
"""

from __future__ import annotations

import os
from typing import Any

ARENA_ENV = "VOXGATE_ORT_ARENA"


def session_options(threads: int, inter_threads: int = 1, arena: bool = True) -> Any:
    """SessionOptions with these thread counts, the CPU arena on if `arena` (unless VOXGATE_ORT_ARENA says)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_threads
    choice = os.environ.get(ARENA_ENV, "")
    options.enable_cpu_mem_arena = choice == "on" or (arena and choice != "off")
    return options

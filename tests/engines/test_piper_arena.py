"""Piper's onnxruntime arena is bounded (engines/ortsession.py): the sessions share one arena whose first region
is kept, and what a long run adds beyond it is given back when the run ends. Measured in a fresh process (the
shared arena is per process, and RSS is the process's): RSS after a 400-character sentence said at half speed,
against RSS before it (after ordinary runs). A session that keeps what it grows to (VOXGATE_ORT_ARENA=grow, the
code before) kept +500 MB or more; the bounded arena may at most touch the rest of its kept region."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from voxgate.engines.ortsession import ARENA_ENV, PIPER_ARENA_MB, ShrinkingSession, session_options

pytestmark = pytest.mark.timeout(600)  # one long sentence at half speed, on a loaded 2-core machine

LONG = ("When the morning train finally pulled into the quiet station after a long night crossing the mountains, "
        "the weary travellers gathered their heavy bags and coats, thanked the conductor who had kept them company "
        "through the storm, and stepped out onto the frozen platform, where their families stood waiting under the "
        "yellow lamps with flasks of hot tea and blankets for the long drive home")

SCRIPT = f"""
import json, psutil
from voxgate.engines.base import EngineParams
from voxgate.engines.piper import PiperEngine

engine = PiperEngine(alignments=False)
loaded = engine.load(next(v for v in engine.voices() if v.id == "en_US-joe-medium"), 1)
rss = lambda: psutil.Process().memory_info().rss / 2**20
for text in ("Hello there. How are you doing today?", "Reading aloud helps, she said, because every sound is heard.",
             "The weather today is mild and sunny, with a light breeze from the west.") * 2:
    list(loaded.synthesize(text, EngineParams(speed=0.5)))
before = rss()
samples = sum(len(p.samples) for p in loaded.synthesize({LONG!r}, EngineParams(speed=0.5)))
print(json.dumps({{"before": before, "after": rss(), "seconds": samples / loaded.sample_rate}}))
"""


def _long_run_growth(arena: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != ARENA_ENV}
    if arena is not None:
        env[ARENA_ENV] = arena
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        out, err = proc.communicate(timeout=540)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_a_long_run_gives_back_what_it_added_to_pipers_arena() -> None:
    found = _long_run_growth(None)
    assert found["seconds"] > 20  # it was the long run: half speed, 400 characters
    # At most the rest of the kept region (the ordinary runs may not have touched all of it) and some heap.
    assert found["after"] - found["before"] < PIPER_ARENA_MB + 64, found


def test_arena_modes_for_pipers_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ARENA_ENV, raising=False)
    shared = session_options(1, shared=True)
    assert shared.enable_cpu_mem_arena and shared.get_session_config_entry("session.use_env_allocators") == "1"
    monkeypatch.setenv(ARENA_ENV, "grow")  # each session its own arena, kept (the code before)
    grow = session_options(1, shared=True)
    assert grow.enable_cpu_mem_arena
    with pytest.raises(RuntimeError):
        grow.get_session_config_entry("session.use_env_allocators")
    monkeypatch.setenv(ARENA_ENV, "off")
    assert session_options(1, shared=True).enable_cpu_mem_arena is False


def test_shrinking_session_passes_its_run_options_only_for_the_shared_arena() -> None:
    class Options:
        def __init__(self, entries: dict[str, str]) -> None:
            self.entries = entries

        def get_session_config_entry(self, key: str) -> str:
            if key not in self.entries:
                raise RuntimeError(key)
            return self.entries[key]

    class Session:
        def __init__(self, entries: dict[str, str]) -> None:
            self.options, self.seen = Options(entries), []

        def get_session_options(self) -> Options:
            return self.options

        def run(self, names: object, feeds: object, run_options: object = None) -> list[object]:
            self.seen.append(run_options)
            return []

    shared, own = Session({"session.use_env_allocators": "1"}), Session({})
    ShrinkingSession(shared).run(None, {})
    ShrinkingSession(own).run(None, {})
    assert shared.seen[0] is not None and shared.seen[0].get_run_config_entry(
        "memory.enable_memory_arena_shrinkage") == "cpu:0"
    assert own.seen == [None]
    assert ShrinkingSession(own).options is own.options  # everything else is the session's

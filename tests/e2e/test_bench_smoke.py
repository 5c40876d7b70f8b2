"""The benchmark runs end to end in --quick mode and reports every figure; its timing targets are not asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_server.py"
TIMEOUT_S = 120
SERVE_FLAGS = ("--stackflow-port", "0")  # passed on to `voxgate serve`: 10001 may be taken on a shared machine


def _run_quick(out: Path) -> subprocess.CompletedProcess[str]:
    """Run the quick benchmark in its own process group, so a timeout can end it and its server."""
    # VOXGATE_MATCH_BASES=[]: the bench server measures no base voices in the background (by default every
    # installed voice, tens of CPU-seconds spent beside the quick runs; no figure checked here depends on it).
    env = {**os.environ, "VOXGATE_MATCH_BASES": "[]"}
    process = subprocess.Popen([sys.executable, str(BENCH), "--quick", "--json", str(out), *SERVE_FLAGS], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        pytest.fail(f"benchmark took more than {TIMEOUT_S} s")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _check_latency(lat: dict[str, Any]) -> None:
    assert lat["n"] >= 1
    assert _positive(lat["median_ms"]) and _positive(lat["p95_ms"])
    assert lat["median_ms"] <= lat["p95_ms"] < 60_000
    assert lat["server_mean_ms"] is None or _positive(lat["server_mean_ms"])


def _check_raw(raw: dict[str, Any]) -> None:
    assert set(raw["sessions"]) == {"stock", "1 thread", "2 threads"}
    for session in raw["sessions"].values():
        for key in ("first_clause_ms", "first_one_ms", "first_ten_ms", "throughput"):
            assert _positive(session[key]), key
        assert 0 < session["rtf"] < 1
        assert session["first_medium_ms"] and all(_positive(v) for v in session["first_medium_ms"].values())
    assert _positive(raw["parallel_throughput"])
    assert raw["best_throughput"] >= raw["parallel_throughput"]
    assert isinstance(raw["best"], str) and raw["best"]


def _check_load(loads: list[dict[str, Any]]) -> None:
    assert [load["concurrency"] for load in loads] == [1, 2, 4, 8]
    for load in loads:
        assert load["requests"] >= 1 and len(load["first_ms"]) == load["requests"]
        assert load["first_median_ms_by_segment"]
        assert all(_positive(v) for v in load["first_median_ms_by_segment"].values())
        for key in ("audio_s", "wall_s", "throughput", "first_p50_ms", "first_p95_ms", "server_first_mean_ms",
                    "server_cpu_s"):
            assert _positive(load[key]), (load["concurrency"], key)
        assert load["first_p50_ms"] <= load["first_p95_ms"]
        assert load["client_cpu_s"] >= 0
        assert 0 <= load["underruns"] <= load["requests"]
        assert load["worst_underrun_ms"] >= 0
        assert isinstance(load["capped"], bool)


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = _run_quick(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Targets" in result.stdout and "python bench/bench_server.py --quick" in result.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["config"]["quick"] is True
    assert data["first_clause"] and data["machine"]["cpus"] >= 1
    _check_raw(data["raw"])
    server = data["server"]
    assert _positive(server["cold_start_s"])
    for key in ("http_rtt", "first_one", "first_ten", "first_mp3"):
        _check_latency(server[key])
    assert 0 < server["rtf_c1"] < 1
    _check_load(server["load"])
    assert server["rss_peak_mb"] >= server["rss_after_mb"] > 0
    assert len(data["targets"]) >= 4
    assert server["paired"]["n"] >= 1 and len(server["paired"]["server_all_ms"]) == server["paired"]["n"]
    throughput = server["throughput"]
    assert throughput["blocks"] == len(throughput["ratios"]) >= 1
    assert all(_positive(v) for v in throughput["raw"] + throughput["server"] + throughput["ratios"])
    assert throughput["low"] <= throughput["ratio"] <= throughput["high"]
    for target in data["targets"]:
        assert isinstance(target["passed"], bool) and _positive(target["limit"])
        assert isinstance(target["value"], float) and abs(target["value"]) < 1e6  # server − raw may be negative
        if target["low"] is not None:
            assert target["low"] <= target["high"]

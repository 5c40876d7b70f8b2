"""bench_server decides each engine's targets by that engine's limits (Piper: issue 2; hibari: issue 13)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench = pytest.importorskip("bench_server")


def _figures(first_ms: float, p95_4: float, p95_8: float, throughput_8: float) -> tuple[object, object]:
    session = bench.RawSession(first_clause_ms=17.0, first_one_ms=20.0, first_ten_ms=21.0, rtf=0.02, throughput=100.0)
    raw = bench.RawResult({"stock": session, "1 thread": session, "2 threads": session}, parallel_throughput=205.0,
                          best_throughput=210.0, best="2 × 1 thread in parallel")
    latency = bench.Latency(n=10, median_ms=first_ms, p95_ms=first_ms + 5)
    loads = [bench.LoadResult(n, 8, 80.0, 1.0, throughput_8, 50.0, {4: p95_4, 8: p95_8}.get(n, 60.0), 40.0, 0, 0.0,
                              1.0, 0.1, False) for n in (1, 2, 4, 8)]
    server = bench.ServerResult(2.4, latency, latency, bench.Latency(10, first_ms + 1, first_ms + 6), latency, 0.05,
                                loads)
    return raw, server


def _verdicts(raw: object, server: object, engine: str) -> dict[str, tuple[float, bool]]:
    return {t.name: (t.limit, t.passed) for t in bench.targets(raw, server, engine) if t.decisive}


def test_hibari_targets_are_issue_13s() -> None:
    raw, server = _figures(first_ms=24.4, p95_4=105.0, p95_8=108.0, throughput_8=241.8)
    found = _verdicts(raw, server, "hibari")
    assert found["1. server first audio (one sentence, median) ≤ raw + 5 ms"] == (22.0, False)  # +7.4 ms: fails
    assert found["3. throughput at 8 clients ≥ 90% of raw 2 × 1 thread in parallel"] == (pytest.approx(184.5), True)
    assert found["4. p95 first audio at 4 clients ≤ 150 ms"] == (150.0, True)
    assert found["4. p95 first audio at 8 clients ≤ 300 ms"] == (300.0, True)
    raw, server = _figures(first_ms=21.9, p95_4=151.0, p95_8=301.0, throughput_8=184.0)
    found = _verdicts(raw, server, "hibari")
    assert [passed for _, passed in found.values()] == [True, True, False, False, False]


def test_piper_targets_are_unchanged() -> None:
    raw, server = _figures(first_ms=26.0, p95_4=399.0, p95_8=801.0, throughput_8=199.6)
    found = _verdicts(raw, server, "piper")
    assert found["1. server first audio (one sentence, median) ≤ raw + 10 ms"] == (27.0, True)
    assert found["3. throughput at 8 clients ≥ 95% of raw best"] == (pytest.approx(199.5), True)
    assert found["4. p95 first audio at 4 clients ≤ 400 ms"] == (400.0, True)
    assert found["4. p95 first audio at 8 clients ≤ 800 ms"] == (800.0, False)


def test_paired_figures_decide_with_their_interval() -> None:
    raw, server = _figures(first_ms=30.0, p95_4=105.0, p95_8=108.0, throughput_8=150.0)  # one-off run: fails
    server.paired = bench.Paired(60, raw_ms=20.0, server_ms=24.0, server_p95_ms=30.0, diff_ms=4.0,
                                 diff_low_ms=3.2, diff_high_ms=4.6)
    server.throughput = bench.PairedThroughput(8, [200.0] * 8, [190.0] * 8, [0.95] * 8, ratio=0.95, q1=0.9, q3=1.0,
                                               low=0.88, high=1.02)
    found = {t.name: t for t in bench.targets(raw, server, "hibari")}
    first = found["1. server first audio − raw, paired by round (median of 60) ≤ +5 ms"]
    assert (first.value, first.limit, first.passed, first.certain) == (4.0, 5.0, True, True)
    share = found["3. throughput at 8 clients ≥ 90% of raw 2 × 1 thread, paired blocks (median ratio of 8)"]
    assert (share.value, share.passed, share.certain) == (pytest.approx(95.0), True, False)  # 88% is below 90%
    assert bench.verdict(share) == "PASS (interval crosses the limit)"
    assert not found["3. (info) same, one 8-client run against the raw phase"].decisive
    assert [t.passed for t in found.values() if t.decisive] == [True, True, True, True, True]

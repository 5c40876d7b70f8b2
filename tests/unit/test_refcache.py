"""The reference cache on disk: content-keyed entries, LRU eviction by count and bytes, restarts, crash leftovers."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from voxgate.voices.refcache import ReferenceCache

RATE = 16000


def _entry(seed: int, seconds: float = 1.0) -> tuple[str, np.ndarray]:
    samples = (np.random.default_rng(seed).standard_normal(int(RATE * seconds)) * 0.1).astype(np.float32)
    return hashlib.sha256(samples.tobytes()).hexdigest(), samples


def test_entries_survive_a_reopen_and_read_back(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, max_entries=4)
    sha, samples = _entry(1)
    assert cache.get(sha) is None
    assert cache.put(sha, samples, RATE, {"features": {"base_voice": "x"}}) == []
    reopened = ReferenceCache(tmp_path, max_entries=4)
    assert reopened.get(sha) == {"features": {"base_voice": "x"}}
    audio, rate = reopened.audio(sha)
    assert rate == RATE and np.allclose(audio, samples, atol=1 / 32768 + 1e-6)
    assert reopened.entries() == [sha]


def test_count_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, max_entries=2)
    (a, sa), (b, sb), (c, sc) = _entry(1), _entry(2), _entry(3)
    cache.put(a, sa, RATE, {"n": 1})
    time.sleep(0.01)
    cache.put(b, sb, RATE, {"n": 2})
    time.sleep(0.01)
    assert cache.get(a) == {"n": 1}  # a is now more recently used than b
    time.sleep(0.01)
    assert cache.put(c, sc, RATE, {"n": 3}) == [b]
    assert sorted(cache.entries()) == sorted([a, c])
    assert not (tmp_path / f"{b}.wav").exists() and not (tmp_path / f"{b}.json").exists()


def test_byte_bound_evicts_until_it_fits(tmp_path: Path) -> None:
    one = 2 * RATE + 44  # bytes of a 1 s 16-bit WAV
    cache = ReferenceCache(tmp_path, max_entries=100, max_bytes=int(2.5 * one))
    shas = []
    for seed in range(4):
        sha, samples = _entry(seed)
        cache.put(sha, samples, RATE, {"seed": seed})
        shas.append(sha)
        time.sleep(0.01)
    assert cache.size() <= 2.5 * one
    assert cache.entries() == shas[-2:]  # the two newest fit, the rest went


def test_leftovers_of_an_interrupted_write_are_swept(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    sha, samples = _entry(5)
    cache.put(sha, samples, RATE, {})
    orphan, _ = _entry(6)
    (tmp_path / f"{orphan}.wav").write_bytes(b"RIFF")  # audio written, JSON never was
    (tmp_path / f".{sha}.json.123.tmp").write_bytes(b"{")
    reopened = ReferenceCache(tmp_path)
    assert reopened.entries() == [sha]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{sha}.wav", f"{sha}.json"])


def test_names_that_are_not_hashes_are_refused(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    assert cache.get("../registry") is None
    try:
        cache.put("../x", np.zeros(10, np.float32), RATE, {})
    except ValueError:
        pass
    else:
        raise AssertionError("a non-hash key was accepted")

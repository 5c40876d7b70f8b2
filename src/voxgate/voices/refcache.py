"""References used for one request (GPT-SoVITS `ref_audio_path`, Flash-TTS `/clone_voice`, OpenAI `voice` as
audio): a bounded cache on disk, keyed by the audio's content hash, so they never become listed voices.

Each entry is `<sha256>.wav` (the reference as the store keeps references) and `<sha256>.json` (its
measurements and match). Both are written crash-safely (temporary name, fsync, rename), the audio first:
an entry exists once its JSON does, and leftovers of an interrupted write are swept when the cache opens.
Least recently used entries go first when the count or the size bound is passed; use is the JSON file's
modification time, so the order survives restarts without an index file to keep in step.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.voices.store import read_wav, wav_bytes, write_atomic

_LOG = logging.getLogger(__name__)
_ENTRY = re.compile(r"^[0-9a-f]{64}$")


class ReferenceCache:
    """Content-addressed, size- and count-bounded reference audio with its measurements (thread-safe)."""

    def __init__(self, root: Path, max_entries: int = 64, max_bytes: int = 64 * 2**20) -> None:
        self.root = root
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        root.mkdir(parents=True, exist_ok=True)
        self.sweep()

    def _wav(self, sha: str) -> Path:
        return self.root / f"{sha}.wav"

    def _meta(self, sha: str) -> Path:
        return self.root / f"{sha}.json"

    def audio_path(self, sha: str) -> Path:
        """Where an entry's audio is."""
        return self._wav(sha)

    def sweep(self) -> list[str]:
        """Delete temporary files and half-written entries (audio without JSON, JSON without audio)."""
        removed = []
        with self._lock:
            for path in self.root.iterdir():
                stem = path.name.split(".")[0]
                whole = _ENTRY.match(stem) and self._wav(stem).is_file() and self._meta(stem).is_file()
                if path.name.startswith(".") or path.name.endswith(".tmp") or not whole:
                    path.unlink(missing_ok=True)
                    removed.append(path.name)
        return removed

    def entries(self) -> list[str]:
        """Hashes in the cache, least recently used first."""
        with self._lock:
            metas = [p for p in self.root.glob("*.json") if _ENTRY.match(p.stem)]
            return [p.stem for p in sorted(metas, key=_mtime)]

    def size(self) -> int:
        """Bytes on disk."""
        with self._lock:
            return sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())

    def get(self, sha: str) -> dict[str, Any] | None:
        """An entry's metadata (and it counts as used now), or None."""
        if not _ENTRY.match(sha):
            return None
        with self._lock:
            path = self._meta(sha)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if not self._wav(sha).is_file():
                return None
            _touch(path)
            return data if isinstance(data, dict) else None

    def audio(self, sha: str) -> tuple[np.ndarray, int]:
        """An entry's audio (float32, rate)."""
        return read_wav(self._wav(sha))

    def put(self, sha: str, samples: np.ndarray, rate: int, meta: dict[str, Any]) -> list[str]:
        """Add (or refresh) an entry; returns the hashes evicted to stay within the bounds."""
        if not _ENTRY.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        with self._lock:
            if not self._wav(sha).is_file():
                write_atomic(self._wav(sha), wav_bytes(samples, rate))
            write_atomic(self._meta(sha), json.dumps(meta).encode())
            return self._evict(keep=sha)

    def update(self, sha: str, meta: dict[str, Any]) -> None:
        """Replace an entry's metadata (a new match)."""
        with self._lock:
            if self._wav(sha).is_file():
                write_atomic(self._meta(sha), json.dumps(meta).encode())

    def _evict(self, keep: str) -> list[str]:
        evicted = []
        order = [sha for sha in self.entries() if sha != keep]
        total = self.size()
        while order and (len(order) + 1 > self.max_entries or total > self.max_bytes):
            victim = order.pop(0)
            for path in (self._meta(victim), self._wav(victim)):  # JSON first: the entry is gone at once
                try:
                    total -= path.stat().st_size
                except OSError:
                    pass
                path.unlink(missing_ok=True)
            evicted.append(victim)
        if evicted:
            _LOG.info("reference cache: evicted %d least recently used reference(s)", len(evicted))
        return evicted


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    try:
        now = time.time()
        os.utime(path, (now, now))
    except OSError:
        pass

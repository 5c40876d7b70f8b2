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

from voxgate.safefs import check_inside, write_atomic
from voxgate.voices.store import read_wav, wav_bytes

_LOG = logging.getLogger(__name__)
_ENTRY = re.compile(r"^[0-9a-f]{64}$")


class ReferenceCache:
    """Content-addressed, size- and count-bounded reference audio with its measurements (thread-safe)."""

    def __init__(self, root: Path, max_entries: int = 64, max_bytes: int = 64 * 2**20,
                 within: Path | None = None) -> None:
        """`within` is the folder every write must stay in once links are resolved (the data folder; by
        default `root` itself): a `root` linked out of it is refused here, and each write checks again."""
        self.root = root
        self.within = within if within is not None else root
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        root.mkdir(parents=True, exist_ok=True)
        check_inside(root, self.within)
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
                whole = _ENTRY.match(stem) and _present(self._wav(stem)) and _present(self._meta(stem))
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
            if not _present(path) or not _present(self._wav(sha)):
                return None
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
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
            if not _present(self._wav(sha)):  # a link planted at the name is replaced, never kept or read
                write_atomic(self._wav(sha), wav_bytes(samples, rate), root=self.within)
            write_atomic(self._meta(sha), json.dumps(meta).encode(), root=self.within)
            return self._evict(keep=sha)

    def update(self, sha: str, meta: dict[str, Any]) -> None:
        """Replace an entry's metadata (a new match)."""
        with self._lock:
            if _present(self._wav(sha)):
                write_atomic(self._meta(sha), json.dumps(meta).encode(), root=self.within)

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


def _present(path: Path) -> bool:
    """A regular file at `path` itself (a symlink, even to a file, is not an entry's file)."""
    return path.is_file() and not path.is_symlink()


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

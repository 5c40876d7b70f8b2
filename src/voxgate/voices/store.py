"""Registered voices on disk: a SQLite index plus content-addressed WAV files, written crash-safely.

Order of writes is what makes a kill -9 harmless: the audio file is written to a temporary name,
fsynced and renamed into place before the index row that points at it is committed; a removal
deletes the row first and the file after. So a crash leaves at worst an unreferenced file (swept
at start), never a row without its audio.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import struct
import threading
import time
import unicodedata
import wave
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.errors import InvalidInput, VoiceExists
from voxgate.safefs import UnsafePath, check_inside, write_atomic

__all__ = ["StoredVoice", "VoiceExists", "VoiceStore", "audio_sha256", "make_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    language TEXT,
    transcript TEXT,
    audio_sha256 TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    duration REAL NOT NULL,
    features TEXT NOT NULL DEFAULT '{}',
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_TMP_SUFFIX = ".tmp"
MAX_ID_CHARS = 100


@dataclass(frozen=True)
class StoredVoice:
    """One registered voice as the index records it."""

    id: str
    name: str
    language: str | None
    transcript: str | None
    audio_sha256: str  # hash of the canonical audio (int16 LE PCM + rate)
    sample_rate: int  # Hertz of the stored reference audio
    duration: float  # seconds of reference audio
    features: Mapping[str, Any] = field(default_factory=dict)  # computed once at registration
    meta: Mapping[str, Any] = field(default_factory=dict)  # per-dialect extras (e.g. origin)
    created: float = 0.0  # Unix time

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the export manifest uses it)."""
        data = asdict(self)
        data["features"], data["meta"] = dict(self.features), dict(self.meta)
        return data

    def row(self) -> tuple[Any, ...]:
        """The index row (both stores' column order; features and meta as JSON text)."""
        return (self.id, self.name, self.language, self.transcript, self.audio_sha256, self.sample_rate,
                self.duration, json.dumps(dict(self.features)), json.dumps(dict(self.meta)), self.created)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> StoredVoice:
        """A voice from an index row, as `row()` writes it."""
        (vid, name, language, transcript, sha, rate, duration, features, meta, created) = row
        return cls(vid, name, language, transcript, sha, rate, duration, json.loads(features), json.loads(meta),
                   created)


def canonical_pcm(samples: np.ndarray) -> bytes:
    """Reference audio as stored: int16 LE, scaled by 32768 so 16-bit sources round-trip exactly."""
    return np.clip(np.rint(np.asarray(samples, np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes()


def audio_sha256(samples: np.ndarray, rate: int) -> str:
    """The canonical content hash: the stored PCM bytes, then the rate: same sound, same hash, any container."""
    digest = hashlib.sha256(canonical_pcm(samples))
    digest.update(struct.pack("<I", int(rate)))
    return digest.hexdigest()


def make_id(name: str) -> str:
    """A stable id from a display name: Unicode kept (roles may be Chinese), unsafe characters refused."""
    text = unicodedata.normalize("NFC", name).strip()
    text = "-".join(text.split())
    if not text or len(text) > MAX_ID_CHARS:
        raise InvalidInput(f"voice name must be 1–{MAX_ID_CHARS} characters", param="name")
    bad = [c for c in text if c in '/\\:*?"<>|#%' or unicodedata.category(c).startswith("C")]
    if bad or text.startswith(".") or text.endswith("@"):
        raise InvalidInput(f"voice name {name!r} has characters that cannot be used in an id", param="name")
    return text


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit mono WAV with true sizes."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(canonical_pcm(samples))
    return buffer.getvalue()


def read_wav(path: Path | io.BytesIO) -> tuple[np.ndarray, int]:
    """Read a stored reference back as float32."""
    with wave.open(str(path) if isinstance(path, Path) else path, "rb") as src:
        rate, frames = src.getframerate(), src.readframes(src.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


class VoiceStore:
    """The registered-voice index and its audio files under one data folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.references = root / "references"
        self.references.mkdir(parents=True, exist_ok=True)
        check_inside(self.references, root)  # a references link out of the data folder is refused at start
        if (root / "registry.sqlite").is_symlink():
            raise UnsafePath(f"{root / 'registry.sqlite'} is a symlink; voxgate keeps its index in the data folder")
        self._lock = threading.RLock()  # one writer at a time inside this process; SQLite guards others
        self._db = sqlite3.connect(root / "registry.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self.sweep()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def describe(self) -> str:
        """Where the voices are kept (the start-up summary)."""
        return f"SQLite in {self.root.resolve()} (--store postgresql://… shares one between nodes)"

    def get_gain(self, key: str) -> float | None:
        """Levelling gains are not kept here: one server per data folder measures each voice once per run."""
        return None

    def put_gain(self, key: str, gain: float) -> float:
        """Nothing to share with: the measured gain is the one used."""
        return gain

    def watch(self, callback: Callable[[], None]) -> None:
        """One server per data folder: nobody else adds voices while it runs (the command line restarts it)."""

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def audio_path(self, sha256: str) -> Path:
        """Where the audio with this hash lives."""
        return self.references / f"{sha256}.wav"

    def add(self, voice: StoredVoice, samples: np.ndarray, *, replace: bool = False) -> tuple[StoredVoice, bool]:
        """Store a voice and its audio; returns (the stored voice, whether that id already existed)."""
        sha = audio_sha256(samples, voice.sample_rate)
        record = StoredVoice(**{**voice.to_dict(), "audio_sha256": sha, "created": voice.created or time.time()})
        with self._lock:
            existing = self.get(record.id)
            if existing is not None and not replace:
                return existing, True
            path = self.audio_path(sha)
            if path.is_symlink() or not path.is_file():  # a link planted in its place is replaced, not followed
                write_atomic(path, wav_bytes(samples, voice.sample_rate), root=self.root)
            with self._transaction() as db:
                db.execute("INSERT OR REPLACE INTO voices VALUES (?,?,?,?,?,?,?,?,?,?)", record.row())
            if existing is not None and existing.audio_sha256 != sha:
                self._drop_file_if_unused(existing.audio_sha256)
        return record, existing is not None

    def update_features(self, voice_id: str, features: Mapping[str, Any]) -> None:
        """Replace the stored features of a voice (after re-matching)."""
        with self._transaction() as db:
            db.execute("UPDATE voices SET features=? WHERE id=?", (json.dumps(dict(features)), voice_id))

    def get(self, voice_id: str) -> StoredVoice | None:
        """One voice by id."""
        with self._lock:
            row = self._db.execute("SELECT * FROM voices WHERE id=?", (voice_id,)).fetchone()
        return StoredVoice.from_row(row) if row else None

    def list(self) -> list[StoredVoice]:
        """Every registered voice, by id."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM voices ORDER BY id").fetchall()
        return [StoredVoice.from_row(row) for row in rows]

    def remove(self, voice_id: str) -> bool:
        """Delete a voice; its audio file goes when no other voice shares it."""
        with self._lock:
            existing = self.get(voice_id)
            if existing is None:
                return False
            with self._transaction() as db:
                db.execute("DELETE FROM voices WHERE id=?", (voice_id,))
            self._drop_file_if_unused(existing.audio_sha256)
        return True

    def _drop_file_if_unused(self, sha: str) -> None:
        used = self._db.execute("SELECT 1 FROM voices WHERE audio_sha256=? LIMIT 1", (sha,)).fetchone()
        if not used:
            self.audio_path(sha).unlink(missing_ok=True)

    def get_value(self, key: str, default: Any = None) -> Any:
        """A persisted setting (JSON), e.g. an alias table a dialect changed at run time."""
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_value(self, key: str, value: Any) -> None:
        """Persist a setting (JSON)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    def keys(self, prefix: str) -> list[str]:
        """Settings whose key starts with `prefix`."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._db.execute("SELECT key FROM kv WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",)).fetchall()
        return [row[0] for row in rows if row[0].startswith(prefix)]  # LIKE ignores ASCII case

    def delete_value(self, key: str) -> None:
        """Forget a setting."""
        with self._transaction() as db:
            db.execute("DELETE FROM kv WHERE key=?", (key,))

    def sweep(self) -> list[str]:
        """Delete leftovers of interrupted writes: temporary files, and audio no voice points at."""
        removed = []
        with self._lock:
            used = {row[0] for row in self._db.execute("SELECT audio_sha256 FROM voices")}
            for path in self.references.iterdir():
                stale_tmp = path.name.startswith(".") and path.name.endswith(_TMP_SUFFIX)
                orphan = path.suffix == ".wav" and path.stem not in used
                if stale_tmp or orphan:
                    path.unlink(missing_ok=True)
                    removed.append(path.name)
        return removed

    def check(self) -> list[str]:
        """Problems with stored voices (missing, unreadable or altered audio); empty when all is well."""
        problems = []
        for voice in self.list():
            path = self.audio_path(voice.audio_sha256)
            try:
                samples, rate = read_wav(path)
            except FileNotFoundError:
                problems.append(f"{voice.id}: audio file is missing ({path.name})")
                continue
            except (OSError, EOFError, wave.Error) as exc:
                problems.append(f"{voice.id}: audio file is unreadable ({exc})")
                continue
            if audio_sha256(samples, rate) != voice.audio_sha256:
                problems.append(f"{voice.id}: audio file does not match its hash (changed or corrupt)")
        return problems


def _row(voice: StoredVoice) -> tuple[Any, ...]:
    return (voice.id, voice.name, voice.language, voice.transcript, voice.audio_sha256, voice.sample_rate,
            voice.duration, json.dumps(dict(voice.features)), json.dumps(dict(voice.meta)), voice.created)


def _voice(row: tuple[Any, ...]) -> StoredVoice:
    (vid, name, language, transcript, sha, rate, duration, features, meta, created) = row
    return StoredVoice(vid, name, language, transcript, sha, rate, duration, json.loads(features),
                       json.loads(meta), created)

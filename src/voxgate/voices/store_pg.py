"""Registered voices in PostgreSQL (`--store postgresql://…`): one store for every node of a cluster.

The index rows, the reference audio (bytea, content-addressed by its canonical hash), the persisted
settings, the levelling gains and the lexicon live in `voxgate_*` tables. A voice is written in ONE
transaction, reference first and then its row, so a process killed mid-write leaves nothing behind: the
transaction never committed. Every change (a voice added, updated or removed; lexicon entries written) takes
the next change number, is logged in `voxgate_changes` and sent as a NOTIFY whose payload says what changed,
all in the write's transaction. A process that watches (a server's registry) keeps every voice row in memory
and applies each change it hears of by itself: it reads the one row that changed, or none for a removal.
It also polls the log for numbers past the last it applied twice a second (one indexed query that finds
nothing when nothing changed), so a notification lost while its connection was re-opened costs no more than
the changes missed; only a process so far behind that the log no longer holds them reads every voice again.
Every node sees a new or removed voice within a second. Reference audio is copied out to a local cache file
the first time a node needs it as a file (downloads, archives, cloning engines).

The schema is versioned (`voxgate_schema.version`), created on first use under an advisory lock (nodes
starting together do not race), and never dropped or rewritten: a database of a newer voxgate is refused.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import wave
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from voxgate.safefs import check_inside, write_atomic
from voxgate.voices.store import StoredVoice, audio_sha256, read_wav, wav_bytes
from voxgate.voices.store_base import Change, StoreError, redact

_LOG = logging.getLogger(__name__)

SCHEMA_VERSION = 2
CHANNEL = "voxgate_voices"  # NOTIFY channel: the payload is the change, {"seq": n, "kind": k, "voice": id}
POLL_SECONDS = 0.5  # how often a watching process polls the change log when no notification came
LOG_KEEP = 1000  # changes kept in voxgate_changes: a process further behind than that reads every voice again
CONNECT_TIMEOUT = 5  # seconds, for the first connection and every pooled one
_SCHEMA_LOCK = 0x766F78676174  # pg_advisory_xact_lock key ("voxgat"): one migration at a time

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS voxgate_references (
    sha256 text PRIMARY KEY,
    sample_rate integer NOT NULL,
    wav bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS voxgate_voices (
    id text PRIMARY KEY,
    name text NOT NULL,
    language text,
    transcript text,
    audio_sha256 text NOT NULL REFERENCES voxgate_references (sha256),
    sample_rate integer NOT NULL,
    duration double precision NOT NULL,
    features text NOT NULL DEFAULT '{}',
    meta text NOT NULL DEFAULT '{}',
    created double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS voxgate_voices_audio ON voxgate_voices (audio_sha256);
CREATE TABLE IF NOT EXISTS voxgate_kv (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS voxgate_gains (key text PRIMARY KEY, gain double precision NOT NULL,
                                          measured double precision NOT NULL);
CREATE TABLE IF NOT EXISTS voxgate_lexicon (
    seq bigserial NOT NULL,
    word text NOT NULL,
    language text NOT NULL DEFAULT '',
    voice text NOT NULL DEFAULT '',
    phonemes text,
    respelling text,
    PRIMARY KEY (word, language, voice)
);
"""
# v2: the change log. `seq` is the schema row's generation, taken under that row's lock (held to commit), so
# numbers commit in order and a reader that saw n has seen every change up to n.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS voxgate_changes (seq bigint PRIMARY KEY, kind text NOT NULL, voice text NOT NULL DEFAULT '');
"""
VOICE_CHANGES = ("added", "updated", "removed")
_COLUMNS = "id, name, language, transcript, audio_sha256, sample_rate, duration, features, meta, created"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


class PostgresStore:
    """The voice store in a PostgreSQL database, shared by every process that names the same URL."""

    def __init__(self, url: str, root: Path) -> None:
        self.root = root
        self.where = redact(url)
        self.references = root / "cache" / "store-references"  # local copies of the bytea audio
        self.references.mkdir(parents=True, exist_ok=True)
        check_inside(self.references, root)
        self._url = url
        self._callbacks: list[Callable[[Change], None]] = []
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._file_lock = threading.Lock()
        # While watching, every voice row is kept here with the number of the change it reflects (None: removed),
        # so get() and list() cost no round trip; a change made here or heard of replaces only its own voice.
        self._mirror: dict[str, tuple[StoredVoice | None, int]] | None = None
        self._mirror_lock = threading.Lock()
        self._seen = 0  # the last change number the mirror has applied
        self.lexicon_seen = 0  # lexicon changes heard of while watching (PostgresLexiconStore.changed() compares)
        self.voice_rows_read = 0  # voice rows read from the database (the tests count them)
        try:
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                                 application_name="voxgate") as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"--store {self.where}: cannot use the database: {_first_line(exc)}") from None
        self._pool = ConnectionPool(url, min_size=1, max_size=4, timeout=30, name="voxgate-store", open=True,
                                    kwargs={"connect_timeout": CONNECT_TIMEOUT, "autocommit": True,
                                            "application_name": "voxgate"},
                                    check=ConnectionPool.check_connection)  # one dropped by a restart is replaced
        self.sweep()

    # ------------------------------------------------------------------ schema and connections

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables on first use (versioned; nothing is ever dropped)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS voxgate_schema (one integer PRIMARY KEY CHECK (one = 1), "
                         "version integer NOT NULL, generation bigint NOT NULL DEFAULT 0, "
                         "lexicon_generation bigint NOT NULL DEFAULT 0)")
            row = conn.execute("SELECT version FROM voxgate_schema").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"--store {self.where}: the database holds voxgate store schema {version}, "
                                 f"newer than this voxgate's {SCHEMA_VERSION}: upgrade voxgate")
            if version < SCHEMA_VERSION:
                if version < 1:
                    conn.execute(_SCHEMA_V1)
                conn.execute(_SCHEMA_V2)
                conn.execute("INSERT INTO voxgate_schema (one, version) VALUES (1, %s) "
                             "ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version", (SCHEMA_VERSION,))
                _LOG.info("created the voice store's tables (schema %d) in %s", SCHEMA_VERSION, self.where)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit; `conn.transaction()` makes a transaction), checked before use."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:  # the database went away for longer than the pool waits
            raise StoreError(f"--store {self.where}: no database connection: {_first_line(exc)}") from None

    @staticmethod
    def _changed(conn: psycopg.Connection[Any], kind: str, voice_id: str = "") -> int:
        """Inside a write transaction: take the next change number, log the change and tell every listener
        (the notification is sent at commit); returns the number."""
        row = conn.execute("UPDATE voxgate_schema SET generation = generation + 1 RETURNING generation").fetchone()
        seq = int(row[0]) if row else 0
        conn.execute("INSERT INTO voxgate_changes (seq, kind, voice) VALUES (%s, %s, %s)", (seq, kind, voice_id))
        if seq % 100 == 0:
            conn.execute("DELETE FROM voxgate_changes WHERE seq <= %s", (seq - LOG_KEEP,))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"seq": seq, "kind": kind, "voice": voice_id})))
        return seq

    def close(self) -> None:
        """Stop the watcher and close every connection."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._pool.close()

    def describe(self) -> str:
        """Where the voices are kept (the start-up summary): the URL without its password."""
        return f"PostgreSQL {self.where} (--store)"

    # ------------------------------------------------------------------ voices

    def audio_path(self, sha256: str) -> Path:
        """A local copy of the reference audio with this hash, written from the database the first time."""
        path = self.references / f"{sha256}.wav"
        if path.is_file() and not path.is_symlink():
            return path
        with self._connection() as conn:
            row = conn.execute("SELECT wav FROM voxgate_references WHERE sha256=%s", (sha256,)).fetchone()
        if row is not None:
            with self._file_lock:
                write_atomic(path, bytes(row[0]), root=self.root)
        return path

    def add(self, voice: StoredVoice, samples: np.ndarray, *, replace: bool = False) -> tuple[StoredVoice, bool]:
        """Store a voice and its audio in one transaction; returns (the stored voice, whether that id existed)."""
        sha = audio_sha256(samples, voice.sample_rate)
        record = StoredVoice(**{**voice.to_dict(), "audio_sha256": sha, "created": voice.created or time.time()})
        data = wav_bytes(samples, voice.sample_rate)
        with self._connection() as conn, conn.transaction():
            row = conn.execute(f"SELECT {_COLUMNS} FROM voxgate_voices WHERE id=%s FOR UPDATE",
                               (record.id,)).fetchone()
            existing = StoredVoice.from_row(row) if row else None
            if existing is not None and not replace:
                return existing, True
            conn.execute("INSERT INTO voxgate_references (sha256, sample_rate, wav) VALUES (%s, %s, %s) "
                         "ON CONFLICT (sha256) DO NOTHING", (sha, record.sample_rate, data))
            on_conflict = ("DO UPDATE SET name=EXCLUDED.name, language=EXCLUDED.language, "
                           "transcript=EXCLUDED.transcript, audio_sha256=EXCLUDED.audio_sha256, "
                           "sample_rate=EXCLUDED.sample_rate, duration=EXCLUDED.duration, "
                           "features=EXCLUDED.features, meta=EXCLUDED.meta, created=EXCLUDED.created"
                           if replace else "DO NOTHING")
            written = conn.execute(f"INSERT INTO voxgate_voices ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                                   f"ON CONFLICT (id) {on_conflict} RETURNING id", record.row()).fetchone()
            if written is None:  # another node added this id since the SELECT: theirs is kept
                self._drop_reference_if_unused(conn, sha)
                row = conn.execute(f"SELECT {_COLUMNS} FROM voxgate_voices WHERE id=%s", (record.id,)).fetchone()
                return StoredVoice.from_row(row), True
            if existing is not None:
                self._forget_gains(conn, record.id)
                if existing.audio_sha256 != sha:
                    self._drop_reference_if_unused(conn, existing.audio_sha256)
            seq = self._changed(conn, "updated" if existing is not None else "added", record.id)
        self._remember(record.id, record, seq)
        return record, existing is not None

    def update_features(self, voice_id: str, features: Mapping[str, Any]) -> None:
        """Replace the stored features of a voice (after re-matching)."""
        with self._connection() as conn, conn.transaction():
            row = conn.execute(f"UPDATE voxgate_voices SET features=%s WHERE id=%s RETURNING {_COLUMNS}",
                               (json.dumps(dict(features)), voice_id)).fetchone()
            if row is None:
                return
            seq = self._changed(conn, "updated", voice_id)
        self._remember(voice_id, StoredVoice.from_row(row), seq)

    def _remember(self, voice_id: str, voice: StoredVoice | None, seq: int) -> None:
        """Put a voice as of change `seq` in the mirror, unless it holds a later state already."""
        with self._mirror_lock:
            if self._mirror is not None:
                held = self._mirror.get(voice_id)
                if held is None or seq > held[1]:
                    self._mirror[voice_id] = (voice, seq)

    def _read(self, conn: psycopg.Connection[Any], voice_id: str) -> StoredVoice | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM voxgate_voices WHERE id=%s", (voice_id,)).fetchone()
        with self._mirror_lock:
            self.voice_rows_read += 1
        return StoredVoice.from_row(row) if row else None

    def get(self, voice_id: str) -> StoredVoice | None:
        """One voice by id (from memory while watching)."""
        with self._mirror_lock:
            if self._mirror is not None:
                held = self._mirror.get(voice_id)
                return held[0] if held else None
        with self._connection() as conn:
            return self._read(conn, voice_id)

    def list(self) -> list[StoredVoice]:
        """Every registered voice, by id (byte order, as SQLite sorts; from memory while watching)."""
        with self._mirror_lock:
            if self._mirror is not None:
                return sorted((v for v, _ in self._mirror.values() if v is not None), key=lambda v: v.id)
        return self._read_all()[1]

    def _read_all(self) -> tuple[int, list[StoredVoice]]:
        """The change number and every voice row as of it (or later: the log replays what came after)."""
        with self._connection() as conn:
            seq = int(conn.execute("SELECT generation FROM voxgate_schema").fetchone()[0])  # type: ignore[index]
            rows = conn.execute(f"SELECT {_COLUMNS} FROM voxgate_voices ORDER BY id COLLATE \"C\"").fetchall()
        with self._mirror_lock:
            self.voice_rows_read += len(rows)
        return seq, [StoredVoice.from_row(row) for row in rows]

    def remove(self, voice_id: str) -> bool:
        """Delete a voice, and its audio when no other voice shares it, in one transaction."""
        with self._connection() as conn, conn.transaction():
            row = conn.execute("DELETE FROM voxgate_voices WHERE id=%s RETURNING audio_sha256",
                               (voice_id,)).fetchone()
            if row is None:
                return False
            self._forget_gains(conn, voice_id)
            self._drop_reference_if_unused(conn, row[0])
            seq = self._changed(conn, "removed", voice_id)
        self._remember(voice_id, None, seq)
        return True

    @staticmethod
    def _forget_gains(conn: psycopg.Connection[Any], voice_id: str) -> None:
        conn.execute("DELETE FROM voxgate_gains WHERE key=%s OR starts_with(key, %s)", (voice_id, voice_id + "@"))

    @staticmethod
    def _drop_reference_if_unused(conn: psycopg.Connection[Any], sha: str) -> None:
        try:
            with conn.transaction():  # a savepoint: another node may be adding a voice with this audio now
                conn.execute("DELETE FROM voxgate_references WHERE sha256=%s AND NOT EXISTS "
                             "(SELECT 1 FROM voxgate_voices WHERE audio_sha256=%s)", (sha, sha))
        except pg_errors.ForeignKeyViolation:
            pass  # it is used again: kept

    # ------------------------------------------------------------------ settings and gains

    def get_value(self, key: str, default: Any = None) -> Any:
        """A persisted setting (JSON)."""
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM voxgate_kv WHERE key=%s", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_value(self, key: str, value: Any) -> None:
        """Persist a setting (JSON)."""
        with self._connection() as conn:
            conn.execute("INSERT INTO voxgate_kv (key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value", (key, json.dumps(value)))

    def keys(self, prefix: str) -> list[str]:
        """Settings whose key starts with `prefix`."""
        with self._connection() as conn:
            rows = conn.execute("SELECT key FROM voxgate_kv WHERE starts_with(key, %s)", (prefix,)).fetchall()
        return [row[0] for row in rows]

    def delete_value(self, key: str) -> None:
        """Forget a setting."""
        with self._connection() as conn:
            conn.execute("DELETE FROM voxgate_kv WHERE key=%s", (key,))

    def get_gain(self, key: str) -> float | None:
        """A levelling gain some process measured for this voice key, or None."""
        with self._connection() as conn:
            row = conn.execute("SELECT gain FROM voxgate_gains WHERE key=%s", (key,)).fetchone()
        return float(row[0]) if row else None

    def put_gain(self, key: str, gain: float) -> float:
        """Keep `gain` unless another process kept one first; returns the kept gain (the same on every node)."""
        with self._connection() as conn:
            conn.execute("INSERT INTO voxgate_gains (key, gain, measured) VALUES (%s, %s, %s) "
                         "ON CONFLICT (key) DO NOTHING", (key, float(gain), time.time()))
            row = conn.execute("SELECT gain FROM voxgate_gains WHERE key=%s", (key,)).fetchone()
        return float(row[0]) if row else float(gain)

    # ------------------------------------------------------------------ change notification

    def watch(self, callback: Callable[[Change], None]) -> None:
        """Call `callback` on the watcher thread with every change any process makes (this one's too), after
        the mirror holds it; from the first call on, get() and list() answer from memory."""
        self._callbacks.append(callback)
        if self._watcher is None:
            self._load_all()
            self._watcher = threading.Thread(target=self._watch, name="voxgate-store-watch", daemon=True)
            self._watcher.start()

    def _load_all(self) -> None:
        seq, voices = self._read_all()
        with self._mirror_lock:
            self._mirror = {voice.id: (voice, seq) for voice in voices}
        self._seen = seq

    def _fire(self, change: Change) -> None:
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception:  # a failed reload must not stop the watcher
                _LOG.exception("applying a change of the voice store failed (%s %s)", change.kind, change.voice)

    def _watch(self) -> None:
        """LISTEN for changes, apply each, and poll the log when none came; reconnect when the connection drops."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                                     application_name="voxgate-watch") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    self._catch_up(conn)  # changes made while there was no connection
                    while not self._stop.is_set():
                        # (the connection is busy while notifies() runs: the notes are applied after it)
                        notes = [note.payload for note in conn.notifies(timeout=POLL_SECONDS, stop_after=1)]
                        for payload in notes:
                            self._heard(conn, payload)
                        if not notes:
                            self._catch_up(conn)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                _LOG.warning("voice store %s: change watch lost (%s); retrying in %.1f s", self.where,
                             _first_line(exc), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _heard(self, conn: psycopg.Connection[Any], payload: str) -> None:
        """A notification: the next change is applied as it says; after a gap the log is read."""
        try:
            note = json.loads(payload)
            seq, kind, voice = int(note["seq"]), str(note["kind"]), str(note["voice"])
        except (ValueError, KeyError, TypeError):  # not ours (an older voxgate's): the log says what changed
            self._catch_up(conn)
            return
        if seq == self._seen + 1:
            self._apply(conn, seq, kind, voice)
        elif seq > self._seen:
            self._catch_up(conn)

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the logged changes past the last one seen (one query); read everything if some are gone."""
        rows = conn.execute("SELECT s.generation, c.seq, c.kind, c.voice FROM voxgate_schema s "
                            "LEFT JOIN voxgate_changes c ON c.seq > %s ORDER BY c.seq", (self._seen,)).fetchall()
        generation = int(rows[0][0]) if rows else self._seen
        if generation == self._seen:
            return
        logged = [(int(seq), kind, voice) for _, seq, kind, voice in rows if seq is not None]
        if generation < self._seen or [seq for seq, _, _ in logged] != list(range(self._seen + 1, generation + 1)):
            _LOG.info("voice store %s: changes %d–%d are no longer logged; reading every voice", self.where,
                      self._seen + 1, generation)
            self._load_all()
            self.lexicon_seen += 1
            self._fire(Change("reload"))
            return
        for seq, kind, voice in logged:
            self._apply(conn, seq, kind, voice)

    def _apply(self, conn: psycopg.Connection[Any], seq: int, kind: str, voice: str) -> None:
        """One change: read the one voice it names (unless this process made it), then tell the callbacks."""
        if kind in ("added", "updated"):
            with self._mirror_lock:
                held = (self._mirror or {}).get(voice)
            if held is None or held[1] < seq:
                self._remember(voice, self._read(conn, voice), seq)
        elif kind == "removed":
            self._remember(voice, None, seq)
        elif kind == "lexicon":
            self.lexicon_seen += 1
        self._seen = seq
        self._fire(Change(kind, voice))

    # ------------------------------------------------------------------ maintenance

    def sweep(self) -> list[str]:
        """Delete local leftovers: temporary files and cached audio no voice points at any more."""
        with self._connection() as conn:
            used = {row[0] for row in conn.execute("SELECT DISTINCT audio_sha256 FROM voxgate_voices")}
        removed = []
        with self._file_lock:
            for path in self.references.iterdir():
                # A temporary file of another process on this data folder (cluster replicas share one) may be
                # being written now: only old ones are leftovers.
                stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp") and _age(path) > 60
                if stale_tmp or (path.suffix == ".wav" and path.stem not in used):
                    path.unlink(missing_ok=True)
                    removed.append(path.name)
        return removed

    def check(self) -> list[str]:
        """Problems with stored voices (audio missing, unreadable or not matching its hash)."""
        problems = []
        with self._connection() as conn:
            rows = conn.execute("SELECT v.id, v.audio_sha256, r.wav FROM voxgate_voices v LEFT JOIN "
                                "voxgate_references r ON r.sha256 = v.audio_sha256 ORDER BY v.id").fetchall()
        for voice_id, sha, data in rows:
            if data is None:
                problems.append(f"{voice_id}: reference audio is missing ({sha})")
                continue
            try:
                samples, rate = read_wav(io.BytesIO(bytes(data)))
            except (EOFError, wave.Error) as exc:
                problems.append(f"{voice_id}: reference audio is unreadable ({exc})")
                continue
            if audio_sha256(samples, rate) != sha:
                problems.append(f"{voice_id}: reference audio does not match its hash (changed or corrupt)")
            local = self.references / f"{sha}.wav"
            if local.is_file() and local.read_bytes() != bytes(data):
                local.unlink(missing_ok=True)  # a damaged local copy: written again when next needed
        return problems


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


__all__ = ["SCHEMA_VERSION", "PostgresStore"]

"""The pronunciation lexicon's rows in the voice store's database (same file or database, same durability).

A batch of entries is written in one IMMEDIATE transaction with `synchronous=FULL` (set by VoiceStore),
so a kill -9 leaves either every entry of a PUT or none of them; nothing else is written outside the
database, so there is nothing to sweep. With `--store postgresql://…` the rows are in that database's
`voxgate_lexicon` table (PostgresLexiconStore), one transaction per batch too, so every node reads the same
lexicon; each write is a change the watching nodes hear of (voices.store_pg), so checking costs them nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from voxgate.voices.store import VoiceStore

if TYPE_CHECKING:
    from voxgate.voices.store_base import Store

# `word` holds a regex entry's pattern after "re:" (a word cannot hold ':'); rows load in rowid order,
# which is the order rules apply in (INSERT OR REPLACE gives a replaced rule a new rowid, at the end).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS lexicon (
    word TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT '',
    voice TEXT NOT NULL DEFAULT '',
    phonemes TEXT,
    respelling TEXT,
    PRIMARY KEY (word, language, voice)
);
"""


class LexiconStore:
    """Load, add or replace, and delete lexicon entries in a VoiceStore's database."""

    def __init__(self, store: VoiceStore) -> None:
        self._store = store
        with store._lock:
            store._db.executescript(_SCHEMA)
        self._version = self._data_version()

    def _data_version(self) -> int:
        with self._store._lock:
            return int(self._store._db.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        """True once another connection (e.g. `voxgate lexicon add` while the server runs) committed
        to the database since the last call; SQLite's data_version makes this a cheap check."""
        version = self._data_version()
        if version == self._version:
            return False
        self._version = version
        return True

    def load(self) -> list[dict[str, Any]]:
        """Every stored entry, as text.lexicon.Entry's fields (voices/ does not import text/)."""
        with self._store._lock:
            rows = self._store._db.execute(
                "SELECT word, phonemes, respelling, language, voice FROM lexicon ORDER BY rowid").fetchall()
        return [{"word": word.removeprefix("re:"), "phonemes": phonemes, "respelling": respelling,
                 "language": language or None, "voice": voice or None, "regex": word.startswith("re:")}
                for word, phonemes, respelling, language, voice in rows]

    def put(self, entries: Iterable[Any]) -> None:
        """Add or replace entries, all in one transaction."""
        rows = [(e.key[0], e.language or "", e.voice or "", e.phonemes, e.respelling) for e in entries]
        with self._store._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO lexicon VALUES (?,?,?,?,?)", rows)

    def delete(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Delete entries by (word, lower-case language or '', voice or '')."""
        keys = list(keys)
        with self._store._transaction() as db:
            for word, language, voice in keys:
                db.execute("DELETE FROM lexicon WHERE word=? AND lower(language)=? AND voice=?",
                           (word, language, voice))


class PostgresLexiconStore:
    """The same four operations on a PostgresStore's `voxgate_lexicon` table."""

    def __init__(self, store: Any) -> None:
        self._store = store  # voices.store_pg.PostgresStore (not imported: psycopg is an optional extra)
        self._version = self._data_version()

    def _data_version(self) -> int:
        if self._store._watcher is not None:  # the store hears of every lexicon change: no round trip
            return -1 - int(self._store.lexicon_seen)
        with self._store._connection() as conn:
            return int(conn.execute("SELECT lexicon_generation FROM voxgate_schema").fetchone()[0])

    def changed(self) -> bool:
        """True once any process wrote lexicon entries since the last call (the lexicon checks once a second)."""
        version = self._data_version()
        if version == self._version:
            return False
        self._version = version
        return True

    def load(self) -> list[dict[str, Any]]:
        """Every stored entry in the order rules apply in (a replaced entry moves to the end, as in SQLite)."""
        with self._store._connection() as conn:
            rows = conn.execute("SELECT word, phonemes, respelling, language, voice FROM voxgate_lexicon "
                                "ORDER BY seq").fetchall()
        return [{"word": word.removeprefix("re:"), "phonemes": phonemes, "respelling": respelling,
                 "language": language or None, "voice": voice or None, "regex": word.startswith("re:")}
                for word, phonemes, respelling, language, voice in rows]

    def put(self, entries: Iterable[Any]) -> None:
        """Add or replace entries, all in one transaction."""
        rows = [(e.key[0], e.language or "", e.voice or "", e.phonemes, e.respelling) for e in entries]
        with self._store._connection() as conn, conn.transaction():
            for row in rows:
                conn.execute("INSERT INTO voxgate_lexicon (word, language, voice, phonemes, respelling) "
                             "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (word, language, voice) DO UPDATE SET "
                             "phonemes=EXCLUDED.phonemes, respelling=EXCLUDED.respelling, "
                             "seq=nextval(pg_get_serial_sequence('voxgate_lexicon', 'seq'))", row)
            conn.execute("UPDATE voxgate_schema SET lexicon_generation = lexicon_generation + 1")
            self._store._changed(conn, "lexicon")  # told to every watching process

    def delete(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Delete entries by (word, lower-case language or '', voice or '')."""
        keys = list(keys)
        with self._store._connection() as conn, conn.transaction():
            for word, language, voice in keys:
                conn.execute("DELETE FROM voxgate_lexicon WHERE word=%s AND lower(language)=%s AND voice=%s",
                             (word, language, voice))
            conn.execute("UPDATE voxgate_schema SET lexicon_generation = lexicon_generation + 1")
            self._store._changed(conn, "lexicon")  # told to every watching process


def lexicon_store(store: Store) -> LexiconStore | PostgresLexiconStore:
    """The lexicon's rows in whichever store holds the voices."""
    if isinstance(store, VoiceStore):
        return LexiconStore(store)
    return PostgresLexiconStore(store)


__all__ = ["LexiconStore", "PostgresLexiconStore", "lexicon_store"]

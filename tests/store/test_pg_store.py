"""The PostgreSQL voice store against a real PostgreSQL: round trip, schema, sharing, change notices, crashes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.postgres import PASSWORD, Postgres
from voxgate.voices.lexicon_store import PostgresLexiconStore, lexicon_store
from voxgate.voices.store import StoredVoice, audio_sha256, read_wav
from voxgate.voices.store_base import Store, StoreError, open_store
from voxgate.voices.store_pg import SCHEMA_VERSION, PostgresStore

pytestmark = pytest.mark.postgres
RATE = 16000


def tone(seconds: float = 1.5, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def voice(voice_id: str, transcript: str = "hello") -> StoredVoice:
    return StoredVoice(id=voice_id, name=voice_id, language="en", transcript=transcript, audio_sha256="",
                       sample_rate=RATE, duration=1.5, features={"base_voice": "en_US-joe-medium"})


def test_round_trip_settings_gains_schema_and_reopen(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    store = open_store(url, tmp_path / "a")
    assert isinstance(store, PostgresStore) and isinstance(store, Store)
    assert PASSWORD not in store.describe() and "127.0.0.1" in store.describe()
    samples = tone()
    stored, existed = store.add(voice("Ana"), samples)
    assert not existed and stored.audio_sha256 == audio_sha256(samples, RATE) and stored.created > 0
    again, existed = store.add(voice("Ana", transcript="other"), tone(freq=330.0))
    assert existed and again == stored  # not replaced without replace=True
    assert store.get("Ana") == stored and [v.id for v in store.list()] == ["Ana"]
    path = store.audio_path(stored.audio_sha256)  # copied out of the database into the local cache
    assert path.is_file() and path.is_relative_to(tmp_path / "a")
    back, rate = read_wav(path)
    assert rate == RATE and audio_sha256(back, rate) == stored.audio_sha256
    store.update_features("Ana", {"base_voice": "x", "shift": [1, 2]})
    assert store.get("Ana").features == {"base_voice": "x", "shift": [1, 2]}  # type: ignore[union-attr]

    store.set_value("bases:a:1", {"v": 1})
    store.set_value("bases:a:1", {"v": 2})
    store.set_value("bases_other", [1])
    assert store.get_value("bases:a:1") == {"v": 2} and store.get_value("nope", 7) == 7
    assert store.keys("bases:") == ["bases:a:1"]  # '_' is no wildcard
    store.delete_value("bases:a:1")
    assert store.keys("bases:") == []

    assert store.get_gain("en_US-joe-medium@100") is None
    assert store.put_gain("en_US-joe-medium@100", 1.25) == 1.25
    assert store.put_gain("en_US-joe-medium@100", 3.0) == 1.25  # the first measurement is kept
    store.put_gain("Ana", 0.5)
    replaced, existed = store.add(voice("Ana"), tone(freq=330.0), replace=True)
    assert existed and replaced.audio_sha256 != stored.audio_sha256
    assert store.get_gain("Ana") is None  # new audio: measured again
    assert store.check() == []
    store.close()

    # Opened again (another node): the same voices, nothing dropped; the schema is versioned.
    other = open_store(url, tmp_path / "b")
    assert [v.audio_sha256 for v in other.list()] == [replaced.audio_sha256]
    assert other.get_gain("en_US-joe-medium@100") == 1.25
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM voxgate_schema").fetchone() == (SCHEMA_VERSION,)
        count = conn.execute("SELECT count(*) FROM voxgate_references").fetchone()
        assert count == (1,)  # the replaced audio went with its last voice
    assert other.remove("Ana") and not other.remove("Ana") and other.list() == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM voxgate_references").fetchone() == (0,)
        conn.execute("UPDATE voxgate_schema SET version = 99")
    other.close()
    with pytest.raises(StoreError, match=f"schema 99, newer than this voxgate's {SCHEMA_VERSION}"):
        open_store(url, tmp_path / "c")


def test_bad_urls_are_one_line_without_the_password(postgres: Postgres, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError, match=r"unknown store URL scheme mysql://") as unknown:
        open_store(f"mysql://u:{PASSWORD}@127.0.0.1/x", tmp_path)
    with pytest.raises(StoreError, match=r"^--store: not a URL; give postgresql://"):
        open_store(f"u:{PASSWORD}@host", tmp_path)
    with monkeypatch.context() as patched:  # installed without the extra
        patched.setitem(sys.modules, "psycopg", None)
        patched.delitem(sys.modules, "voxgate.voices.store_pg")
        with pytest.raises(StoreError, match=r"needs psycopg: pip install 'voxgate\[postgres\]'"):
            open_store(postgres.url(), tmp_path)
    closed = socket_port_closed()
    with pytest.raises(StoreError) as unreachable:
        open_store(f"postgresql://voxgate:{PASSWORD}@127.0.0.1:{closed}/x", tmp_path)
    for exc in (unknown.value, unreachable.value):
        assert PASSWORD not in str(exc) and "\n" not in str(exc)
    assert f"postgresql://voxgate@127.0.0.1:{closed}/x" in str(unreachable.value)
    assert "refused" in str(unreachable.value).lower() or "failed" in str(unreachable.value).lower()


def socket_port_closed() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


def test_a_change_reaches_another_node_within_a_second(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    writer, reader = PostgresStore(url, tmp_path / "w"), PostgresStore(url, tmp_path / "r")
    seen: list[tuple[float, list[str]]] = []
    changed = threading.Event()

    def reload(change: object) -> None:
        seen.append((time.monotonic(), [v.id for v in reader.list()]))
        changed.set()

    try:
        reader.watch(reload)
        time.sleep(0.3)  # the watcher is listening
        for action, expected in (("add", ["Bo"]), ("remove", [])):
            changed.clear()
            started = time.monotonic()
            writer.add(voice("Bo"), tone()) if action == "add" else writer.remove("Bo")
            assert changed.wait(2.0), f"no reload after {action}"
            assert seen[-1][0] - started < 1.0 and seen[-1][1] == expected, (action, seen)
            assert (reader.get("Bo") is not None) == (action == "add")  # its snapshot follows
        changed.clear()
        writer.add(voice("Di"), tone())
        assert changed.wait(2.0) and reader.get("Di") is not None
        reader.update_features("Di", {"base_voice": "b"})  # its own change: never answered from an old snapshot
        assert reader.get("Di").features == {"base_voice": "b"}  # type: ignore[union-attr]
        assert reader.remove("Di") and reader.get("Di") is None
    finally:
        writer.close()
        reader.close()


def test_lost_connections_are_replaced_and_changes_still_arrive(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    writer, reader = PostgresStore(url, tmp_path / "w"), PostgresStore(url, tmp_path / "r")
    changed = threading.Event()
    seen: list[list[str]] = []
    try:
        reader.watch(lambda change: (seen.append([v.id for v in reader.list()]), changed.set()))
        time.sleep(0.3)
        with psycopg.connect(url, autocommit=True) as admin:  # as a database restart or a network cut would
            killed = admin.execute("SELECT application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND application_name LIKE 'voxgate%'"
                                   ).fetchall()
        assert ("voxgate-watch", True) in killed and ("voxgate", True) in killed
        writer.add(voice("Cy"), tone())  # the pool replaces its dead connection
        assert changed.wait(3.0) and seen[-1] == ["Cy"]  # the watcher reconnected and read the generation
    finally:
        writer.close()
        reader.close()


def test_the_lexicon_is_shared_in_order(postgres: Postgres, tmp_path: Path) -> None:
    from voxgate.text.lexicon import Entry, Lexicon

    url = postgres.new_database()
    one, two = PostgresStore(url, tmp_path / "1"), PostgresStore(url, tmp_path / "2")
    try:
        first, second = lexicon_store(one), lexicon_store(two)
        assert isinstance(first, PostgresLexiconStore)
        entries = [Entry.parse({"word": "voxgate", "respelling": "vox gate"}),
                   Entry.parse({"word": "SQL", "respelling": "sequel", "language": "en"})]
        Lexicon(first).put(entries)
        assert second.changed() and not second.changed()
        Lexicon(first).put([Entry.parse({"word": "voxgate", "respelling": "vocks gate"})])  # replaced: moves last
        rows = second.load()
        assert [(r["word"], r["respelling"], r["language"]) for r in rows] == [
            ("SQL", "sequel", "en"), ("voxgate", "vocks gate", None)]
        first.delete([("SQL", "en", "")])
        assert second.changed() and [r["word"] for r in second.load()] == ["voxgate"]
    finally:
        one.close()
        two.close()


CRASHING_WRITER = """
import sys, time
import numpy as np
from voxgate.voices.store import StoredVoice
from voxgate.voices.store_pg import PostgresStore

def stall(conn, *change):  # the last step inside the transaction: reference and row are written, not committed
    print("written", flush=True)
    time.sleep(60)

PostgresStore._changed = staticmethod(stall)
store = PostgresStore(sys.argv[1], __import__("pathlib").Path(sys.argv[2]))
samples = (0.3 * np.sin(np.arange(24000) / 10)).astype(np.float32)
store.add(StoredVoice("Half", "Half", "en", None, "", 16000, 1.5, {}, {}), samples)
"""


def test_kill_9_mid_registration_leaves_no_half_voice(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CRASHING_WRITER), url, str(tmp_path / "c")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
    finally:
        child.kill()  # SIGKILL, mid-transaction
        _, errors = child.communicate(timeout=10)
    assert child.returncode == -9, errors
    store = PostgresStore(url, tmp_path / "after")
    try:
        deadline = time.monotonic() + 5
        with psycopg.connect(url) as conn:  # the server notices the dead client and rolls its transaction back
            while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND state LIKE 'idle in transaction%'").fetchone() != (0,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert conn.execute("SELECT count(*) FROM voxgate_references").fetchone() == (0,)
        assert store.get("Half") is None and store.list() == [] and store.check() == []
        again, existed = store.add(voice("Half"), tone())  # and the id is free
        assert not existed and store.get("Half") == again
    finally:
        store.close()

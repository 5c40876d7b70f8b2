"""A change on one node is applied by itself on another: the watching node reads the one voice that changed
(or none, for a removal), never every voice; the poll of the change log catches what no notification said,
and a node too far behind for the log reads everything once."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.postgres import Postgres
from voxgate.engines.piper import PiperEngine
from voxgate.text.lexicon import Entry, Lexicon
from voxgate.voices.lexicon_store import lexicon_store
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import StoredVoice
from voxgate.voices.store_base import Change
from voxgate.voices.store_pg import PostgresStore

pytestmark = pytest.mark.postgres
RATE = 16000
JOE = "en_US-joe-medium"
N = 40  # voices registered before the changes
WITHIN = 1.0  # seconds for a change on one node to be applied on the other


def tone(freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(1.5 * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def voice(voice_id: str, base: str = JOE) -> StoredVoice:
    return StoredVoice(id=voice_id, name=voice_id, language="en", transcript="hello", audio_sha256="",
                       sample_rate=RATE, duration=1.5, features={"base_voice": base})


def until(condition: Callable[[], bool], what: str) -> float:
    """Seconds until `condition()` held (polled every 10 ms); fails past twice WITHIN."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < 2 * WITHIN, f"{what}: not seen in time"
        time.sleep(0.01)
    return time.monotonic() - started


def test_one_change_reads_one_voice_on_the_other_node(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    a, b = PostgresStore(url, tmp_path / "a"), PostgresStore(url, tmp_path / "b")
    try:
        for i in range(N):
            a.add(voice(f"V{i:02d}"), tone())
        piper = PiperEngine()
        assert JOE in {v.id for v in piper.voices()}
        registry = VoiceRegistry({"piper": piper}, {}, JOE, b)  # node B: a server's registry on the shared store
        heard: queue.Queue[Change] = queue.Queue()
        b.watch(heard.put)  # called after the registry's own callback: the registry has applied the change
        assert b.voice_rows_read == N  # one read of every voice at start (its mirror), none for the registry
        assert {f"V{i:02d}" for i in range(N)} <= {v.id for v in registry.list() if v.registered}

        def change(do: Callable[[], object], kind: str, voice_id: str, reads: int,
                   seen: Callable[[], bool]) -> None:
            before = b.voice_rows_read
            do()
            took = until(seen, f"{kind} {voice_id}")
            assert took < WITHIN, (kind, took)
            assert heard.get(timeout=WITHIN) == Change(kind, voice_id)
            assert b.voice_rows_read - before == reads, (kind, b.voice_rows_read - before)

        change(lambda: a.add(voice("New"), tone()), "added", "New", 1,
               lambda: registry.resolve_or_none("New") is not None)
        assert registry.resolve("New").session_key == JOE  # spoken by its base, as a full reload would place it
        change(lambda: a.update_features("V03", {"base_voice": "gone"}), "updated", "V03", 1,
               lambda: "V03" in registry.stale())  # its new base is not installed here
        assert registry.resolve_or_none("V03") is None
        change(lambda: a.remove("V05"), "removed", "V05", 0, lambda: registry.resolve_or_none("V05") is None)
        assert b.get("V05") is None and len(b.list()) == N  # 40 - V05 + New

        # Gains: read from the store, and forgotten with the voice's audio on every node.
        assert a.put_gain("V01", 0.7) == 0.7 and b.get_gain("V01") == 0.7
        change(lambda: a.add(voice("V01"), tone(330.0), replace=True), "updated", "V01", 1,
               lambda: b.get("V01").audio_sha256 != b.get("V02").audio_sha256)  # type: ignore[union-attr]
        assert b.get_gain("V01") is None

        # The lexicon: B's check answers from what its watcher heard, without a round trip.
        lexicon_b = lexicon_store(b)
        Lexicon(lexicon_store(a)).put([Entry.parse({"word": "voxgate", "respelling": "vox gate"})])
        before = b.voice_rows_read
        assert until(lexicon_b.changed, "lexicon") < WITHIN and not lexicon_b.changed()
        assert heard.get(timeout=WITHIN) == Change("lexicon") and b.voice_rows_read == before
        assert [r["respelling"] for r in lexicon_b.load()] == ["vox gate"]

        # No notification (as when one is lost): the poll of the change log finds it and reads that voice only.
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("UPDATE voxgate_voices SET name='Quiet' WHERE id='V07'")
            seq = conn.execute("UPDATE voxgate_schema SET generation = generation + 1 RETURNING generation"
                               ).fetchone()[0]  # type: ignore[index]
            conn.execute("INSERT INTO voxgate_changes VALUES (%s, 'updated', 'V07')", (seq,))
        change(lambda: None, "updated", "V07", 1, lambda: registry.resolve("V07").name == "Quiet")

        # A change the log no longer holds (B was behind more than it keeps): B reads every voice once.
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("DELETE FROM voxgate_voices WHERE id='V09'")
            conn.execute("UPDATE voxgate_schema SET generation = generation + 1")
        change(lambda: None, "reload", "", N - 1, lambda: registry.resolve_or_none("V09") is None)
    finally:
        a.close()
        b.close()

"""Races the soak found: concurrent AllTalk writers pruning the same folder."""

from __future__ import annotations

import threading
from pathlib import Path

from voxgate.dialects.alltalk.outputs import OutputStore


def test_concurrent_writers_prune_without_errors(tmp_path: Path) -> None:
    # Each write prunes past `keep`; a file another writer deletes between listing and its stat was a 500
    # (FileNotFoundError in the sort key) in a 60-minute soak with 4 clients.
    store = OutputStore(tmp_path, keep=2)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(150):
                store.write(OutputStore.timestamped(f"w{n}_{i}", ".wav"), b"RIFF" + bytes(64))
        except BaseException as exc:  # any error is the failure under test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert 1 <= len(store.list()) <= 2 + len(threads)  # each writer spares only its own newest file

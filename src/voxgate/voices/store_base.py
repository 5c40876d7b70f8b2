"""What every voice store does, and which one a `--store` URL selects.

Two stores keep the registered voices (index rows plus reference audio), the small persisted settings
(base-voice measurements, alias tables) and the per-voice levelling gains:

- `voices.store.VoiceStore`: SQLite plus content-addressed WAV files in the data folder (the default, one
  server per data folder);
- `voices.store_pg.PostgresStore`: PostgreSQL (`--store postgresql://…`), shared by every node of a
  cluster: the reference audio is a bytea column, and each node is told of every change within a second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import numpy as np

from voxgate.voices.store import StoredVoice

POSTGRES_SCHEMES = ("postgresql", "postgres")


class StoreError(RuntimeError):
    """The store cannot be used (unknown URL scheme, unreachable database, newer schema); one line, no secrets."""


@dataclass(frozen=True)
class Change:
    """What another process changed in a shared store, as `Store.watch` callbacks are told of it."""

    kind: str  # "added" | "updated" | "removed" (a voice), "lexicon" (its entries), "reload" (anything: read all)
    voice: str = ""  # the voice id ("" for lexicon and reload)


@runtime_checkable
class Store(Protocol):
    """The voice store every part of voxgate uses (the registry, the voice bank, base voices, the service)."""

    root: Path  # the data folder (local files: caches, outputs)

    def describe(self) -> str:
        """Where the voices are kept, for the start-up summary (never with a password)."""
        ...

    def add(self, voice: StoredVoice, samples: np.ndarray, *, replace: bool = False) -> tuple[StoredVoice, bool]:
        """Store a voice and its audio atomically; returns (the stored voice, whether that id already existed)."""
        ...

    def update_features(self, voice_id: str, features: Mapping[str, Any]) -> None: ...

    def get(self, voice_id: str) -> StoredVoice | None: ...

    def list(self) -> list[StoredVoice]: ...

    def remove(self, voice_id: str) -> bool: ...

    def audio_path(self, sha256: str) -> Path:
        """A local WAV file of the reference audio with this hash (a database store copies it out once)."""
        ...

    def get_value(self, key: str, default: Any = None) -> Any: ...

    def set_value(self, key: str, value: Any) -> None: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete_value(self, key: str) -> None: ...

    def get_gain(self, key: str) -> float | None:
        """A voice's levelling gain measured by any process sharing this store, or None."""
        ...

    def put_gain(self, key: str, gain: float) -> float:
        """Keep a measured gain unless one is kept already; returns the kept one (the first measurement wins)."""
        ...

    def watch(self, callback: Callable[[Change], None]) -> None:
        """Call `callback` (on a thread of the store's) with each change any process made to the voices."""
        ...

    def sweep(self) -> list[str]: ...

    def check(self) -> list[str]: ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """A store URL as it may be shown: scheme, user, host, port and database; never a password or options."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if _port(parts) else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _port(parts: Any) -> int | None:
    try:
        return parts.port  # type: ignore[no-any-return]
    except ValueError:
        return None


def open_store(url: str | None, data_dir: Path) -> Store:
    """The store a `--store` value selects: None → SQLite in `data_dir`; postgresql://… → PostgreSQL."""
    if not url:
        from voxgate.voices.store import VoiceStore

        return VoiceStore(data_dir)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in POSTGRES_SCHEMES:
        what = f"unknown store URL scheme {scheme}://" if scheme else "not a URL"  # the value may hold a password
        raise StoreError(f"--store: {what}; give postgresql://USER@HOST:PORT/DB "
                         "(or leave it unset for SQLite in the data folder)")
    try:
        from voxgate.voices.store_pg import PostgresStore
    except ImportError:
        raise StoreError("--store postgresql://… needs psycopg: pip install 'voxgate[postgres]'") from None
    return PostgresStore(url, data_dir)


__all__ = ["POSTGRES_SCHEMES", "Change", "Store", "StoreError", "open_store", "redact"]

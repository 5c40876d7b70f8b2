"""The folder of generated files AllTalk clients fetch by URL: safe names, atomic writes, pruning."""

from __future__ import annotations

import logging
import re
import secrets
import time
from pathlib import Path
from stat import S_ISREG

from voxgate.safefs import write_atomic

_LOG = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
SUFFIXES = (".wav",)  # what this store writes, and so what it prunes


class OutputStore:
    """Files in one folder, named only by the server; clients can read them back by name, nothing else."""

    def __init__(self, root: Path, keep: int = 0, max_age: float = 0.0) -> None:
        self.root = root.resolve()
        self.keep = keep  # newest files kept; 0 = no count limit
        self.max_age = max_age  # seconds; 0 = no age limit

    @staticmethod
    def timestamped(base: str, suffix: str = "") -> str:
        """`<base>_<unix time><5 hex>` (AllTalk's unique naming), with `suffix` after it."""
        return f"{base}_{int(time.time())}{secrets.token_hex(3)[:5]}{suffix}"

    def find(self, name: str) -> Path | None:
        """The file called `name` in the folder, or None; any name that could leave the folder is refused."""
        if not _SAFE_NAME.match(name) or ".." in name:
            return None
        path = (self.root / name).resolve()
        if path.parent != self.root or not path.is_file():
            return None
        return path

    def path_for(self, name: str) -> Path:
        """Where a file of this (server-made or checked) name is written."""
        if not _SAFE_NAME.match(name) or ".." in name:
            raise ValueError(f"unsafe output file name {name!r}")
        return self.root / name

    def write(self, name: str, data: bytes) -> Path:
        """Write atomically (blocking), then prune; returns the absolute path."""
        target = self.path_for(name)
        # 0644: local clients (text-generation-webui) read the path; a link planted at the name is replaced
        write_atomic(target, data, root=self.root, mode=0o644, sync=False)
        self.prune(spare=target)
        return target

    def list(self) -> list[Path]:
        """The stored files, newest first."""
        if not self.root.is_dir():
            return []
        dated = []
        for path in self.root.iterdir():
            if path.suffix in SUFFIXES:
                try:  # one stat per file: a concurrent writer's prune may delete it at any moment (a 500 in soak)
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if S_ISREG(stat.st_mode):
                    dated.append((stat.st_mtime, path))
        return [path for _, path in sorted(dated, key=lambda item: item[0], reverse=True)]

    def prune(self, spare: Path | None = None) -> list[Path]:
        """Delete files beyond the newest `keep` and files older than `max_age` (blocking)."""
        now = time.time()
        removed = []
        for index, path in enumerate(self.list()):
            if path == spare:
                continue
            try:
                too_old = self.max_age > 0 and now - path.stat().st_mtime > self.max_age
                if too_old or (self.keep > 0 and index >= self.keep):
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # pruned by a concurrent writer
        if removed:
            _LOG.debug("pruned %d AllTalk output files", len(removed))
        return removed

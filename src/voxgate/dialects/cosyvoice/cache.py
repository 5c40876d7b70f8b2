"""/cache/save and /cache/load: the registry's voice archive, on files kept inside the dialect's cache folder.

The original pickles its speaker features with torch to any path the client names. Here the file is the
registry's own archive (a zip with a manifest and the reference audio; never a pickle), and every client path
is confined to one folder: relative paths are taken inside it, absolute ones must already be inside it, and
the original's default `../assets` names the folder itself.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from voxgate.core.context import Context
from voxgate.dialects.cosyvoice.protocol import DEFAULT_CACHE_DIR
from voxgate.errors import ForbiddenReference, InvalidInput
from voxgate.safefs import UnsafePath

MAX_NAME = 200  # characters of a cache file name
MAX_COMPONENT = 255  # bytes of one path component (NAME_MAX on Linux and macOS)
MAX_PATH = 1024  # characters of a whole client path


class CacheFiles:
    """Maps client cache paths into the cache folder and runs export/import off the event loop."""

    def __init__(self, ctx: Context, root: Path | None, export: Callable[..., list[str]] | None,
                 load: Callable[..., list[Any]] | None) -> None:
        """`export(store, dest, ids, root=)` and `load(store, src)` are the voice archive's (blocking)."""
        self._ctx = ctx
        self.root = root.resolve() if root is not None else None
        self._export = export
        self._import = load

    def _root(self) -> Path:
        if self.root is None or self._export is None or self._import is None:
            raise InvalidInput("voice caches are not available on this server")
        return self.root

    def locate(self, client_path: str | None, field: str) -> Path:
        """The real path for a client's cache_dir/cache_path; refuses anything outside the cache folder."""
        root = self._root()
        text = (client_path or "").strip()
        if "\0" in text:
            raise ForbiddenReference(f"{field} contains a NUL byte", param=field)
        parts = Path(text).parts
        default = Path(DEFAULT_CACHE_DIR).parts
        if tuple(parts[: len(default)]) == default:
            text = os.path.join(*parts[len(default) :]) if len(parts) > len(default) else ""
        candidate = Path(text) if os.path.isabs(text) else root / text
        if any(len(os.fsencode(part)) > MAX_COMPONENT for part in candidate.parts) or len(str(candidate)) > MAX_PATH:
            raise InvalidInput(f"{field} is longer than the file system allows", param=field)
        try:
            resolved = candidate.resolve()
        except OSError as exc:  # a symlink loop, or a link whose target is too long
            raise InvalidInput(f"{field} cannot be resolved: {exc.strerror}", param=field) from None
        if resolved != root and root not in resolved.parents:
            raise ForbiddenReference(f"{field} must be inside the server's CosyVoice cache folder "
                                     f"(a relative path, or {DEFAULT_CACHE_DIR}/...)", param=field)
        return resolved

    @staticmethod
    def file_name(filename: str | None) -> str:
        """`<filename>.pt`, or a fresh `speaker_cache_<hex>.pt`; a bare name, never a path."""
        if filename is None:
            return f"speaker_cache_{uuid.uuid4().hex}.pt"
        bad = any(c in filename for c in "/\\\0") or filename.startswith(".") or not filename.strip()
        if bad or len(filename) > MAX_NAME:
            raise InvalidInput(f"filename {filename[:40]!r} must be a plain file name (no folders, not hidden)",
                               param="filename")
        return f"{filename}.pt"

    async def save(self, cache_dir: str | None, filename: str | None, wanted: Iterable[str]) -> str | None:
        """Export the chosen registered voices (none named = all); returns the path as the client names it."""
        folder = self.locate(cache_dir, "cache_dir")
        name = self.file_name(filename)
        wanted = set(wanted)
        registered = [v.id for v in await asyncio.to_thread(self._ctx.voicebank.store.list)]
        ids = [v for v in registered if not wanted or v in wanted]
        if not ids:
            return None  # the original answers null when nothing matched
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        assert self._export is not None
        try:
            await asyncio.to_thread(self._export, self._ctx.voicebank.store, folder / name, ids, root=self.root)
        except UnsafePath:
            raise ForbiddenReference("cache_dir must be inside the server's CosyVoice cache folder",
                                     param="cache_dir") from None
        given = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir.strip().rstrip("/")
        return os.path.join(given, name) if given else name  # "" is the cache folder itself, not "/"

    async def load(self, cache_path: str, wanted: Iterable[str]) -> list[str]:
        """Import the chosen voices (none named = all) of a cache file; [] if there is no such file."""
        path = self.locate(cache_path, "cache_path")
        if not await asyncio.to_thread(path.is_file):
            return []
        wanted = set(wanted)
        assert self._import is not None
        results = await asyncio.to_thread(self._import, self._ctx.voicebank.store, path)
        loaded = []
        for voice, existed in results:
            if not wanted or voice.id in wanted:
                loaded.append(voice.id)
            elif not existed:
                await self._ctx.voicebank.remove(voice.id)  # added only because the archive holds it
        await asyncio.to_thread(self._ctx.voices.refresh_registered)
        if self._ctx.voices.stale():
            await self._ctx.voicebank.rematch()  # voices made on another server over a voice not installed here
        return loaded

"""Patched models kept on disk, so only the first process that loads a model pays for patching it.

Word timings need a model patched to also output its durations (engines/piper.py, engines/hibari.py). The
patch itself takes tens of milliseconds, but it needs the `onnx` package, whose import alone costs about a
second of CPU in every process. The patched bytes are kept in the user's cache folder under the model's
name, size, modification time (or its checked hash) and the patch's name, and the patched file's own size, so a
file cut short is patched again; a later load reads that file and never imports onnx.
A cache that cannot be written is skipped (the patch is then made in memory, as before).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

from voxgate.safefs import write_atomic

_LOG = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where patched models are kept ($VOXGATE_MODEL_CACHE, else the user's cache folder)."""
    return Path(os.environ.get("VOXGATE_MODEL_CACHE") or platformdirs.user_cache_dir("voxgate")) / "patched-models"


def patched_model(model: Path, patch_name: str, patch: Callable[[Path], str | bytes],
                  content: str | None = None) -> str | bytes:
    """`model` patched by `patch` (which returns the patched bytes, or the path when it cannot patch), from
    the disk cache when this model was patched before. `content` names the model's bytes (a checked hash)
    instead of its size and time: a model joined anew in each data folder (Kokoro's) is then patched once."""
    try:
        stat = model.stat()
    except OSError:
        return patch(model)
    stamp = content if content else f"{stat.st_size}-{stat.st_mtime_ns}"
    folder, prefix = cache_dir(), f"{model.stem}-{stamp}-{patch_name}"
    # The file's own size is in its name: a cached file cut short (a full disk, a crash before the data reached
    # the disk) does not match it and is patched again, instead of failing every later load of the engine.
    for cached in sorted(folder.glob(f"{glob.escape(prefix)}-*.onnx")):
        try:
            size = int(cached.stem.rsplit("-", 1)[1])
            if cached.stat().st_size == size:
                return str(cached)
        except (ValueError, OSError):
            pass
        cached.unlink(missing_ok=True)
    made = patch(model)
    if isinstance(made, bytes):
        _store(made, folder / f"{prefix}-{len(made)}.onnx", folder.parent)
    return made


_warned: list[bool] = []  # whether a failed store was said at WARNING in this process


def _store(data: bytes, cached: Path, root: Path) -> None:
    """Write `data` to `cached` whole or not at all (safefs: an O_EXCL temporary in the same folder, synced, then
    renamed over the name, never written through a link planted there; a concurrent reader sees the whole file or
    none; a failed write leaves no temporary file behind). The folder must resolve to inside `root`."""
    try:
        write_atomic(cached, data, root=root)
    except OSError as exc:  # UnsafePath too: a patched-models folder linked out of the cache is not written
        # said once a process, loudly: every later start patches the model again (seconds of CPU a load)
        log = _LOG.warning if not _warned else _LOG.debug
        _warned.append(True)
        log("patched model not cached, so patched again at every start (%s)", exc)

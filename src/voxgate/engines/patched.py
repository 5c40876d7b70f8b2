"""Patched models kept on disk, so only the first process that loads a model pays for patching it.

Word timings need a model patched to also output its durations (engines/piper.py, engines/hibari.py). The
patch itself takes tens of milliseconds, but it needs the `onnx` package, whose import alone costs about a
second of CPU in every process. The patched bytes are kept in the user's cache folder under the model's
name, size, modification time and the patch's name; a later load reads that file and never imports onnx.
A cache that cannot be written is skipped (the patch is then made in memory, as before).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import platformdirs

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
    cached = cache_dir() / f"{model.stem}-{stamp}-{patch_name}.onnx"
    if cached.is_file():
        return str(cached)
    made = patch(model)
    if isinstance(made, bytes):
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".tmp", delete=False) as out:
                out.write(made)
            os.replace(out.name, cached)  # atomic: a concurrent reader sees the whole file or none
        except OSError as exc:
            _LOG.debug("patched model not cached (%s)", exc)
    return made

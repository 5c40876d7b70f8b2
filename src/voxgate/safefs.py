"""Writing files the server owns without following anything planted in their place.

Every file voxgate writes goes through `atomic_file`: the data lands in a temporary file created with
O_CREAT|O_EXCL (tempfile.mkstemp: a random name in the target's own folder, never an existing file or
symlink), is flushed to disk, then renamed over the target. rename() replaces a symlink at the target
instead of writing through it, and the folder is checked after resolving every link, so a link planted
in the data folder (or a folder link pointing out of it) cannot send a write elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class UnsafePath(PermissionError):
    """A write would leave the folder it must stay in (through a symlink or `..`)."""


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_inside(path: Path, root: Path) -> Path:
    """`path` with every symlink resolved, or UnsafePath if that is not `root` or inside it."""
    real, real_root = _real(path), _real(root)
    if real != real_root and real_root not in real.parents:
        raise UnsafePath(f"{path} resolves to {real}, outside {real_root}")
    return real


@contextlib.contextmanager
def atomic_file(target: Path, root: Path | None = None, mode: int = 0o644, sync: bool = True) -> Iterator[BinaryIO]:
    """A binary file that becomes `target` when the block ends without an error (and vanishes otherwise).

    `root`, if given, is the folder the target's real folder must be in. The target's own name may be an
    existing file or a symlink: either is replaced, never written through."""
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    real_folder = check_inside(folder, root) if root is not None else _real(folder)
    if target.name in ("", ".", "..") or os.sep in target.name:
        raise UnsafePath(f"{target.name!r} is not a plain file name")
    fd, tmp = tempfile.mkstemp(dir=real_folder, prefix=f".{target.name[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, real_folder / target.name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        handle = os.open(real_folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_atomic(target: Path, data: bytes, root: Path | None = None, mode: int = 0o644,
                 sync: bool = True) -> Path:
    """Write `data` to `target` through atomic_file; returns the path written (folder links resolved)."""
    with atomic_file(target, root, mode, sync) as out:
        out.write(data)
    return _real(target.parent) / target.name


__all__ = ["UnsafePath", "atomic_file", "check_inside", "write_atomic"]

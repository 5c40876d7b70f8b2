"""Issue 12: glibc's dynamic mmap threshold put big blocks in the heap once a big block was freed (a model
unloaded), and the heap is given back only from its top. With the threshold fixed, a big block freed after a
bigger one still gets a mapping of its own. Each case runs in a fresh interpreter (mallopt is per process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from voxgate.memtrace import mallinfo

PROBE = """
import ctypes, sys
from voxgate.memtrace import mallinfo
from voxgate.scheduling.pool import fix_mmap_threshold
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
libc.free(libc.malloc(16 << 20))  # a model's tensor freed: glibc's dynamic threshold would rise to 16 MiB
before = mallinfo()["mmapped_chunks"]
block = libc.malloc(4 << 20)
print(int(mallinfo()["mmapped_chunks"] - before))
libc.free(block)
"""


def _mapped_blocks(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(sys.platform != "linux" or mallinfo() is None, reason="glibc's mallopt and mallinfo2")
def test_a_big_block_after_a_freed_bigger_one_still_gets_its_own_mapping() -> None:
    assert _mapped_blocks("default") == 0  # glibc's own behaviour: the block went to the heap
    assert _mapped_blocks("fixed") == 1  # returned to the system when freed

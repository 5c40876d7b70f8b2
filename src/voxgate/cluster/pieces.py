"""How pieces travel: between a Synthesizer replica and the Gateway (Ray objects, sliced), and between the
Gateway's `POST /cluster/segment` and `voxgate tcp-front` (HTTP, framed).

Ray: a generator item up to 100 KiB (Ray's `max_direct_call_object_size`) rides inline in the replica's
report to the Gateway; a bigger one goes through the object store: put in the replica node's store by its
raylet, pulled by the Gateway node's raylet, read from there. A sentence of Piper (22.05 kHz float32) is
about 400 KB, so `slices()` cuts a piece into `Slice`s of at most SLICE_BYTES of samples and `Joiner` puts
them back together in the Gateway: the same Piece arrives, with no object store on the way (measured in
bench/bench_cluster.py --compare).

HTTP: each piece is a 4-byte big-endian header length, a JSON header (`rate` in Hertz, `samples`, `timings`
as [start_char, end_char, start, end] lists or null), then `samples` float32 little-endian values.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from voxgate.core.types import Piece, Timing

MEDIA_TYPE = "application/x-voxgate-pieces"
# Bytes of samples in one Slice: under Ray's 100 KiB inline limit with room for the rest of the object.
SLICE_BYTES = 96 * 1024


@dataclass(frozen=True, eq=False)
class Slice:
    """Consecutive samples of one piece; the first slice carries the piece's other fields (`head`, its samples
    empty), the last says so."""

    samples: np.ndarray
    head: Piece | None = None
    last: bool = False


def slices(piece: Piece, limit: int = SLICE_BYTES) -> Iterator[Piece | Slice]:
    """`piece` itself when its samples fit in `limit` bytes (or `limit` is 0), else Slices of at most `limit`."""
    samples = piece.samples
    if limit <= 0 or samples.nbytes <= limit:
        yield piece
        return
    step = max(limit // samples.itemsize, 1)
    starts = range(0, len(samples), step)
    for n, start in enumerate(starts):
        yield Slice(samples[start:start + step], dataclasses.replace(piece, samples=samples[:0]) if n == 0 else None,
                    n == len(starts) - 1)


class Joiner:
    """Pieces back from what slices() made: feed() each item in order; it returns a whole piece, or None
    while a sliced one is still incomplete."""

    def __init__(self) -> None:
        self._head: Piece | None = None
        self._parts: list[np.ndarray] = []

    @property
    def pending(self) -> bool:
        """True while a sliced piece has begun and not ended."""
        return self._head is not None

    def feed(self, item: Piece | Slice) -> Piece | None:
        if isinstance(item, Slice):
            if item.head is not None:
                if self._head is not None:
                    raise ValueError("a sliced piece began before the last one ended")
                self._head = item.head
            elif self._head is None:
                raise ValueError("a slice came without its piece's first slice")
            self._parts.append(item.samples)
            if not item.last:
                return None
            head, parts = self._head, self._parts
            self._head, self._parts = None, []
            return dataclasses.replace(head, samples=np.concatenate(parts))
        if self._head is not None:
            raise ValueError("a piece came before the sliced one ended")
        return item


def encode(piece: Piece) -> bytes:
    timings = None if piece.timings is None else [[t.start_char, t.end_char, t.start, t.end] for t in piece.timings]
    header = json.dumps({"rate": piece.rate, "samples": len(piece.samples), "timings": timings}).encode()
    return struct.pack(">I", len(header)) + header + np.asarray(piece.samples, "<f4").tobytes()


def decode(buffer: bytearray) -> Piece | None:
    """The first whole piece in `buffer`, removed from it; None while it is incomplete."""
    if len(buffer) < 4:
        return None
    (size,) = struct.unpack(">I", buffer[:4])
    if len(buffer) < 4 + size:
        return None
    header = json.loads(bytes(buffer[4:4 + size]))
    end = 4 + size + 4 * int(header["samples"])
    if len(buffer) < end:
        return None
    samples = np.frombuffer(bytes(buffer[4 + size:end]), "<f4").astype(np.float32)
    del buffer[:end]
    timings = header["timings"]
    return Piece(samples, int(header["rate"]),
                 None if timings is None else tuple(Timing(int(a), int(b), float(c), float(d))
                                                    for a, b, c, d in timings))

"""The wire form of pieces between the Gateway's `POST /cluster/segment` and `voxgate tcp-front`.

Each piece is a 4-byte big-endian header length, a JSON header (`rate` in Hertz, `samples`, `timings` as
[start_char, end_char, start, end] lists or null), then `samples` float32 little-endian values.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from voxgate.core.types import Piece, Timing

MEDIA_TYPE = "application/x-voxgate-pieces"


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

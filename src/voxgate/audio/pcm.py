"""PCM helpers: float→int16 conversion, canonical WAV headers and whole-stream loudness levelling."""

from __future__ import annotations

import struct

import numpy as np

INT16_SCALE = 32767.0  # full-scale int16 value for a float sample of 1.0
UNKNOWN_MODES = ("max", "zero")  # how a streaming WAV header spells "size unknown"

_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # RIFF + 16-byte fmt chunk + data chunk header
_WAVE_FORMAT_PCM = 1
_SIZE_MAX = 0xFFFFFFFF  # largest RIFF size field; readers treat it as "read to EOF"


def float_to_int16(x: np.ndarray) -> np.ndarray:
    """Convert float samples in [-1, 1] to int16, clipping out-of-range values and rounding."""
    y = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    y *= INT16_SCALE  # clip returned a fresh array, so scaling in place is safe
    np.rint(y, out=y)
    return y.astype(np.int16)


def int16_bytes(x: np.ndarray) -> bytes:
    """Little-endian int16 bytes of a sample array (float input is converted first)."""
    a = np.asarray(x)
    if a.dtype != np.int16:
        a = float_to_int16(a)
    return a.astype("<i2", copy=False).tobytes()


def wav_header(
    rate: int,
    channels: int = 1,
    bits: int = 16,
    data_bytes: int | None = None,
    unknown: str = "max",
) -> bytes:
    """Build a 44-byte canonical RIFF/WAVE PCM header (streaming sizes when data_bytes is None)."""
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown must be one of {UNKNOWN_MODES}, got {unknown!r}")
    block_align = channels * bits // 8  # bytes per frame
    if data_bytes is not None:
        riff_size, data_size = 36 + data_bytes, data_bytes
    elif unknown == "max":
        riff_size, data_size = _SIZE_MAX, _SIZE_MAX
    else:
        # Exactly what Python's wave module writes before any frame is known; some clients expect it.
        riff_size, data_size = 36, 0
    return _WAV_HEADER.pack(
        b"RIFF",
        min(riff_size, _SIZE_MAX),
        b"WAVE",
        b"fmt ",
        16,
        _WAVE_FORMAT_PCM,
        channels,
        rate,
        rate * block_align,
        block_align,
        bits,
        b"data",
        min(data_size, _SIZE_MAX),
    )


def calibrate_gain(
    sample: np.ndarray,
    target_peak: float = 0.9,
    target_rms_dbfs: float = -18.0,
    max_gain: float = 8.0,
) -> float:
    """Gain that levels a representative sample of a voice (min of peak- and RMS-based gains)."""
    x = np.abs(np.asarray(sample, dtype=np.float64).ravel())
    if x.size == 0:
        return 1.0
    rms = float(np.sqrt(np.mean(x * x)))
    # The 99.9th percentile ignores isolated clicks that would otherwise pin the gain down.
    peak = float(np.percentile(x, 99.9))
    if rms < 1e-9 or peak < 1e-9:
        return 1.0
    peak_gain = target_peak / peak
    rms_gain = 10.0 ** (target_rms_dbfs / 20.0) / rms
    return float(min(peak_gain, rms_gain, max_gain))


class Leveller:
    """Apply one fixed gain to a whole stream, then a soft limiter that keeps samples in [-1, 1]."""

    def __init__(self, gain: float, threshold: float = 0.9) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.gain = float(gain)  # linear factor
        self.threshold = float(threshold)  # linear amplitude where the limiter knee starts

    def process(self, x: np.ndarray) -> np.ndarray:
        """Level one chunk; stateless beyond the gain, so chunks may be processed independently."""
        y = np.asarray(x, dtype=np.float32) * np.float32(self.gain)
        # The common case, below the knee, where the limiter is exactly transparent: found by two reductions
        # instead of |y| and a mask (two more arrays the size of the chunk, on the event loop, per piece).
        if not y.size or (float(y.max()) <= self.threshold and float(y.min()) >= -self.threshold):
            return y
        mag = np.abs(y)
        over = mag > self.threshold
        # tanh knee: continuous with slope 1 at the threshold and asymptotic to full scale.
        headroom = 1.0 - self.threshold
        knee = self.threshold + headroom * np.tanh((mag[over] - self.threshold) / headroom)
        y[over] = np.copysign(np.minimum(knee, 1.0), y[over])
        return y

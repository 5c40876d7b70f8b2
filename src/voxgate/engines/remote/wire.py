"""Wire facts the upstream kinds share: raw PCM and (streamed) WAV decoding, and the constants of the
servers voxgate's dialects imitate.

The dialect folders (dialects/openai, dialects/gptsovits) hold the same facts for the server side; a
dialect may not import an engine nor an engine a dialect, so the few shared constants are written here
again and tests/engines/test_upstream_framework.py checks that both sides agree.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np

from voxgate.core.types import Piece

OPENAI_PCM_RATE = 24_000  # OpenAI's `pcm`: raw 24 kHz 16-bit mono little-endian (dialects/openai PCM_RATE)
GPTSOVITS_RATE = 32_000  # GPT-SoVITS v2's output rate (dialects/gptsovits SAMPLE_RATE); v3 24000, v4 48000
# GPT-SoVITS v2's language list (dialects/gptsovits LANGUAGES' keys): what text_lang and prompt_lang accept.
GPTSOVITS_LANGUAGES = ("auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko")
# /tts parameters an operator may fix for a gptsovits upstream through its options (besides the ones voxgate sets).
GPTSOVITS_TUNABLE = ("top_k", "top_p", "temperature", "text_split_method", "batch_size", "batch_threshold",
                     "split_bucket", "fragment_interval", "seed", "parallel_infer", "repetition_penalty",
                     "sample_steps", "super_sampling", "overlap_length", "min_chunk_length", "streaming_mode",
                     "aux_ref_audio_paths")
WYOMING_RATE = 22_050  # what wyoming-piper's medium voices send; the real rate comes in audio-start


def int16_samples(data: bytes, channels: int = 1) -> np.ndarray:
    """Little-endian 16-bit PCM as float32 mono in [-1, 1] (channels averaged)."""
    samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        usable = len(samples) // channels * channels
        samples = samples[:usable].reshape(-1, channels).mean(axis=1)
    return samples


class PcmAssembler:
    """Turns byte chunks of 16-bit PCM into Pieces, holding an odd byte (or a partial frame) between chunks,
    and never yielding pieces shorter than `min_samples` except the last."""

    def __init__(self, rate: int, channels: int = 1, min_samples: int = 480) -> None:
        self.rate, self.channels = rate, channels
        self.min_bytes = 2 * channels * min_samples
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Piece | None:
        self._buffer += data
        if len(self._buffer) < self.min_bytes:
            return None
        usable = len(self._buffer) // (2 * self.channels) * (2 * self.channels)
        chunk, self._buffer = bytes(self._buffer[:usable]), self._buffer[usable:]
        return Piece(int16_samples(chunk, self.channels), self.rate)

    def finish(self) -> Piece | None:
        usable = len(self._buffer) // (2 * self.channels) * (2 * self.channels)
        chunk, self._buffer = bytes(self._buffer[:usable]), bytearray()
        return Piece(int16_samples(chunk, self.channels), self.rate) if chunk else None


class WavFormatError(ValueError):
    """Bytes that are not a 16-bit PCM WAV stream."""


class WavStream:
    """A WAV file read as it streams in: the header (whatever its sizes say: streamed WAVs write 0 or
    0xFFFFFFFF) gives rate and channels, then everything after the `data` chunk header is PCM."""

    def __init__(self, min_samples: int = 480) -> None:
        self._head = bytearray()
        self._min = min_samples
        self.pcm: PcmAssembler | None = None

    @property
    def rate(self) -> int | None:
        return self.pcm.rate if self.pcm is not None else None

    def feed(self, data: bytes) -> Piece | None:
        if self.pcm is not None:
            return self.pcm.feed(data)
        self._head += data
        found = _parse_header(bytes(self._head))
        if found is None:
            if len(self._head) > 1 << 16:
                raise WavFormatError("no WAV data chunk in the first 64 KiB")
            return None
        rate, channels, offset = found
        self.pcm = PcmAssembler(rate, channels, self._min)
        rest, self._head = bytes(self._head[offset:]), bytearray()
        return self.pcm.feed(rest)

    def finish(self) -> Piece | None:
        if self.pcm is None:
            if self._head:
                raise WavFormatError("the answer ended inside the WAV header")
            return None
        return self.pcm.finish()


def _parse_header(head: bytes) -> tuple[int, int, int] | None:
    """(rate, channels, offset of the PCM) once `head` holds the whole header; None while it does not."""
    if len(head) < 12:
        return None
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise WavFormatError("not a WAV file (no RIFF/WAVE header)")
    pos, rate, channels = 12, 0, 0
    while len(head) >= pos + 8:
        tag, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if tag == b"data":
            if not rate:
                raise WavFormatError("WAV data before its fmt chunk")
            return rate, channels, pos + 8
        if len(head) < pos + 8 + size:
            return None
        if tag == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", head[pos + 8:pos + 16])
            bits = struct.unpack("<H", head[pos + 22:pos + 24])[0]
            if fmt not in (1, 0xFFFE) or bits != 16 or channels < 1:
                raise WavFormatError(f"WAV is not 16-bit PCM (format {fmt}, {bits} bits)")
        pos += 8 + size + (size & 1)
    return None


def gptsovits_language(language: str | None, table: Mapping[str, str] | None = None) -> str:
    """A BCP-47-ish tag as GPT-SoVITS names it (text_lang / prompt_lang): its primary subtag when v2 has it,
    `yue` for Cantonese, else `auto` (the upstream detects)."""
    if not language:
        return "auto"
    tag = language.replace("_", "-").lower()
    if table and tag in table:
        return table[tag]
    if tag in GPTSOVITS_LANGUAGES:
        return tag
    if tag in ("zh-hk", "zh-yue"):
        return "yue"
    primary = tag.split("-")[0]
    return primary if primary in GPTSOVITS_LANGUAGES else "auto"


__all__ = ["GPTSOVITS_LANGUAGES", "GPTSOVITS_RATE", "OPENAI_PCM_RATE", "PcmAssembler", "WavFormatError",
           "WavStream", "gptsovits_language", "int16_samples"]

"""Audio as upstreams send it, turned into float32: raw PCM chunks, WAV streams whose header sizes lie, files.

The one parser of upstream audio every kind uses. Kinds may not import voxgate's audio package (engines
import nothing of the core), so the little decoding they need lives here. Streams are parsed incrementally:
a chunk boundary may fall anywhere, inside the header or between the bytes of a sample. Streaming WAV
headers are trusted for their format only, never for their sizes (AllTalk and GPT-SoVITS write 0, PyAV's
streaming muxer and others 0xFFFFFFFF).

A stream decoder (`Int16Decoder` for raw PCM, `WavStream`) has `feed(bytes) -> samples`, `rate` (None until
a WAV header said it) and `finish()`, which raises when the stream ended where it may not.
"""

from __future__ import annotations

import io
import struct

import numpy as np

MAX_HEADER = 64 * 1024  # bytes of RIFF chunks before `data` we wait for before calling the stream broken
MIN_PIECE = 960  # samples: streamed audio goes on in pieces of at least 40 ms at 24 kHz (the first at once)
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


class AudioFormatError(ValueError):
    """The upstream's audio is not in a format these decoders read."""


class Int16Decoder:
    """Raw little-endian PCM (int16; int32 or float32 from a WAV header) arriving in arbitrary byte chunks, as
    float32 (interleaved channels are averaged; an unfinished frame waits for the next chunk)."""

    def __init__(self, channels: int = 1, width: int = 2, floats: bool = False, rate: int | None = None) -> None:
        if (width, floats) not in ((2, False), (4, True), (4, False)):
            raise AudioFormatError(f"{width * 8}-bit {'float' if floats else 'integer'} PCM is not supported")
        self.channels, self.rate = channels, rate
        self._dtype = "<f4" if floats else ("<i2" if width == 2 else "<i4")
        self._scale = 1.0 if floats else float(2 ** (width * 8 - 1))
        self._frame = width * channels
        self._carry = b""

    def feed(self, data: bytes) -> np.ndarray:
        """The whole frames `data` completes (maybe none)."""
        data = self._carry + data
        usable = len(data) // self._frame * self._frame
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype=self._dtype).astype(np.float32)
        if self._scale != 1.0:
            samples /= self._scale
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return samples

    @property
    def leftover(self) -> int:
        """Bytes of an unfinished frame held back."""
        return len(self._carry)

    def finish(self) -> None:
        """The stream ended: an unfinished last frame is dropped."""
        self._carry = b""


class WavStream:
    """A WAV file arriving in chunks: `feed` returns the samples each chunk completes; `rate` is known once
    the header has been read (None before)."""

    def __init__(self) -> None:
        self._head = b""
        self._pcm: Int16Decoder | None = None
        self.rate: int | None = None

    def feed(self, data: bytes) -> np.ndarray:
        if self._pcm is not None:
            return self._pcm.feed(data)
        self._head += data
        found = _parse_header(self._head)
        if found is None:
            if len(self._head) > MAX_HEADER:
                raise AudioFormatError("no WAV data chunk in the first 64 KB")
            return np.zeros(0, np.float32)
        self.rate, self._pcm, start = found
        rest, self._head = self._head[start:], b""
        return self._pcm.feed(rest)

    def finish(self) -> None:
        """The stream ended: AudioFormatError when its header never came whole."""
        if self._pcm is None:
            raise AudioFormatError("the answer ended inside the WAV header" if self._head else "empty audio stream")
        self._pcm.finish()


def _parse_header(head: bytes) -> tuple[int, Int16Decoder, int] | None:
    """(rate, decoder, offset of the first PCM byte), or None while the header is incomplete."""
    if len(head) < 12:
        return None
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise AudioFormatError("not a WAV stream (no RIFF/WAVE header)")
    offset, fmt = 12, None
    while len(head) >= offset + 8:
        kind, size = head[offset:offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        body = offset + 8
        if kind == b"data":
            if fmt is None:
                raise AudioFormatError("WAV data chunk before its fmt chunk")
            return fmt[0], fmt[1], body
        if len(head) < body + size:
            return None
        if kind == b"fmt ":
            fmt = _format(head[body:body + size])
        offset = body + size + (size & 1)  # chunks are padded to an even size
    return None


def _format(chunk: bytes) -> tuple[int, Int16Decoder]:
    if len(chunk) < 16:
        raise AudioFormatError("WAV fmt chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _EXTENSIBLE and len(chunk) >= 26:
        tag = struct.unpack_from("<H", chunk, 24)[0]  # the sub-format GUID starts with the plain tag
    if tag not in (_PCM, _FLOAT) or channels < 1 or not 1000 <= rate <= 768_000:
        raise AudioFormatError(f"unsupported WAV encoding (format {tag}, {channels} channels, {rate} Hz)")
    return rate, Int16Decoder(channels, bits // 8, floats=tag == _FLOAT, rate=rate)


def decode_file(data: bytes) -> tuple[np.ndarray, int]:
    """A whole audio file as mono float32 and its rate: WAV here (true sizes honoured when they are set),
    any other container through PyAV."""
    if data[:4] in (b"RIFF", b"RF64"):
        found = _parse_header(data)
        if found is None:
            raise AudioFormatError("truncated WAV file")
        rate, pcm, start = found
        size = struct.unpack_from("<I", data, start - 4)[0]
        end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), start + size)
        return pcm.feed(data[start:end]), rate
    return _decode_other(data)


def _decode_other(data: bytes) -> tuple[np.ndarray, int]:
    import av  # only for upstreams that answer in a compressed format

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            parts = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
            rate = stream.codec_context.sample_rate
    except (av.error.FFmpegError, IndexError) as exc:
        raise AudioFormatError(f"audio that does not decode: {exc}") from None
    samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return samples, int(rate)


__all__ = ["MAX_HEADER", "MIN_PIECE", "AudioFormatError", "Int16Decoder", "WavStream", "decode_file"]

"""Streaming audio encoders: float32 mono PCM in, bytes of one container file out, chunk by chunk.

Measured cost (PyAV 18.1 / libav 62, one Xeon core; 24 kHz input, tone + noise fed in 0.2 s chunks;
creation = open muxer + open codec + write header, mean of 50; encode = per second of input, incl. finish):

    format  creation  encode/s  notes
    mp3      0.6 ms    7.1 ms   libmp3lame CBR 64 kbit/s (MPEG-2 layer III at 24 kHz)
    opus     0.2 ms    8.1 ms   libopus VBR 48 kbit/s; includes soxr HQ 24→48 kHz (~0.3 ms)
    aac      0.1 ms    4.2 ms   libav aac 64 kbit/s, ADTS
    flac   0.5-1.8 ms  0.5 ms   creation = zeroing libav's large flac context; varies run to run
    wav      0.0 ms    0.03 ms  hand-written header + int16, no libav
    pcm      0.0 ms    0.03 ms
    ogg      0.4 ms    8.6 ms   libav vorbis (experimental; 64-sample frames, so per-frame overhead)
    m4a      0.2 ms    4.3 ms   libav aac 64 kbit/s, fragmented MP4 (1 s fragments)
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType, TracebackType

import av
import numpy as np

from voxgate.audio.pcm import float_to_int16, int16_bytes, wav_header
from voxgate.audio.resample import Resampler
from voxgate.errors import InvalidInput

MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)  # MPEG-1/2/2.5, Hertz
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
MAX_BITS_PER_SAMPLE = 4  # bitrate cap per Hertz: speech gains nothing above it and encoders clamp noisily

Options = tuple[tuple[str, str], ...]
_STREAM_MUX: Options = (("flush_packets", "1"),)  # hand each finished packet/page to the sink at once
_FRAG_MP4: Options = (
    ("movflags", "frag_keyframe+empty_moov+default_base_moof"),
    ("frag_duration", "1000000"),  # microseconds; audio packets are all keyframes, so duration decides
)


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """How one response format is produced."""

    name: str
    content_type: str  # MIME type of the HTTP response
    extension: str  # file extension without the dot
    codec: str | None  # libav encoder; None for the hand-written wav/pcm paths
    container: str | None = None  # libav muxer
    rates: tuple[int, ...] | None = None  # Hertz the codec accepts; None = any rate
    sample_format: str = "fltp"  # libav sample format the codec is fed
    channels: int = 1  # channels in the output file
    bit_rate: int | None = None  # bits per second; None = encoder default
    codec_options: Options = ()
    stream_mux: Options = ()  # muxer options on a non-seekable streaming sink
    file_mux: Options = ()  # muxer options when the whole file is buffered (seekable sink)
    # Two streams of it joined end to end are one valid stream (raw pcm): an upstream's bytes may then be
    # passed through between encoded chunks, and a stream of several upstream answers joined.
    concatenates: bool = False


FORMATS: Mapping[str, FormatSpec] = MappingProxyType(
    {
        "mp3": FormatSpec(
            "mp3", "audio/mpeg", "mp3", "libmp3lame", "mp3", MP3_RATES, bit_rate=64000,
            # Raw MPEG frames: no ID3 tag, and no Xing frame that would need a seek back to fill in.
            stream_mux=(*_STREAM_MUX, ("id3v2_version", "0"), ("write_xing", "0")),
            file_mux=(("id3v2_version", "0"),),
        ),
        "opus": FormatSpec(
            "opus", "audio/ogg", "opus", "libopus", "ogg", (48000,), "flt", bit_rate=48000,
            stream_mux=(*_STREAM_MUX, ("page_duration", "100000")),  # microseconds per Ogg page
        ),
        "aac": FormatSpec(
            "aac", "audio/aac", "aac", "aac", "adts", AAC_RATES, bit_rate=64000, stream_mux=_STREAM_MUX,
        ),
        "flac": FormatSpec(
            "flac", "audio/flac", "flac", "flac", "flac", None, "s16",
            # The default 8 KiB PADDING block only helps in-place tag editing; speech responses don't.
            stream_mux=(*_STREAM_MUX, ("metadata_header_padding", "0")),
            file_mux=(("metadata_header_padding", "0"),),
        ),
        "wav": FormatSpec("wav", "audio/wav", "wav", None),
        "pcm": FormatSpec("pcm", "audio/pcm", "pcm", None, concatenates=True),
        "ogg": FormatSpec(
            # libav's own Vorbis encoder is "experimental" and refuses mono, so mono is duplicated.
            "ogg", "audio/ogg", "ogg", "vorbis", "ogg", None, "fltp", channels=2,
            codec_options=(("strict", "experimental"),),
            stream_mux=(*_STREAM_MUX, ("page_duration", "100000")),
        ),
        "m4a": FormatSpec(
            "m4a", "audio/mp4", "m4a", "aac", "ipod", AAC_RATES, bit_rate=64000,
            stream_mux=(*_STREAM_MUX, *_FRAG_MP4),  # a plain MP4 (moov last) when buffered
        ),
    }
)


# Formats whose encoder writes each chunk's samples as int16 at its input rate (raw pcm, wav): a dialect streaming
# one asks for those bytes to be made with the samples (SynthesisRequest.int16_chunks, Encoder.encode_pcm16).
PCM16_FORMATS = frozenset({"pcm", "wav"})


def get_format(fmt: str) -> FormatSpec:
    """Look a format up by name, raising InvalidInput that lists the supported ones."""
    spec = FORMATS.get(fmt.strip().lower())
    if spec is None:
        supported = ", ".join(FORMATS)
        raise InvalidInput(f"unsupported audio format {fmt!r}; supported formats: {supported}")
    return spec


def output_rate(spec: FormatSpec, rate: int) -> int:
    """Sample rate the file will carry: the input rate if the codec takes it, else the nearest one."""
    if spec.rates is None or rate in spec.rates:
        return rate
    return min(spec.rates, key=lambda r: (abs(r - rate), -r))  # ties go to the higher rate


class Encoder(ABC):
    """One response's encoder: feed float32 mono chunks, concatenate every returned byte string."""

    # Seconds of input that encode() turns into bytes in well under a millisecond (no codec, no
    # resampler), so a streaming caller may run it on the event loop instead of handing it to a thread.
    inline_seconds: float = 0.0
    # Writes each chunk's samples as int16 at its input rate: encode_pcm16 uses the bytes it is given.
    takes_pcm16: bool = False

    def __init__(self, spec: FormatSpec, in_rate: int, out_rate: int) -> None:
        self.format = spec.name
        self.content_type = spec.content_type
        self.sample_rate = out_rate  # Hertz, as written in the output file
        self.input_rate = in_rate  # Hertz of the PCM fed to encode()
        self._resampler = Resampler(in_rate, out_rate) if in_rate != out_rate else None
        self._finished = False
        self._concatenates = spec.concatenates
        self._encoded = False  # samples were encoded (a header may have gone out)
        self._passing = False  # the response is an upstream's own bytes (a format that does not concatenate)

    def encode(self, samples: np.ndarray) -> bytes:
        """Encode one chunk of float32 mono samples in [-1, 1]; return the bytes ready so far."""
        if self._finished:
            raise RuntimeError("encoder already finished")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._passing:
            if x.size:
                raise RuntimeError(f"{self.format}: samples cannot follow bytes passed through")
            return b""
        self._encoded = True
        if self._resampler is not None:
            x = self._resampler.process(x)
        return self._encode(x)

    def encode_pcm16(self, samples: np.ndarray, pcm16: bytes) -> bytes:
        """encode(samples), given `pcm16`, the samples' int16_bytes made elsewhere (a worker thread): an encoder
        that writes exactly those bytes (raw pcm, wav: takes_pcm16) uses them instead of converting again; any
        other, or one that would refuse the samples (finished, passing bytes through), encodes."""
        if not self.takes_pcm16 or self._finished or self._passing or self._resampler is not None:
            return self.encode(samples)
        self._encoded = True
        return self._write_pcm16(pcm16)

    def _write_pcm16(self, pcm16: bytes) -> bytes:
        """Take int16 bytes at the output rate (encoders that set takes_pcm16); return the bytes ready so far."""
        raise NotImplementedError

    def passthrough(self, data: bytes) -> bytes:
        """Bytes already in this format at this rate (an upstream's own audio), handed on untouched. A format
        that concatenates (raw pcm) takes them anywhere between encoded chunks; any other only before
        anything was encoded, and the response is then the passed bytes alone (`finish` adds nothing).
        SynthesisService.passthrough decides when a stream brings such bytes."""
        if self._finished:
            raise RuntimeError("encoder already finished")
        if self._concatenates:  # raw: encoded at its own rate, so the passed bytes join it as they are
            return data
        if self._encoded:
            raise RuntimeError(f"{self.format}: bytes cannot be passed through after encoded samples")
        self._passing = True
        return data

    def finish(self) -> bytes:
        """Flush the codec and write the container trailer; returns the last bytes of the file."""
        if self._finished:
            return b""
        if self._passing:  # the passed bytes were the whole file
            self.close()
            return b""
        head = self._encode(self._resampler.flush()) if self._resampler is not None else b""
        self._finished = True
        return head + self._finish()

    def close(self) -> None:
        """Release codec resources without producing more output (e.g. the client went away)."""
        self._finished = True

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @abstractmethod
    def _encode(self, x: np.ndarray) -> bytes:
        """Encode samples already at the output rate."""

    @abstractmethod
    def _finish(self) -> bytes:
        """Flush and terminate the file."""


class _RawEncoder(Encoder):
    """Raw int16 LE, optionally preceded by a streaming WAV header (pcm, streaming wav)."""

    inline_seconds = 20.0  # ~25 µs per second of audio: 20 s cost less than one thread hand-off under load
    takes_pcm16 = True

    def __init__(self, spec: FormatSpec, rate: int, header: bytes) -> None:
        super().__init__(spec, rate, rate)
        self._header = header  # sent with the first chunk so a zero-sample response is still a file

    def _encode(self, x: np.ndarray) -> bytes:
        return self._write_pcm16(int16_bytes(x))

    def _write_pcm16(self, pcm16: bytes) -> bytes:
        data, self._header = self._header + pcm16, b""
        return data

    def _finish(self) -> bytes:
        data, self._header = self._header, b""
        return data


class _WavFileEncoder(Encoder):
    """Buffers the whole response and returns one WAV file with true sizes from finish()."""

    takes_pcm16 = True

    def __init__(self, spec: FormatSpec, rate: int) -> None:
        super().__init__(spec, rate, rate)
        self._chunks: list[bytes] = []  # joined once at the end: linear, never quadratic

    def _encode(self, x: np.ndarray) -> bytes:
        return self._write_pcm16(int16_bytes(x))

    def _write_pcm16(self, pcm16: bytes) -> bytes:
        self._chunks.append(pcm16)
        return b""

    def _finish(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return wav_header(self.sample_rate, data_bytes=len(data)) + data


class _StreamSink:
    """Write-only, non-seekable file object that libav muxes into; drained after every call."""

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: list[bytes] = []  # the list is reused; chunks are libav's own bytes objects

    def write(self, data: bytes) -> int:
        self._chunks.append(data)
        return len(data)

    def drain(self) -> bytes:
        chunks = self._chunks
        if not chunks:
            return b""
        out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return out


class _FileSink(io.BytesIO):
    """Seekable in-memory file, so muxers can patch headers (FLAC STREAMINFO, MP3 Xing) at the end."""

    def close(self) -> None:
        pass  # libav closes its output on trailer; keep the bytes readable until we take them

    def drain(self) -> bytes:
        return b""


class _AvEncoder(Encoder):
    """Any libav codec + muxer, fed whole codec frames, muxing into a sink drained on every call."""

    def __init__(self, spec: FormatSpec, in_rate: int, out_rate: int, streaming: bool) -> None:
        super().__init__(spec, in_rate, out_rate)
        self._sink: _StreamSink | _FileSink = _StreamSink() if streaming else _FileSink()
        mux = dict(spec.stream_mux if streaming else spec.file_mux)
        self._container = av.open(self._sink, "w", format=spec.container, container_options=mux)
        self._stream = self._container.add_stream(
            str(spec.codec), rate=out_rate, options=dict(spec.codec_options)
        )
        ctx = self._stream.codec_context
        ctx.layout = "mono" if spec.channels == 1 else "stereo"
        ctx.format = spec.sample_format
        ctx.time_base = Fraction(1, out_rate)
        if spec.bit_rate:
            ctx.bit_rate = min(spec.bit_rate, MAX_BITS_PER_SAMPLE * out_rate)
        self._container.start_encoding()  # opens the codec (frame_size is known only after) + header
        self._av_format = ctx.format.name
        self._layout = ctx.layout.name
        self._int16 = spec.sample_format.startswith("s16")
        self._time_base = ctx.time_base
        self._frame_size = ctx.frame_size  # samples per codec frame; 0 = codec takes any size
        self._pending = np.zeros(max(self._frame_size, 1), dtype=np.float32)  # < one frame of leftovers
        self._n_pending = 0
        self._pts = 0  # samples sent to the codec so far, in 1/out_rate units

    def _encode(self, x: np.ndarray) -> bytes:
        total = self._n_pending + x.size
        whole = total - total % self._frame_size if self._frame_size else total
        if whole == 0:
            self._pending[self._n_pending : total] = x
            self._n_pending = total
            return self._sink.drain()
        used = whole - self._n_pending  # samples of x that complete the frames sent now
        self._send(self._make_frame(self._pending[: self._n_pending], x[:used]))
        rest = x[used:]
        self._pending[: rest.size] = rest
        self._n_pending = rest.size
        return self._sink.drain()

    def _finish(self) -> bytes:
        if self._pts == 0 and self._n_pending == 0:
            # Nothing was fed: one silent sample makes a decodable file (and libav's Vorbis encoder
            # emits empty packets forever if flushed before its first frame).
            self._n_pending = 1
            self._pending[0] = 0.0
        if self._n_pending:
            # A short last frame: libavcodec pads it with silence for fixed-frame codecs (Ogg's granule
            # position still records the true end, so opus/vorbis decode to the exact length).
            self._send(self._make_frame(self._pending[: self._n_pending], self._pending[:0]))
            self._n_pending = 0
        self._container.mux(self._stream.encode(None))
        self._container.close()  # writes the trailer
        data = self._sink.getvalue() if isinstance(self._sink, _FileSink) else self._sink.drain()
        self._sink = _StreamSink()  # drop the buffered file
        return data

    def close(self) -> None:
        if not self._finished:
            self._container.close()
            self._sink = _StreamSink()
        super().close()

    def _make_frame(self, head: np.ndarray, body: np.ndarray) -> av.AudioFrame:
        """One AudioFrame holding head+body, written straight into libav's planes (one copy)."""
        n = head.size + body.size
        frame = av.AudioFrame(format=self._av_format, layout=self._layout, samples=n, align=1)
        for plane in frame.planes:  # planar stereo (vorbis) gets the mono signal on both planes
            if self._int16:
                dst = np.frombuffer(plane, dtype=np.int16, count=n)
                dst[: head.size] = float_to_int16(head)
                dst[head.size :] = float_to_int16(body)
            else:
                dst = np.frombuffer(plane, dtype=np.float32, count=n)
                # Clipping here costs nothing extra and keeps out-of-range input from upsetting encoders.
                np.clip(head, -1.0, 1.0, out=dst[: head.size])
                np.clip(body, -1.0, 1.0, out=dst[head.size :])
        frame.sample_rate = self.sample_rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += n
        return frame

    def _send(self, frame: av.AudioFrame) -> None:
        self._container.mux(self._stream.encode(frame))


def open_encoder(fmt: str, rate: int, *, streaming: bool = True, wav_unknown: str = "max") -> Encoder:
    """Start one response's encoder for float32 mono PCM at `rate` Hertz."""
    spec = get_format(fmt)
    if rate <= 0:
        raise InvalidInput(f"sample rate must be positive, got {rate}")
    if spec.name == "pcm":
        return _RawEncoder(spec, rate, b"")
    if spec.name == "wav":
        if not streaming:
            return _WavFileEncoder(spec, rate)
        return _RawEncoder(spec, rate, wav_header(rate, unknown=wav_unknown))
    return _AvEncoder(spec, rate, output_rate(spec, rate), streaming)


def encode_all(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode a whole signal into one file (WAV gets true sizes, FLAC a complete STREAMINFO)."""
    encoder = open_encoder(fmt, rate, streaming=False)
    return encoder.encode(samples) + encoder.finish()

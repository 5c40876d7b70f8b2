"""audio/: every encoder yields one decodable file of the right tone, plus PCM, WAV, resampling, levelling."""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Iterator

import av
import numpy as np
import pytest

from voxgate.audio import (
    FORMATS,
    Leveller,
    Resampler,
    calibrate_gain,
    encode_all,
    float_to_int16,
    int16_bytes,
    open_encoder,
    resample,
    wav_header,
)
from voxgate.errors import InvalidInput

TONE = 440.0  # Hertz
DURATION = 2.0  # seconds
CHUNKS = (1000, 3333, 17, 8000, 1, 4410, 257)  # uneven on purpose: never a codec frame multiple
PRIMING = 2 * 1152  # samples: encoder delay + last-frame padding (ADTS/fragmented MP4 can't trim them)
WAV_FIELDS = struct.Struct("<4sI4s4sIHHIIHH4sI")


def sine(rate: int, seconds: float = DURATION, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE * t)).astype(np.float32)


def uneven(x: np.ndarray) -> Iterator[np.ndarray]:
    i = k = 0
    while i < x.size:
        n = CHUNKS[k % len(CHUNKS)]
        yield x[i : i + n]
        i, k = i + n, k + 1


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """First channel of a compressed file as float, and its sample rate."""
    parts, rate = [], 0
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            a = frame.to_ndarray()
            if not frame.format.is_planar:
                a = a.reshape(-1, frame.layout.nb_channels).T
            a = a[0].astype(np.float64)
            parts.append(a / 32768.0 if frame.format.name.startswith("s16") else a)
            rate = frame.sample_rate
    return np.concatenate(parts), rate


def dominant_frequency(y: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spectrum)) * rate / y.size


@pytest.mark.parametrize("rate", [22050, 24000, 16000])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_streaming_encoder_yields_one_file_of_the_tone(fmt: str, rate: int) -> None:
    encoder = open_encoder(fmt, rate)
    parts = [encoder.encode(chunk) for chunk in uneven(sine(rate))]
    early = sum(map(len, parts))
    parts.append(encoder.finish())
    data = b"".join(parts)

    assert early > 0.5 * len(data) if fmt != "m4a" else early > 0  # m4a waits for 1 s fragments
    assert encoder.format == fmt
    assert encoder.content_type == FORMATS[fmt].content_type
    if fmt == "opus":
        assert encoder.sample_rate == 48000
    if fmt == "pcm":
        y, decoded_rate = np.frombuffer(data, "<i2") / 32768.0, encoder.sample_rate
    else:
        y, decoded_rate = decode(data)
    assert decoded_rate == encoder.sample_rate
    duration = y.size / decoded_rate
    assert abs(duration - DURATION) <= max(0.05 * DURATION, PRIMING / decoded_rate), duration
    assert np.sqrt(np.mean(y * y)) > 0.25  # a 0.5 sine has RMS 0.354
    assert abs(dominant_frequency(y, decoded_rate) - TONE) < 3.0


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "ogg", "pcm", "wav"])
def test_audio_bytes_flow_during_the_first_second(fmt: str) -> None:
    encoder = open_encoder(fmt, 24000)
    sizes = [len(encoder.encode(chunk)) for chunk in np.split(sine(24000, 1.0), 10)]
    encoder.close()
    # The second half-second alone must yield audio, not just the container header of the first call.
    assert sum(sizes[5:]) > 500, sizes


@pytest.mark.parametrize("mode", ["max", "zero"])
def test_streaming_wav_header_and_payload(mode: str) -> None:
    encoder = open_encoder("wav", 24000, wav_unknown=mode)
    data = b"".join(encoder.encode(c) for c in uneven(sine(24000))) + encoder.finish()
    riff, riff_size, wave_, fmt_, fmt_size, tag, ch, rate, byte_rate, align, bits, data_id, data_size = (
        WAV_FIELDS.unpack(data[:44])
    )
    assert (riff, wave_, fmt_, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (fmt_size, tag, ch, rate, byte_rate, align, bits) == (16, 1, 1, 24000, 48000, 2, 16)
    assert (riff_size, data_size) == ((0xFFFFFFFF, 0xFFFFFFFF) if mode == "max" else (36, 0))
    assert len(data) == 44 + 2 * 48000
    y, decoded_rate = decode(data)
    assert decoded_rate == 24000 and y.size == 48000
    assert abs(dominant_frequency(y, 24000) - TONE) < 3.0


def test_buffered_wav_has_true_sizes_and_waits_for_finish() -> None:
    encoder = open_encoder("wav", 22050, streaming=False)
    assert encoder.encode(sine(22050)) == b""
    data = encoder.finish()
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (22050, 1, 2, 44100)
    assert data == encode_all(sine(22050), 22050, "wav")


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a", "ogg"])
def test_encode_all_is_one_decodable_file(fmt: str) -> None:
    y, rate = decode(encode_all(sine(24000), 24000, fmt))
    assert rate == 24000
    assert abs(y.size / rate - DURATION) <= PRIMING / rate
    assert abs(dominant_frequency(y, rate) - TONE) < 3.0


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - {"pcm", "wav"}))
def test_empty_stream_is_still_a_file(fmt: str) -> None:
    encoder = open_encoder(fmt, 24000)
    data = encoder.encode(np.zeros(0, np.float32)) + encoder.finish()
    assert decode(data)[1] == encoder.sample_rate
    assert encoder.finish() == b""
    with pytest.raises(RuntimeError):
        encoder.encode(np.zeros(10, np.float32))


def test_codec_rate_is_nearest_supported() -> None:
    assert open_encoder("mp3", 20000).sample_rate == 22050
    assert open_encoder("aac", 23000).sample_rate == 22050
    assert open_encoder("aac", 23500).sample_rate == 24000
    assert open_encoder("opus", 22050).sample_rate == 48000
    assert open_encoder("flac", 23000).sample_rate == 23000
    assert open_encoder("pcm", 23000).sample_rate == 23000


def test_unknown_format_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        open_encoder("wma", 24000)
    assert "wma" in info.value.message and "mp3" in info.value.message and "opus" in info.value.message


def test_format_specs() -> None:
    expected = {
        "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
        "wav": "audio/wav", "pcm": "audio/pcm", "ogg": "audio/ogg", "m4a": "audio/mp4",
    }
    assert {name: spec.content_type for name, spec in FORMATS.items()} == expected
    assert FORMATS["opus"].rates == (48000,)
    assert 44100 in (FORMATS["mp3"].rates or ()) and 8000 in (FORMATS["mp3"].rates or ())


def test_wav_header_unknown_modes_are_byte_exact() -> None:
    fields = WAV_FIELDS.unpack(wav_header(24000, unknown="max"))
    assert fields == (b"RIFF", 0xFFFFFFFF, b"WAVE", b"fmt ", 16, 1, 1, 24000, 48000, 2, 16, b"data", 0xFFFFFFFF)
    zero = wav_header(24000, unknown="zero")
    assert WAV_FIELDS.unpack(zero)[1] == 36 and WAV_FIELDS.unpack(zero)[-1] == 0
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:  # what Python's wave writes for zero frames
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
    assert zero == buf.getvalue()
    with pytest.raises(ValueError):
        wav_header(24000, unknown="nope")


@pytest.mark.parametrize(("rate", "channels"), [(22050, 1), (48000, 2)])
def test_wav_header_true_sizes_match_wave_module(rate: int, channels: int) -> None:
    payload = int16_bytes(np.tile(sine(rate, 0.1), channels))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(payload)
    assert wav_header(rate, channels, data_bytes=len(payload)) + payload == buf.getvalue()


def test_float_to_int16_clips_and_rounds() -> None:
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1e-5, 0.5, 1.0, 3.0], dtype=np.float32)
    assert float_to_int16(x).tolist() == [-32767, -32767, -16384, 0, 0, 16384, 32767, 32767]
    assert int16_bytes(x[:2]) == struct.pack("<2h", -32767, -32767)
    assert int16_bytes(np.array([1, -2], dtype=np.int16)) == b"\x01\x00\xfe\xff"


@pytest.mark.parametrize(("in_rate", "out_rate"), [(22050, 48000), (24000, 22050), (16000, 24000)])
def test_chunked_resampling_matches_one_shot_length(in_rate: int, out_rate: int) -> None:
    x = sine(in_rate)
    resampler = Resampler(in_rate, out_rate)
    chunked = [resampler.process(c) for c in uneven(x)]
    chunked.append(resampler.process(np.zeros(0, np.float32), last=True))
    y = np.concatenate(chunked)
    assert abs(y.size - resample(x, in_rate, out_rate).size) <= 2
    assert abs(y.size - x.size * out_rate / in_rate) <= 2
    assert abs(dominant_frequency(y, out_rate) - TONE) < 3.0


def test_resampler_passthrough_is_identity() -> None:
    x = sine(24000)
    resampler = Resampler(24000, 24000)
    assert resampler.passthrough
    assert resampler.process(x) is x
    assert resampler.flush().size == 0
    assert resample(x, 24000, 24000) is x


def test_leveller_bounds_huge_input_without_hard_clipping() -> None:
    x = np.linspace(-50.0, 50.0, 10001, dtype=np.float32)
    y = Leveller(2.0).process(x)
    assert np.all(np.abs(y) <= 1.0)
    assert np.all(np.diff(y) >= 0)  # monotonic: the knee bends, it never folds back
    assert np.all(np.abs(Leveller(1.0).process(np.array([0.95, 0.99, 1.2]))) < 1.0)


def test_leveller_is_transparent_below_the_knee() -> None:
    x = sine(24000, 0.5, amplitude=0.3)
    assert np.max(np.abs(Leveller(1.0).process(x) - x)) < 1e-3
    assert np.max(np.abs(Leveller(2.5).process(x) - 2.5 * x)) < 1e-3


def test_calibrate_gain() -> None:
    assert calibrate_gain(np.zeros(24000, np.float32)) == 1.0
    assert calibrate_gain(np.zeros(0, np.float32)) == 1.0
    assert calibrate_gain(sine(24000, amplitude=1e-4)) == 8.0  # quiet voice: capped at max_gain
    spiky = sine(24000, amplitude=0.02)
    spiky[:480] *= 30  # a 20 ms loud burst: high crest factor, so the peak target decides
    peak = np.percentile(np.abs(spiky), 99.9)
    assert calibrate_gain(spiky) == pytest.approx(0.9 / peak, rel=1e-6)
    quiet = sine(24000, amplitude=0.05)
    rms_gain = 10 ** (-18 / 20) / (0.05 / np.sqrt(2))
    assert calibrate_gain(quiet) == pytest.approx(rms_gain, rel=1e-3)  # RMS-limited

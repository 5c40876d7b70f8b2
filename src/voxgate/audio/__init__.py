"""Audio plumbing: PCM conversion, levelling, resampling and streaming container encoders."""

from voxgate.audio.encoders import FORMATS, Encoder, FormatSpec, encode_all, get_format, open_encoder
from voxgate.audio.pcm import Leveller, calibrate_gain, float_to_int16, int16_bytes, wav_header
from voxgate.audio.resample import Resampler, resample

__all__ = [
    "FORMATS",
    "Encoder",
    "FormatSpec",
    "Leveller",
    "Resampler",
    "calibrate_gain",
    "encode_all",
    "float_to_int16",
    "get_format",
    "int16_bytes",
    "open_encoder",
    "resample",
    "wav_header",
]

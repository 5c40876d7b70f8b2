"""Wire facts the upstream kinds share: the constants of the servers voxgate's dialects imitate (the audio
they send is decoded by engines/remote/pcmstream.py, their HTTP errors read by engines/remote/httpwire.py).

The dialect folders (dialects/openai, dialects/gptsovits) hold the same facts for the server side; a
dialect may not import an engine nor an engine a dialect, so the few shared constants are written here
again and tests/engines/test_upstream_framework.py checks that both sides agree.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

OPENAI_PCM_RATE = 24_000  # OpenAI's `pcm`: raw 24 kHz 16-bit mono little-endian (dialects/openai PCM_RATE)
GPTSOVITS_RATE = 32_000  # GPT-SoVITS v2's output rate (dialects/gptsovits SAMPLE_RATE); v3 24000, v4 48000
# GPT-SoVITS v2's language list (dialects/gptsovits LANGUAGES' keys): what text_lang and prompt_lang accept.
GPTSOVITS_LANGUAGES = ("auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko")
# /tts parameters an operator may fix for a gptsovits upstream through its options (besides the ones voxgate sets).
GPTSOVITS_TUNABLE = ("top_k", "top_p", "temperature", "text_split_method", "batch_size", "batch_threshold",
                     "split_bucket", "fragment_interval", "seed", "parallel_infer", "repetition_penalty",
                     "sample_steps", "super_sampling", "overlap_length", "min_chunk_length", "streaming_mode",
                     "aux_ref_audio_paths")
ALLTALK_STREAM_RATE = 24_000  # AllTalk's /api/tts-generate-streaming: XTTS's rate (dialects/alltalk STREAM_RATE)
# The header that stream starts with: what Python's wave module writes before any frame (RIFF size 36, data size
# 0), 24 kHz mono 16-bit (dialects/alltalk writes the same with audio.pcm.wav_header(STREAM_RATE, unknown="zero")).
ALLTALK_STREAM_HEADER = (b"RIFF" + struct.pack("<I", 36) + b"WAVE" + b"fmt "
                         + struct.pack("<IHHIIHH", 16, 1, 1, ALLTALK_STREAM_RATE, 2 * ALLTALK_STREAM_RATE, 2, 16)
                         + b"data" + struct.pack("<I", 0))
WYOMING_RATE = 22_050  # what wyoming-piper's medium voices send; the real rate comes in audio-start


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


__all__ = ["ALLTALK_STREAM_HEADER", "ALLTALK_STREAM_RATE", "GPTSOVITS_LANGUAGES", "GPTSOVITS_RATE",
           "GPTSOVITS_TUNABLE", "OPENAI_PCM_RATE", "WYOMING_RATE",
           "gptsovits_language"]

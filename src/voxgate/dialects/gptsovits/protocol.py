"""Wire model of GPT-SoVITS api_v2 `/tts`, in the order of the original's `TTS_Request`, and its checks."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from voxgate.core.types import SynthesisRequest
from voxgate.dialects.gptsovits.split import METHODS
from voxgate.errors import InvalidInput

_LOG = logging.getLogger(__name__)

VERSION = "v2"  # the model version the original reports in its messages
SAMPLE_RATE = 32_000  # Hertz: v2's output rate; raw-PCM clients assume it
MEDIA_TYPES = ("wav", "raw", "ogg", "aac")
# v2's language list → the primary language subtag a voice must speak (None: any voice will do).
LANGUAGES: Mapping[str, str | None] = {
    "auto": None, "auto_yue": None, "en": "en", "zh": "zh", "ja": "ja", "yue": "yue", "ko": "ko",
    "all_zh": "zh", "all_ja": "ja", "all_yue": "yue", "all_ko": "ko",
}
STREAMING_MESSAGE = "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)"
# Piper draws its noise inside onnxruntime, where no seed reaches it; without noise it is repeatable.
DETERMINISTIC = {"noise_scale": 0.0, "noise_w_scale": 0.0}


class ParamError(InvalidInput):
    """A /tts parameter the original's check_params refuses: answered as 400 {"message": ...}."""


class TtsParams(BaseModel):
    """GET /tts query or POST /tts JSON body."""

    model_config = ConfigDict(extra="allow")

    text: str | None = None
    """The text to speak (required)."""
    text_lang: str | None = None
    """Language of `text`, one of v2's list (required; case-insensitive)."""
    ref_audio_path: str | None = None
    """Reference audio: a server-side path inside the reference folders, or a voice id (voxgate extension).
    Required unless /set_refer_audio or /set_*_weights set a default."""
    aux_ref_audio_paths: list[Any] | None = None
    """Extra references for tone fusion; accepted, not fused (Piper voices have one timbre)."""
    prompt_text: str = ""
    """Transcript of the reference; stored with the voice registered from it."""
    prompt_lang: str | None = None
    """Language of `prompt_text` (required, even when prompt_text is empty)."""
    top_k: int = 15
    """GPT sampling top-k; no-op (Piper has no token sampler)."""
    top_p: float = 1
    """GPT sampling top-p; no-op."""
    temperature: float = 1
    """GPT sampling temperature; no-op."""
    text_split_method: str = "cut5"
    """How the text is cut into fragments: cut0–cut5 (see split.py)."""
    batch_size: int = 1
    """Fragments per inference batch; no-op (batched Piper is slower on CPU)."""
    batch_threshold: float = 0.75
    """Batch splitting threshold; no-op."""
    split_bucket: bool = True
    """Bucket fragments by length; no-op (order is always kept)."""
    speed_factor: float = 1.0
    """Speaking rate: 2.0 = twice as fast (Piper's length scale, not a time-stretch)."""
    fragment_interval: float = 0.3
    """Seconds of silence after every fragment (0–10)."""
    seed: int = -1
    """-1: random. ≥ 0: repeatable output (Piper's noise is turned off; every seed gives the same take)."""
    media_type: str = "wav"
    """wav, raw (int16 PCM), ogg (Vorbis) or aac (ADTS)."""
    streaming_mode: bool | int = False
    """0/false: one file; 1/true: one chunk per fragment; 2, 3: audio as each clause is ready."""
    parallel_infer: bool = True
    """Parallel decoding; no-op."""
    repetition_penalty: float = 1.35
    """GPT repetition penalty; no-op."""
    sample_steps: int = 32
    """v3/v4 CFM steps; no-op."""
    super_sampling: bool = False
    """v3 super-resolution; no-op (the output is always 32 kHz)."""
    overlap_length: int = 2
    """Semantic-token overlap in modes 2/3; no-op."""
    min_chunk_length: int = 16
    """Semantic tokens per chunk in modes 2/3; no-op."""
    return_fragment: bool = False
    """Older api_v2: true = per-fragment streaming (streaming_mode 1) when streaming_mode is off."""

    @field_validator("seed", mode="before")
    @classmethod
    def _random_seed(cls, value: Any) -> Any:
        return -1 if value is None or value == "" else value

    @model_validator(mode="after")
    def _log_unknown(self) -> TtsParams:
        if self.model_extra:
            _LOG.info("ignoring unknown /tts fields: %s", ", ".join(sorted(self.model_extra)))
        return self

    def check(self, spoken: set[str], has_default: bool) -> int:
        """The original's check_params in its order, plus installed languages; returns the streaming mode."""
        if not self.ref_audio_path and not has_default:
            raise ParamError("ref_audio_path is required", param="ref_audio_path")
        if not self.text:
            raise ParamError("text is required", param="text")
        _check_language("text_lang", self.text_lang, spoken)
        _check_language("prompt_lang", self.prompt_lang, None)
        if self.media_type not in MEDIA_TYPES:
            raise ParamError(f"media_type: {self.media_type} is not supported", param="media_type")
        if self.text_split_method not in METHODS:
            raise ParamError(f"text_split_method:{self.text_split_method} is not supported",
                             param="text_split_method")
        mode = int(self.streaming_mode)
        if mode not in (0, 1, 2, 3):
            raise ParamError(STREAMING_MESSAGE, param="streaming_mode")
        if mode == 0 and self.return_fragment:
            mode = 1
        if not -1e6 <= self.fragment_interval <= 10:  # also refuses NaN and ±inf
            raise InvalidInput("fragment_interval must be a number of seconds, at most 10",
                               param="fragment_interval")
        return mode

    @property
    def language(self) -> str:
        """text_lang in lower case (after check)."""
        return (self.text_lang or "").lower()

    @property
    def silence(self) -> int:
        """Samples of silence after each fragment (a negative interval means none, as in the original)."""
        return int(SAMPLE_RATE * min(max(0.0, self.fragment_interval), 10.0))

    def to_request(self, voice: str, segments: Sequence[str]) -> SynthesisRequest:
        """The internal request: `voice` is the resolved voice id, `segments` the cut text."""
        repeatable = self.seed >= 0
        return SynthesisRequest(
            # The code itself, not its tag: `zh` is Chinese mixed with English, `all_zh` Chinese only.
            text=" ".join(segments), voice=voice, language=self.language or None,
            speed=self.speed_factor, sample_rate=SAMPLE_RATE, segments=tuple(segments),
            seed=self.seed if repeatable else None, engine_options=DETERMINISTIC if repeatable else {},
            # raw int16 at SAMPLE_RATE is exactly what an upstream sends for `pcm` at that rate, and raw
            # joins anywhere (fragment silences stay ours); wav/ogg/aac are framed per fragment here: encoded
            output="pcm" if self.media_type == "raw" else None,
        )


def _check_language(name: str, value: str | None, spoken: set[str] | None) -> None:
    """Required, in v2's list (case-insensitive), and (for `spoken`) spoken by an installed voice."""
    if not value:
        raise ParamError(f"{name} is required", param=name)
    if value.lower() not in LANGUAGES:
        raise ParamError(f"{name}: {value} is not supported in version {VERSION}", param=name)
    needed = LANGUAGES[value.lower()]
    if spoken is not None and needed is not None and needed not in spoken:
        raise ParamError(f"{name}: {value} is not supported in version {VERSION} "
                         f"(no installed voice speaks {needed})", param=name)


def claims(payload: Mapping[str, Any]) -> bool:
    """Whether a POST /tts JSON body is GPT-SoVITS's rather than CosyVoice's (which sends `prompt_id`)."""
    return "prompt_id" not in payload or "text_lang" in payload or "ref_audio_path" in payload

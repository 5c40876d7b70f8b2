"""One typed settings object; CLI flags and VOXGATE_* environment variables are generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Candidate bases for voice matching, measured in this order: one entry per engine voice (or pattern).
DEFAULT_MATCH_BASES: tuple[str, ...] = (
    "hibari:heart",
    "en_US-joe-medium",
    "kokoro:*",
    "*",  # every other installed voice whose engine allows it (user Piper voices)
)

DEFAULT_VOICE = "hibari:heart"  # hibari-tts's bundled voice (American English, female, 24 kHz)
MALE_VOICE = "en_US-joe-medium"  # Piper joe (American English, male, 22050 Hz)
DEFAULT_OPENAI_ALIASES: dict[str, str] = {
    **{name: DEFAULT_VOICE for name in ("alloy", "coral", "marin", "nova", "sage", "shimmer")},
    **{name: MALE_VOICE for name in ("ash", "ballad", "cedar", "echo", "fable", "onyx", "verse")},
}
DEFAULT_ALLTALK_ALIASES: dict[str, str] = {"female_01.wav": DEFAULT_VOICE, "male_01.wav": MALE_VOICE}
KNOWN_ENGINES = ("piper", "hibari", "kokoro", "pico", "espeak")

# The installed voices that stand for other servers' female and male voices (Flash-TTS's built-in roles,
# Kokoro-FastAPI's af_/bf_ and am_/bm_ voices).
FEMALE_VOICE = DEFAULT_VOICE
# Marks a setting a TCP dialect reads (its port and the rest): `voxgate tcp-front` offers exactly these as flags,
# so the CLI names no dialect and imports none.
TCP_DIALECT = "tcp_dialect"
_TCP: dict[str, Any] = {TCP_DIALECT: True}
DEFAULT_FLASH_ROLES: dict[str, str] = {"female": FEMALE_VOICE, "male": MALE_VOICE}
# Model names of the servers an OpenAI-speech client may have been written for: OpenAI, Kokoro-FastAPI
# (kokoro), openedai-speech (tts-1 = piper, tts-1-hd = xtts), speaches, Flash-TTS (spark, orpheus, mega),
# and the engines of GPT-SoVITS, CosyVoice, AllTalk, Piper and Orpheus front-ends.
DEFAULT_OPENAI_MODELS: tuple[str, ...] = (
    "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "kokoro", "kokoro-v1_0", "hexgrad/Kokoro-82M",
    "speaches-ai/Kokoro-82M-v1.0-ONNX", "piper", "rhasspy/piper-voices", "spark", "orpheus", "mega",
    "cosyvoice", "cosyvoice2", "gpt-sovits", "gpt_sovits", "alltalk", "xtts", "xtts_v2", "f5-tts",
    "voxgate",
)
_KOKORO_FEMALE = ("af_heart", "af_alloy", "af_aoede", "af_bella", "af_jessica", "af_kore", "af_nicole",
                  "af_nova", "af_river", "af_sarah", "af_sky", "bf_alice", "bf_emma", "bf_isabella", "bf_lily")
_KOKORO_MALE = ("am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael", "am_onyx", "am_puck",
                "am_santa", "bm_daniel", "bm_fable", "bm_george", "bm_lewis")
_KOKORO_JAPANESE = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# Kokoro-82M v1.0's voices in its other languages. Mandarin speaks with voxgate's Mandarin Kokoro voices (the
# Japanese styles reading Mandarin phonemes: engines/kokoro.py, female DEFAULT_CHINESE and the male style);
# Spanish, French and Italian with SVOX Pico (one female voice per language); Hindi and Brazilian
# Portuguese with espeak-ng (its female variant f3 for the female names).
_KOKORO_MANDARIN_FEMALE = ("zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi")
_KOKORO_MANDARIN_MALE = ("zm_yunjian", "zm_yunxi", "zm_yunxia", "zm_yunyang")
_KOKORO_OTHER: dict[str, str] = {
    **{name: "kokoro-zh:jf_nezumi" for name in _KOKORO_MANDARIN_FEMALE},
    **{name: "kokoro-zh:jm_kumo" for name in _KOKORO_MANDARIN_MALE},
    **{name: "pico:es-ES" for name in ("ef_dora", "em_alex", "em_santa")},
    "ff_siwis": "pico:fr-FR",
    **{name: "pico:it-IT" for name in ("if_sara", "im_nicola")},
    **{name: "espeak:hi+f3" for name in ("hf_alpha", "hf_beta")},
    **{name: "espeak:hi" for name in ("hm_omega", "hm_psi")},
    "pf_dora": "espeak:pt-br+f3",
    **{name: "espeak:pt-br" for name in ("pm_alex", "pm_santa")},
}
DEFAULT_KOKORO_VOICES: dict[str, str] = {
    **{name: FEMALE_VOICE for name in _KOKORO_FEMALE},
    **{name: MALE_VOICE for name in _KOKORO_MALE},
    **{name: f"kokoro:{name}" for name in _KOKORO_JAPANESE},
    **_KOKORO_OTHER,
}


def default_data_dir() -> Path:
    """The user's data folder for voxgate (XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows)."""
    return Path(platformdirs.user_data_dir("voxgate", appauthor=False))


class Settings(BaseSettings):
    """Every knob of the server, validated before anything loads."""

    model_config = SettingsConfigDict(env_prefix="VOXGATE_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(8000, ge=0, le=65535, description="Main HTTP/WebSocket port (0 picks a free one).")
    compat_ports: bool = Field(
        False, description="Also serve each dialect alone on its original server's port (e.g. GPT-SoVITS 9880)."
    )
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="Folder for everything voxgate stores; default the user's data folder "
        "(~/.local/share/voxgate on Linux).",
    )
    store: str | None = Field(
        None, description="Where registered voices, their reference audio and levelling gains are kept: unset = "
        "SQLite in the data folder; postgresql://USER@HOST:PORT/DB = one PostgreSQL store shared by every node "
        "(needs voxgate[postgres]; docs/store.md).",
    )
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
    openai_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OPENAI_MODELS),
        description="Model names /v1/audio/speech accepts and /v1/models lists (JSON list in the env var).",
    )
    kokoro_voice_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_KOKORO_VOICES),
        description="Kokoro-FastAPI voice names (af_heart, am_adam, jf_alpha, zf_xiaobei, ef_dora, …) mapped to "
        "installed voice ids for the OpenAI route and /dev/captioned_speech, blends like af_bella(2)+af_sky "
        "included (JSON object).",
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
    match_bases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MATCH_BASES),
        description="Installed voices a reference voice may be spoken by (voice ids or fnmatch patterns, JSON list "
        "in the env var), measured in this order in the background after start.",
    )
    match_bases_quiet: Annotated[float, Field(ge=0.0)] = Field(
        10.0, description="Seconds with no request in flight before the background measurement loads a base "
        "voice's model (a busy server's short gaps never load one for it).",
    )
    reference_cache_entries: Annotated[int, Field(ge=1)] = Field(
        64, description="References used per request (not registered) kept in DATA_DIR/cache/references."
    )
    reference_cache_mb: Annotated[int, Field(ge=1)] = Field(
        64, description="Megabytes the reference cache may hold before least recently used entries go."
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
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Origins whose browser pages may call the HTTP APIs (JSON list in the env var); * allows any.",
    )
    api_key: SecretStr | None = Field(
        None, description="When set, every dialect requires it (Bearer header or api_key query; StackFlow: auth step)."
    )
    allow_remote_control: bool = Field(
        False, description="Let GPT-SoVITS's /control?command=exit stop the server (never from a cross-site request)."
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
    word_timings: bool = Field(
        True, description="Load Piper voices patched to report when each word is spoken (captions, "
        "/dev/captioned_speech, SSE word events); off saves ~0.5 s per Piper voice load, and Piper words are "
        "then estimated."
    )
    memory_budget_mb: Annotated[int, Field(ge=0)] = Field(
        2048, description="Unload the least recently used idle engine sessions past this much loaded-model memory "
        "(0 = no limit; the default and preloaded voices stay)."
    )
    session_idle_unload_s: Annotated[float, Field(ge=0)] = Field(
        600.0, description="Unload an engine session no request has used for this many seconds, when the server is "
        "idle, so a burst across many voices does not keep their memory (0 = never; the voices preloaded at "
        "start stay: the default voice, unless --no-warmup)."
    )
    role_dir: Path | None = Field(
        None, description="Flash-TTS role folder (<name>/<*.wav> + reference_text.txt) imported as voices at start."
    )
    flash_builtin_roles: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_FLASH_ROLES),
        description="Flash-TTS's built-in roles female and male (Spark-TTS's fixed voices) mapped to installed "
        "voice ids (JSON object).",
    )
    flash_sample_rate: Annotated[int, Field(ge=8000, le=48000)] = Field(
        16000, description="Hertz of Flash-TTS responses (16000 as Spark-TTS; 24000 for Orpheus/Mega clients)."
    )
    clone_upstream: str | None = Field(
        None, description="Upstream (a NAME of --upstream) that voices registered from reference audio are also "
        "cloned on; the local matched voice stays as the fallback (docs/upstreams.md)."
    )
    stackflow_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        10001, json_schema_extra=_TCP,
        description="TCP port of the M5Stack StackFlow protocol (llm-sys, melotts/tts units); 0 turns it off."
    )
    stackflow_max_tasks: Annotated[int, Field(ge=1, le=1000)] = Field(
        4, json_schema_extra=_TCP,
        description="StackFlow TTS tasks set up at once, over every client (past it: -21 task full)."
    )
    stackflow_audio_sink: str = Field(
        "auto", pattern="^(auto|device|file|none)$", json_schema_extra=_TCP,
        description="Where StackFlow sys.* formats play: auto (sound card if any), device, file "
        "(WAVs in DATA_DIR/outputs/stackflow), none.",
    )
    wyoming_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        10200, json_schema_extra=_TCP,
        description="TCP port of the Wyoming protocol (Home Assistant text-to-speech); 0 turns it off. "
        "Wyoming has no authentication: with --api-key it opens only with --wyoming-allow-unauthenticated."
    )
    wyoming_zeroconf: bool = Field(
        False, json_schema_extra=_TCP,
        description="Advertise the Wyoming port over mDNS (_wyoming._tcp.local.) so Home Assistant "
        "discovers it (needs host networking in a container)."
    )
    wyoming_allow_unauthenticated: bool = Field(
        False, json_schema_extra=_TCP,
        description="Open the Wyoming port although --api-key is set (Wyoming cannot carry a key)."
    )
    upstreams: list[str | dict[str, Any]] = Field(
        default_factory=list, json_schema_extra={"flag": "--upstream"},
        description="An upstream TTS server used as an engine, NAME=KIND+URL (repeat the flag; a JSON list of such "
        "strings or objects in the env var), e.g. gpu=openai+http://host:8880/v1?timeout=20&concurrency=2; kinds: "
        "openai, gptsovits, wyoming, cosyvoice, flashtts, alltalk; its voices are NAME:voice (docs/upstreams.md).",
    )
    upstream_fallback: bool = Field(
        False, description="When an upstream fails before any audio, speak with the best local voice of the "
        "upstream voice's language (else the default voice) instead of failing."
    )
    upstream_refresh: Annotated[float, Field(ge=1.0, le=86400.0)] = Field(
        60.0, description="Seconds between listings of each upstream's voices (every 5 s while one is down)."
    )
    ray_address: str | None = Field(
        None, description="Cluster mode: deploy onto the running Ray cluster at HOST:PORT (its GCS address) and "
        "serve through Ray Serve's proxy on --port; needs the voxgate[ray] extra (docs/cluster.md)."
    )
    ray_synthesizer: dict[str, Any] = Field(
        default_factory=dict, description="Cluster mode: Synthesizer deployment options (JSON object): num_cpus, "
        "min_replicas, max_replicas, max_ongoing_requests, max_queued_requests, resources (docs/cluster.md)."
    )
    ray_gateway: dict[str, Any] = Field(
        default_factory=dict, description="Cluster mode: Gateway deployment options (JSON object): num_cpus, "
        "replicas, resources (docs/cluster.md)."
    )
    warmup: bool = Field(True, description="Load and warm the default voice on every worker at start.")
    log_level: str = Field("info", description="Logging level: debug, info, warning, error.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @field_validator("flash_builtin_roles")
    @classmethod
    def _two_roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_FLASH_ROLES))
        if unknown:
            raise ValueError(f"the built-in roles are female and male; got {', '.join(unknown)}")
        return {**DEFAULT_FLASH_ROLES, **value}

    @field_validator("openai_models")
    @classmethod
    def _some_models(cls, value: list[str]) -> list[str]:
        names = list(dict.fromkeys(name.strip() for name in value if name.strip()))
        if not names:
            raise ValueError("at least one model name is needed")
        return names

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, value: list[str]) -> list[str]:
        known = set(KNOWN_ENGINES)
        unknown = [name for name in value if name not in known]
        if unknown or "piper" not in value:
            raise ValueError(f"engines must include piper and may add {sorted(known - {'piper'})}; got {value}")
        return list(dict.fromkeys(value))

    @field_validator("upstreams")
    @classmethod
    def _upstreams_parse(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from voxgate.engines.remote.config import parse_upstreams

        parse_upstreams(value)  # an UpstreamConfigError (a ValueError) says which entry and why, in one line
        return value

    @property
    def upstream_configs(self) -> list[Any]:
        """The upstreams, parsed (engines/remote/config.py UpstreamConfig)."""
        from voxgate.engines.remote.config import parse_upstreams

        return parse_upstreams(self.upstreams)

    @model_validator(mode="after")
    def _clone_upstream_is_configured(self) -> Settings:
        if self.clone_upstream is not None:
            names = [config.name for config in self.upstream_configs]
            if self.clone_upstream not in names:
                raise ValueError(f"clone_upstream {self.clone_upstream!r} is no --upstream NAME (configured: "
                                 f"{', '.join(names) or 'none'})")
        return self

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

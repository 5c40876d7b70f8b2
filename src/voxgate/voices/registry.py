"""Voice catalogue: every engine's voices, registered voices, and aliases (OpenAI and per-dialect names)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping

from voxgate.engines.base import Capabilities, Engine, VoiceInfo
from voxgate.errors import VoiceNotFound
from voxgate.voices.store import StoredVoice, VoiceStore

_LOG = logging.getLogger(__name__)


def matched_info(stored: StoredVoice, base: VoiceInfo) -> VoiceInfo:
    """A registered voice spoken by an installed one: the base's model, moved toward the reference."""
    extra = {**base.extra, "base_voice": base.id, "shift": stored.features.get("shift"), "registered": True}
    return dataclasses.replace(base, id=stored.id, name=stored.name, language=stored.language or base.language,
                               extra=extra, session_key=base.load_key)


def cloned_info(stored: StoredVoice, engine: Engine, reference: str) -> VoiceInfo:
    """A registered voice spoken by an engine that clones from reference audio."""
    return VoiceInfo(id=stored.id, name=stored.name, engine=engine.name, language=stored.language or "und",
                     sample_rate=stored.sample_rate,
                     extra={"reference_audio": reference, "transcript": stored.transcript, "registered": True})


class VoiceRegistry:
    """Resolves a voice id, alias or name to exactly one voice, or says which it lacks."""

    def __init__(self, engines: Mapping[str, Engine], aliases: Mapping[str, str], default_voice: str,
                 store: VoiceStore | None = None) -> None:
        self._engines = dict(engines)
        self._aliases = {k.lower(): v for k, v in aliases.items()}
        self.default_voice = default_voice
        self.store = store
        self._lock = threading.Lock()
        self._installed: dict[str, VoiceInfo] = {}
        self._voices: dict[str, VoiceInfo] = {}
        self._stale: dict[str, str] = {}  # registered voice id → why it cannot be spoken now
        self.refresh()

    def refresh(self) -> int:
        """Rescan engines and the store (blocking: reads files); returns how many voices there are."""
        installed: dict[str, VoiceInfo] = {}
        for engine in self._engines.values():
            for voice in engine.voices():
                installed.setdefault(voice.id, voice)
        with self._lock:
            self._installed = installed
        return self.refresh_registered()

    def refresh_registered(self) -> int:
        """Re-read the registered voices only (after one was added or removed)."""
        voices, stale = dict(self._installed), {}
        cloner = next((e for e in self._engines.values() if e.capabilities().reference_voices), None)
        for stored in self.store.list() if self.store else []:
            if stored.id in voices:
                _LOG.warning("registered voice %r is shadowed by an installed voice of the same id", stored.id)
                continue
            if cloner is not None and self.store is not None:
                voices[stored.id] = cloned_info(stored, cloner, str(self.store.audio_path(stored.audio_sha256)))
                continue
            base = voices.get(str(stored.features.get("base_voice")))
            if base is None or base.id not in self._installed:
                stale[stored.id] = f"its base voice {stored.features.get('base_voice')!r} is not installed"
                continue
            voices[stored.id] = matched_info(stored, base)
        with self._lock:
            self._voices, self._stale = voices, stale
        return len(voices)

    def engine_report(self) -> dict[str, dict[str, object]]:
        """Per engine: how many voices it has installed and which languages they speak."""
        with self._lock:
            installed = list(self._installed.values())
        report: dict[str, dict[str, object]] = {}
        for name in self._engines:
            mine = [v for v in installed if v.engine == name]
            report[name] = {"voices": len(mine), "languages": sorted({v.language for v in mine})}
        return report

    def capabilities(self, voice: VoiceInfo) -> Capabilities:
        """What the engine behind `voice` can do."""
        return self._engines[voice.engine].capabilities()

    def list(self) -> list[VoiceInfo]:
        """Every voice that can be spoken now, sorted by id."""
        with self._lock:
            return sorted(self._voices.values(), key=lambda v: v.id)

    def installed(self) -> list[VoiceInfo]:
        """The engines' own voices."""
        with self._lock:
            return sorted(self._installed.values(), key=lambda v: v.id)

    def stale(self) -> dict[str, str]:
        """Registered voices that cannot be spoken now, and why."""
        with self._lock:
            return dict(self._stale)

    def is_installed(self, voice_id: str) -> bool:
        """True for an engine's own voice (not a registered one)."""
        with self._lock:
            return voice_id in self._installed

    def aliases(self) -> dict[str, str]:
        """The alias table (lower-case alias → voice id)."""
        with self._lock:
            return dict(self._aliases)

    def set_alias(self, alias: str, voice_id: str) -> None:
        """Point `alias` at a voice."""
        target = self.resolve(voice_id)
        with self._lock:
            self._aliases[alias.lower()] = target.id

    def resolve(self, name: str | None) -> VoiceInfo:
        """Find the voice for an id, alias or file name; None means the default voice."""
        key = (name or self.default_voice).strip()
        with self._lock:
            voices, aliases, stale = self._voices, self._aliases, self._stale
        for candidate in (key, key.removesuffix(".onnx"), aliases.get(key.lower(), "")):
            if candidate in voices:
                return voices[candidate]
        folded = {vid.lower(): v for vid, v in voices.items()}
        if key.lower().removesuffix(".onnx") in folded:
            return folded[key.lower().removesuffix(".onnx")]
        for engine in self._engines.values():  # voices an engine builds from a spec (blends, variants)
            build = getattr(engine, "voice_for", None)
            built = build(key) if build is not None else None
            if built is not None:
                return built
        if key in stale:
            raise VoiceNotFound(f"voice {key!r} cannot be spoken: {stale[key]}", param="voice")
        raise VoiceNotFound(
            f"voice {key!r} is not installed; available: {', '.join(sorted(voices)[:20]) or 'none'}",
            param="voice",
        )

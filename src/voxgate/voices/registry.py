"""Voice catalogue: every engine's voices, plus aliases (OpenAI names and per-dialect names)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from voxgate.engines.base import Engine, VoiceInfo
from voxgate.errors import VoiceNotFound


class VoiceRegistry:
    """Resolves a voice id, alias or name to exactly one installed voice, or says which it lacks."""

    def __init__(self, engines: Mapping[str, Engine], aliases: Mapping[str, str], default_voice: str) -> None:
        self._engines = dict(engines)
        self._aliases = {k.lower(): v for k, v in aliases.items()}
        self.default_voice = default_voice
        self._lock = threading.Lock()
        self._voices: dict[str, VoiceInfo] = {}
        self.refresh()

    def refresh(self) -> int:
        """Rescan every engine's voices (blocking: reads files); returns how many there are."""
        found: dict[str, VoiceInfo] = {}
        for engine in self._engines.values():
            for voice in engine.voices():
                found.setdefault(voice.id, voice)
        with self._lock:
            self._voices = found
        return len(found)

    def list(self) -> list[VoiceInfo]:
        """Every installed voice, sorted by id."""
        with self._lock:
            return sorted(self._voices.values(), key=lambda v: v.id)

    def aliases(self) -> dict[str, str]:
        """The alias table (lower-case alias → voice id)."""
        with self._lock:
            return dict(self._aliases)

    def set_alias(self, alias: str, voice_id: str) -> None:
        """Point `alias` at an installed voice."""
        target = self.resolve(voice_id)
        with self._lock:
            self._aliases[alias.lower()] = target.id

    def resolve(self, name: str | None) -> VoiceInfo:
        """Find the voice for an id, alias or file name; None means the default voice."""
        key = (name or self.default_voice).strip()
        with self._lock:
            voices, aliases = self._voices, self._aliases
        for candidate in (key, key.removesuffix(".onnx"), aliases.get(key.lower(), "")):
            if candidate in voices:
                return voices[candidate]
        folded = {vid.lower(): v for vid, v in voices.items()}
        if key.lower().removesuffix(".onnx") in folded:
            return folded[key.lower().removesuffix(".onnx")]
        raise VoiceNotFound(
            f"voice {key!r} is not installed; available: {', '.join(sorted(voices)[:20]) or 'none'}",
            param="voice",
        )

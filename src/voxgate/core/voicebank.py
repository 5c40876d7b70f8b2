"""VoiceBank: registering voices from reference audio, the one place every dialect's "add a voice" ends up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from voxgate.audio.voiceshift import VoiceProfile, analyse
from voxgate.core.service import SynthesisService
from voxgate.core.types import Segmentation, SynthesisRequest
from voxgate.engines.base import VoiceInfo
from voxgate.errors import InvalidInput, VoiceExists
from voxgate.voices.embedding import SpeakerEncoder
from voxgate.voices.matching import PROFILE_TEXT, Candidate, choose, features, same_language
from voxgate.voices.references import ReferenceAudio, ReferencePolicy, load_reference
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import StoredVoice, VoiceStore, make_id

_LOG = logging.getLogger(__name__)
MAX_CANDIDATES = 32  # installed voices measured per language; more would make the first registration slow


class VoiceBank:
    """Adds, removes and re-matches registered voices; measurements are made once and stored."""

    def __init__(self, registry: VoiceRegistry, store: VoiceStore, service: SynthesisService,
                 policy: ReferencePolicy, strength: float = 1.0, encoder: SpeakerEncoder | None = None) -> None:
        self.registry = registry
        self.store = store
        self.policy = policy
        self.strength = strength
        self._service = service
        self._encoder = encoder or SpeakerEncoder()
        self._candidates_lock = asyncio.Lock()

    async def load_reference(self, value: str | bytes) -> ReferenceAudio:
        """Reference audio from an upload, base64, a server-side path or a URL, checked by the policy."""
        return await load_reference(value, self.policy)

    def _measure(self, samples: np.ndarray, rate: int) -> tuple[np.ndarray, VoiceProfile]:
        return self._encoder.embed(samples, rate), analyse(samples, rate)

    async def register(
        self, name: str, reference: ReferenceAudio, *, transcript: str | None = None,
        language: str | None = None, meta: Mapping[str, Any] | None = None, replace: bool = False,
    ) -> tuple[VoiceInfo, bool]:
        """Register (or find) a voice; returns it and whether that id already existed."""
        voice_id = make_id(name)
        if self.registry.is_installed(voice_id):
            raise VoiceExists(f"{voice_id!r} is an installed voice; choose another name", param="name")
        existing = self.store.get(voice_id)
        if existing is not None and not replace:
            return self.registry.resolve(voice_id), True
        started = time.monotonic()
        embedding, profile = await asyncio.to_thread(self._measure, reference.samples, reference.rate)
        match = choose(embedding, profile, await self._candidates(language), language, self.strength)
        base = self.registry.resolve(match.base_voice)
        stored = StoredVoice(
            id=voice_id, name=name.strip(), language=language or base.language, transcript=transcript,
            audio_sha256="", sample_rate=reference.rate, duration=round(reference.duration, 3),
            features=features(embedding, profile, match), meta=dict(meta or {}),
        )
        _, existed = await asyncio.to_thread(self.store.add, stored, reference.samples, replace=replace)
        await asyncio.to_thread(self.registry.refresh_registered)
        _LOG.info("registered voice %s on %s (similarity %.2f) in %.2f s", voice_id, base.id, match.similarity,
                  time.monotonic() - started)
        return self.registry.resolve(voice_id), existed

    async def remove(self, voice_id: str) -> bool:
        """Delete a registered voice; installed voices are files and cannot be removed here."""
        if self.registry.is_installed(voice_id):
            raise InvalidInput(f"{voice_id!r} is an installed voice; remove its files to delete it", param="voice")
        removed = await asyncio.to_thread(self.store.remove, voice_id)
        if removed:
            await asyncio.to_thread(self.registry.refresh_registered)
        return removed

    async def rematch(self) -> list[str]:
        """Match again every registered voice whose base voice is gone; returns their ids."""
        done = []
        for voice_id in self.registry.stale():
            stored = self.store.get(voice_id)
            if stored is None or "embedding" not in stored.features:
                continue
            embedding = np.asarray(stored.features["embedding"], np.float32)
            profile = VoiceProfile.from_dict(stored.features["profile"])
            match = choose(embedding, profile, await self._candidates(stored.language), stored.language,
                           self.strength)
            await asyncio.to_thread(self.store.update_features, voice_id, features(embedding, profile, match))
            done.append(voice_id)
        if done:
            await asyncio.to_thread(self.registry.refresh_registered)
        return done

    async def _candidates(self, language: str | None) -> list[Candidate]:
        """Installed voices measured on a fixed text (once, then cached in the store)."""
        installed = [v for v in self.registry.installed() if self.registry.capabilities(v).match_base]
        # A reference of unknown language is taken to speak the default voice's language: measuring
        # every installed voice (Kokoro's Japanese ones too) would cost a synthesis each, per data folder.
        wanted = language or self.registry.resolve(None).language
        speaking = [v for v in installed if same_language(v.language, wanted)] or installed
        async with self._candidates_lock:
            return [await self._candidate(voice) for voice in speaking[:MAX_CANDIDATES]]

    async def _candidate(self, voice: VoiceInfo) -> Candidate:
        stamp = "builtin"
        if voice.model_path is not None and voice.model_path.exists():
            stat = voice.model_path.stat()
            stamp = f"{stat.st_size}-{int(stat.st_mtime)}"
        key = f"candidate:{voice.id}:{stamp}"
        cached = await asyncio.to_thread(self.store.get_value, key)
        if cached is not None:
            return Candidate.from_dict(cached)
        pcm = await self._service.synthesize(
            SynthesisRequest(text=PROFILE_TEXT, voice=voice.id, segmentation=Segmentation.SENTENCE))
        embedding, profile = await asyncio.to_thread(self._measure, pcm.samples, pcm.rate)
        candidate = Candidate(voice.id, voice.language, embedding, profile)
        await asyncio.to_thread(self.store.set_value, key, candidate.to_dict())
        return candidate

    def describe(self, voice: VoiceInfo) -> dict[str, Any]:
        """The public description of a voice (the native API's voice object)."""
        aliases = sorted(a for a, target in self.registry.aliases().items() if target == voice.id)
        body: dict[str, Any] = {
            "id": voice.id, "object": "voice", "name": voice.name, "engine": voice.engine,
            "language": voice.language, "sample_rate": voice.sample_rate, "speaker": voice.speaker,
            "speakers": list(voice.speakers), "quality": voice.quality, "aliases": aliases,
            "kind": "registered" if voice.extra.get("registered") else "installed",
        }
        stored = self.store.get(voice.id) if body["kind"] == "registered" else None
        if stored is not None:
            body.update({
                "transcript": stored.transcript, "duration": stored.duration, "created": stored.created,
                "base_voice": stored.features.get("base_voice"), "similarity": stored.features.get("similarity"),
                "reference_sample_rate": stored.sample_rate,
            })
        return body

"""VoiceBank: registering voices from reference audio, the one place every dialect's "add a voice" ends up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np

from voxgate.audio.voiceshift import Shift, VoiceProfile, analyse
from voxgate.core.bases import BaseVoices
from voxgate.core.metrics import Metrics
from voxgate.core.service import SynthesisService
from voxgate.engines.base import VoiceInfo
from voxgate.errors import InvalidInput, VoiceExists
from voxgate.voices.embedding import SpeakerEncoder
from voxgate.voices.matching import Candidate, Match, choose, choose_variants, features, primary_language
from voxgate.voices.refcache import ReferenceCache
from voxgate.voices.references import ReferenceAudio, ReferencePolicy, load_reference
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import StoredVoice, VoiceStore, make_id, wav_bytes

_LOG = logging.getLogger(__name__)
ADHOC_PREFIX = "ref:"  # ids of cached per-request references (':' is no registered-id character)


def adhoc_id(sha: str) -> str:
    """The (unlisted) voice id of a cached reference."""
    return ADHOC_PREFIX + sha[:16]


class VoiceBank:
    """Adds, removes and re-matches registered voices, and serves per-request references from a cache;
    measurements are made once and stored, and base voices are never measured on a request."""

    def __init__(self, registry: VoiceRegistry, store: VoiceStore, service: SynthesisService,
                 policy: ReferencePolicy, strength: float = 1.0, encoder: SpeakerEncoder | None = None,
                 bases: BaseVoices | None = None, cache: ReferenceCache | None = None,
                 metrics: Metrics | None = None) -> None:
        self.registry = registry
        self.store = store
        self.policy = policy
        self.strength = strength
        self._service = service
        self._encoder = encoder or SpeakerEncoder()
        self.bases = bases or BaseVoices(registry, store, service.backend, self._encoder,
                                         busy=lambda: service.active > 0, calibrate=service.gain)
        self.cache = cache or ReferenceCache(store.root / "cache" / "references", within=store.root)
        self._metrics = metrics or service.metrics
        self._adhoc_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # sha → (lock, [users]): only while used
        # engines/remote/clone.py UpstreamCloner, set by the composition root when upstreams are configured
        self.cloner: Any = None

    async def load_reference(self, value: str | bytes) -> ReferenceAudio:
        """Reference audio from an upload, base64, a server-side path or a URL, checked by the policy."""
        return await load_reference(value, self.policy)

    def _measure(self, samples: np.ndarray, rate: int) -> tuple[np.ndarray, VoiceProfile]:
        return self._encoder.embed(samples, rate), analyse(samples, rate)

    async def _candidates(self, language: str | None) -> list[Candidate]:
        """What is measured now. Without a background task (the command line), the missing ones of the
        reference's language (else the default voice's) and English are measured first; a server never
        waits for them (see core/bases.py)."""
        if not self.bases.running and not self.bases.done.is_set():
            wanted = primary_language(language or self.registry.resolve(None).language)
            await self.bases.measure_missing(languages={wanted, "en"})
        return self.bases.measured()

    async def _match(self, embedding: np.ndarray, profile: VoiceProfile,
                     language: str | None) -> dict[str, Any]:
        """The features of a reference: its measurements, base, shift and per-language variants."""
        inline = not self.bases.running and not self.bases.done.is_set()  # the command line: measured now
        candidates = await self._candidates(language)
        provisional = not inline and not self.bases.complete()
        if candidates:
            match = choose(embedding, profile, candidates, language, self.strength)
            variants = choose_variants(embedding, profile, candidates, match, self.strength)
        else:  # nothing measured yet: the language's default voice, unmoved until it is measured
            match, variants = Match(self.bases.fallback(language).id, 0.0, Shift.identity(), 0.0), {}
        found = features(embedding, profile, match, variants, (c.voice_id for c in candidates))
        found["provisional"] = provisional
        return found

    def _current(self, found: dict[str, Any]) -> bool:
        """Whether a stored match was made against the candidates measured now."""
        return sorted(found.get("bases", ())) == sorted(c.voice_id for c in self.bases.measured())

    async def register(
        self, name: str, reference: ReferenceAudio, *, transcript: str | None = None,
        language: str | None = None, meta: Mapping[str, Any] | None = None, replace: bool = False,
        upstream: str | None = None,
    ) -> tuple[VoiceInfo, bool]:
        """Register (or find) a voice; returns it and whether that id already existed. With an upstream to
        clone on (`upstream`, else --clone-upstream) the reference is cloned there too (engines/remote/clone.py)."""
        voice_id = make_id(name)
        if self.registry.is_installed(voice_id):
            raise VoiceExists(f"{voice_id!r} is an installed voice; choose another name", param="name")
        if upstream is not None and self.cloner is None:
            raise InvalidInput("no upstream is configured to clone on (see --upstream)", param="upstream")
        clone_on = self.cloner.check(upstream) if self.cloner is not None else None
        existing = self.store.get(voice_id)
        if existing is not None and not replace:
            return self.registry.resolve(voice_id), True
        started = time.monotonic()
        embedding, profile = await asyncio.to_thread(self._measure, reference.samples, reference.rate)
        found = await self._match(embedding, profile, language)
        base = self.registry.resolve(found["base_voice"])
        cloned = None
        if clone_on is not None:  # the local match above stays as the fallback
            wav = await asyncio.to_thread(wav_bytes, reference.samples, reference.rate)
            cloned = await self.cloner(voice_id, wav, transcript, language, clone_on)
        stored = StoredVoice(
            id=voice_id, name=name.strip(), language=language or base.language, transcript=transcript,
            audio_sha256="", sample_rate=reference.rate, duration=round(reference.duration, 3),
            features=found, meta={**(meta or {}), **(cloned or {})},
        )
        _, existed = await asyncio.to_thread(self.store.add, stored, reference.samples, replace=replace)
        await asyncio.to_thread(self.registry.refresh_registered)  # (the cloner had the upstream listed again)
        _LOG.info("registered voice %s on %s (similarity %.2f%s) in %.2f s", voice_id, base.id,
                  found["similarity"], ", provisional" if found["provisional"] else "", time.monotonic() - started)
        return self.registry.resolve(voice_id), existed

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, sha: str) -> AsyncIterator[None]:
        """A lock per reference, dropped when its last user is done (one per distinct reference ever grew
        without bound)."""
        lock, users = self._adhoc_locks.setdefault(sha, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._adhoc_locks[sha]

    async def adhoc(self, reference: ReferenceAudio, *, transcript: str | None = None,
                    language: str | None = None) -> str:
        """The voice id of a reference used for one request: from the cache (measured and matched once,
        kept across restarts), never a listed voice."""
        sha = await asyncio.to_thread(reference.sha256)
        voice_id = adhoc_id(sha)
        async with self._one_at_a_time(sha):  # one reference, one measurement
            started = time.monotonic()
            entry = await asyncio.to_thread(self.cache.get, sha)
            if entry is not None and isinstance(entry.get("features"), dict):
                self._metrics.reference_cache.labels("hit").inc()
                found = entry["features"]
                if not self._current(found):  # fuller base set since: match again (no synthesis)
                    embedding = np.asarray(found["embedding"], np.float32)
                    profile = VoiceProfile.from_dict(found["profile"])
                    found = await self._match(embedding, profile, entry.get("language"))
                    entry["features"] = found
                    await asyncio.to_thread(self.cache.update, sha, entry)
                    _LOG.info("reference %s matched again on %s", sha[:12], found["base_voice"])
                elif self.registry.transient(voice_id) is not None:
                    return voice_id
            else:
                self._metrics.reference_cache.labels("miss").inc()
                embedding, profile = await asyncio.to_thread(self._measure, reference.samples, reference.rate)
                found = await self._match(embedding, profile, language)
                entry = {"language": language, "transcript": transcript, "sample_rate": reference.rate,
                         "duration": round(reference.duration, 3), "features": found, "created": time.time()}
                evicted = await asyncio.to_thread(self.cache.put, sha, reference.samples, reference.rate, entry)
                for gone in evicted:
                    self.registry.drop_transient(adhoc_id(gone))
                _LOG.info("reference %s cached, on %s (similarity %.2f%s) in %.2f s", sha[:12],
                          found["base_voice"], found["similarity"], ", provisional" if found["provisional"] else "",
                          time.monotonic() - started)
            self.registry.add_transient(voice_id, f"reference {sha[:12]}", entry.get("language"), found,
                                        int(entry.get("sample_rate") or reference.rate),
                                        str(self.cache.audio_path(sha)))
        return voice_id

    async def remove(self, voice_id: str) -> bool:
        """Delete a registered voice; installed voices are files and cannot be removed here."""
        if self.registry.is_installed(voice_id):
            raise InvalidInput(f"{voice_id!r} is an installed voice; remove its files to delete it", param="voice")
        removed = await asyncio.to_thread(self.store.remove, voice_id)
        if removed:
            await asyncio.to_thread(self.registry.refresh_registered)
        return removed

    async def rematch(self, provisional_only: bool = False) -> list[str]:
        """Match again every registered voice whose base voice is gone, and those matched before the
        base voices were measured (or before per-language variants existed); returns their ids."""
        done = []
        stale = set(self.registry.stale())
        for stored in await asyncio.to_thread(self.store.list):
            found = stored.features
            if "embedding" not in found:
                continue
            outdated = found.get("provisional") or "bases" not in found
            if stored.id not in stale and not (outdated and self.bases.done.is_set()):
                continue
            embedding = np.asarray(found["embedding"], np.float32)
            profile = VoiceProfile.from_dict(found["profile"])
            new = await self._match(embedding, profile, stored.language)
            if stored.id not in stale and not found.get("provisional") and "shift" in found:
                # A settled voice keeps its base and shift (it should not change under its user); it
                # only gains the per-language variants.
                new.update({k: found[k] for k in ("base_voice", "similarity", "shift", "strength") if k in found})
                new["variants"] = {k: v for k, v in new["variants"].items()
                                   if v["base_voice"] != found.get("base_voice")}
            await asyncio.to_thread(self.store.update_features, stored.id, new)
            done.append(stored.id)
        if done:
            await asyncio.to_thread(self.registry.refresh_registered)
        return done

    async def after_bases_measured(self) -> None:
        """Once the background measurement is done: settle provisional registered voices."""
        await self.bases.done.wait()
        matched = await self.rematch()
        if matched:
            _LOG.info("matched %d registered voice(s) again now that the base voices are measured", len(matched))

    def describe(self, voice: VoiceInfo) -> dict[str, Any]:
        """The public description of a voice (the native API's voice object)."""
        aliases = sorted(a for a, target in self.registry.aliases().items() if target == voice.id)
        body: dict[str, Any] = {
            "id": voice.id, "object": "voice", "name": voice.name, "engine": voice.engine,
            "language": voice.language, "sample_rate": voice.sample_rate, "speaker": voice.speaker,
            "speakers": list(voice.speakers), "quality": voice.quality, "aliases": aliases,
            "kind": "registered" if voice.registered else "installed",
        }
        stored = self.store.get(voice.id) if body["kind"] == "registered" else None
        if stored is not None:
            body.update({
                "transcript": stored.transcript, "duration": stored.duration, "created": stored.created,
                "base_voice": stored.features.get("base_voice"), "similarity": stored.features.get("similarity"),
                "reference_sample_rate": stored.sample_rate,
            })
            if stored.meta.get("upstream_voice"):  # cloned on an upstream (engines/remote/clone.py)
                body["upstream_voice"] = f"{stored.meta.get('upstream')}:{stored.meta['upstream_voice']}"
        return body


# ReferenceAudio is re-exported: dialects (which may not import voices/) type the references they load with it.
__all__ = ["ADHOC_PREFIX", "ReferenceAudio", "VoiceBank", "adhoc_id"]

"""Voice catalogue: every engine's voices, registered voices, and aliases (OpenAI and per-dialect names)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from voxgate.engines.base import Capabilities, Engine, Reference, VoiceInfo
from voxgate.errors import VoiceNotFound
from voxgate.voices.store import StoredVoice
from voxgate.voices.store_base import Change, Store

_LOG = logging.getLogger(__name__)


VARIANT_MARK = "#"  # `voice#en`: a reference voice moved onto a base of another language ('#' is no id character)


def _speaks(base: VoiceInfo) -> tuple[str, ...]:
    return (base.language, *(str(tag) for tag in base.languages))


def matched_voice(voice_id: str, name: str, language: str | None, base: VoiceInfo, shift: Any,
                  registered: bool = False, transient: bool = False) -> VoiceInfo:
    """A reference voice spoken by an installed one: the base's model, moved toward the reference. It
    speaks what its base speaks (`speaks`), whatever language the reference was in."""
    reference = Reference(base_voice=base.id, shift=shift, speaks=_speaks(base), registered=registered,
                          transient=transient)
    return dataclasses.replace(base, id=voice_id, name=name, language=language or base.language,
                               reference=reference, session_key=base.load_key)


def matched_info(stored: StoredVoice, base: VoiceInfo) -> VoiceInfo:
    """A registered voice spoken by an installed one: the base's model, moved toward the reference."""
    return matched_voice(stored.id, stored.name, stored.language, base, stored.features.get("shift"),
                         registered=True)


def cloned_info(stored: StoredVoice, engine: Engine, reference: str) -> VoiceInfo:
    """A registered voice spoken by an engine that clones from reference audio."""
    return VoiceInfo(id=stored.id, name=stored.name, engine=engine.name, language=stored.language or "und",
                     sample_rate=stored.sample_rate,
                     reference=Reference(audio=reference, transcript=stored.transcript, registered=True))


def upstream_info(stored: StoredVoice, remote: VoiceInfo, fallback: VoiceInfo | None) -> VoiceInfo:
    """A registered voice cloned on an upstream (engines/remote/clone.py): spoken by the upstream's voice
    `remote`; `fallback` (its local matched voice) is what speaks when the upstream fails."""
    return dataclasses.replace(remote, id=stored.id, name=stored.name, language=stored.language or remote.language,
                               reference=Reference(registered=True, transcript=stored.transcript),
                               fallback=fallback)


def _remote_id(meta: Mapping[str, object]) -> str:
    """`NAME:voice` of the upstream voice a stored voice was cloned as ("" if none): the meta keys of
    engines/remote/clone.py."""
    name, voice = meta.get("upstream"), meta.get("upstream_voice")
    return f"{name}:{voice}" if name and voice else ""


class VoiceProvider(Protocol):
    """Voices that are no local engine's (an upstream server's): listed and resolvable like any voice, never
    routing candidates or match bases (they are not `installed()`), and never shadowing a local voice."""

    def voices(self) -> list[VoiceInfo]:
        """Its voices now (from memory: cheap, non-blocking)."""
        ...

    def capabilities(self, voice: VoiceInfo) -> Capabilities:
        """What the engine behind one of its voices can do."""
        ...

    def reload(self) -> None:
        """Fetch its voices again (called from refresh(); may block its thread for a bounded time)."""
        ...


class VoiceRegistry:
    """Resolves a voice id, alias or name to exactly one voice, or says which it lacks."""

    def __init__(self, engines: Mapping[str, Engine], aliases: Mapping[str, str], default_voice: str,
                 store: Store | None = None) -> None:
        self._engines = dict(engines)
        self._aliases = {k.lower(): v for k, v in aliases.items()}
        self.default_voice = default_voice
        self.store = store
        self._lock = threading.Lock()
        self._installed: dict[str, VoiceInfo] = {}
        self._voices: dict[str, VoiceInfo] = {}
        self._stale: dict[str, str] = {}  # registered voice id → why it cannot be spoken now
        self._transient: dict[str, VoiceInfo] = {}  # reference voices of the cache: resolvable, never listed
        self._variants: dict[str, dict[str, VoiceInfo]] = {}  # voice id → primary language → variant
        self._reload = threading.Lock()  # one re-read at a time: an older snapshot never lands after a newer one
        self._providers: dict[str, VoiceProvider] = {}  # engine name of their voices → provider
        self._provided: dict[str, VoiceInfo] = {}  # the providers' voices, by id
        # registered voices cloned on an upstream (engines/remote/clone.py) → (stored, local matched voice)
        self._cloned: dict[str, tuple[StoredVoice, VoiceInfo | None]] = {}
        watch = getattr(store, "watch", None)  # a shared store (--store postgresql://…) tells of other nodes' changes
        if watch is not None:
            watch(self._store_changed)  # first: the store then lists from memory
        self.refresh()

    def _store_changed(self, change: Change) -> None:
        """A change any process made to the shared store: only the voice it names is placed again."""
        if change.kind == "reload":
            self.refresh_registered()
        elif change.voice and change.kind != "lexicon":
            self.refresh_registered(change.voice)
            _LOG.info("registered voice %s %s in the store", change.voice, change.kind)

    def refresh(self) -> int:
        """Rescan engines, providers and the store (blocking: reads files, waits for providers' listings);
        returns how many voices there are."""
        for provider in list(self._providers.values()):
            provider.reload()
        self._provided = self._collect_provided()
        installed: dict[str, VoiceInfo] = {}
        for engine in self._engines.values():
            for voice in engine.voices():
                installed.setdefault(voice.id, voice)
        with self._lock:
            self._installed = installed
        return self.refresh_registered()

    def _cloner(self) -> Engine | None:
        return next((e for e in self._engines.values() if e.capabilities().reference_voices), None)

    def _variants_of(self, voice_id: str, name: str, features: Mapping[str, object],
                     registered: bool = False, transient: bool = False) -> dict[str, VoiceInfo]:
        """The per-language variants a match stored (bases that are gone are left out)."""
        found = {}
        variants = features.get("variants")
        for language, match in (variants.items() if isinstance(variants, Mapping) else ()):
            base = self._installed.get(str(match.get("base_voice"))) if isinstance(match, Mapping) else None
            if base is not None:
                found[str(language)] = matched_voice(f"{voice_id}{VARIANT_MARK}{language}", name, base.language,
                                                     base, match.get("shift"), registered, transient)
        return found

    def refresh_registered(self, voice_id: str | None = None) -> int:
        """Re-read the registered voices only (after one was added or removed), or only `voice_id`'s."""
        with self._reload:
            return self._refresh_registered() if voice_id is None else self._refresh_one(voice_id)

    def _refresh_one(self, voice_id: str) -> int:
        """Place one registered voice again (added, changed or removed), leaving every other as it is."""
        stored = self.store.get(voice_id) if self.store is not None else None
        voices: dict[str, VoiceInfo] = {}
        stale: dict[str, str] = {}
        variants: dict[str, dict[str, VoiceInfo]] = {}
        cloned: dict[str, tuple[StoredVoice, VoiceInfo | None]] = {}
        if stored is not None:
            self._place(stored, self._cloner(), voices, stale, variants, cloned)
        with self._lock:
            if voice_id in self._installed:
                return len(self._voices)
            self._voices = {k: v for k, v in self._voices.items() if k != voice_id} | voices
            if voice_id not in self._voices and voice_id in self._provided:
                self._voices[voice_id] = self._provided[voice_id]
            self._stale = {k: v for k, v in self._stale.items() if k != voice_id} | stale
            self._cloned = {k: v for k, v in self._cloned.items() if k != voice_id} | cloned
            if voice_id not in self._transient:
                self._variants = {k: v for k, v in self._variants.items() if k != voice_id} | variants
            return len(self._voices)

    def _place(self, stored: StoredVoice, cloner: Engine | None, voices: dict[str, VoiceInfo],
               stale: dict[str, str], variants: dict[str, dict[str, VoiceInfo]],
               cloned: dict[str, tuple[StoredVoice, VoiceInfo | None]]) -> None:
        """Put one registered voice where it belongs: spoken (by a cloner, an upstream or its base), or stale."""
        if cloner is not None and self.store is not None:
            voices[stored.id] = cloned_info(stored, cloner, str(self.store.audio_path(stored.audio_sha256)))
            return
        base = self._installed.get(str(stored.features.get("base_voice")))
        local = matched_info(stored, base) if base is not None else None
        if _remote_id(stored.meta):
            cloned[stored.id] = (stored, local)
            remote = self._provided.get(_remote_id(stored.meta))
            if remote is not None:  # cloned on an upstream that lists it now
                voices[stored.id] = upstream_info(stored, remote, local)
                return
        if local is None:
            stale[stored.id] = f"its base voice {stored.features.get('base_voice')!r} is not installed"
            return
        voices[stored.id] = local
        variants[stored.id] = self._variants_of(stored.id, stored.name, stored.features, registered=True)

    def _refresh_registered(self) -> int:
        voices, stale, variants = dict(self._installed), {}, {}
        cloned: dict[str, tuple[StoredVoice, VoiceInfo | None]] = {}
        cloner = self._cloner()
        for stored in self.store.list() if self.store else []:
            if stored.id in voices:
                _LOG.warning("registered voice %r is shadowed by an installed voice of the same id", stored.id)
                continue
            self._place(stored, cloner, voices, stale, variants, cloned)
        for voice_id, voice in self._provided.items():
            voices.setdefault(voice_id, voice)
        with self._lock:
            self._voices, self._stale, self._cloned = voices, stale, cloned
            self._variants = {**{k: v for k, v in self._variants.items() if k in self._transient}, **variants}
        return len(voices)

    def add_provider(self, engine: str, provider: VoiceProvider) -> None:
        """List `provider`'s voices (whose `engine` is `engine`) with every other voice from now on."""
        self._providers[engine] = provider
        self.refresh_provided()

    def _collect_provided(self) -> dict[str, VoiceInfo]:
        provided: dict[str, VoiceInfo] = {}
        for provider in list(self._providers.values()):
            for voice in provider.voices():
                provided.setdefault(voice.id, voice)
        return provided

    def refresh_provided(self) -> int:
        """Take the providers' current voices (cheap: no engine or store is read); returns how many voices
        there are."""
        provided = self._collect_provided()
        with self._lock:
            old = self._provided
            voices = {k: v for k, v in self._voices.items() if old.get(k) is not v}
            for voice_id, voice in provided.items():
                voices.setdefault(voice_id, voice)
            for voice_id, (stored, local) in self._cloned.items():  # speak through the upstream while it lists it
                remote = provided.get(_remote_id(stored.meta))
                spoken = upstream_info(stored, remote, local) if remote is not None else local
                if spoken is not None:
                    voices[voice_id] = spoken
                elif voices.pop(voice_id, None) is not None:
                    self._stale = {**self._stale, voice_id: "its upstream does not list it, and its base voice "
                                   f"{stored.features.get('base_voice')!r} is not installed"}
            self._voices, self._provided = voices, provided
        return len(voices)

    def add_transient(self, voice_id: str, name: str, language: str | None, features: Mapping[str, object],
                      sample_rate: int, reference: str | None = None) -> VoiceInfo:
        """Make a cached reference resolvable as `voice_id` (not listed anywhere); returns its voice."""
        cloner = self._cloner()
        if cloner is not None:
            voice = VoiceInfo(id=voice_id, name=name, engine=cloner.name, language=language or "und",
                              sample_rate=sample_rate, reference=Reference(audio=reference, transient=True))
            variants: dict[str, VoiceInfo] = {}
        else:
            with self._lock:
                base = self._installed.get(str(features.get("base_voice")))
            if base is None:
                raise VoiceNotFound(f"base voice {features.get('base_voice')!r} is not installed", param="voice")
            voice = matched_voice(voice_id, name, language, base, features.get("shift"), transient=True)
            variants = self._variants_of(voice_id, name, features, transient=True)
        with self._lock:
            self._transient[voice_id] = voice
            self._variants[voice_id] = variants
        return voice

    def drop_transient(self, voice_id: str) -> None:
        """Forget a cached reference's voice (evicted from the cache)."""
        with self._lock:
            self._transient.pop(voice_id, None)
            self._variants.pop(voice_id, None)

    def transient(self, voice_id: str) -> VoiceInfo | None:
        """A cached reference's voice, if it is resolvable now."""
        with self._lock:
            return self._transient.get(voice_id)

    def variant(self, voice: VoiceInfo, language: str) -> VoiceInfo | None:
        """The reference voice `voice` moved onto a native speaker of `language`, if it has one."""
        primary = language.replace("_", "-").split("-")[0].lower()
        with self._lock:
            return self._variants.get(voice.id, {}).get(primary)

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
        engine = self._engines.get(voice.engine)
        if engine is None and voice.engine in self._providers:
            return self._providers[voice.engine].capabilities(voice)
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

    def resolve_or_none(self, name: str | None) -> VoiceInfo | None:
        """The voice resolve() finds, or None where it would raise VoiceNotFound (resolve() then says why)."""
        try:
            return self.resolve(name)
        except VoiceNotFound:
            return None

    def resolve(self, name: str | None) -> VoiceInfo:
        """Find the voice for an id, alias or file name; None means the default voice."""
        key = (name or self.default_voice).strip()
        with self._lock:
            voices, aliases, stale = self._voices, self._aliases, self._stale
        for candidate in (key, key.removesuffix(".onnx"), aliases.get(key.lower(), "")):
            if candidate in voices:
                return voices[candidate]
        with self._lock:
            transient = self._transient.get(key)
        if transient is not None:
            return transient
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

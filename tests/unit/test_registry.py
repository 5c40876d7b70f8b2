"""The voice registry: installed and registered voices, aliases, stale bases, and cloning takeover."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.unit.fake_engine import FakeEngine
from voxgate.engines.base import Capabilities
from voxgate.errors import VoiceNotFound
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import StoredVoice, VoiceStore

SHIFT = {"f0_ratio": 1.2, "range_ratio": 1.0, "formant_ratio": 1.1, "eq_db": [0.0] * 48}


class ClonerEngine(FakeEngine):
    """A fake engine that says it can speak any reference audio."""

    name = "cloner"

    def capabilities(self) -> Capabilities:
        return Capabilities(languages=("en-US",), reference_voices=True)

    def voices(self) -> list:  # type: ignore[type-arg]
        return []


def registered(store: VoiceStore, vid: str, base: str) -> None:
    voice = StoredVoice(vid, vid, "en", "said", "", 16000, 2.0, {"base_voice": base, "shift": SHIFT})
    store.add(voice, np.full(32000, 0.1, np.float32))


def test_registered_voice_is_its_base_moved(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    registered(store, "mine", "a")
    registry = VoiceRegistry({"fake": FakeEngine()}, {"alloy": "mine"}, "a", store)
    voice = registry.resolve("mine")
    assert (voice.engine, voice.session_key, voice.sample_rate) == ("fake", "a", 16000)
    assert voice.reference is not None
    assert voice.reference.base_voice == "a" and voice.reference.shift == SHIFT and voice.reference.registered
    assert registry.resolve("ALLOY").id == "mine"  # aliases reach registered voices too
    assert [v.id for v in registry.installed()] == ["a", "b", "ja"]
    assert {v.id for v in registry.list()} == {"a", "b", "ja", "mine"}
    assert not registry.is_installed("mine") and registry.is_installed("a")
    store.close()


def test_voice_whose_base_is_gone_is_stale_not_silently_replaced(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    registered(store, "orphan", "vanished")
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a", store)
    assert registry.stale() == {"orphan": "its base voice 'vanished' is not installed"}
    with pytest.raises(VoiceNotFound, match="cannot be spoken"):
        registry.resolve("orphan")
    store.close()


def test_resolve_or_none_finds_what_resolve_finds_and_none_where_it_raises(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    registered(store, "mine", "a")
    registered(store, "orphan", "vanished")
    registry = VoiceRegistry({"fake": FakeEngine()}, {"alloy": "mine"}, "a", store)
    for name in (None, "a", "ALLOY", "mine", "b.onnx"):
        assert registry.resolve_or_none(name) == registry.resolve(name)
    assert registry.resolve_or_none(None) is not None and registry.resolve_or_none("ALLOY").id == "mine"
    for name in ("nobody", "orphan"):
        assert registry.resolve_or_none(name) is None
        with pytest.raises(VoiceNotFound):
            registry.resolve(name)
    store.close()


def test_an_engine_that_clones_takes_registered_voices_over(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    registered(store, "mine", "a")
    registry = VoiceRegistry({"fake": FakeEngine(), "cloner": ClonerEngine()}, {}, "a", store)
    voice = registry.resolve("mine")
    assert voice.reference is not None
    assert voice.engine == "cloner" and voice.reference.transcript == "said"
    assert Path(str(voice.reference.audio)) == store.audio_path(store.list()[0].audio_sha256)
    assert voice.reference.shift is None
    store.close()


def test_registered_id_never_shadows_an_installed_voice(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    registered(store, "a", "b")  # written directly to the store, bypassing the API's check
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a", store)
    assert registry.resolve("a").reference == replace(registry.installed()[0]).reference  # the installed one wins
    store.close()

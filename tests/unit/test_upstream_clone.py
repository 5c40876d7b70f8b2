"""Cloning through an upstream, the logic alone: what the cloner stores, and how the registry turns it into a
voice spoken by the upstream with its local matched voice as the fallback. (The end-to-end path against a
real upstream process is in tests/engines/test_upstream_clone_e2e.py.)"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.unit.fake_engine import FakeEngine
from voxgate.engines.base import Capabilities, VoiceInfo
from voxgate.engines.remote.base import NotSupported, UpstreamConfig, UpstreamError
from voxgate.engines.remote.clone import UpstreamCloner
from voxgate.errors import InvalidInput
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import StoredVoice, VoiceStore

SHIFT = {"f0_ratio": 1.2, "range_ratio": 1.0, "formant_ratio": 1.1, "eq_db": [0.0] * 48}


class Upstreams:
    """Stands for the upstreams' voice provider (engines/remote/manager.py): voices listed as NAME:voice."""

    def __init__(self) -> None:
        self.listed = [VoiceInfo(id="gpu:cloned", name="cloned", engine="upstream", language="en",
                                 sample_rate=24_000, upstream="gpu", engine_data={"voice": "cloned"})]

    def voices(self) -> list[VoiceInfo]:
        return list(self.listed)

    def capabilities(self, voice: VoiceInfo) -> Capabilities:
        return Capabilities(languages=("en",), match_base=False)

    def reload(self) -> None:
        pass


def test_registry_speaks_a_cloned_voice_through_its_upstream(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    for vid, remote in (("mine", "cloned"), ("unlisted", "not-there")):
        store.add(StoredVoice(vid, vid, "en", "said", "", 16000, 2.0, {"base_voice": "a", "shift": SHIFT},
                              meta={"upstream": "gpu", "upstream_voice": remote}), np.full(32000, 0.1, np.float32))
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a", store)
    assert registry.resolve("mine").engine == "fake"  # no upstream listed yet (a server's start): local
    upstreams = Upstreams()
    registry.add_provider("upstream", upstreams)  # the first listing arrives
    voice = registry.resolve("mine")
    assert (voice.id, voice.engine, voice.sample_rate, voice.registered) == ("mine", "upstream", 24_000, True)
    assert voice.upstream == "gpu" and voice.engine_data["voice"] == "cloned"
    assert voice.reference is not None and voice.reference.shift is None  # the upstream's audio is not shifted
    fallback = voice.fallback
    assert fallback is not None
    assert (fallback.id, fallback.engine, fallback.base_voice) == ("mine", "fake", "a")
    assert fallback.reference.shift == SHIFT
    assert registry.refresh_registered() and registry.resolve("mine").engine == "upstream"  # store re-read: same
    # an upstream that does not list the voice (down, or it was removed there): the local matched voice
    local = registry.resolve("unlisted")
    assert (local.engine, local.base_voice) == ("fake", "a")
    upstreams.listed = []
    registry.refresh_provided()
    assert (registry.resolve("mine").engine, registry.resolve("mine").base_voice) == ("fake", "a")
    store.close()


class Kind:
    """The clone() of an upstream kind, with a scripted outcome."""

    def __init__(self, kind: str, outcome: str | Exception) -> None:
        self.config = UpstreamConfig(name="gpu", kind=kind, url="http://127.0.0.1:1")
        self.outcome = outcome
        self.calls: list[tuple[str, bytes, str | None, str | None]] = []

    async def clone(self, name: str, audio: bytes, transcript: str | None, language: str | None) -> str:
        self.calls.append((name, audio, transcript, language))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def test_cloner_outcomes(caplog: pytest.LogCaptureFixture) -> None:
    kind = Kind("cosyvoice", "mine-on-gpu")
    cloner = UpstreamCloner(lambda name: kind if name == "gpu" else None, default="gpu")
    assert await cloner("mine", b"RIFF...", "said", "en") == {"upstream": "gpu", "upstream_voice": "mine-on-gpu"}
    assert kind.calls == [("mine", b"RIFF...", "said", "en")]
    with pytest.raises(InvalidInput, match="'other' is not configured"):
        cloner.check("other")
    assert UpstreamCloner(lambda name: kind).check(None) is None  # no default, none asked: local only

    caplog.set_level(logging.WARNING)
    kind.config = UpstreamConfig(name="gpu", kind="gptsovits", url="http://127.0.0.1:1")
    kind.outcome = NotSupported("cannot clone")
    assert await cloner("mine", b"RIFF", None, None) is None
    assert "share a folder" in caplog.text and "local matched voice" in caplog.text
    kind.outcome = UpstreamError("upstream gpu: cloning failed: HTTP 500 boom", status=500)
    assert await cloner("mine", b"RIFF", None, None) is None
    assert "HTTP 500 boom" in caplog.text

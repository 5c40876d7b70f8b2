"""Levelling gains: asked of the voice store first (one value for every node sharing it), measured and kept
there otherwise (the first measurement wins), and held in memory for the GAIN_CACHE most recent voices."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.fake_backend import FakeBackend
from tests.unit.fake_engine import RATE, FakeEngine
from voxgate.core import service as service_module
from voxgate.core.metrics import Metrics
from voxgate.core.service import CALIBRATION_TEXT, SynthesisService, gain_key
from voxgate.engines.base import VoiceInfo
from voxgate.voices.registry import VoiceRegistry


class SharedGains:
    """The gain part of a shared store (as PostgresStore does it), in memory."""

    def __init__(self) -> None:
        self.gains: dict[str, float] = {}
        self.calls: list[tuple[str, str]] = []

    def get_gain(self, key: str) -> float | None:
        self.calls.append(("get", key))
        return self.gains.get(key)

    def put_gain(self, key: str, gain: float) -> float:
        self.calls.append(("put", key))
        return self.gains.setdefault(key, gain)

    def watch(self, callback: Any) -> None:
        pass

    def list(self) -> list[Any]:
        return []


def node(store: SharedGains) -> tuple[SynthesisService, FakeBackend]:
    backend = FakeBackend()
    registry = VoiceRegistry({"fake": FakeEngine()}, {}, "a", store)  # type: ignore[arg-type]
    return SynthesisService(registry, backend, Metrics()), backend


def measured(backend: FakeBackend) -> int:
    return backend.record.texts().count(CALIBRATION_TEXT)


async def test_the_first_measurement_is_kept_and_used_by_every_node() -> None:
    store = SharedGains()
    (one, first), (two, second) = node(store), node(store)
    voice = one.voices.resolve("a")
    store.gains[gain_key(voice)] = 0.5  # as if another node had measured it: nothing synthesized here
    assert await one.gain(voice) == 0.5 and measured(first) == 0
    other = one.voices.resolve("b")
    gain = await one.gain(other)  # measured here and kept
    assert measured(first) == 1 and store.gains[gain_key(other)] == gain and gain != 0.5
    assert await two.gain(two.voices.resolve("b")) == gain and measured(second) == 0  # the other node's
    calls = len(store.calls)
    assert await one.gain(other) == gain and len(store.calls) == calls  # then from memory
    both = await asyncio.gather(*(two.gain(two.voices.resolve("ja")) for _ in range(5)))
    assert len(set(both)) == 1 and measured(second) == 1  # concurrent first uses measure once


async def test_memory_holds_the_most_recent_gains_and_no_lock_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "GAIN_CACHE", 3)
    service, backend = node(SharedGains())
    voices = [VoiceInfo(id=f"v{i}", name=f"v{i}", engine="fake", language="en-US", sample_rate=RATE)
              for i in range(5)]
    for voice in voices:
        await service.gain(voice)
    assert list(service._gains) == ["v2", "v3", "v4"] and service._gain_locks == {}
    await service.gain(voices[0])  # forgotten in memory: the store still has it, nothing is measured again
    assert measured(backend) == 5 and list(service._gains) == ["v3", "v4", "v0"]


def test_the_key_carries_the_model_size(tmp_path: Any) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 10)
    voice = VoiceInfo(id="m", name="m", engine="piper", language="en", sample_rate=RATE, model_path=model)
    assert gain_key(voice) == "m@10"
    assert gain_key(VoiceInfo(id="k", name="k", engine="x", language="en", sample_rate=RATE)) == "k"

"""What one OpenAI speech request does before its first byte, counted (not timed): a guard on the request path.

Timings on a shared 2-core machine are noise; call counts are not. Each request normalises its text once,
routes it once (which checks its language too), resolves its voice a fixed number of times whatever
its length, builds one resampler, one leveller and one encoder, loads nothing and calibrates nothing,
reuses a finished soxr stream, and a `pcm` response never hands work to a thread (each hand-off costs a
wake-up between the first samples and the first byte). If one of these counts grows, something was added
to every request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from fastapi.testclient import TestClient

import voxgate.core.routing as routing
import voxgate.core.service as service
import voxgate.core.timemap as timemap
import voxgate.dialects.openai.routes as openai_routes
from voxgate.app import create_app
from voxgate.audio.encoders import Encoder
from voxgate.audio.resample import Resampler
from voxgate.dialects.common import FIRST_PIECE
from voxgate.engines.piper import PiperEngine
from voxgate.scheduling.backend import LocalBackend
from voxgate.settings import Settings
from voxgate.text.normalize import normalize
from voxgate.text.segment import split_text
from voxgate.voices.registry import VoiceRegistry

from ..conftest import decode, pcm16, rms

ONE = "The weather today is mild and sunny, with a light breeze coming in from the west."
TEN = " ".join([ONE, "Temperatures will climb slowly through the morning and peak in the early afternoon.",
                "Clouds should gather over the hills after three o'clock.",
                "There is a small chance of a shower near the coast.",
                "Winds stay light, so it is a good day for a walk in the park.",
                "Tonight the sky clears again and the air turns cool.",
                "Expect a touch of frost in the valleys before dawn.",
                "Tomorrow looks much the same, perhaps a little warmer.",
                "The weekend brings the first real rain in two weeks.",
                "Gardeners will be glad of it, even if nobody else is."])

# Per request, whatever the text's length (the split is the one call that sees the whole text).
EXPECTED = {
    "normalize_mapped": 1,  # SynthesisService._check_text; the routed text and the word timings use it
    "route": 1,  # the text itself (routing it checks the language too)
    "detect_spans": 1,  # once per route
    "split_text": 1,
    "resolve": 2,  # the dialect's voice lookup, and the service's (routing is handed the resolved voice)
    "open_encoder": 1,
    "Resampler": 1,  # Piper's 22.05 kHz to OpenAI's 24 kHz, once per stream
    "Leveller": 1,  # once per voice per stream
}


class Counted:
    """Counts calls of wrapped functions while `active`; thread-safe (workers call some of them)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.active = False
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                with self._lock:
                    self.counts[name] += 1
            return fn(*args, **kwargs)
        return counted


@pytest.fixture(scope="module")
def counted_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Counted]]:
    counter = Counted()
    patches: list[tuple[object, str, object]] = [
        (service, "normalize_mapped", service.normalize_mapped),
        (timemap, "normalize_mapped", timemap.normalize_mapped), (service, "route", service.route),
        (service, "split_text", service.split_text), (service, "Resampler", service.Resampler),
        (service, "Leveller", service.Leveller), (service, "calibrate_gain", service.calibrate_gain),
        (routing, "detect_spans", routing.detect_spans), (openai_routes, "open_encoder", openai_routes.open_encoder),
        (VoiceRegistry, "resolve", VoiceRegistry.resolve), (PiperEngine, "load", PiperEngine.load),
        (service.SynthesisService, "prepare", service.SynthesisService.prepare),
        (LocalBackend, "generate", LocalBackend.generate),
        (asyncio, "to_thread", asyncio.to_thread), (soxr, "ResampleStream", soxr.ResampleStream),
    ]
    for owner, name, original in patches:
        setattr(owner, name, counter.wrap(name, original))  # type: ignore[arg-type]
    try:
        data = tmp_path_factory.mktemp("request-path") / "data"
        app = create_app(Settings(data_dir=Path(data), engines=["piper"], default_voice="en_US-joe-medium",
                                  stackflow_port=0, match_bases=[], match_bases_quiet=0.0))
        with TestClient(app) as client:  # the lifespan loads and levels the default voice
            for text in (ONE, ONE):  # warm: the first request may still grow onnxruntime's arena
                assert speak(client, text).status_code == 200
            # The default voice is measured for voice matching in the background; its hand-offs (a long wait
            # unloads its sessions) would be counted with a request's on a slow machine: let it finish first.
            deadline = time.monotonic() + 180
            while not client.get("/ready").json()["match_bases"]["done"]:
                assert time.monotonic() < deadline, "the default voice's background measurement did not end"
                time.sleep(0.2)
            yield client, counter
    finally:
        for owner, name, original in patches:
            setattr(owner, name, original)


def speak(client: TestClient, text: str, fmt: str = "pcm") -> Any:
    return client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "en_US-joe-medium", "input": text,
                                                 "response_format": fmt})


def one_request(client: TestClient, counter: Counted, text: str, fmt: str = "pcm") -> tuple[Counter[str], bytes]:
    counter.counts.clear()
    counter.active = True
    try:
        response = speak(client, text, fmt)
    finally:
        counter.active = False
    assert response.status_code == 200, response.text
    return Counter(counter.counts), response.content


@pytest.mark.parametrize("text", [ONE, TEN], ids=["one sentence", "ten sentences"])
def test_pcm_request_does_its_per_request_work_once(counted_app: tuple[TestClient, Counted], text: str) -> None:
    client, counter = counted_app
    counts, body = one_request(client, counter, text)
    audio = pcm16(body)
    assert len(audio) / 24_000 > (3.0 if text == ONE else 25.0)  # real speech at OpenAI's 24 kHz
    assert rms(audio) > 0.02
    assert {name: counts[name] for name in EXPECTED} == EXPECTED
    assert counts["to_thread"] == 0  # raw PCM is encoded on the loop: no hand-off before the first byte
    assert counts["load"] == 0 and counts["calibrate_gain"] == 0  # the warmed voice is reused, not reloaded
    assert counts["ResampleStream"] == 0  # the previous request's soxr stream is reused, cleared
    # Each segment's text is prepared for its engine (lexicon, inline overrides) once: open() checks it
    # before admission and the stream sends that same text, it does not prepare it again.
    assert counts["generate"] == len(split_text(normalize(text, "en"))) > 0
    assert counts["prepare"] == counts["generate"]


def test_mp3_encodes_off_the_loop_and_its_first_bytes_come_from_a_quarter_second(
        counted_app: tuple[TestClient, Counted], monkeypatch: pytest.MonkeyPatch) -> None:
    """The codec keeps its thread (so the counter above does see hand-offs when there are any), and the
    first sentence reaches it in two calls: the first bytes need only FIRST_PIECE seconds encoded."""
    fed: list[int] = []  # samples per encode() call
    original = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, samples: fed.append(len(samples)) or original(self, samples))
    client, counter = counted_app
    counts, body = one_request(client, counter, ONE, "mp3")
    samples, rate = decode(body, "mp3")
    assert rate == 24_000 and len(samples) / rate > 3.0 and rms(samples) > 0.02
    assert counts["to_thread"] >= 3  # the first piece, the rest of the first chunk, ..., the finish
    assert fed[0] == int(FIRST_PIECE * 24_000) and fed[1] > fed[0]
    assert {name: counts[name] for name in EXPECTED} == EXPECTED


def test_raw_encoder_inline_bound_is_cheap() -> None:
    """What the loop may encode in one go costs far less than a thread hand-off under load (counted in
    samples, so no timing): 20 s at 24 kHz, and codecs never."""
    from voxgate.audio.encoders import open_encoder

    assert open_encoder("pcm", 24_000).inline_seconds * 24_000 == 480_000
    assert open_encoder("wav", 24_000).inline_seconds == 20.0
    for fmt in ("mp3", "opus", "aac", "flac"):
        encoder = open_encoder(fmt, 24_000)
        assert encoder.inline_seconds == 0.0
        encoder.close()
    x = np.zeros(10, np.float32)
    assert open_encoder("pcm", 24_000).encode(x) == bytes(20)


def test_a_reused_resampler_stream_gives_the_same_audio_and_is_not_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    original = soxr.ResampleStream
    monkeypatch.setattr(soxr, "ResampleStream", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    t = np.arange(22050 * 2) / 22050
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    first = Resampler(22050, 23999)  # a rate pair no other test uses: this test owns its idle list
    a = np.concatenate([first.process(x[:30000]), first.process(x[30000:]), first.flush()])
    assert len(made) == 1
    second, third = Resampler(22050, 23999), Resampler(22050, 23999)  # the first's stream, then a new one
    assert len(made) == 2  # the second took the idle one; only the third built a stream
    b = np.concatenate([second.process(x[:30000]), second.process(x[30000:]), second.flush()])
    c = np.concatenate([third.process(x[:1000]), third.process(x[1000:]), third.flush()])
    assert a.size == b.size == c.size and abs(a.size - x.size * 23999 / 22050) <= 2
    assert np.array_equal(a, b) and np.allclose(a, c, atol=1e-6)
    assert first.flush().size == 0  # ending twice is harmless...
    with pytest.raises(RuntimeError):
        first.process(x)  # ...but a stream that went back to the idle list is never fed again by its old owner

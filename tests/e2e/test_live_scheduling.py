"""Disconnects and admission control against a live server, asserted through its metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server, pcm16, rms, start_server, stop_server
from voxgate.text.normalize import normalize
from voxgate.text.segment import split_text

LONG = " ".join(f"This is sentence {n} of a long reading that nobody will stay to hear." for n in range(60))


def _wait_for(predicate, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_client_disconnect_cancels_queued_and_running_work(server: Server) -> None:
    cancelled = server.metric("voxgate_cancelled_total")
    dropped = server.metric("voxgate_segments_dropped_total")
    completed_before = server.metric("voxgate_jobs_completed")
    body = {"model": "tts-1", "input": LONG[:4000], "voice": "alloy", "response_format": "pcm"}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as response:
        assert response.status_code == 200
        audio = response.iter_bytes(1024)
        next(audio)  # audio has started; leaving the block closes the connection mid-stream
    assert _wait_for(lambda: server.metric("voxgate_cancelled_total") == cancelled + 1)
    assert _wait_for(lambda: server.metric("voxgate_active_requests") == 0)
    assert _wait_for(lambda: server.metric("voxgate_jobs_running") == 0)
    # All planned segments but the few already synthesized (first + prefetched) were dropped.
    planned = len(split_text(normalize(LONG[:4000])))
    assert planned > 15
    assert server.metric("voxgate_segments_dropped_total") - dropped >= planned - 4
    assert server.metric("voxgate_queue_depth") == 0
    completed = server.metric("voxgate_jobs_completed")
    assert completed - completed_before <= 4
    time.sleep(0.5)  # nothing of the abandoned stream may still be running or start later
    assert server.metric("voxgate_jobs_completed") == completed
    assert server.metric("voxgate_jobs_running") == 0


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker and no queue: the second concurrent request must be refused."""
    srv = start_server(Path(tmp_path_factory.mktemp("tiny")), "--workers", "1", "--max-queue", "0")
    yield srv
    stop_server(srv)


def test_busy_server_answers_503_with_retry_after_then_recovers(tiny_server: Server) -> None:
    body = {"model": "tts-1", "input": LONG[:3000], "voice": "alloy", "response_format": "pcm"}
    with httpx.stream("POST", f"{tiny_server.url}/v1/audio/speech", json=body, timeout=60) as first:
        assert first.status_code == 200
        audio = first.iter_bytes(1024)  # keep the iterator: dropping it would close the connection
        next(audio)
        assert tiny_server.metric("voxgate_active_requests") == 1
        second = httpx.post(f"{tiny_server.url}/v1/audio/speech", timeout=30,
                            json={**body, "input": "Can I go too?"})
        assert second.status_code == 503
        assert int(second.headers["retry-after"]) >= 1
        error = second.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "server_overloaded"
    assert tiny_server.metric("voxgate_rejected_busy_total") == 1
    assert _wait_for(lambda: tiny_server.metric("voxgate_active_requests") == 0)
    third = httpx.post(f"{tiny_server.url}/v1/audio/speech", timeout=60,
                       json={**body, "input": "Now it is my turn."})
    assert third.status_code == 200 and len(third.content) > 24000


def _longest_inner_silence(samples: np.ndarray, rate: int, frame: float = 0.01) -> float:
    """Seconds of the longest run of 10 ms frames below -40 dBFS between the first and last speech."""
    n = int(rate * frame)
    frames = samples[: len(samples) // n * n].reshape(-1, n)
    loud = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) > 0.01
    inner = loud[np.argmax(loud): len(loud) - np.argmax(loud[::-1])]
    longest = run = 0
    for is_loud in inner:
        run = 0 if is_loud else run + 1
        longest = max(longest, run)
    return longest * frame


def test_a_busy_servers_cut_first_sentence_joins_without_a_gap(server: Server) -> None:
    sentence = "Our library opens at nine every weekday and at ten on Saturdays."
    # Piper joe: its uncut reading of this sentence has no inner pause near 0.15 s (hibari's has 0.34 s), so a
    # longer silence can only be the seam.
    body = {"model": "tts-1", "voice": "en_US-joe-medium", "response_format": "pcm"}
    cuts = server.metric("voxgate_busy_first_cuts_total")
    started = threading.Barrier(3, timeout=60)
    stop = threading.Event()

    def listen(text: str) -> None:  # a client that keeps reading, so the server keeps synthesizing for it
        with httpx.stream("POST", f"{server.url}/v1/audio/speech", json={**body, "input": text}, timeout=60) as r:
            chunks = r.iter_bytes()
            next(chunks)
            started.wait()
            for _ in chunks:
                if stop.is_set():
                    break

    listeners = [threading.Thread(target=listen, args=(part,), daemon=True)
                 for part in (LONG[:1500], LONG[1500:3000])]
    for thread in listeners:
        thread.start()
    try:
        started.wait()  # both workers are now busy with long readings that are being played
        response = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": sentence}, timeout=60)
    finally:
        stop.set()
        for thread in listeners:
            thread.join(30)
    assert server.metric("voxgate_busy_first_cuts_total") == cuts + 1  # it was cut...
    samples = pcm16(response.content)
    assert 2.0 < len(samples) / 24000 < 6.0 and rms(samples) > 0.02
    assert _longest_inner_silence(samples, 24000) < 0.15  # ...and joined without the engine's end silence

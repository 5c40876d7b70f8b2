"""voxgate on a two-node Ray Serve cluster: the dialects, streaming, voices, busy answers, cancellation and
a replica's death, all through Serve's proxy, the Gateway on the head node and the Synthesizer on the other."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.cluster.conftest import Cluster
from tests.conftest import decode, pcm16, rms
from tests.speech import RATE, other_speaker
from voxgate.audio.encoders import encode_all

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

JOE = "en_US-joe-medium"
SENTENCE = "The weather today is bright and clear, with a gentle breeze from the west."
LONG = " ".join(f"Sentence number {n} of a long story goes on and on for quite a while." for n in range(1, 30))
REFERENCE_TEXT = ("A clear voice reads these words aloud. It speaks slowly and calmly, "
                  "so that every sound can be heard. The weather was fine that morning.")


def speech(cluster: Cluster, text: str, voice: str = JOE, fmt: str = "wav") -> httpx.Response:
    body = {"model": "tts-1", "input": text, "voice": voice, "response_format": fmt}
    return httpx.post(f"{cluster.url}/v1/audio/speech", json=body, timeout=120)


def test_ready_and_metrics_come_through_the_proxy(cluster: Cluster) -> None:
    # The Gateway answers /ready from the replica's last report (renewed at most once a second, in the background),
    # and the replica may still be warming its voice when /ready first answers: asked again until the report says
    # the voice is loaded (one CI run read an empty list on the first ask), within a bound.
    deadline = time.monotonic() + 30
    while True:
        ready = httpx.get(f"{cluster.url}/ready", timeout=10)
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready" and body["default_voice"] == JOE and body["workers"] == 1
        if JOE in body["voices_loaded"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert JOE in body["voices_loaded"], body
    metrics = httpx.get(f"{cluster.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "voxgate_" in metrics.text
    report = cluster.report()
    assert report["synthesizer"]["workers"] == 1 and report["synthesizer"]["pid"] > 0
    # The nodes stay in the test's session, so the replica shares the test's scheduling autogroup (local.py):
    # with nodes in sessions of their own, one replica of two did about half the other's work on one machine
    assert os.getsid(report["synthesizer"]["pid"]) == os.getsid(0)
    # A 1-CPU replica runs 1-thread onnxruntime sessions only: its solo session too (2 threads by default)
    assert {s["threads"] for s in report["synthesizer"]["sessions"]} == {1}, report["synthesizer"]["sessions"]


def test_gptsovits_speaks_across_nodes(cluster: Cluster) -> None:
    params = {"text": SENTENCE, "text_lang": "en", "ref_audio_path": JOE, "prompt_lang": "en",
              "media_type": "wav"}
    sovits = httpx.get(f"{cluster.url}/tts", params=params, timeout=120)
    assert sovits.status_code == 200 and sovits.headers["content-type"] == "audio/wav"
    samples, rate = decode(sovits.content)
    assert rate == 32000 and 2.0 < len(samples) / rate < 10.0 and rms(samples) > 0.02


def test_cosyvoice_websocket_through_the_proxy(cluster: Cluster) -> None:
    url = cluster.url.replace("http://", "ws://") + "/tts"
    with connect(url, max_size=2**24) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": JOE, "audio_format": "wav", "sample_rate": 16000}}))
        for word in SENTENCE.split():
            ws.send(json.dumps({"text": word + " ", "done": False}))
        ws.send(json.dumps({"text": "", "done": True}))
        messages = []
        for _ in range(200):
            message = json.loads(ws.recv(timeout=120))
            messages.append(message)
            if message["error"] or message["is_end"]:
                break
    *audio, end = messages
    assert audio and end["is_end"] is True and end["error"] is False and end["index"] == len(audio)
    pieces = [decode(base64.b64decode(m["data"]), "wav") for m in audio]
    assert all(rate == 16000 and m["sample_rate"] == 16000 for (_, rate), m in zip(pieces, audio, strict=True))
    joined = np.concatenate([p for p, _ in pieces])
    assert 2.0 < len(joined) / 16000 < 10.0 and rms(joined) > 0.02


def test_first_audio_arrives_long_before_the_last_piece(cluster: Cluster) -> None:
    text = " ".join(f"This is sentence number {n} of a short paragraph." for n in range(1, 7))
    start = time.monotonic()
    first = None
    data = bytearray()
    body = {"model": "tts-1", "input": text, "voice": JOE, "response_format": "pcm"}
    before = cluster.report()["synthesizer"]["load"]["completed"]
    with httpx.stream("POST", f"{cluster.url}/v1/audio/speech", json=body, timeout=120) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            if first is None and chunk:
                first = time.monotonic() - start
            data.extend(chunk)
    total = time.monotonic() - start
    samples = pcm16(bytes(data))
    assert first is not None and len(samples) / 24000 > 8.0 and rms(samples) > 0.02
    # The first audio left while the replica still had most of the six sentences to make. (Reading the
    # replica's counters at the first chunk raced it: the replica works ahead while that report is fetched.)
    assert first < total / 2, (first, total)
    # ... and the sentences were made as separate segment jobs on the replica, not one whole-text job.
    assert cluster.report()["synthesizer"]["load"]["completed"] >= before + 2


def test_a_voice_registered_through_the_gateway_speaks(cluster: Cluster) -> None:
    reference = encode_all(other_speaker(REFERENCE_TEXT, f0_ratio=1.7, formant_ratio=1.18), RATE, "wav")
    created = None
    for _ in range(240):  # the Gateway measures its base voice on the Synthesizer in the background first
        created = httpx.post(f"{cluster.url}/v1/audio/voices", data={"name": "Cluster Reader",
                             "transcript": REFERENCE_TEXT, "language": "en"},
                             files={"audio": ("ref.wav", reference, "audio/wav")}, timeout=120)
        if created.status_code != 503:
            break
        time.sleep(0.5)
    assert created is not None and created.status_code == 201, created.text
    voice = created.json()
    assert voice["id"] == "Cluster-Reader" and voice["kind"] == "registered" and voice["base_voice"]
    spoken = speech(cluster, "A sentence the reference never said.", voice="Cluster-Reader", fmt="pcm")
    assert spoken.status_code == 200 and rms(pcm16(spoken.content)) > 0.02
    plain = speech(cluster, "A sentence the reference never said.", voice=voice["base_voice"], fmt="pcm")
    assert plain.status_code == 200 and plain.content != spoken.content  # the shift ran on the replica


def test_openai_speaks_across_nodes_and_overload_is_its_busy_answer(cluster: Cluster) -> None:
    results: list[httpx.Response] = []

    def one() -> None:
        results.append(speech(cluster, SENTENCE))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    codes = sorted(r.status_code for r in results)
    assert 200 in codes and 503 in codes, codes
    openai = next(r for r in results if r.status_code == 200)  # the requests that found room were spoken
    assert openai.headers["content-type"] == "audio/wav"
    samples, rate = decode(openai.content)
    assert rate == 24000 and 2.0 < len(samples) / rate < 10.0 and rms(samples) > 0.02
    busy = next(r for r in results if r.status_code == 503)
    error = busy.json()["error"]
    assert "busy" in error["message"] and busy.headers.get("retry-after") is not None, busy.text


def test_client_disconnect_stops_the_replicas_work(cluster: Cluster) -> None:
    before = cluster.report()
    body = {"model": "tts-1", "input": LONG, "voice": JOE, "response_format": "pcm"}
    with httpx.stream("POST", f"{cluster.url}/v1/audio/speech", json=body, timeout=120) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    # Without the cancel reaching the replica it would keep working through 29 sentences for half a minute:
    # it must be idle on two reports in a row (a report is at most a second old) well before that.
    deadline = time.monotonic() + 15
    idle = 0
    report = before
    while idle < 2 and time.monotonic() < deadline:
        time.sleep(1.2)
        report = cluster.report()
        load = report["synthesizer"]["load"]
        idle = idle + 1 if load["running"] == 0 and load["queued"] == 0 else 0
    synth, gateway = report["synthesizer"]["load"], report["gateway"]
    assert idle == 2, report
    # A few sentences may finish while the cancel travels (the replica works ahead of the client), never most.
    assert synth["completed"] - before["synthesizer"]["load"]["completed"] <= 8, (before, report)
    # The Gateway cancelled the stream's calls (queued ones dropped, a running one interrupted).
    cancelled = gateway["interrupted"] + gateway["dropped"]
    assert cancelled > before["gateway"]["interrupted"] + before["gateway"]["dropped"], (before, report)


def test_tcp_front_speaks_wyoming_over_the_cluster(cluster: Cluster) -> None:
    front, port = cluster.front, cluster.front_port  # started by the fixture, so it starts while others run
    assert front.stdout is not None
    line = front.stdout.readline()
    assert line.startswith("voxgate tcp-front over"), (line, cluster.front_log.read_text()[-2000:])
    assert f"port {port}" in front.stdout.readline()
    before = cluster.report()["gateway"]["completed"]
    events = asyncio.run(wyoming_synthesize(port, SENTENCE))
    assert [e.type for e in events][:1] == ["audio-start"] and events[-1].type == "audio-stop", events[-1]
    start = events[0].data
    assert (start["rate"], start["width"], start["channels"]) == (22050, 2, 1)
    samples = pcm16(b"".join(e.payload or b"" for e in events if e.type == "audio-chunk"))
    assert 2.0 < len(samples) / 22050 < 10.0 and rms(samples) > 0.02
    assert cluster.report()["gateway"]["completed"] > before  # it was made by the cluster's replica


async def wyoming_synthesize(port: int, text: str) -> list[Event]:
    events = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Event("synthesize", {"text": text, "voice": {"name": JOE}}))
        for _ in range(500):
            event = await asyncio.wait_for(client.read_event(), 60)
            assert event is not None
            events.append(event)
            if event.type in ("audio-stop", "error"):
                break
    return events


def test_replica_killed_mid_stream_fails_that_client_only(cluster: Cluster) -> None:
    pid = cluster.report()["synthesizer"]["pid"]
    body = {"model": "tts-1", "input": LONG, "voice": JOE, "response_format": "pcm"}
    received = 0
    with pytest.raises(httpx.HTTPError):  # the stream breaks off: no clean end of the chunked body
        with httpx.stream("POST", f"{cluster.url}/v1/audio/speech", json=body, timeout=60) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                if received == 0:
                    # Killed while it makes a segment (later segments group sentences: seconds of work). A
                    # segment still being handed to it would be sent to the next replica by Serve instead.
                    for _ in range(25):
                        report = cluster.report()["synthesizer"]
                        if report["load"]["running"] >= 1:
                            break
                        time.sleep(0.2)
                    assert report["pid"] == pid
                    os.kill(pid, signal.SIGKILL)  # a replica of this test's own cluster
                received += len(chunk)
    assert received > 0
    deadline = time.monotonic() + 120
    answer = None
    while time.monotonic() < deadline:  # Serve starts a new replica; the next request waits for it
        answer = speech(cluster, SENTENCE, fmt="pcm")
        if answer.status_code == 200:
            break
        time.sleep(0.25)
    assert answer is not None and answer.status_code == 200 and rms(pcm16(answer.content)) > 0.02
    assert cluster.report()["synthesizer"]["pid"] != pid

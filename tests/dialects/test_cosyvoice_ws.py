"""CosyVoice WebSocket /tts against a live server, driven by a client written from the wire description.

The session's shared server (default settings, as this module's own server had): nothing here changes its state,
and the cancellation test compares the counter before and after, so one start fewer for the suite."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Server, decode, pcm16, rms

VOICE = "en_US-joe-medium"
PARAGRAPH = ("The old lighthouse stood at the edge of the cliff, and every evening its keeper climbed the "
             "narrow stairs to light the lamp. Ships far out at sea watched for its beam. On stormy nights "
             "he stayed awake until dawn, listening to the waves below and writing in his small notebook. "
             "Nobody in the village remembered a night when the light had failed.")
SHORT = "Hello there, my friend. This message is spoken in pieces."
KEYS = ["id", "error", "is_end", "index", "data", "audio_format", "sample_rate"]
FIRST_AUDIO_WAIT = 90.0  # seconds to wait for the first audio before `done` (generous for a loaded machine)


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/tts"


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def receive(ws: ClientConnection, timeout: float = 120.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def until_end(ws: ClientConnection, limit: int = 500) -> list[dict[str, Any]]:
    """Messages up to and including the is_end (or an error) message."""
    messages = []
    for _ in range(limit):
        message = receive(ws)
        messages.append(message)
        if message["error"] or message["is_end"]:
            return messages
    raise AssertionError("no is_end message")


def check_session(messages: list[dict[str, Any]], fmt: str, rate: int) -> list[bytes]:
    """Field-by-field checks of a session's messages; returns the decoded files."""
    *audio, end = messages
    assert audio, "no audio messages"
    session = audio[0]["id"]
    assert isinstance(session, str) and len(session) == 32 and int(session, 16) >= 0
    files = []
    for index, message in enumerate(audio):
        assert list(message) == KEYS
        assert message["id"] == session and message["error"] is False and message["is_end"] is False
        assert message["index"] == index
        assert message["audio_format"] == fmt and message["sample_rate"] == rate
        files.append(base64.b64decode(message["data"], validate=True))
    assert end == {"id": session, "error": False, "is_end": True, "index": len(audio), "data": None,
                   "audio_format": None, "sample_rate": None}
    return files


def wav_file(data: bytes) -> tuple[np.ndarray, int]:
    """One standalone WAV: true sizes in the header, the rate it states."""
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        frames = w.readframes(w.getnframes())
        assert len(frames) == w.getnframes() * 2 == len(data) - 44
        return pcm16(frames), w.getframerate()


def standalone(data: bytes, fmt: str, rate: int) -> np.ndarray:
    """Decode one message's file on its own and check the rate it carries."""
    if fmt == "pcm":
        return pcm16(data)
    if fmt == "wav":
        samples, file_rate = wav_file(data)
    else:
        samples, file_rate = decode(data, "aac" if fmt == "aac" else None)
    assert file_rate == rate, fmt
    return samples


def whole(server: Server, text: str, fmt: str, rate: int) -> bytes:
    """The same text, not streamed (HTTP POST /tts)."""
    response = httpx.post(f"{server.url}/tts", timeout=120,
                          json={"text": text, "prompt_id": VOICE, "audio_format": fmt, "sample_rate": rate})
    assert response.status_code == 200, response.text
    return base64.b64decode(response.json()["audio"])


def test_paragraph_streamed_word_by_word(server: Server) -> None:
    messages: list[dict[str, Any]] = []
    with connect(ws_url(server), max_size=2**24) as ws:
        send(ws, {"req_params": {"prompt_id": VOICE, "audio_format": "wav", "sample_rate": 16000,
                                 "instruct_text": ""}})
        for word in PARAGRAPH.split(" "):
            send(ws, {"text": word + " ", "done": False})
            try:
                messages.append(receive(ws, timeout=0.05))  # also paces the words like a fast LLM
            except TimeoutError:
                pass
        deadline = time.monotonic() + FIRST_AUDIO_WAIT
        while not messages and time.monotonic() < deadline:
            try:
                messages.append(receive(ws, timeout=1.0))
            except TimeoutError:
                pass
        assert messages, "no audio before done was sent"
        assert messages[0]["error"] is False and messages[0]["is_end"] is False and messages[0]["data"]
        send(ws, {"text": "", "done": True})
        if not messages[-1]["is_end"]:
            messages += until_end(ws)
    files = check_session(messages, "wav", 16000)
    streamed = np.concatenate([standalone(f, "wav", 16000) for f in files])
    assert rms(streamed) > 0.02
    reference, rate = wav_file(whole(server, PARAGRAPH, "wav", 16000))
    assert rate == 16000
    assert abs(len(streamed) - len(reference)) < 0.1 * len(reference), (len(streamed), len(reference))
    assert len(files) >= 3  # spoken in pieces, not as one file at the end


@pytest.mark.parametrize("fmt", ["pcm", "mp3", "opus", "flac", "aac", "m4a"])
def test_every_format_message_is_a_standalone_file(server: Server, fmt: str) -> None:
    rate = 48000 if fmt == "opus" else 24000  # Ogg Opus always carries 48 kHz
    with connect(ws_url(server), max_size=2**24) as ws:
        send(ws, {"req_params": {"prompt_id": VOICE, "audio_format": fmt, "sample_rate": 24000}})
        first, rest = SHORT.split(", ", 1)
        send(ws, {"text": first + ", ", "done": False})
        send(ws, {"text": rest, "done": True})
        files = check_session(until_end(ws), fmt, rate)
    pieces = [standalone(f, fmt, rate) for f in files]
    assert all(len(p) for p in pieces)
    streamed = np.concatenate(pieces)
    assert rms(streamed) > 0.02
    if fmt == "pcm":
        reference = pcm16(whole(server, SHORT, "pcm", 24000))
    else:
        reference, _ = decode(whole(server, SHORT, "flac", rate))
    # per-file codec padding (mp3, aac frames) adds a little to every message
    assert abs(len(streamed) - len(reference)) < 0.15 * len(reference), (len(streamed), len(reference))


def test_sequential_sessions_errors_and_recovery(server: Server) -> None:
    with connect(ws_url(server), max_size=2**24) as ws:
        send(ws, {"req_params": {"prompt_id": "nobody-here"}})
        assert receive(ws) == {"error": True, "message": "ValueError: No such speaker."}
        send(ws, {"text": "dropped with its dead session", "done": False})  # no answer: the session failed
        send(ws, {"text": "", "done": True})
        ws.send("not json")
        assert receive(ws) == {"error": True, "message": "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"}
        send(ws, {"req_params": {"prompt_id": VOICE, "audio_format": "ogg"}})
        error = receive(ws)
        assert error["error"] is True and error["message"].startswith("InvalidInput: unsupported audio_format 'ogg'")
        send(ws, {"req_params": {"prompt_id": VOICE, "sample_rate": "fast"}})
        error = receive(ws)
        assert error["error"] is True and error["message"].startswith("ValidationError: req_params.sample_rate")
        # a session, then a second req_params in the middle of another: cancelled, error, loop goes on
        send(ws, {"req_params": {"prompt_id": VOICE}})
        send(ws, {"text": "First session.", "done": True})
        first = until_end(ws)
        check_session(first, "wav", 24000)
        send(ws, {"req_params": {"prompt_id": VOICE}})
        send(ws, {"text": "A long sentence that will never be finished, because", "done": False})
        send(ws, {"req_params": {"prompt_id": VOICE}})
        messages = until_end(ws)
        assert messages[-1] == {"error": True,
                                "message": "ValidationError: text: Field required; done: Field required"}
        assert list(messages[-1]) == ["error", "message"] and not any(m.get("is_end") for m in messages)
        # the empty session: only is_end, at index 0
        send(ws, {"req_params": {"prompt_id": VOICE, "audio_format": "mp3", "instruct_text": "Speak cheerfully."}})
        send(ws, {"text": "", "done": True})
        end = receive(ws)
        assert end["is_end"] is True and end["index"] == 0 and end["data"] is None
        # too much text at once
        send(ws, {"req_params": {"prompt_id": VOICE}})
        send(ws, {"text": "word " * 2000, "done": False})
        error = receive(ws)
        assert error["error"] is True and error["message"].startswith("InputTooLong: ")
        send(ws, {"text": "", "done": True})  # the rest of the failed session is dropped
        # and a new session on the same socket still works, with a fresh id
        send(ws, {"req_params": {"prompt_id": VOICE, "audio_format": "wav", "sample_rate": 22050}})
        send(ws, {"text": "Last one.", "done": True})
        last = until_end(ws)
        files = check_session(last, "wav", 22050)
        assert last[0]["id"] != first[0]["id"]
        assert rms(np.concatenate([standalone(f, "wav", 22050) for f in files])) > 0.02


def test_disconnect_cancels_the_synthesis(server: Server) -> None:
    cancelled = server.metric("voxgate_cancelled_total")
    long_text = " ".join(f"Sentence number {n} walks along the quiet river under the tall trees." for n in range(40))
    with connect(ws_url(server), max_size=2**24) as ws:
        send(ws, {"req_params": {"prompt_id": VOICE, "audio_format": "pcm"}})
        send(ws, {"text": long_text, "done": True})
        first = receive(ws)
        assert first["index"] == 0 and first["data"]
    deadline = time.monotonic() + 30
    while server.metric("voxgate_cancelled_total") <= cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.metric("voxgate_cancelled_total") > cancelled
    deadline = time.monotonic() + 30  # and its work is gone: nothing stays active
    while httpx.get(f"{server.url}/ready", timeout=10).json()["active_requests"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{server.url}/ready", timeout=10).json()["active_requests"] == 0

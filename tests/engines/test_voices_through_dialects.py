"""Mandarin on Kokoro, hibari and Pico through the real dialects of one server (default settings).

Every answer is decoded and checked for its rate, its length and that it is not silence. Which voice spoke
is checked where the dialect cannot show it by the sessions the server loaded (`GET /ready`).
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from tests.conftest import Server, decode, pcm16, rms, start_server, stop_server
from tests.requests import check, gsv_speech, openai_speech
from voxgate.engines.kokoro import DEFAULT_CHINESE

ZH = "今天天气很好，我们去公园散步吧。"
ZH_NUMBERS = "会议在2024年3月15日开始，价格上涨了12.5%。"
EN = "Hello there, this is the default voice speaking."
KOKORO_ZH = f"kokoro-zh:{DEFAULT_CHINESE}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh server with default settings and StackFlow's TCP port open (nothing else loaded yet)."""
    port = free_port()
    server = start_server(tmp_path_factory.mktemp("voices"), "--stackflow-port", str(port))
    server.stackflow_port = port  # type: ignore[attr-defined]
    yield server
    stop_server(server)


def sessions(server: Server) -> set[str]:
    return {s["voice"] for s in httpx.get(f"{server.url}/ready", timeout=10).json()["sessions"]}


def cosyvoice_ws(server: Server, voice: str, text: str, rate: int = 24000) -> tuple[np.ndarray, int]:
    """One WebSocket session: the text in two messages, every audio message a standalone WAV."""
    url = server.url.replace("http://", "ws://") + "/tts"
    pieces = []
    with connect(url, max_size=2**24) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": voice, "audio_format": "wav", "sample_rate": rate}}))
        half = len(text) // 2
        ws.send(json.dumps({"text": text[:half], "done": False}))
        ws.send(json.dumps({"text": text[half:], "done": True}))
        for _ in range(200):
            message = json.loads(ws.recv(timeout=110))
            assert message["error"] is False, message
            if message["is_end"]:
                break
            assert message["audio_format"] == "wav" and message["sample_rate"] == rate
            samples, got = decode(base64.b64decode(message["data"]))
            assert got == rate
            pieces.append(samples)
        else:
            raise AssertionError("no is_end message")
    return np.concatenate(pieces), rate


class StackFlow:
    """Just enough of a StackFlow TCP client: setup, one streamed inference, collect its audio."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=110)
        self.buf = b""

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode())

    def speak(self, model: str, text: str) -> np.ndarray:
        self.send({"request_id": "setup", "work_id": "melotts", "action": "setup", "object": "melotts.setup",
                   "data": {"model": model, "response_format": "pcm.stream.base64", "input": "tts.utf-8",
                            "enoutput": True}})
        reply = self.recv()
        assert reply["error"] == {"code": 0, "message": ""}, reply
        work_id = reply["work_id"]
        assert re.fullmatch(r"melotts\.\d+", work_id)
        self.send({"request_id": "say", "work_id": work_id, "action": "inference", "object": "tts.utf-8.stream",
                   "data": {"delta": text, "index": 0, "finish": True}})
        audio = b""
        for _ in range(500):
            message = self.recv()
            assert message["work_id"] == work_id and message["error"]["code"] == 0, message
            audio += base64.b64decode(message["data"]["delta"])
            if message["data"]["finish"]:
                break
        self.send({"request_id": "exit", "work_id": work_id, "action": "exit"})
        assert self.recv()["error"]["code"] == 0
        return pcm16(audio)

    def close(self) -> None:
        self.sock.close()


# -- Mandarin ---------------------------------------------------------------------------------------------

def test_mandarin_through_openai_is_kokoro(srv: Server) -> None:
    check(*openai_speech(srv, "nova", ZH), 24000, 2.0, 8.0)  # no language field: routed by script
    assert KOKORO_ZH in sessions(srv) and "espeak:cmn" not in sessions(srv)


def test_mandarin_through_gptsovits_with_text_lang_zh(srv: Server) -> None:
    check(*gsv_speech(srv, "hibari:heart", ZH, "zh"), 32000, 2.0, 8.0)
    check(*gsv_speech(srv, "hibari:heart", ZH, "all_zh"), 32000, 2.0, 8.0)
    assert "espeak:cmn" not in sessions(srv)


def test_mandarin_numbers_are_read_as_words_not_digits(srv: Server) -> None:
    """cn2an reads 2024年3月15日 and 12.5% as Chinese words: as long as the text written out in words."""
    digits, rate = gsv_speech(srv, KOKORO_ZH, ZH_NUMBERS, "zh")
    words, _ = gsv_speech(srv, KOKORO_ZH, "会议在二零二四年三月十五日开始，价格上涨了百分之十二点五。", "zh")
    check(digits, rate, 32000, 3.0, 12.0)
    assert 0.8 < len(digits) / len(words) < 1.25


def test_mandarin_through_cosyvoice_websocket(srv: Server) -> None:
    check(*cosyvoice_ws(srv, KOKORO_ZH, ZH + "我们明天见。", 16000), 16000, 2.5, 10.0)
    samples, rate = cosyvoice_ws(srv, "hibari:heart", ZH, 24000)  # a Chinese text to the English voice
    check(samples, rate, 24000, 2.0, 8.0)  # ... is spoken by Kokoro's Mandarin, span routing


def test_mandarin_through_stackflow_melotts_zh_cn(srv: Server) -> None:
    client = StackFlow(srv.stackflow_port)  # type: ignore[attr-defined]
    try:
        samples = client.speak("melotts_zh-cn", ZH)
        check(samples, 16000, 16000, 2.0, 8.0)  # StackFlow's default audio_rate
        check(client.speak("melotts-zh-cn", "北京是中国的首都。"), 16000, 16000, 1.0, 6.0)
    finally:
        client.close()
    assert "espeak:cmn" not in sessions(srv)


# -- hibari, the default voice ----------------------------------------------------------------------------

def test_the_default_voice_is_hibari_and_the_openai_aliases_split_by_gender(srv: Server) -> None:
    voices = {v["id"]: v for v in httpx.get(f"{srv.url}/v1/audio/voices", timeout=10).json()["data"]}
    hibari, joe = voices["hibari:heart"], voices["en_US-joe-medium"]
    assert hibari["engine"] == "hibari" and hibari["sample_rate"] == 24000 and hibari["language"] == "en-US"
    assert set(hibari["aliases"]) >= {"alloy", "coral", "marin", "nova", "sage", "shimmer"}
    assert set(joe["aliases"]) >= {"ash", "ballad", "cedar", "echo", "fable", "onyx", "verse"}
    assert not set(hibari["aliases"]) & set(joe["aliases"])
    assert "hibari:heart" in sessions(srv)  # warmed at start as the default voice


def test_openai_nova_is_hibari_and_onyx_is_joe(srv: Server) -> None:
    before = sessions(srv)
    assert "en_US-joe-medium" not in before
    check(*openai_speech(srv, "nova", EN), 24000, 1.5, 6.0)
    assert sessions(srv) == before  # hibari was already loaded: nothing new
    check(*openai_speech(srv, "onyx", EN), 24000, 1.5, 6.0)
    assert sessions(srv) - before == {"en_US-joe-medium"}


def test_hibari_through_gptsovits_alltalk_and_flash(srv: Server) -> None:
    check(*gsv_speech(srv, "hibari:heart", EN, "en"), 32000, 1.5, 6.0)
    form = {"text_input": EN, "character_voice_gen": "female_01.wav", "language": "en",
            "output_file_name": "hibari", "text_filtering": "none"}
    made = httpx.post(f"{srv.url}/api/tts-generate", data=form, timeout=110).json()
    assert made.get("status") == "generate-success", made
    check(*decode(httpx.get(srv.url + made["output_file_url"], timeout=30).content), 24000, 1.5, 6.0)  # its own rate
    male = httpx.post(f"{srv.url}/api/tts-generate", data={**form, "character_voice_gen": "male_01.wav"},
                      timeout=110).json()
    check(*decode(httpx.get(srv.url + male["output_file_url"], timeout=30).content), 22050, 1.5, 6.0)  # joe
    response = httpx.post(f"{srv.url}/speak", json={"text": EN, "name": "hibari:heart", "response_format": "wav"},
                          timeout=110)
    assert response.status_code == 200, response.text
    check(*decode(response.content), 16000, 1.5, 6.0)  # Flash answers at --flash-sample-rate


def test_hibari_through_cosyvoice_http_websocket_and_stackflow(srv: Server) -> None:
    response = httpx.post(f"{srv.url}/tts", json={"text": EN, "prompt_id": "hibari:heart", "audio_format": "wav",
                                                  "sample_rate": 24000}, timeout=110)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["audio"]  # CosyVoice's JSON: the file in base64
    check(*decode(base64.b64decode(response.json()["audio"], validate=True)), 24000, 1.5, 6.0)
    check(*cosyvoice_ws(srv, "hibari:heart", EN + " And a second sentence follows it."), 24000, 2.5, 9.0)
    client = StackFlow(srv.stackflow_port)  # type: ignore[attr-defined]
    try:
        check(client.speak("hibari:heart", EN), 16000, 16000, 1.5, 6.0)
    finally:
        client.close()


def test_hibari_speed_through_openai(srv: Server) -> None:
    normal, _ = openai_speech(srv, "hibari:heart", EN)
    body = {"model": "tts-1", "voice": "hibari:heart", "input": EN, "response_format": "wav", "speed": 1.6}
    fast, rate = decode(httpx.post(f"{srv.url}/v1/audio/speech", json=body, timeout=110).content)
    assert rate == 24000 and 0.5 < len(fast) / len(normal) < 0.75 and rms(fast) > 0.02


# -- Pico -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lang", "text"), [("de", "Guten Morgen, wie geht es Ihnen heute?"),
                                            ("fr", "Bonjour, comment allez-vous aujourd'hui ?"),
                                            ("es", "Buenos días, ¿cómo está usted hoy?"),
                                            ("it", "Buongiorno, come sta oggi?")])
def test_pico_languages_through_alltalk(srv: Server, lang: str, text: str) -> None:
    """AllTalk's language field (GPT-SoVITS v2 has none of these languages, OpenAI no language field)."""
    from voxgate.engines.pico import ROUTED

    form = {"text_input": text, "character_voice_gen": "female_01.wav", "language": lang,
            "output_file_name": f"pico{lang}", "text_filtering": "none"}
    made = httpx.post(f"{srv.url}/api/tts-generate", data=form, timeout=110).json()
    assert made.get("status") == "generate-success", made
    samples, rate = decode(httpx.get(srv.url + made["output_file_url"], timeout=30).content)
    routed = any(tag.startswith(lang) for tag in ROUTED)
    check(samples, rate, 24000, 1.0, 6.0)  # AllTalk answers at the rate of the voice asked for (hibari's)
    loaded = sessions(srv)
    assert any(v.startswith(f"pico:{lang}") for v in loaded) == routed
    assert any(v.startswith(f"espeak:{lang}") for v in loaded) != routed


def test_hibari_is_a_base_for_registered_voices(srv: Server) -> None:
    """A reference spoken by hibari itself (other words) is matched to hibari, and the voice speaks at 24 kHz."""
    from voxgate.audio.encoders import encode_all
    from voxgate.engines.base import EngineParams
    from voxgate.engines.hibari import HibariEngine

    engine = HibariEngine()
    loaded = engine.load(engine.voices()[0], threads=1)
    try:
        reference = np.concatenate([p.samples for p in loaded.synthesize(
            "A clear voice reads these words aloud. It speaks slowly and calmly, so that every sound can be "
            "heard. The weather was fine that morning.", EngineParams(seed=3))])
    finally:
        loaded.close()
    created = httpx.post(f"{srv.url}/v1/audio/voices", data={"name": "Heart Copy", "language": "en"},
                         files={"audio": ("ref.wav", encode_all(reference, 24000, "wav"), "audio/wav")}, timeout=120)
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["base_voice"] == "hibari:heart" and voice["engine"] == "hibari", voice
    check(*openai_speech(srv, voice["id"], EN), 24000, 1.5, 6.0)

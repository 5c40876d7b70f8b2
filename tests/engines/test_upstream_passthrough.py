"""An upstream's own audio passed through, and streamed text streamed on, against a second voxgate process.

Streamed text (SynthesisService.forwards_text): a client streaming text to F's CosyVoice WebSocket for a voice
of the `cv` upstream, or of U's Wyoming port as a `wyoming` upstream (`w`), gets its audio from one upstream
session that received the text piece by piece.

One upstream voxgate U and one front voxgate F with U as an `openai` upstream (`v`, through a recording proxy
in this process, which keeps U's answers: synthesis is not byte-for-byte repeatable, so F's bytes are
compared with the very answer U gave F), as a `gptsovits` (`g`), `flashtts` (`fl`) and `alltalk` (`at`)
upstream through the same proxy, a `cosyvoice` upstream directly (`cv`) and through a recording WebSocket proxy
(`cvp`), and ports where nothing listens with `fallback=1` (`dead`, `dead16`). Passthrough
(SynthesisService.passthrough): the bytes F sends are U's own when the client's format is one U can be asked
for at the client's rate and nothing changes the audio; they are decoded and re-encoded when the format or
rate cannot pass (cosyvoice kind: pcm only; a Flash-TTS whole file) or a pitch applies, and a fallback to a
local voice still answers in the client's format.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import connect
from websockets.sync.server import Server as WsServer
from websockets.sync.server import ServerConnection, serve

from tests.conftest import Server, decode, pcm16, rms, start_server, stop_server

VOICE = "hibari:heart"  # 24 kHz (named: tests never rely on the default voice)
TEXT = "The upstream speaks this sentence. Then it says a second one, a little longer than the first."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proxy:
    """A loopback HTTP proxy to one server that keeps every POST's JSON body and answer."""

    target: str
    answers: list[tuple[dict[str, object], bytes]] = field(default_factory=list)

    def start(self) -> http.server.ThreadingHTTPServer:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self, body: bytes | None) -> None:
                response = httpx.request(self.command, proxy.target + self.path, content=body, timeout=60,
                                         headers={"Content-Type": self.headers.get("Content-Type", "")})
                if body is not None:  # JSON bodies; an AllTalk form as its fields
                    asked = json.loads(body) if body.startswith(b"{") else dict(parse_qsl(body.decode()))
                    proxy.answers.append((asked, response.content))
                elif self.path.startswith("/api/tts-generate-streaming?"):  # AllTalk's streaming call: its query
                    proxy.answers.append((dict(parse_qsl(urlsplit(self.path).query)), response.content))
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@dataclass
class WsProxy:
    """A loopback proxy to one server's CosyVoice WebSocket that keeps every message the server sent (its HTTP
    GETs, the voice listing and health probe, are forwarded as they are)."""

    target: str
    sent: list[dict[str, object]] = field(default_factory=list)

    def start(self) -> WsServer:
        proxy = self

        def http(connection: ServerConnection, request: Request) -> Response | None:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None
            answer = httpx.get(proxy.target + request.path, timeout=30)
            return connection.respond(answer.status_code, answer.text)

        def relay(client: ServerConnection) -> None:
            with connect(proxy.target.replace("http://", "ws://") + "/tts", open_timeout=10) as up:
                def back() -> None:
                    with contextlib.suppress(ConnectionClosed):
                        for message in up:
                            proxy.sent.append(json.loads(message))
                            client.send(message)

                thread = threading.Thread(target=back, daemon=True)
                thread.start()
                try:
                    with contextlib.suppress(ConnectionClosed):
                        for message in client:
                            up.send(message)
                finally:
                    up.close()
                    thread.join(timeout=30)

        server = serve(relay, "127.0.0.1", 0, process_request=http)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@dataclass
class Pair:
    upstream: Server
    front: Server
    proxy: Proxy
    ws_proxy: WsProxy


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    wyoming = free_port()
    upstream = start_server(tmp_path_factory.mktemp("upstream"), "--match-bases", "none-needed",
                            "--wyoming-port", str(wyoming))
    proxy = Proxy(upstream.url)
    proxied = proxy.start()
    ws_proxy = WsProxy(upstream.url)
    ws_proxied = ws_proxy.start()
    ws_port = ws_proxied.socket.getsockname()[1]
    try:
        ws = upstream.url.replace("http://", "ws://")
        front = start_server(tmp_path_factory.mktemp("front"), "--no-warmup", "--match-bases", "none-needed",
                             "--upstream", f"v=openai+http://127.0.0.1:{proxied.server_address[1]}/v1",
                             "--upstream", f"g=gptsovits+http://127.0.0.1:{proxied.server_address[1]}"
                                           f"?voices={VOICE}&prompt_lang=en&text_lang=en",
                             "--upstream", f"cv=cosyvoice+{ws}",
                             "--upstream", f"cvp=cosyvoice+ws://127.0.0.1:{ws_port}",
                             "--upstream", f"fl=flashtts+http://127.0.0.1:{proxied.server_address[1]}",
                             "--upstream", f"at=alltalk+http://127.0.0.1:{proxied.server_address[1]}",
                             "--upstream", f"w=wyoming+tcp://127.0.0.1:{wyoming}",
                             "--upstream", f"dead=openai+http://127.0.0.1:{free_port()}/v1?voices=x&retries=0"
                                           "&fallback=1&language=en-US",
                             "--upstream", f"dead16=openai+http://127.0.0.1:{free_port()}/v1?voices=x&retries=0"
                                           "&fallback=1&language=en-US&pcm_rate=16000",
                             "--upstream-refresh", "600")
    except BaseException:
        proxied.shutdown()
        ws_proxied.shutdown()
        stop_server(upstream)
        raise
    try:
        yield Pair(upstream, front, proxy, ws_proxy)
    finally:
        stop_server(front)
        ws_proxied.shutdown()
        proxied.shutdown()
        proxied.server_close()
        stop_server(upstream)


def speech(server: Server, voice: str, fmt: str, **fields: object) -> bytes:
    response = httpx.post(f"{server.url}/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "input": TEXT, "voice": voice, "response_format": fmt, **fields})
    assert response.status_code == 200, response.text
    return response.content


def check(audio: np.ndarray, rate: int, expected_rate: int = 24_000) -> float:
    seconds = len(audio) / rate
    assert rate == expected_rate
    assert 3.0 < seconds < 12.0, seconds
    assert rms(audio) > 0.02
    return seconds


def test_passthrough_gives_the_upstreams_own_bytes_and_reencodes_when_the_audio_changes(pair: Pair) -> None:
    front, answers = pair.front, pair.proxy.answers
    through = {fmt: speech(front, f"v:{VOICE}", fmt) for fmt in ("mp3", "pcm")}
    # the same format, nothing to change: the upstream's answers are the client's, byte for byte (no calibration
    # request either: the audio is not levelled). An mp3 file does not join another: the whole text is one
    # request; raw pcm joins, so the front still sends its segments one request each (the first clause first)
    asked = [(body["input"], body["voice"], body["response_format"]) for body, _ in answers]
    assert asked == [(TEXT, VOICE, "mp3"), (TEXT[:34], VOICE, "pcm"), (TEXT[35:], VOICE, "pcm")]
    assert through["mp3"] == answers[0][1]
    assert through["pcm"] == answers[1][1] + answers[2][1]
    seconds = check(*decode(through["mp3"]))
    assert abs(len(pcm16(through["pcm"])) / 24_000 - seconds) < 0.5

    # a pitch change: the upstream is asked for PCM (and the voice's level, once), the front shifts and encodes
    del answers[:]
    pitched = speech(front, f"v:{VOICE}", "mp3", pitch=1.12)
    assert {body["response_format"] for body, _ in answers} == {"pcm"}
    assert pitched not in [answer for _, answer in answers]
    assert abs(check(*decode(pitched)) - seconds) < 1.0

    # the cosyvoice kind asks for PCM only: the client's mp3 is encoded by the front
    other = speech(front, f"cv:{VOICE}", "mp3")
    check(*decode(other))

    # an upstream that is down: the local fallback voice speaks, in the client's format (a whole mp3)
    fallback = speech(front, "dead:x", "mp3")
    check(*decode(fallback))


def test_encoder_passes_bytes_through_only_where_the_format_stays_valid() -> None:
    from voxgate.audio.encoders import open_encoder

    tone = (0.3 * np.sin(np.arange(4800) * 0.1)).astype(np.float32)
    mp3 = open_encoder("mp3", 24_000)
    assert mp3.passthrough(b"upstream bytes") == b"upstream bytes"
    assert mp3.encode(np.zeros(0, np.float32)) == b""  # an empty chunk (timings only) adds nothing
    with pytest.raises(RuntimeError):
        mp3.encode(tone)  # samples after a passed file would make two files in one
    assert mp3.finish() == b""  # no trailer of its own: the passed bytes were the file

    encoded = open_encoder("flac", 24_000)
    encoded.encode(tone)  # its header may have gone out
    with pytest.raises(RuntimeError):
        encoded.passthrough(b"upstream bytes")
    encoded.close()

    pcm = open_encoder("pcm", 24_000)  # raw pcm joins: passed bytes and encoded samples interleave
    out = pcm.encode(tone[:2]) + pcm.passthrough(b"\x01\x00") + pcm.encode(tone[:1]) + pcm.finish()
    assert len(out) == 8 and out[4:6] == b"\x01\x00"


def metric(server: Server, name: str, **labels: str) -> float:
    """A sample of /metrics by name and labels (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize(("upstream", "dialect"), [("cv", "cosyvoice"), ("w", "wyoming")])
def test_streamed_text_goes_on_to_the_upstream_in_one_session(pair: Pair, upstream: str, dialect: str) -> None:
    up, front = pair.upstream, pair.front
    speech(front, f"{upstream}:{VOICE}", "pcm")  # the voice's level measured (its calibration is an upstream request)
    sessions = metric(up, "voxgate_requests_total", dialect=dialect)
    jobs = metric(front, "voxgate_segments_total", engine="upstream")
    pieces = ["The first sentence ", "streams in ", "piece by piece. ", "Then a second ", "one follows it, ",
              "and a third ", "sentence ends the text."]
    audio: list[bytes] = []
    with connect(front.url.replace("http://", "ws://") + "/tts", open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": f"{upstream}:{VOICE}", "audio_format": "pcm",
                                           "sample_rate": 24_000}}))
        first_sent = time.monotonic()
        for piece in pieces[:3]:
            ws.send(json.dumps({"text": piece, "done": False}))
        # the first audio comes while the text is still open (the upstream works on what it has)
        message = json.loads(ws.recv(timeout=60))
        assert not message.get("error"), message
        first_audio = time.monotonic() - first_sent
        audio.append(base64.b64decode(message["data"]))
        for piece in pieces[3:]:
            ws.send(json.dumps({"text": piece, "done": False}))
            time.sleep(0.05)
        ws.send(json.dumps({"text": "", "done": True}))
        for _ in range(2000):
            message = json.loads(ws.recv(timeout=60))
            assert not message.get("error"), message
            if message.get("is_end"):
                break
            audio.append(base64.b64decode(message["data"]))
    samples = pcm16(b"".join(audio))
    assert 5.0 < len(samples) / 24_000 < 20.0, len(samples) / 24_000
    assert rms(samples) > 0.02
    assert first_audio < 30.0
    # one job on the front, one session on the upstream, for three sentences sent in seven pieces
    assert metric(front, "voxgate_segments_total", engine="upstream") == jobs + 1
    assert metric(up, "voxgate_requests_total", dialect=dialect) == sessions + 1


def test_gptsovits_dialect_gets_a_gptsovits_upstreams_raw_bytes(pair: Pair) -> None:
    """GPT-SoVITS dialect → `gptsovits` upstream (U's own /tts): a wav is encoded by the front from PCM (and
    tells the kind the model's rate); raw at that rate is then U's raw answer byte for byte."""
    front, answers = pair.front, pair.proxy.answers
    del answers[:]
    fields = {"text": TEXT, "text_lang": "en", "ref_audio_path": f"g:{VOICE}", "prompt_lang": "en",
              "text_split_method": "cut0", "fragment_interval": 0}

    def tts(**extra: object) -> bytes:
        response = httpx.post(f"{front.url}/tts", json={**fields, **extra}, timeout=60)
        assert response.status_code == 200, response.text
        return response.content

    wav = tts(media_type="wav")  # the front's own whole WAV, from the upstream's PCM (streamed wav)
    # (and once more to measure the voice's level): PCM the front decodes, levels and encodes
    assert {(body["media_type"], body["ref_audio_path"]) for body, _ in answers} == {("wav", VOICE)}
    assert wav not in [answer for _, answer in answers]  # U streams a zero-size header; the front's has sizes
    seconds = check(*decode(wav), expected_rate=32_000)

    del answers[:]
    raw = tts(media_type="raw", streaming_mode=1)
    whole = tts(media_type="raw")  # streaming_mode 0: one body, the same passed bytes
    assert [body["media_type"] for body, _ in answers] == ["raw", "raw"]
    assert raw == answers[0][1] and whole == answers[1][1]
    assert abs(len(pcm16(raw)) / 32_000 - seconds) < 1.0
    assert rms(pcm16(raw)) > 0.02

    # across dialect and kind the decision is the kind's: raw at 32 kHz is not the openai kind's 24 kHz pcm, nor
    # the OpenAI dialect's 24 kHz pcm the gptsovits kind's 32 kHz raw: both are PCM the front resamples (the
    # durations differ a little: U's GPT-SoVITS answers end with its fragment silence, its OpenAI ones do not)
    del answers[:]
    crossed = tts(media_type="raw", ref_audio_path=f"v:{VOICE}")
    assert {body["response_format"] for body, _ in answers} == {"pcm"}
    assert crossed not in [answer for _, answer in answers]
    assert abs(len(pcm16(crossed)) / 32_000 - seconds) < 2.0 and rms(pcm16(crossed)) > 0.02
    del answers[:]
    openai = speech(front, f"g:{VOICE}", "pcm")
    assert {body["media_type"] for body, _ in answers} == {"wav"}
    assert abs(len(pcm16(openai)) / 24_000 - seconds) < 2.0 and rms(pcm16(openai)) > 0.02


def flash(server: Server, path: str, **fields: object) -> bytes:
    response = httpx.post(f"{server.url}{path}", json=fields, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


def test_flash_dialect_gets_a_flashtts_upstreams_streamed_bytes(pair: Pair) -> None:
    """Flash-TTS dialect → `flashtts` upstream (U's own /speak): a streamed answer at the engine's rate (both
    16 kHz, as /server_info says) is U's answer byte for byte, in every format; a whole file (stream false), a
    pitch level or another rate (the Flash-shaped /v1/audio/speech at 24 kHz) is decoded and encoded again."""
    front, answers = pair.front, pair.proxy.answers
    del answers[:]
    voice = f"fl:{VOICE}"
    mp3 = flash(front, "/speak", text=TEXT, name=voice, stream=True, response_format="mp3")
    assert [(b["text"], b["name"], b["response_format"], b["stream"]) for b, _ in answers] == \
        [(TEXT, VOICE, "mp3", True)]  # one container: the whole text is one request (and no calibration)
    assert mp3 == answers[0][1]
    seconds = check(*decode(mp3), expected_rate=16_000)

    del answers[:]
    pcm = flash(front, "/speak", text=TEXT, name=voice, stream=True, response_format="pcm")
    assert [b["response_format"] for b, _ in answers] == ["pcm", "pcm"]  # raw joins: one request per segment
    assert pcm == answers[0][1] + answers[1][1]
    assert abs(len(pcm16(pcm)) / 16_000 - seconds) < 0.5 and rms(pcm16(pcm)) > 0.02

    # what cannot pass is asked for as WAV (PCM) and encoded by the front
    del answers[:]
    whole = flash(front, "/speak", text=TEXT, name=voice, stream=False, response_format="mp3")
    pitched = flash(front, "/speak", text=TEXT, name=voice, stream=True, response_format="mp3", pitch="high")
    rated = flash(front, "/v1/audio/speech", model="spark", input=TEXT, voice=voice, response_format="mp3")
    assert {b["response_format"] for b, _ in answers} == {"wav"}
    assert not {whole, pitched, rated} & {answer for _, answer in answers}
    assert abs(check(*decode(whole), expected_rate=16_000) - seconds) < 1.0
    assert abs(check(*decode(pitched), expected_rate=16_000) - seconds) < 1.0
    assert abs(check(*decode(rated)) - seconds) < 1.0  # 24 kHz: that route's rate, not the upstream's 16 kHz

    # an openai upstream's files are at its 24 kHz: not this dialect's 16 kHz, so they are encoded again
    del answers[:]
    crossed = flash(front, "/speak", text=TEXT, name=f"v:{VOICE}", stream=True, response_format="mp3")
    assert {b["response_format"] for b, _ in answers} == {"pcm"}
    assert abs(check(*decode(crossed), expected_rate=16_000) - seconds) < 1.0

    # an upstream that is down (`dead16`: an openai upstream of 16 kHz, whose pcm would pass): the local fallback
    # voice speaks before any upstream bytes, in the client's format
    fallback = flash(front, "/speak", text=TEXT, name="dead16:x", stream=True, response_format="pcm")
    assert 3.0 < len(pcm16(fallback)) / 16_000 < 12.0 and rms(pcm16(fallback)) > 0.02


def alltalk_stream(server: Server, voice: str) -> bytes:
    response = httpx.get(f"{server.url}/api/tts-generate-streaming", timeout=60,
                         params={"text": TEXT, "voice": voice, "language": "en", "output_file": "x"})
    assert response.status_code == 200, response.text
    return response.content


def test_alltalk_dialect_gets_an_alltalk_upstreams_streamed_bytes(pair: Pair) -> None:
    """AllTalk dialect → `alltalk` upstream (U's own streaming route): the client gets U's streamed WAV — its
    zero-size 24 kHz header, then its int16 PCM — byte for byte (raw joins: one request per segment, each
    answer's header left out after the first). Any kind whose 24 kHz PCM passes (openai) does too; a kind that
    cannot (cosyvoice) is decoded and written again."""
    from voxgate.audio.pcm import wav_header

    front, answers = pair.front, pair.proxy.answers
    header = wav_header(24_000, unknown="zero")
    del answers[:]
    through = alltalk_stream(front, f"at:{VOICE}")
    assert [(q["text"], q["voice"], q["language"]) for q, _ in answers] == \
        [(TEXT[:34], VOICE, "en"), (TEXT[35:], VOICE, "en")]
    assert all(answer.startswith(header) for _, answer in answers)
    assert through == answers[0][1] + answers[1][1][len(header):]
    seconds = len(pcm16(through[44:])) / 24_000
    assert 3.0 < seconds < 12.0 and rms(pcm16(through[44:])) > 0.02

    del answers[:]
    crossed = alltalk_stream(front, f"v:{VOICE}")
    assert [b["response_format"] for b, _ in answers] == ["pcm", "pcm"]
    assert crossed == header + answers[0][1] + answers[1][1]

    # decoded and written again: a kind that cannot pass (wyoming), and the local fallback of an upstream that
    # is down (`dead` is an openai upstream whose pcm would pass: it fails before any bytes)
    for voice in (f"w:{VOICE}", "dead:x"):
        decoded = alltalk_stream(front, voice)
        assert decoded.startswith(header)
        assert 3.0 < len(pcm16(decoded[44:])) / 24_000 < 12.0 and rms(pcm16(decoded[44:])) > 0.02


def cosyvoice_session(server: Server, voice: str, fmt: str, rate: int) -> list[dict[str, object]]:
    """A WebSocket session whose text comes in pieces; its audio messages."""
    pieces = ["The first sentence ", "streams in ", "piece by piece. ", "Then a second ", "one follows it."]
    messages: list[dict[str, object]] = []
    with connect(server.url.replace("http://", "ws://") + "/tts", open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": voice, "audio_format": fmt, "sample_rate": rate}}))
        for piece in pieces:
            ws.send(json.dumps({"text": piece, "done": False}))
        ws.send(json.dumps({"text": "", "done": True}))
        for _ in range(2000):
            message = json.loads(ws.recv(timeout=60))
            assert not message.get("error"), message
            if message.get("is_end"):
                return messages
            messages.append(message)
    raise AssertionError("no is_end")


def test_cosyvoice_dialect_gets_a_cosyvoice_upstreams_pcm(pair: Pair) -> None:
    """CosyVoice WebSocket → `cosyvoice` upstream (U's own WebSocket, through a recording proxy): streamed text
    goes on in one session, and raw pcm at the rate the kind asks for (24 kHz) is U's messages' bytes, joined
    (raw joins; the front's message boundaries are its own). Another rate or a format whose every message is a
    file of its own (mp3) is decoded and encoded again."""
    front, sent = pair.front, pair.ws_proxy.sent
    voice = f"cvp:{VOICE}"
    cosyvoice_session(front, voice, "pcm", 16_000)  # the voice's level measured, if a PCM path wants it
    del sent[:]
    messages = cosyvoice_session(front, voice, "pcm", 24_000)
    upstream = [m for m in sent if m.get("data")]
    assert {(m["audio_format"], m["sample_rate"]) for m in upstream} == {("pcm", 24_000)}
    assert all(m["sample_rate"] == 24_000 for m in messages)
    passed = b"".join(base64.b64decode(str(m["data"])) for m in messages)
    assert passed == b"".join(base64.b64decode(str(m["data"])) for m in upstream)
    seconds = len(pcm16(passed)) / 24_000
    assert 3.0 < seconds < 15.0 and rms(pcm16(passed)) > 0.02

    del sent[:]
    slower = cosyvoice_session(front, voice, "pcm", 16_000)
    assert {(m["audio_format"], m["sample_rate"]) for m in sent if m.get("data")} == {("pcm", 24_000)}
    resampled = pcm16(b"".join(base64.b64decode(str(m["data"])) for m in slower))
    assert abs(len(resampled) / 16_000 - seconds) < 1.5 and rms(resampled) > 0.02

    del sent[:]
    files = cosyvoice_session(front, voice, "mp3", 24_000)
    assert {m["audio_format"] for m in sent if m.get("data")} == {"pcm"}
    audio, rate = decode(base64.b64decode(str(files[0]["data"])))  # each message is an mp3 file of its own
    assert rate == 24_000 and rms(audio) > 0.02
    total = sum(len(decode(base64.b64decode(str(m["data"])))[0]) for m in files) / 24_000
    assert abs(total - seconds) < 1.5

    # another dialect, the same kind: the OpenAI dialect's 24 kHz pcm is U's messages' bytes (one upstream
    # session per segment, raw joins)
    del sent[:]
    openai = speech(front, voice, "pcm")
    assert {(m["audio_format"], m["sample_rate"]) for m in sent if m.get("data")} == {("pcm", 24_000)}
    assert openai == b"".join(base64.b64decode(str(m["data"])) for m in sent if m.get("data"))
    assert rms(pcm16(openai)) > 0.02

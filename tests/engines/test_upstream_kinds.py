"""The cosyvoice, flashtts and alltalk upstream kinds against a second voxgate process, which speaks all three.

One upstream process for the module; each kind lists its voices, speaks (audio decoded and checked),
streams (pieces before the end), clones where the wire can (the new voice spoken back), reports an upstream
error with its status, and closes the upstream request when its iterator is closed early.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, rms, start_server, stop_server
from voxgate.core.types import Piece
from voxgate.engines.remote.alltalk import AllTalkUpstream, _file_path, language_code
from voxgate.engines.remote.backend import upstream_fault
from voxgate.engines.remote.base import NotSupported, UpstreamConfig, UpstreamError, UpstreamRequest
from voxgate.engines.remote.cosyvoice import CosyVoiceUpstream
from voxgate.engines.remote.flashtts import FlashTtsUpstream, speed_level
from voxgate.engines.remote.pcmstream import WavStream, decode_file

VOICE = "hibari:heart"  # 24 kHz, warmed at the upstream's start (named: tests never rely on the default)
TWO = "The upstream speaks this first sentence. And then it says a second one, a little longer."
LONG = " ".join(f"This is sentence number {n} of a long text that nobody will hear to the end." for n in range(12))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("upstream"), "--match-bases", "none-needed")  # no background work
    yield srv
    stop_server(srv)


def client() -> httpx.AsyncClient:
    """The shared client a kind is given (made in each test: async fixtures would run on another loop)."""
    return httpx.AsyncClient(trust_env=False)


def config(server: Server, kind: str, url: str | None = None, **options: str) -> UpstreamConfig:
    return UpstreamConfig(name=f"up{kind}", kind=kind, url=url or server.url, timeout=30.0, options=options)


async def timed(stream: AsyncIterator[Piece]) -> tuple[list[Piece], list[float], float]:
    """Every piece, when each arrived, and when the stream ended (seconds from the first anext)."""
    started = time.monotonic()
    pieces, times = [], []
    async for piece in stream:
        pieces.append(piece)
        times.append(time.monotonic() - started)
    return pieces, times, time.monotonic() - started


def check_speech(pieces: list[Piece], rate: int, seconds: tuple[float, float]) -> np.ndarray:
    assert pieces, "no audio"
    assert {p.rate for p in pieces} == {rate}
    assert all(p.samples.dtype == np.float32 and p.samples.ndim == 1 for p in pieces)
    audio = np.concatenate([p.samples for p in pieces])
    assert seconds[0] < len(audio) / rate < seconds[1], len(audio) / rate
    assert rms(audio) > 0.02 and np.abs(audio).max() <= 1.0
    return audio


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2,
                       2, 16, b"data", len(pcm)) + pcm


_REFERENCE: list[bytes] = []


async def reference(kind: CosyVoiceUpstream) -> bytes:
    """About three seconds of the upstream's own speech, as a WAV file (made once)."""
    if _REFERENCE:
        return _REFERENCE[0]
    pieces = [p async for p in kind.synthesize(UpstreamRequest("A reference voice reads this short sentence "
                                                               "for the clone.", "hibari:heart"))]
    _REFERENCE.append(wav_bytes(np.concatenate([p.samples for p in pieces]), pieces[0].rate))
    return _REFERENCE[0]


async def grew(server: Server, before: dict[str, float]) -> bool:
    """Whether every counter of `before` grew on the upstream within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(server.metric(name) > value for name, value in before.items()):
            return True
        await asyncio.sleep(0.1)
    return False


async def close_early(server: Server, stream: AsyncIterator[Piece]) -> None:
    """Take the first piece of a long text and close the iterator: the upstream counts a cancelled request
    and drops segments it had not spoken yet — so that first piece came long before the end."""
    names = ("voxgate_cancelled_total", "voxgate_segments_dropped_total")
    before = {name: server.metric(name) for name in names}
    first = await anext(stream)
    assert len(first.samples)
    await stream.aclose()  # type: ignore[attr-defined]
    assert await grew(server, before)


# -- CosyVoice ---------------------------------------------------------------------------------------------


async def test_cosyvoice(upstream: Server) -> None:
    async with client() as http:
        ws_url = upstream.url.replace("http://", "ws://")
        kind = CosyVoiceUpstream(config(upstream, "cosyvoice", ws_url), http)
        assert await kind.health()
        ids = {v.id: v for v in await kind.voices()}
        assert VOICE in ids and ids[VOICE].sample_rate == 24_000

        pieces, times, total = await timed(kind.synthesize(UpstreamRequest(TWO, VOICE)))
        check_speech(pieces, 24_000, (3.0, 12.0))
        assert len(pieces) >= 2 and times[0] < total  # in pieces (close_early shows they come before the end)
        assert len(kind._idle) == 1  # the socket waits for the next session (no handshake per segment)
        pooled = kind._idle[0]

        # text streamed in: pieces go on as they come, and the audio covers all of them
        async def typed() -> AsyncIterator[str]:
            for word in "and this part arrives word by word, as a language model would write it.".split():
                yield word + " "
                await asyncio.sleep(0.01)

        streamed = [p async for p in kind.stream_text(UpstreamRequest("First, a clause.", VOICE), typed())]
        check_speech(streamed, 24_000, (2.5, 12.0))
        assert kind._idle == [pooled]  # the same socket, a second session

        with pytest.raises(UpstreamError) as caught:
            [p async for p in kind.synthesize(UpstreamRequest("Hello.", "no-such-voice"))]
        assert caught.value.status == 404 and "No such speaker" in caught.value.message
        assert caught.value.upstream == "upcosyvoice" and not caught.value.sent
        assert kind._idle == []  # a session that failed is not reused

        await close_early(upstream, kind.synthesize(UpstreamRequest(LONG, VOICE)))

        prompt_id = await kind.clone("cosy-clone", await reference(kind), "A reference voice reads this.", "en")
        assert prompt_id == "cosy-clone"
        assert prompt_id in {v.id for v in await kind.voices()}
        spoken = [p async for p in kind.synthesize(UpstreamRequest("Spoken by the cloned voice.", prompt_id))]
        check_speech(spoken, 24_000, (0.8, 6.0))
        with pytest.raises(UpstreamError) as again:  # the upstream keeps the first voice of a name
            await kind.clone("cosy-clone", await reference(kind), None, None)
        assert again.value.status == 409

        await kind._idle[0].close()  # a pooled socket the server closed meanwhile is replaced, unnoticed
        assert [p async for p in kind.synthesize(UpstreamRequest("Still here.", VOICE))]
        await kind.aclose()
        assert kind._idle == []


async def test_cosyvoice_down() -> None:
    async with client() as http:
        kind = CosyVoiceUpstream(UpstreamConfig("gone", "cosyvoice", "ws://127.0.0.1:9", connect_timeout=2), http)
        assert not await kind.health()
        with pytest.raises(UpstreamError) as caught:
            [p async for p in kind.synthesize(UpstreamRequest("Hello.", VOICE))]
        assert caught.value.status is None and "opening /tts" in caught.value.message


async def test_cosyvoice_that_answers_another_rate_is_not_asked_to_pass_bytes_again() -> None:
    """An upstream whose messages are not pcm at the asked rate refuses passthrough once (NotSupported before any
    bytes, not an upstream fault: no breaker count, no 'down'), and is decoded from then on."""
    async with client() as http:
        kind = CosyVoiceUpstream(UpstreamConfig("cv22", "cosyvoice", "ws://127.0.0.1:9"), http)
        asked: list[str] = []

        async def session(request: UpstreamRequest, texts: object) -> AsyncIterator[dict[str, object]]:
            asked.append(request.text)
            yield {"audio_format": "pcm", "sample_rate": 22050, "data": "AAAA"}

        kind._session = session  # type: ignore[method-assign]
        assert kind.encodes("pcm", 24000)
        with pytest.raises(NotSupported) as caught:
            [b async for b in kind.encoded(UpstreamRequest("Hello.", VOICE), "pcm")]
        assert "22050 Hz" in caught.value.message and not caught.value.sent
        assert not upstream_fault(caught.value)
        assert not kind.encodes("pcm", 24000) and asked == ["Hello."]


# -- Flash-TTS ----------------------------------------------------------------------------------------------


async def test_flashtts(upstream: Server) -> None:
    async with client() as http:
        kind = FlashTtsUpstream(config(upstream, "flashtts"), http)
        assert await kind.health()
        roles = {v.id: v for v in await kind.voices()}
        assert {"female", "male", VOICE} <= set(roles)
        rate = roles[VOICE].sample_rate
        assert rate == (await http.get(f"{upstream.url}/server_info")).json()["info"]["sample_rate"]

        pieces, times, total = await timed(kind.synthesize(UpstreamRequest(TWO, VOICE)))
        check_speech(pieces, rate, (3.0, 12.0))
        assert len(pieces) >= 2 and times[0] < total

        whole = FlashTtsUpstream(config(upstream, "flashtts", stream="false"), http)
        one = [p async for p in whole.synthesize(UpstreamRequest("One whole file.", VOICE, speed=1.5))]
        assert len(one) == 1
        check_speech(one, rate, (0.4, 4.0))

        with pytest.raises(UpstreamError) as caught:
            [p async for p in kind.synthesize(UpstreamRequest("Hello.", "no-such-role"))]
        assert caught.value.status == 400 and "no-such-role" in caught.value.message

        await close_early(upstream, kind.synthesize(UpstreamRequest(LONG, VOICE)))

        cosy = CosyVoiceUpstream(config(upstream, "cosyvoice"), http)
        role = await kind.clone("flash-clone", await reference(cosy), "A reference voice reads this.", "en")
        assert role == "flash-clone" and role in {v.id for v in await kind.voices()}
        spoken = [p async for p in kind.synthesize(UpstreamRequest("Spoken by the new role.", role))]
        check_speech(spoken, rate, (0.8, 6.0))


def test_flash_speed_levels() -> None:
    assert [speed_level(s) for s in (1.0, 0.4, 0.8, 1.5, 2.5, 9.0)] == \
        [None, "very_low", "low", "moderate", "high", "very_high"]


# -- AllTalk ------------------------------------------------------------------------------------------------


async def test_alltalk(upstream: Server) -> None:
    async with client() as http:
        kind = AllTalkUpstream(config(upstream, "alltalk"), http)
        assert await kind.health()
        assert VOICE in {v.id for v in await kind.voices()}

        pieces, times, total = await timed(kind.synthesize(UpstreamRequest(TWO, VOICE, language="en-US")))
        check_speech(pieces, 24_000, (3.0, 12.0))  # AllTalk streams at 24 kHz
        assert len(pieces) >= 2 and times[0] < total

        # speed ≠ 1 goes through /api/tts-generate and the file it names (the voice's own rate)
        filed = [p async for p in kind.synthesize(UpstreamRequest("A generated file.", VOICE, speed=1.25))]
        assert len(filed) == 1
        check_speech(filed, 24_000, (0.4, 4.0))

        with pytest.raises(UpstreamError) as caught:
            [p async for p in kind.synthesize(UpstreamRequest("Hello.", "no-such-voice"))]
        assert caught.value.status == 404 and "no-such-voice" in caught.value.message

        await close_early(upstream, kind.synthesize(UpstreamRequest(LONG, VOICE)))

        with pytest.raises(NotSupported):
            await kind.clone("x", b"RIFF", None, None)


def test_alltalk_fetches_only_its_own_files() -> None:
    assert _file_path({"output_file_url": "/audio/voxgate_1700000000abcde.wav"}) == \
        "/audio/voxgate_1700000000abcde.wav"
    assert _file_path({"output_file_url": "http://10.0.0.9:7851/audio/a.wav"}) == "/audio/a.wav"  # legacy: path only
    for bad in ("/etc/passwd", "/audio/../../secret.wav", "http://evil/other/a.wav", "/audio/a/b.wav", ""):
        assert _file_path({"output_file_url": bad}) is None
    assert [language_code(t, "en") for t in ("en-US", "zh-Hans", "de", "xx", None)] == \
        ["en", "zh-cn", "de", "en", "en"]


def test_wav_stream_any_split() -> None:
    """A streaming header (sizes 0) with an extra chunk, cut at every byte, gives the same samples."""
    samples = (np.sin(np.arange(500) / 5) * 0.5).astype(np.float32)
    plain = wav_bytes(samples, 16_000)
    extra = plain[:12] + b"LIST" + struct.pack("<I", 5) + b"abcde\x00" + plain[12:40] + b"\x00\x00\x00\x00" + plain[44:]
    for cut in range(1, 80, 3):
        wav = WavStream()
        out = np.concatenate([wav.feed(extra[:cut]), wav.feed(extra[cut:cut + 7]), wav.feed(extra[cut + 7:])])
        assert wav.rate == 16_000 and np.allclose(out, samples, atol=1 / 16000)
    whole, rate = decode_file(plain + b"trailing junk")  # a true data size is honoured
    assert rate == 16_000 and len(whole) == len(samples)


async def test_alltalk_passes_its_stream_only_behind_alltalks_own_header() -> None:
    """AllTalk passthrough (`encoded`): the body after the 24 kHz zero-size header, however the chunks cut it;
    another header (another rate) or a 400 "Streaming not supported" is NotSupported before any bytes, and the
    kind no longer offers raw pcm after the former. Scripted upstream: the wire logic alone."""
    from voxgate.engines.remote.wire import ALLTALK_STREAM_HEADER

    body = bytes(range(200))
    rates = [24_000, 22_050]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("voice") == "mute.wav":
            return httpx.Response(400, json={"error": "Invalid value: Streaming not supported by current TTS engine"})
        rate = rates.pop(0)
        header = ALLTALK_STREAM_HEADER[:24] + struct.pack("<II", rate, 2 * rate) + ALLTALK_STREAM_HEADER[32:]
        return httpx.Response(200, content=cut(header + body), headers={"Content-Type": "audio/wav"})

    async def cut(data: bytes) -> AsyncIterator[bytes]:  # 7-byte chunks: the header arrives in pieces
        for start in range(0, len(data), 7):
            yield data[start:start + 7]

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        kind = AllTalkUpstream(UpstreamConfig("at", "alltalk", "http://gpu-box:7851"), http)
        assert kind.encodes("pcm", 24_000) and not kind.encodes("pcm", 22_050) and not kind.encodes("wav", 24_000)
        with pytest.raises(NotSupported):
            [b async for b in kind.encoded(UpstreamRequest("Hi.", "mute.wav"), "pcm")]
        assert b"".join([b async for b in kind.encoded(UpstreamRequest("Hi.", "v.wav"), "pcm")]) == body
        with pytest.raises(NotSupported):
            [b async for b in kind.encoded(UpstreamRequest("Hi.", "v.wav"), "pcm")]  # a 22.05 kHz header
        assert not kind.encodes("pcm", 24_000)


async def test_alltalk_engine_that_cannot_stream() -> None:
    """AllTalk's 400 "Streaming not supported" → /api/tts-generate, and the file is fetched from the configured
    upstream only, whatever host the answer names (legacy mode's absolute URL). Scripted upstream: the wire
    logic alone."""
    seen: list[str] = []
    audio = (np.sin(np.arange(8000) / 3) * 0.4).astype(np.float32)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url}")
        if request.url.path == "/api/tts-generate-streaming":
            return httpx.Response(400, json={"error": "Invalid value: Streaming not supported by current TTS engine"})
        if request.url.path == "/api/tts-generate":
            form = dict(httpx.QueryParams(request.content.decode()))
            assert (form["character_voice_gen"], form["language"], form["text_input"]) == ("v.wav", "de", "Hallo.")
            return httpx.Response(200, json={"status": "generate-success", "output_file_path": "/x/out.wav",
                                             "output_file_url": "http://198.51.100.7:7851/audio/out_1.wav"})
        if request.url.path == "/audio/out_1.wav":
            return httpx.Response(200, content=wav_bytes(audio, 8000))
        return httpx.Response(404, json={"detail": "Not Found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        kind = AllTalkUpstream(UpstreamConfig("at", "alltalk", "http://gpu-box:7851"), http)
        for _ in range(2):  # the second request goes straight to /api/tts-generate
            pieces = [p async for p in kind.synthesize(UpstreamRequest("Hallo.", "v.wav", language="de-DE"))]
            assert len(pieces) == 1 and pieces[0].rate == 8000 and np.allclose(pieces[0].samples, audio, atol=1e-4)
    assert [s.split("?")[0] for s in seen] == [
        "GET http://gpu-box:7851/api/tts-generate-streaming", "POST http://gpu-box:7851/api/tts-generate",
        "GET http://gpu-box:7851/audio/out_1.wav", "POST http://gpu-box:7851/api/tts-generate",
        "GET http://gpu-box:7851/audio/out_1.wav"]


# -- voxgate in front: cloning through an upstream, and its local fallback -----------------------------------


@pytest.fixture(scope="module")
def front(upstream: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A voxgate with the upstream voxgate as a CosyVoice upstream (`up`, where voices are cloned) and as a
    Flash-TTS upstream (`fl`)."""
    ws = upstream.url.replace("http://", "ws://")
    srv = start_server(tmp_path_factory.mktemp("front"), "--no-warmup", "--match-bases", "none-needed",
                       "--upstream", f"up=cosyvoice+{ws}?retries=0",
                       "--upstream", f"fl=flashtts+{upstream.url}", "--clone-upstream", "up",
                       "--upstream-refresh", "600")
    yield srv
    stop_server(srv)


def requests_of(server: Server, dialect: str) -> float:
    return server.metric(f'voxgate_requests_total{{dialect="{dialect}"}}')


def speak(server: Server, voice: str, text: str = "Spoken through the front server.") -> np.ndarray:
    response = httpx.post(f"{server.url}/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "input": text, "voice": voice, "response_format": "wav"})
    assert response.status_code == 200, response.text
    audio, rate = decode(response.content)
    assert rate == 24_000 and 1.0 < len(audio) / rate < 6.0 and rms(audio) > 0.02
    return audio


def front_voice(server: Server, voice: str) -> dict[str, object]:
    return dict(httpx.get(f"{server.url}/v1/audio/voices/{voice}", timeout=30).json())


def register(server: Server, name: str, wav: bytes, **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/audio/voices", timeout=60, files={"audio": ("ref.wav", wav, "audio/wav")},
                      data={"name": name, "transcript": "A reference voice reads this.", **fields})


def test_clone_through_upstream_and_fall_back(upstream: Server, front: Server) -> None:
    listed = httpx.get(f"{front.url}/v1/audio/voices", timeout=30).json()["voices"]
    assert {f"up:{VOICE}", f"fl:{VOICE}"} <= set(listed)
    wav = httpx.post(f"{upstream.url}/v1/audio/speech", timeout=60, json={
        "model": "tts-1", "input": "A reference voice reads this short sentence for the clone.",
        "voice": "hibari:heart", "response_format": "wav", "stream": False}).content

    # --clone-upstream up: registered in the front, cloned on the upstream's CosyVoice /clone, spoken there
    made = register(front, "e2e-clone", wav)
    assert made.status_code == 201, made.text
    described = made.json()
    assert (described["id"], described["engine"], described["kind"], described["upstream_voice"]) == \
        ("e2e-clone", "upstream", "registered", "up:e2e-clone")
    assert "e2e-clone" in httpx.get(f"{upstream.url}/speakers").json()
    before = requests_of(upstream, "cosyvoice")
    speak(front, "e2e-clone")
    assert requests_of(upstream, "cosyvoice") > before

    # the request's own upstream: Flash-TTS /add_speaker
    made = register(front, "e2e-flash", wav, upstream="fl")
    assert made.status_code == 201 and made.json()["engine"] == "upstream", made.text
    assert "e2e-flash" in httpx.get(f"{upstream.url}/audio_roles").json()["roles"]
    assert front_voice(front, "e2e-flash")["upstream_voice"] == "fl:e2e-flash"
    refused = register(front, "e2e-nowhere", wav, upstream="nope")
    assert refused.status_code == 400 and "nope" in refused.text

    # the upstream lost the voice: the front speaks it with its local matched voice (and says so in its log)
    assert httpx.post(f"{upstream.url}/remove", json={"prompt_ids": ["e2e-clone"]}).json() == \
        {"removed_speakers": ["e2e-clone"]}
    speak(front, "e2e-clone")
    assert "local voice e2e-clone" in front.log.read_text()

"""The upstream framework's logic, without servers: configuration, the queue, the breaker, retries, timeouts,
cancellation, post-processing and failover (a scripted kind stands in for an upstream: these are tests of
scheduling and protocol logic; the real upstreams are in test_upstream_servers.py)."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import AsyncIterator
from contextlib import redirect_stderr
from dataclasses import dataclass, field

import numpy as np
import pytest

from voxgate.cli import main
from voxgate.core.types import Piece
from voxgate.engines.base import EngineParams, VoiceInfo
from voxgate.engines.remote.backend import Breaker, Gate, RemoteBackend
from voxgate.engines.remote.base import NotSupported, UpstreamConfig, UpstreamError, UpstreamRequest
from voxgate.engines.remote.config import UpstreamConfigError, parse_spec, parse_upstreams
from voxgate.engines.remote.pcmstream import AudioFormatError, WavStream
from voxgate.engines.remote.wire import GPTSOVITS_LANGUAGES, GPTSOVITS_RATE, OPENAI_PCM_RATE
from voxgate.errors import EngineFailure
from voxgate.scheduling.backend import RouterBackend, SegmentJob

# ---------------------------------------------------------------------------------------------- configuration


def test_spec_strings_and_json_objects_parse_into_configs() -> None:
    config = parse_spec("gpu=openai+http://gpu-box:8880/v1?key=sk-1&timeout=20&connect_timeout=2&concurrency=2"
                        "&retries=0&breaker=5&cooldown=9&fallback=1&model=tts-1&voices=a,b")
    assert (config.name, config.kind, config.url) == ("gpu", "openai", "http://gpu-box:8880/v1")
    assert (config.api_key, config.timeout, config.connect_timeout, config.concurrency) == ("sk-1", 20.0, 2.0, 2)
    assert (config.retries, config.breaker_failures, config.breaker_cooldown, config.fallback) == (0, 5, 9.0, True)
    assert dict(config.options) == {"model": "tts-1", "voices": "a,b"}  # nothing reserved is left in the options
    objects = parse_upstreams([
        "ha=wyoming+tcp://ha-host:10200",
        {"name": "box", "kind": "gptsovits", "url": "http://gpu:9880?timeout=5", "concurrency": 1,
         "api_key": "k", "options": {"voices": {"alice": "/refs/alice.wav"}, "top_k": 5}},
    ])
    assert objects[0].url == "tcp://ha-host:10200" and objects[0].timeout == 30.0
    box = objects[1]
    assert (box.timeout, box.concurrency, box.api_key) == (5.0, 1, "k")
    assert dict(box.options) == {"voices": '{"alice": "/refs/alice.wav"}', "top_k": "5"}  # non-strings as JSON


@pytest.mark.parametrize(("spec", "says"), [
    ("gpu", r"write NAME=KIND\+URL"),
    ("gpu=telepathy+http://h", "unknown kind 'telepathy'"),
    ("kokoro=openai+http://h/v1", "local engine"),
    ("ha=wyoming+http://h:10200", "starts with tcp://"),
    ("ha=wyoming+tcp://h", "needs a port"),
    ("gpu=openai+http://u:p@h/v1", "not in the URL"),
    ("gpu=openai+http://h/v1?timeout=-1", "timeout must be a number of seconds"),
    ("gpu=openai+http://h/v1?concurrency=zero", "concurrency must be a whole number"),
    ("gpu=openai+http://h/v1?key_env=VOXGATE_TEST_NO_SUCH_VAR", "is not set"),
])
def test_bad_specs_say_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(UpstreamConfigError, match=says):
        parse_spec(spec)


def test_cli_error_is_one_line_and_exit_2() -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["serve", "--upstream", "gpu=openai+http://h/v1", "--upstream", "gpu=wyoming+tcp://h:1"])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("voxgate: --upstream: ") and "configured twice" in lines[0]


def test_environment_takes_a_json_list_of_strings_and_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxgate.settings import Settings

    monkeypatch.setenv("VOXGATE_UPSTREAMS", '["a=openai+http://h/v1?timeout=2", '
                                            '{"name": "b", "kind": "wyoming", "url": "tcp://h:10200"}]')
    configs = Settings().upstream_configs
    assert [(c.name, c.kind, c.timeout) for c in configs] == [("a", "openai", 2.0), ("b", "wyoming", 30.0)]
    monkeypatch.setenv("VOXGATE_UPSTREAMS", '[{"name": "b", "kind": "wyoming"}]')
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["voices", "list"])
    assert code == 2 and err.getvalue().strip() == ("voxgate: VOXGATE_UPSTREAMS (--upstream): upstream 'b': "
                                                    'needs "kind" and "url" strings')


def test_wire_constants_agree_with_the_dialects() -> None:
    """engines may not import dialects: the facts both need are written twice and checked here."""
    from voxgate.dialects.gptsovits.protocol import LANGUAGES, SAMPLE_RATE
    from voxgate.dialects.openai.protocol import PCM_RATE

    assert OPENAI_PCM_RATE == PCM_RATE and GPTSOVITS_RATE == SAMPLE_RATE
    from voxgate.audio.pcm import wav_header
    from voxgate.dialects.alltalk.service import STREAM_RATE
    from voxgate.engines.remote.wire import ALLTALK_STREAM_HEADER, ALLTALK_STREAM_RATE

    assert ALLTALK_STREAM_RATE == STREAM_RATE
    assert ALLTALK_STREAM_HEADER == wav_header(STREAM_RATE, unknown="zero")
    assert set(GPTSOVITS_LANGUAGES) == set(LANGUAGES)


def test_streamed_wav_with_zero_sizes_is_read_across_chunk_boundaries() -> None:
    header = b"RIFF" + struct.pack("<I", 36) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 32000,
                                                                              64000, 2, 16)
    header += b"data" + struct.pack("<I", 0)  # GPT-SoVITS's streaming header: sizes 0
    pcm = (np.sin(np.arange(3200) / 5) * 16000).astype("<i2").tobytes()
    wav, data = WavStream(), header + pcm
    # odd chunk sizes: split header fields and samples
    samples = np.concatenate([wav.feed(data[i:i + 7]) for i in range(0, len(data), 7)])
    wav.finish()
    assert wav.rate == 32000 and len(samples) == 3200
    assert np.allclose(samples * 32768, np.frombuffer(pcm, "<i2"), atol=0.5)



def _header(tag: int, channels: int, rate: int, bits: int, size: int) -> bytes:
    """A WAV header whose RIFF and data sizes are `size` (as streaming servers write them: 0 or 0xFFFFFFFF)."""
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return b"RIFF" + struct.pack("<I", size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", size)


def test_wav_stream_reads_what_streaming_servers_send() -> None:
    """Stereo int16 fed a byte at a time with 0xFFFFFFFF sizes (header split everywhere, channels averaged, an
    odd trailing byte dropped); float32 with size 0 in odd chunks; a data size smaller than what follows is
    ignored; and the broken streams each fail with a clear AudioFormatError."""
    left = (np.sin(np.arange(300) / 4) * 16000).astype("<i2")
    frames = np.stack([left, left // 2], axis=1).astype("<i2")
    data = _header(1, 2, 22050, 16, 0xFFFFFFFF) + frames.tobytes() + b"\x01"
    wav = WavStream()
    out = np.concatenate([wav.feed(data[i:i + 1]) for i in range(len(data))])
    wav.finish()
    assert wav.rate == 22050 and len(out) == 300
    assert np.allclose(out * 32768, (left.astype(np.float32) + left // 2) / 2, atol=0.5)

    floats = (np.cos(np.arange(500) / 3) * 0.25).astype("<f4")
    for size in (0, 8):  # zero, and a size far smaller than the stream: both read to the end
        wav, data = WavStream(), _header(3, 1, 48000, 32, size) + floats.tobytes()
        out = np.concatenate([wav.feed(data[i:i + 13]) for i in range(0, len(data), 13)])
        assert wav.rate == 48000 and np.array_equal(out, floats)

    cases = {b"": "empty audio stream", _header(1, 1, 16000, 16, 0)[:30]: "ended inside the WAV header"}
    for partial, says in cases.items():
        wav = WavStream()
        wav.feed(partial)
        with pytest.raises(AudioFormatError, match=says):
            wav.finish()
    for broken, says in ((b"ID3\x04" + bytes(40), "not a WAV"), (_header(1, 1, 16000, 8, 0), "8-bit")):
        with pytest.raises(AudioFormatError, match=says):
            WavStream().feed(broken)


# ---------------------------------------------------------------------------------------------- queue and breaker


async def test_gate_serves_first_segments_then_earliest_deadline() -> None:
    gate = Gate(1)
    await gate.acquire()
    order: list[str] = []

    async def wait(name: str, urgent: bool, deadline: float) -> None:
        await gate.acquire(urgent, deadline)
        order.append(name)
        gate.release()

    tasks = [asyncio.create_task(wait(*args)) for args in
             (("late", False, 9.0), ("early", False, 1.0), ("first", True, 5.0), ("gone", True, 0.0))]
    await asyncio.sleep(0)
    tasks[3].cancel()  # a job aborted while it waits loses its place
    assert gate.queued == 3
    gate.release()
    await asyncio.gather(*tasks[:3])
    assert order == ["first", "early", "late"] and gate.held == 0


def test_breaker_opens_probes_after_cooldown_and_closes() -> None:
    breaker = Breaker(failures=2, cooldown=0.05)
    now = [0.0]
    breaker.clock = lambda: now[0]  # a frozen clock: a stalled thread cannot pass the cooldown between two asserts
    assert breaker.allow() and not breaker.failure() and breaker.state == "closed"
    assert breaker.failure() and breaker.state == "open" and not breaker.allow()
    now[0] = 0.049
    assert not breaker.allow() and breaker.state == "open"  # still cooling down
    now[0] = 0.06
    assert breaker.allow() and breaker.state == "half-open"
    assert not breaker.allow()  # one probe at a time
    breaker.failure()
    assert breaker.state == "open" and breaker.opened == 2  # a failed probe opens it again
    now[0] = 0.12
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class Script:
    """What the scripted kind does on each request, in order: a list of steps per request."""

    requests: list[list[object]]
    seen: list[UpstreamRequest] = field(default_factory=list)
    closed: int = 0  # requests whose iterator was closed (its finally ran)


class ScriptedKind:
    """A kind that plays a script: Piece → yield it, float → sleep, Exception → raise."""

    def __init__(self, config: UpstreamConfig, script: Script) -> None:
        self.config, self.script = config, script

    async def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        steps = self.script.requests[len(self.script.seen)]
        self.script.seen.append(request)
        try:
            for step in steps:
                if isinstance(step, Piece):
                    yield step
                elif isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    assert isinstance(step, Exception)
                    raise step
        finally:
            self.script.closed += 1


def _tone(n: int = 2400, rate: int = 24000) -> Piece:
    return Piece((np.sin(np.arange(n) / 3) * 0.5).astype(np.float32), rate)


def _job(post: object = None) -> SegmentJob:
    voice = VoiceInfo(id="up:v", name="v", engine="upstream", language="en-US", sample_rate=24000,
                      upstream="up", engine_data={"voice": "v"})
    return SegmentJob(voice, "Hello.", EngineParams(speed=1.5), deadline=0.0, post=post)  # type: ignore[arg-type]


def _backend(script: Script, **config: object) -> RemoteBackend:
    base = {"name": "up", "kind": "openai", "url": "http://x", "timeout": 0.3, "connect_timeout": 0.1}
    return RemoteBackend(ScriptedKind(UpstreamConfig(**{**base, **config}), script))  # type: ignore[arg-type]


async def _drain(run: AsyncIterator[Piece]) -> list[Piece]:
    return [piece async for piece in run]


async def test_failures_before_audio_are_retried_and_after_audio_are_not() -> None:
    script = Script([[UpstreamError("refused")], [_tone(), _tone()]])
    backend = _backend(script, retries=1)
    job = _job()
    pieces = await _drain(backend.generate(job))
    assert len(pieces) == 2 and job.rate == 24000 and backend.stats.retried == 1
    assert script.seen[0] == UpstreamRequest(text="Hello.", voice="v", speed=1.5, language="en-US")

    script = Script([[_tone(), UpstreamError("reset")], [_tone()]])
    backend = _backend(script, retries=3)
    run = backend.generate(_job())
    assert len((await anext(run)).samples) == 2400
    with pytest.raises(EngineFailure, match="upstream up: reset") as caught:
        await anext(run)
    assert caught.value.__cause__.sent and len(script.seen) == 1  # type: ignore[union-attr]

    script = Script([[UpstreamError("no such voice", status=404)], [_tone()]])
    backend = _backend(script, retries=3)
    with pytest.raises(EngineFailure, match="no such voice"):
        await _drain(backend.generate(_job()))
    assert len(script.seen) == 1 and backend.stats.rejected == 1 and backend.breaker.consecutive == 0


async def test_silence_from_the_upstream_times_out() -> None:
    script = Script([[_tone(), 5.0, _tone()]])
    backend = _backend(script, retries=0)
    run = backend.generate(_job())
    await anext(run)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(EngineFailure, match=r"no audio within 0\.3 s"):
        await anext(run)
    assert loop.time() - started < 1.0 and script.closed == 1


async def test_closing_the_run_closes_the_upstream_request() -> None:
    script = Script([[_tone(), 0.2, _tone(), 0.2, _tone()]])
    backend = _backend(script)
    job = _job()
    run = backend.generate(job)
    await anext(run)
    backend.abort(job)  # what the service does when its client goes away
    assert await _drain(run) == []
    await asyncio.sleep(0.01)
    assert script.closed == 1 and backend.stats.cancelled == 1 and backend.stats.active == 0
    assert backend.gate.held == 0 and not backend._runs  # nothing kept of a finished job


async def test_breaker_refuses_without_asking_then_probes() -> None:
    script = Script([[UpstreamError("down")], [UpstreamError("down")], [_tone()]])
    backend = _backend(script, retries=0, breaker_failures=2, breaker_cooldown=0.1)
    now = [0.0]
    backend.breaker.clock = lambda: now[0]  # a frozen clock: a loaded machine cannot half-open it early
    for _ in range(2):
        with pytest.raises(EngineFailure, match="down"):
            await _drain(backend.generate(_job()))
    with pytest.raises(EngineFailure, match="circuit breaker is open"):
        await _drain(backend.generate(_job()))
    assert len(script.seen) == 2 and backend.stats.refused == 1
    now[0] = 0.12
    assert len(await _drain(backend.generate(_job()))) == 1  # the probe succeeds: closed again
    assert backend.breaker.state == "closed"


async def test_post_processing_runs_once_on_the_whole_segment() -> None:
    calls: list[int] = []

    def post(piece: Piece) -> Piece:
        calls.append(len(piece.samples))
        return Piece(piece.samples * 0.5, piece.rate)

    backend = _backend(Script([[_tone(), _tone(), _tone()]]))
    pieces = await _drain(backend.generate(_job(post)))
    assert calls == [7200] and len(pieces) == 1
    assert np.allclose(pieces[0].samples[:2400], _tone().samples * 0.5)


class _Local:
    """A local backend that speaks a tone for any voice (the router's other side)."""

    capacity = 2

    def __init__(self) -> None:
        self.voices: list[str] = []

    def generate(self, job: SegmentJob) -> AsyncIterator[Piece]:
        self.voices.append(job.voice.id)

        async def run() -> AsyncIterator[Piece]:
            job.rate = 16000
            yield _tone(1600, 16000)
        return run()

    def abort(self, job: SegmentJob) -> None:
        pass

    def close(self) -> None:
        pass


async def test_router_sends_upstream_voices_upstream_and_fails_over_before_audio() -> None:
    local = _Local()
    joe = VoiceInfo(id="joe", name="joe", engine="piper", language="en-US", sample_rate=16000)
    script = Script([[_tone()], [UpstreamError("down")], [_tone(), UpstreamError("reset")]])
    remote = _backend(script, retries=0)
    router = RouterBackend(local, {"up": remote}, fallback=lambda voice: joe)  # type: ignore[arg-type]
    assert [p.rate for p in await _drain(router.generate(_job()))] == [24000]  # upstream
    assert await _drain(router.generate(SegmentJob(joe, "x", EngineParams(), 0.0))) and local.voices == ["joe"]
    job = _job()
    assert [p.rate for p in await _drain(router.generate(job))] == [16000]  # failed over before audio
    assert job.voice.id == "joe" and router.fallbacks == 1
    run = router.generate(_job())
    await anext(run)
    with pytest.raises(EngineFailure, match="reset"):  # after audio the failure stands
        await anext(run)
    missing = _job()
    missing.voice = VoiceInfo(id="gone:v", name="v", engine="upstream", language="en", sample_rate=1,
                              upstream="gone", engine_data={"voice": "v"})
    with pytest.raises(EngineFailure, match="'gone' is not configured"):
        await _drain(router.generate(missing))


# ---------------------------------------------------------------------------------------------- kinds' wire logic
# httpx's MockTransport answers as the servers documented in docs/upstreams.md do (the real servers are in
# test_upstream_servers.py); these check what the kinds send and how they read what comes back.


def _wav(rate: int, samples: int, sizes: int = 0) -> bytes:
    pcm = (np.sin(np.arange(samples) / 4) * 12000).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", sizes and 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", sizes and len(pcm)) + pcm


async def test_openai_kind_lists_from_models_and_falls_back_from_pcm_to_wav() -> None:
    import json

    import httpx

    from voxgate.engines.remote.openai import OpenAIUpstream

    sent: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer sk-1"
        if request.url.path == "/v1/audio/voices":
            return httpx.Response(404, json={"detail": "Not Found"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "tts-1"}, {"id": "af_bella"}, {"id": "jm_kumo"}]})
        body = json.loads(request.content)
        sent.append(body)
        if body["response_format"] == "pcm":
            return httpx.Response(400, json={"error": {"message": "response_format 'pcm' is not supported"}})
        return httpx.Response(200, content=_wav(22050, 4410))

    config = parse_spec("k=openai+http://host:8880?key=sk-1&model=kokoro")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        kind = OpenAIUpstream(config, http)
        voices = await kind.voices()
        assert [(v.id, v.language, v.gender) for v in voices] == [("af_bella", "en-US", "female"),
                                                                  ("jm_kumo", "ja", "male")]
        request = UpstreamRequest(text="Hi.", voice="af_bella", speed=1.25)
        for _ in range(2):  # the second request asks for WAV at once
            pieces = [p async for p in kind.synthesize(request)]
            assert sum(len(p.samples) for p in pieces) == 4410 and {p.rate for p in pieces} == {22050}
    assert [b["response_format"] for b in sent] == ["pcm", "wav", "wav"]
    assert sent[0] == {"model": "kokoro", "input": "Hi.", "voice": "af_bella", "response_format": "pcm",
                       "speed": 1.25}


async def test_stream_pieces_first_at_once_then_gathered_and_failures_are_the_upstreams() -> None:
    """The one decode loop of the HTTP kinds: the first samples go at once, later ones in pieces of at least
    MIN_PIECE; a stream that is not WAV, and one that breaks after audio, are UpstreamErrors with no status
    (the upstream's fault), `sent` only in the second."""
    import httpx

    from voxgate.engines.remote import httpwire
    from voxgate.engines.remote.pcmstream import MIN_PIECE

    wav = _wav(24000, 3000)

    def body(parts: list[bytes], broken: bool = False) -> httpx.AsyncByteStream:
        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                for part in parts:
                    yield part
                if broken:
                    raise httpx.ReadError("connection reset")
        return Body()

    config = parse_spec("s=openai+http://host:1")
    chunks = [wav[:44 + 20]] + [wav[i:i + 200] for i in range(64, len(wav), 200)]  # 10 samples, then 100 each
    cases = {"ok": body(chunks), "junk": body([b"<html>busy</html>" * 3]), "broken": body(chunks[:12], True)}
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(
            200, stream=cases[r.url.path.strip("/")]))) as http:
        async with httpwire.open_stream(http, config, "GET", "http://host:1/ok", "synthesis") as response:
            sizes = [len(p.samples) async for p in httpwire.stream_pieces(config, response, WavStream())]
        assert sizes[0] == 10 and all(n >= MIN_PIECE for n in sizes[1:-1]) and sum(sizes) == 3000
        for path, says, sent in (("junk", "not a WAV", False), ("broken", "stream ended early: ReadError", True)):
            with pytest.raises(UpstreamError, match=says) as caught:
                async with httpwire.open_stream(http, config, "GET", f"http://host:1/{path}", "synthesis") as response:
                    [p async for p in httpwire.stream_pieces(config, response, WavStream())]
            assert caught.value.status is None and caught.value.sent is sent and caught.value.upstream == "s"


async def test_gptsovits_kind_sends_the_configured_reference_and_reads_streamed_wav(tmp_path: object) -> None:
    import json
    from pathlib import Path

    import httpx

    from voxgate.engines.remote.gptsovits import GptSovitsUpstream

    refs = Path(str(tmp_path)) / "refs.json"
    refs.write_text(json.dumps({"alice": {"ref_audio_path": "/refs/alice.wav", "prompt_text": "Hello.",
                                          "prompt_lang": "en", "language": "zh"}}))
    sent: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the probe: both language fields, nothing to speak
            assert dict(request.url.params) == {"text_lang": "en", "prompt_lang": "en"}
            return httpx.Response(400, json={"message": "ref_audio_path is required"})
        sent.append(json.loads(request.content))
        media = sent[-1]["media_type"]
        if media == "raw":  # passthrough: raw int16 bytes as they are; api_v2's refusal of a media type
            return httpx.Response(200, content=b"\x01\x00\x02\x00")
        if media != "wav":
            return httpx.Response(400, json={"message": f"media_type: {media} is not supported"})
        return httpx.Response(200, content=_wav(32000, 6400), headers={"content-type": "audio/wav"})

    config = parse_spec(f"g=gptsovits+http://gpu:9880?refs={refs}&voices=bob=/refs/bob.wav,/refs/carol.wav"
                        "&top_k=5&text_split_method=cut0")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        kind = GptSovitsUpstream(config, http)
        voices = {v.id: v.language for v in await kind.voices()}
        assert voices == {"alice": "zh", "bob": None, "carol": None}
        assert not kind.encodes("pcm", 32000)  # the model's rate is not known before a WAV answer said it
        pieces = [p async for p in kind.synthesize(UpstreamRequest(text="你好。", voice="alice", speed=1.1))]
        assert sum(len(p.samples) for p in pieces) == 6400 and pieces[0].rate == 32000
        assert kind.encodes("pcm", 32000) and not kind.encodes("pcm", 24000)
        assert not any(kind.encodes(fmt, 32000) for fmt in ("wav", "ogg", "aac", "mp3"))
        raw = [b async for b in kind.encoded(UpstreamRequest(text="Hi.", voice="bob", language="en-US"), "pcm")]
        assert b"".join(raw) == b"\x01\x00\x02\x00" and sent[-1]["media_type"] == "raw"
        with pytest.raises(NotSupported, match="media_type: ogg is not supported"):
            [b async for b in kind.encoded(UpstreamRequest(text="Hi.", voice="bob"), "ogg")]
        del sent[1:]
        [p async for p in kind.synthesize(UpstreamRequest(text="Hi.", voice="bob", language="en-US"))]
        with pytest.raises(UpstreamError, match="not configured") as missing:
            [p async for p in kind.synthesize(UpstreamRequest(text="Hi.", voice="dave"))]
        assert missing.value.status == 404
    assert sent[0] == {"streaming_mode": True, "top_k": 5, "text_split_method": "cut0", "text": "你好。",
                       "text_lang": "zh", "ref_audio_path": "/refs/alice.wav", "prompt_text": "Hello.",
                       "prompt_lang": "en", "media_type": "wav", "speed_factor": 1.1}
    assert (sent[1]["text_lang"], sent[1]["prompt_lang"], sent[1]["prompt_text"]) == ("en", "en", "")


class SessionKind(ScriptedKind):
    """A kind that takes streamed text: a session speaks one tone per text, to the end of its texts."""

    async def stream_text(self, request: UpstreamRequest, texts: AsyncIterator[str]) -> AsyncIterator[Piece]:
        async for _ in texts:
            yield _tone()


async def test_text_sessions_leave_one_slot_to_ordinary_requests() -> None:
    config = UpstreamConfig(name="up", kind="cosyvoice", url="ws://x", timeout=5, connect_timeout=0.1, concurrency=3)
    backend = RemoteBackend(SessionKind(config, Script([])))  # type: ignore[arg-type]
    feeds: list[asyncio.Queue[str | None]] = []

    async def texts(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
        while (text := await queue.get()) is not None:
            yield text

    runs = []
    for _ in range(2):
        assert backend.streams_text()  # 0, then 1 session open: below concurrency - 1
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        feeds.append(queue)
        job = _job()
        job.texts = texts(queue)
        run = backend.generate(job)
        await queue.put("Hello.")
        assert len((await asyncio.wait_for(anext(run), 5)).samples) == 2400  # the session holds its slot now
        runs.append(run)
    assert backend.sessions == 2 and not backend.streams_text()  # the third slot stays for ordinary requests
    for queue, run in zip(feeds, runs, strict=True):
        await queue.put(None)
        assert await asyncio.wait_for(_drain(run), 5) == []
    assert backend.sessions == 0 and backend.streams_text()
    backend.close()


class EncodingSessionKind(SessionKind):
    """A session kind that can send raw pcm at 24 kHz (a cosyvoice upstream's `stream_encoded`); `refuse`: it
    turns the format down before any bytes (NotSupported)."""

    refuse = False
    pcm_sessions = 0

    def encodes(self, fmt: str, rate: int) -> bool:
        return fmt == "pcm" and rate == 24000

    async def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        yield b"\x01\x00"

    async def stream_text(self, request: UpstreamRequest, texts: AsyncIterator[str]) -> AsyncIterator[Piece]:
        self.pcm_sessions += 1
        async for piece in super().stream_text(request, texts):
            yield piece

    async def stream_encoded(self, request: UpstreamRequest, texts: AsyncIterator[str],
                             fmt: str) -> AsyncIterator[bytes]:
        if self.refuse:
            raise NotSupported("no pcm here")
        async for text in texts:
            yield text.encode()


async def test_a_text_session_passes_its_bytes_and_is_not_asked_again_after_a_refusal() -> None:
    """A forwarded session that asks for the client's format gets the kind's own bytes; a refusal (before any
    bytes) fails the session instead of asking for PCM, whose text the refused session already consumed (the
    core then cuts the kept text into segments: core/textstream.py)."""
    from voxgate.core.types import Output

    config = UpstreamConfig(name="up", kind="cosyvoice", url="ws://x", timeout=5, connect_timeout=0.1,
                            concurrency=3, retries=0)
    kind = EncodingSessionKind(config, Script([]))
    backend = RemoteBackend(kind)  # type: ignore[arg-type]

    async def texts(*items: str) -> AsyncIterator[str]:
        for item in items:
            yield item

    job = _job()
    job.texts, job.output = texts("one ", "two"), Output("pcm", 24000)
    pieces = await asyncio.wait_for(_drain(backend.generate(job)), 5)
    assert [p.encoded for p in pieces] == [b"one ", b"two"] and kind.pcm_sessions == 0

    kind.refuse = True
    job = _job()
    job.texts, job.output = texts("one"), Output("pcm", 24000)
    with pytest.raises(EngineFailure, match="no pcm here"):
        await asyncio.wait_for(_drain(backend.generate(job)), 5)
    assert kind.pcm_sessions == 0
    backend.close()

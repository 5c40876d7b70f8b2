"""Reference audio: decoding every container, validation, safe server paths and SSRF-guarded URLs."""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import numpy as np
import pytest

from voxgate.audio.encoders import encode_all
from voxgate.audio.pcm import float_to_int16, wav_header
from voxgate.errors import ForbiddenReference, InvalidInput, InvalidReference
from voxgate.voices import references as refs
from voxgate.voices.references import (
    ReferenceLimits,
    ReferencePolicy,
    check_audio,
    decode_audio,
    from_base64,
    from_bytes,
    from_path,
    from_url,
    is_blocked_address,
    load_reference,
    resolve_path,
)

RATE = 24000  # Hertz
LIMITS = ReferenceLimits()


def voiced(seconds: float, rate: int = RATE, f0: float = 140.0) -> np.ndarray:
    """A speech-like test signal: a harmonic series under a syllable-rate amplitude envelope."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)
    return (0.3 * tone * envelope / 2.0).astype(np.float32)


def wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    """A 16-bit mono WAV file."""
    return encode_all(samples, rate, "wav")


def stereo_wav(left: np.ndarray, right: np.ndarray, rate: int = RATE) -> bytes:
    """A 16-bit stereo WAV file, written by hand since the encoders are mono."""
    pcm = np.stack([float_to_int16(left), float_to_int16(right)], axis=1).astype("<i2").tobytes()
    return wav_header(rate, channels=2, data_bytes=len(pcm)) + pcm


def policy(root: Path, **kwargs: object) -> ReferencePolicy:
    """A policy rooted at one folder."""
    return ReferencePolicy(roots=(root,), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def pol(tmp_path: Path) -> ReferencePolicy:
    """A default policy whose only root is tmp_path/refs."""
    root = tmp_path / "refs"
    root.mkdir()
    return policy(root)


# --- decoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac", "ogg", "m4a"])
def test_every_container_decodes_to_mono_at_its_own_rate(fmt: str, pol: ReferencePolicy) -> None:
    ref = from_bytes(encode_all(voiced(2.0), RATE, fmt), pol)
    assert ref.rate == (48000 if fmt == "opus" else RATE)  # Ogg Opus is always 48 kHz
    assert ref.samples.dtype == np.float32 and ref.samples.ndim == 1
    assert ref.duration == pytest.approx(2.0, rel=0.05, abs=0.1)  # codec priming / padding
    assert np.abs(ref.samples).max() <= 1.0
    assert ref.source == "upload"


def test_stereo_is_mixed_to_mono(pol: ReferencePolicy) -> None:
    left = voiced(2.0)
    samples, rate = decode_audio(stereo_wav(left, np.zeros_like(left)), LIMITS)
    assert rate == RATE and samples.ndim == 1 and len(samples) == len(left)
    np.testing.assert_allclose(samples, left / 2, atol=2e-4)


def test_high_rates_are_resampled_down_to_48k_and_low_rates_kept(pol: ReferencePolicy) -> None:
    high = from_bytes(wav(voiced(2.0, 96000), 96000), pol)
    assert high.rate == 48000
    assert high.duration == pytest.approx(2.0, abs=0.01)
    low = from_bytes(wav(voiced(2.0, 16000), 16000), pol)
    assert low.rate == 16000


def test_hash_identifies_the_sound_not_the_container(pol: ReferencePolicy) -> None:
    sound = voiced(2.0)
    as_wav = from_bytes(encode_all(sound, RATE, "wav"), pol)
    as_flac = from_bytes(encode_all(sound, RATE, "flac"), pol)
    other = from_bytes(encode_all(voiced(2.0, f0=180.0), RATE, "wav"), pol)
    assert as_wav.sha256() == as_flac.sha256()
    assert len(as_wav.sha256()) == 64
    assert other.sha256() != as_wav.sha256()


def test_reference_samples_are_read_only(pol: ReferencePolicy) -> None:
    ref = from_bytes(wav(voiced(2.0)), pol)
    with pytest.raises(ValueError):
        ref.samples[0] = 0.5


def test_no_audio_stream_is_named() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InvalidReference, match="no audio stream"):
        decode_audio(buf.getvalue(), LIMITS)


# --- bad audio -----------------------------------------------------------------------------------------

QUIET_NOISE = (np.random.default_rng(1).standard_normal(2 * RATE) * 10 ** (-70 / 20)).astype(np.float32)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (np.random.default_rng(0).bytes(4000), "could not decode"),
        (b"This is a text file, not audio.\n" * 50, "could not decode"),
        (wav(voiced(2.0))[:30], "could not decode"),
        (wav(np.zeros(2 * RATE, np.float32)), "silent"),
        (wav(QUIET_NOISE), "silent"),
        (wav(voiced(0.5)), "too short: 0.5 s; at least 1 s"),
        (wav(voiced(31.0)), "too long"),
    ],
    ids=["empty", "corrupt", "text", "truncated", "zeros", "quiet-noise", "short", "long"],
)
def test_unusable_audio_is_refused_with_the_reason(data: bytes, message: str, pol: ReferencePolicy) -> None:
    with pytest.raises(InvalidReference, match=message) as caught:
        from_bytes(data, pol)
    assert isinstance(caught.value, InvalidInput)
    assert "Traceback" not in caught.value.message and "/" not in caught.value.message


def test_check_audio_names_nan_and_levels() -> None:
    with pytest.raises(InvalidReference, match="NaN"):
        check_audio(np.full(RATE * 2, np.nan, np.float32), RATE, LIMITS)
    with pytest.raises(InvalidReference, match=r"-inf dBFS; needs at least -50 dBFS"):
        check_audio(np.zeros(RATE * 2, np.float32), RATE, LIMITS)
    check_audio(voiced(2.0), RATE, LIMITS)


def test_encoded_size_cap(pol: ReferencePolicy) -> None:
    small = ReferencePolicy(roots=pol.roots, limits=ReferenceLimits(max_bytes=10_000))
    with pytest.raises(InvalidReference, match="too large"):
        from_bytes(wav(voiced(2.0)), small)


def test_a_ten_minute_file_is_refused_without_decoding_it_all(
    pol: ReferencePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 16000
    data = wav(np.tile(voiced(1.0, rate), 600), rate)  # 10 minutes, 19 MB: under the size cap
    seen = []
    mono = refs._mono
    monkeypatch.setattr(refs, "_mono", lambda frame: seen.append(frame.samples) or mono(frame))
    with pytest.raises(InvalidReference, match="too long: over 30 s"):
        from_bytes(data, pol)
    assert sum(seen) <= (LIMITS.max_seconds + 2) * rate  # stopped just past the limit, not at 600 s


def test_playlists_cannot_make_the_decoder_open_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the protocol whitelist, libav's concat demuxer reads this file from the working directory.
    (tmp_path / "secret.wav").write_bytes(wav(voiced(2.0)))
    monkeypatch.chdir(tmp_path)
    for playlist in (
        b"ffconcat version 1.0\nfile secret.wav\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nsecret.wav\n#EXT-X-ENDLIST\n",
    ):
        with pytest.raises(InvalidReference, match="could not decode"):
            decode_audio(playlist, LIMITS)


# --- base64 --------------------------------------------------------------------------------------------


def test_base64_plain_data_uri_and_wrapped(pol: ReferencePolicy) -> None:
    encoded = base64.b64encode(wav(voiced(2.0))).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    for text in (encoded, f"data:audio/wav;base64,{encoded}", f"  {wrapped}\n", encoded.rstrip("=")):
        ref = from_base64(text, pol)
        assert ref.source == "base64" and ref.duration == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("text", ["not base64!!", "QUJD*REVG", "data:audio/wav,plain", "QUJDRA=x", "é" * 8])
def test_bad_base64_is_refused(text: str, pol: ReferencePolicy) -> None:
    with pytest.raises(InvalidReference, match="not valid base64"):
        from_base64(text, pol)


def test_base64_size_is_checked_before_decoding(pol: ReferencePolicy) -> None:
    small = ReferencePolicy(roots=pol.roots, limits=ReferenceLimits(max_bytes=1000))
    with pytest.raises(InvalidReference, match="too large"):
        from_base64("A" * 4000 + "!", small)  # invalid too, but the size is what gets reported


# --- server-side paths ---------------------------------------------------------------------------------


@dataclass
class Tree:
    """A reference root and an outside folder, each holding a valid wav."""

    root: Path
    outside: Path
    policy: ReferencePolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = policy(self.root)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """refs/{a.wav, sub/b.wav, inner.wav→a.wav, link.wav→outside, outdir→outside/, sub/dir/, fifo}."""
    root, outside = tmp_path / "refs", tmp_path / "outside"
    (root / "sub" / "dir").mkdir(parents=True)
    outside.mkdir()
    data = wav(voiced(2.0))
    for path in (root / "a.wav", root / "sub" / "b.wav", outside / "x.wav"):
        path.write_bytes(data)
    (root / "inner.wav").symlink_to(root / "a.wav")
    (root / "link.wav").symlink_to(outside / "x.wav")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo.wav")
    return Tree(root, outside)


@pytest.mark.parametrize("given", ["a.wav", "sub/b.wav", "./sub/../a.wav", "inner.wav", "{root}/sub/b.wav"])
def test_paths_inside_the_root_load(given: str, tree: Tree) -> None:
    ref = from_path(given.format(root=tree.root), tree.policy)
    assert ref.source == "path" and ref.duration == pytest.approx(2.0, abs=0.01)
    assert resolve_path(given.format(root=tree.root), tree.policy).is_relative_to(tree.root.resolve())


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("../outside/x.wav", ForbiddenReference, "outside the allowed"),
        ("sub/../../outside/x.wav", ForbiddenReference, "outside the allowed"),
        ("{outside}/x.wav", ForbiddenReference, "outside the allowed"),
        ("/etc/passwd", ForbiddenReference, "outside the allowed"),
        ("link.wav", ForbiddenReference, "outside the allowed"),
        ("outdir/x.wav", ForbiddenReference, "outside the allowed"),
        ("../nowhere.wav", ForbiddenReference, "outside the allowed"),  # no existence oracle outside
        ("a.wav\x00.txt", ForbiddenReference, "NUL"),
        ("sub", ForbiddenReference, "not a regular file"),
        ("sub/dir", ForbiddenReference, "not a regular file"),
        ("fifo.wav", ForbiddenReference, "not a regular file"),
        ("missing.wav", InvalidReference, "reference file not found: missing.wav"),
        ("a.wav/more", InvalidReference, "not found"),
        ("", InvalidReference, "empty"),
    ],
)
def test_unsafe_or_missing_paths_are_refused(given: str, error: type, message: str, tree: Tree) -> None:
    given = given.format(outside=tree.outside)
    with pytest.raises(error, match=message) as caught:
        from_path(given, tree.policy)
    if message.endswith("not found") or "not found:" in message:  # a missing file's error names the folders
        # looked in (to say where to put it)...
        assert caught.value.message.endswith(f"(looked in {tree.root.resolve()})")
    else:  # ...and nothing else reveals them
        assert str(tree.root) not in caught.value.message
    if error is ForbiddenReference:
        assert not isinstance(caught.value, InvalidReference)


def test_second_root_and_no_roots(tree: Tree) -> None:
    both = ReferencePolicy(roots=(tree.root, tree.outside))
    assert from_path(str(tree.outside / "x.wav"), both).source == "path"
    with pytest.raises(ForbiddenReference, match="not enabled"):
        from_path("a.wav", ReferencePolicy(roots=()))


def test_oversized_files_are_refused_before_reading(tree: Tree) -> None:
    small = ReferencePolicy(roots=(tree.root,), limits=ReferenceLimits(max_bytes=1000))
    with pytest.raises(InvalidReference, match="too large"):
        resolve_path("a.wav", small)


# --- URLs ----------------------------------------------------------------------------------------------


@dataclass
class Site:
    """A local HTTP server and the paths it was asked for."""

    url: str
    requests: list[str]


def _handler(body: bytes, requests: list[str], stop: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            requests.append(self.path)
            path = urlsplit(self.path).path
            if path == "/voice.wav":
                self._send(200, body)
            elif path == "/huge":
                self._send(200, b"", length=10**12)
            elif path == "/slow":
                self._trickle()
            elif path.startswith("/hop/"):
                hops = int(path.rsplit("/", 1)[1])
                self._redirect(f"/hop/{hops - 1}" if hops > 1 else "/voice.wav")
            elif path == "/to":
                self._redirect(parse_qs(urlsplit(self.path).query)["target"][0])
            else:
                self._send(404, b"not found")

        def _send(self, status: int, data: bytes, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            self.wfile.write(data)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _trickle(self) -> None:
            # One byte every 50 ms: each read is quick, only a whole-download deadline stops it.
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body[:100]:
                    if stop.wait(0.05):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up, as it should

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Site]:
    """A ThreadingHTTPServer on 127.0.0.1:0 whose handler threads are joined at shutdown."""
    requests: list[str] = []
    stop = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(wav(voiced(2.0)), requests, stop))
    httpd.daemon_threads = False  # so server_close() joins every handler thread
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site(server: Site) -> Site:
    """The shared server with an empty request log."""
    server.requests.clear()
    return server


OPEN = ReferencePolicy(roots=(), allow_urls=True, allow_private_urls=True)
GUARDED = ReferencePolicy(roots=(), allow_urls=True)


async def test_urls_are_refused_unless_enabled(site: Site) -> None:
    with pytest.raises(ForbiddenReference, match="not enabled"):
        await from_url(f"{site.url}/voice.wav", ReferencePolicy(roots=()))
    assert site.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "[::ffff:127.0.0.1]"])
async def test_private_targets_are_refused_before_connecting(host: str, site: Site) -> None:
    port = site.url.rsplit(":", 1)[1]
    with pytest.raises(ForbiddenReference, match="private or local"):
        await from_url(f"http://{host}:{port}/voice.wav", GUARDED)
    assert site.requests == []


async def test_fetch_and_decode_when_private_targets_are_allowed(site: Site) -> None:
    ref = await from_url(f"{site.url}/voice.wav", OPEN)
    assert ref.source == "url" and ref.rate == RATE
    assert ref.duration == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(
    ("path", "limits", "message"),
    [
        ("/missing", LIMITS, "could not fetch reference URL: HTTP 404"),
        ("/huge", LIMITS, "too large: 953674.3 MB"),
        ("/slow", ReferenceLimits(url_timeout=0.5), "timed out after 0.5 s"),
        ("/hop/4", LIMITS, "too many redirects"),
    ],
)
async def test_fetch_failures(path: str, limits: ReferenceLimits, message: str, site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidReference, match=message):
        await from_url(site.url + path, ReferencePolicy(roots=(), allow_urls=True, allow_private_urls=True,
                                                        limits=limits))
    assert time.monotonic() - started < 1.0


async def test_three_redirects_are_followed(site: Site) -> None:
    ref = await from_url(f"{site.url}/hop/3", OPEN)
    assert ref.duration == pytest.approx(2.0, abs=0.01)
    assert site.requests == ["/hop/3", "/hop/2", "/hop/1", "/voice.wav"]


def _trust_only_the_test_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat 127.0.0.1 as public, so the first hop passes and a redirect's target is what gets judged."""
    real = refs.is_blocked_address
    monkeypatch.setattr(refs, "is_blocked_address", lambda ip: str(ip) != "127.0.0.1" and real(ip))


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.2:{port}/voice.wav", "http://[::1]:{port}/voice.wav",
     "http://169.254.169.254/latest/meta-data/", "http://user:pw@127.0.0.1:{port}/voice.wav", "file:///etc/passwd"],
)
async def test_redirects_are_rechecked(target: str, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    _trust_only_the_test_server(monkeypatch)
    assert (await from_url(f"{site.url}/hop/1", GUARDED)).source == "url"  # the patch lets 127.0.0.1 through
    site.requests.clear()
    port = site.url.rsplit(":", 1)[1]
    with pytest.raises(ForbiddenReference):
        await from_url(f"{site.url}/to?target={target.format(port=port)}", GUARDED)
    assert site.requests == [f"/to?target={target.format(port=port)}"]


async def test_the_connected_peer_is_checked_against_dns_rebinding(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def public(host: str, port: int) -> list[object]:  # the name "resolves" public at check time
        return [refs.ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(refs, "_resolve_host", public)
    with pytest.raises(ForbiddenReference, match="private or local"):
        await from_url(f"{site.url}/voice.wav", GUARDED)
    assert site.requests == []  # refused right after connecting, before the request was sent


@pytest.mark.parametrize(
    ("url", "error"),
    [("ftp://example.com/a.wav", ForbiddenReference), ("http://user:pw@example.com/a.wav", ForbiddenReference),
     ("http:///nohost", InvalidReference), ("http://[::1/a.wav", InvalidReference)],  # none resolves a name
)
async def test_malformed_urls(url: str, error: type) -> None:
    with pytest.raises(error):
        await from_url(url, GUARDED)


async def test_query_strings_are_not_logged(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="voxgate.voices.references"):
        await from_url(f"{site.url}/voice.wav?token=s3cret", OPEN)
    assert "/voice.wav" in caplog.text and "s3cret" not in caplog.text


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True), ("10.1.2.3", True), ("172.20.0.1", True), ("192.168.1.1", True),
        ("169.254.169.254", True), ("::1", True), ("fe80::1", True), ("fc00::1", True),
        ("::ffff:127.0.0.1", True), ("::ffff:169.254.169.254", True), ("0.0.0.0", True), ("::", True),
        ("224.0.0.1", True), ("ff02::1", True), ("100.64.0.1", True), ("240.0.0.1", True),
        ("255.255.255.255", True), ("2002:7f00:1::", True),
        ("fec0::1", True), ("feff:ffff::1", True), ("::ffff:10.0.0.1", True),
        ("8.8.8.8", False), ("93.184.216.34", False), ("2606:4700::1", False), ("::ffff:8.8.8.8", False),
    ],
)
def test_address_classifier(address: str, blocked: bool) -> None:
    assert is_blocked_address(address) is blocked


# --- sniffing ------------------------------------------------------------------------------------------


async def test_load_reference_sniffs_each_kind(tree: Tree, site: Site) -> None:
    data = wav(voiced(2.0))
    encoded = base64.b64encode(data).decode()
    both = ReferencePolicy(roots=(tree.root,), allow_urls=True, allow_private_urls=True)
    assert (await load_reference(data, both)).source == "upload"
    assert (await load_reference(bytearray(data), both)).source == "upload"
    assert (await load_reference(encoded, both)).source == "base64"
    assert (await load_reference(f"data:audio/wav;base64,{encoded}", both)).source == "base64"
    assert (await load_reference("sub/b.wav", both)).source == "path"
    assert (await load_reference(f" {site.url}/voice.wav ", both)).source == "url"
    with pytest.raises(ForbiddenReference, match="only http and https"):
        await load_reference("file:///etc/passwd", both)
    with pytest.raises(InvalidReference, match="not found: QUJD"):
        await load_reference("QUJD", both)  # short base64-alphabet text is a path
    with pytest.raises(InvalidReference, match=r"not found: (dir-/){40}… \(looked in [^)]+\)$"):
        await load_reference("dir-/" * 60, both)  # long echoes are cut short
    with pytest.raises(InvalidReference, match="could not decode"):
        await load_reference("x" * 300, both)  # long base64-alphabet text is base64

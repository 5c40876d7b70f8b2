"""Reference audio for voice cloning: decode, validate and load it from uploads, base64, paths and URLs.

Paths and URLs come from untrusted clients. Paths must resolve (symlinks followed) inside the configured
folders; URLs are fetched only when enabled, and then never from loopback, private, link-local or other
internal addresses unless that is enabled too — checked on the resolved host before connecting and on the
socket's actual peer after connecting, so DNS rebinding cannot slip past.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import logging
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from voxgate.audio.resample import resample
from voxgate.errors import ForbiddenReference, InvalidReference
from voxgate.voices.store import audio_sha256

log = logging.getLogger(__name__)

MAX_RATE = 48000  # Hertz; higher-rate references are resampled down, lower ones are kept as they are
MAX_REDIRECTS = 3
SOURCES = ("upload", "base64", "path", "url")
BASE64_SNIFF_CHARS = 256  # a string this long in the base64 alphabet is audio, not a path
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Demuxers such as concat and HLS open further files named inside the data (relative to the server's
# working directory): no protocol may be opened from within a reference, only the bytes we hand over.
_OPEN_OPTIONS = {"protocol_whitelist": "none"}
_UNDECODABLE = "could not decode reference audio (is it an audio file?)"
_OUTSIDE = "path is outside the allowed reference folders"
_PRIVATE = "reference URL points to a private or local address"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DATA_URI = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class ReferenceLimits:
    """What reference audio is acceptable."""

    min_seconds: float = 1.0  # shorter clips are refused
    max_seconds: float = 30.0  # longer clips are refused
    max_bytes: int = 25 * 1024 * 1024  # encoded size cap for uploads, base64 and downloads
    silence_dbfs: float = -50.0  # whole-clip RMS below this is "silent"
    url_timeout: float = 10.0  # seconds for a whole download, redirects included


@dataclass(frozen=True)
class ReferencePolicy:
    """Where references may come from."""

    roots: tuple[Path, ...]  # folders server-side paths may come from; relative paths use the first
    allow_urls: bool = False  # fetch http(s) URLs at all
    allow_private_urls: bool = False  # also loopback/private/link-local/reserved targets (off: SSRF guard)
    limits: ReferenceLimits = ReferenceLimits()


@dataclass(frozen=True, eq=False)  # eq=False: ndarray fields cannot be compared with ==
class ReferenceAudio:
    """Decoded, validated reference audio."""

    samples: np.ndarray  # float32 mono in [-1, 1] at `rate`
    rate: int  # Hertz: the file's own rate, capped at 48000
    source: str  # "upload" | "base64" | "path" | "url"

    def __post_init__(self) -> None:
        self.samples.flags.writeable = False  # shared between voices and threads: nobody may edit it

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

    def sha256(self) -> str:
        """Hash of the canonical audio (int16 LE PCM + rate): the same sound hashes alike in any container."""
        return audio_sha256(self.samples, self.rate)


def _too_large(size: int | None, limits: ReferenceLimits) -> InvalidReference:
    cap = f"at most {limits.max_bytes / 2**20:.1f} MB"
    if size is None:
        return InvalidReference(f"reference audio is too large ({cap})")
    return InvalidReference(f"reference audio is too large: {size / 2**20:.1f} MB; {cap}")


def decode_audio(data: bytes, limits: ReferenceLimits) -> tuple[np.ndarray, int]:
    """Decode any audio file PyAV reads into float32 mono samples and their rate (at most 48 kHz)."""
    if not data:
        raise InvalidReference("reference audio is empty")
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), limits)
    try:
        with av.open(io.BytesIO(data), mode="r", container_options=_OPEN_OPTIONS) as container:
            samples, rate = _decode_first_audio(container, limits)
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        log.debug("reference audio did not decode: %s", type(exc).__name__)
        raise InvalidReference(_UNDECODABLE) from None
    if rate > MAX_RATE:
        samples, rate = resample(samples, rate, MAX_RATE), MAX_RATE
    return np.clip(samples, -1.0, 1.0), rate


def _decode_first_audio(container: Any, limits: ReferenceLimits) -> tuple[np.ndarray, int]:
    """Decode the first audio stream, mixing to mono and stopping as soon as it is too long."""
    if not container.streams.audio:
        raise InvalidReference("reference file has no audio stream")
    stream = container.streams.audio[0]
    converter = av.AudioResampler(format="fltp")  # any sample format → float planar; rate kept
    parts: list[np.ndarray] = []
    decoded, rate = 0, 0
    for frame in container.decode(stream):
        rate = rate or frame.sample_rate  # the converter keeps the first frame's rate throughout
        decoded += frame.samples
        # Decompression-bomb guard: a small file may hold hours of audio; stop once it is clearly too long.
        if decoded > (limits.max_seconds + 1.0) * rate:
            raise InvalidReference(f"reference audio is too long: over {limits.max_seconds:g} s")
        parts.extend(_mono(out) for out in converter.resample(frame))
    if not rate:
        raise InvalidReference(_UNDECODABLE)
    parts.extend(_mono(out) for out in converter.resample(None))
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return samples.astype(np.float32, copy=False), rate


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """Average a planar float frame's channels."""
    planes = frame.to_ndarray()  # (channels, samples)
    return planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32)


def check_audio(samples: np.ndarray, rate: int, limits: ReferenceLimits) -> None:
    """Raise InvalidReference naming the problem if the audio is unusable as a reference."""
    if len(samples) == 0 or rate <= 0:
        raise InvalidReference("reference audio is empty")
    seconds = len(samples) / rate
    if seconds < limits.min_seconds:
        raise InvalidReference(f"reference audio is too short: {seconds:.1f} s; at least {limits.min_seconds:g} s")
    if seconds > limits.max_seconds:
        raise InvalidReference(f"reference audio is too long: {seconds:.1f} s; at most {limits.max_seconds:g} s")
    if not np.isfinite(samples).all():
        raise InvalidReference("reference audio contains invalid samples (NaN or infinity)")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    level = 20.0 * np.log10(rms) if rms > 0 else float("-inf")
    if level < limits.silence_dbfs:
        raise InvalidReference(
            f"reference audio is silent: level {level:.0f} dBFS; needs at least {limits.silence_dbfs:g} dBFS"
        )


def from_bytes(data: bytes, policy: ReferencePolicy, source: str = "upload") -> ReferenceAudio:
    """Decode and validate an encoded audio file (blocking)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    samples, rate = decode_audio(data, policy.limits)
    check_audio(samples, rate, policy.limits)
    return ReferenceAudio(samples, rate, source)


def from_base64(text: str, policy: ReferencePolicy) -> ReferenceAudio:
    """Decode base64 audio, optionally as a data URI and with whitespace or newlines (blocking)."""
    body = _DATA_URI.sub("", text.lstrip(), count=1)
    compact = "".join(body.split())
    if len(compact) % 4 in (2, 3):  # clients often drop the padding; a remainder of 1 is never valid
        compact += "=" * (4 - len(compact) % 4)
    if len(compact) // 4 * 3 > policy.limits.max_bytes:  # refuse before spending memory on decoding
        raise _too_large(len(compact) // 4 * 3, policy.limits)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidReference("reference audio is not valid base64") from None
    return from_bytes(data, policy, "base64")


def resolve_path(path: str, policy: ReferencePolicy) -> Path:
    """Resolve a client-given path to a regular file inside the allowed folders, or refuse it.

    A relative path is looked for in each reference folder in turn; the first that has it wins. A
    missing file's error names the folders looked in, so a client (or its operator) knows where to put it.
    """
    if not path.strip():
        raise InvalidReference("reference path is empty")
    if "\x00" in path:
        raise ForbiddenReference("reference path contains a NUL byte")
    if not policy.roots:
        raise ForbiddenReference("server-side reference paths are not enabled")
    given = Path(path)
    roots = [root.resolve() for root in policy.roots]
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        # Containment is checked before existence, so probing outside the folders learns nothing.
        _require_inside(_resolve(candidate, strict=False, given=path), roots)
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, RuntimeError):  # symlink loops, unreadable folders
            raise InvalidReference(f"reference path could not be resolved: {_echo(path)}") from None
        _require_inside(real, roots)  # again: a symlink may have changed between the two resolutions
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ForbiddenReference("reference path is not a regular file")
        if info.st_size > policy.limits.max_bytes:
            raise _too_large(info.st_size, policy.limits)
        return real
    raise InvalidReference(f"reference file not found: {_echo(path)} (looked in {looked_in(policy)})")


def looked_in(policy: ReferencePolicy) -> str:
    """The reference folders, for an error message."""
    return ", ".join(str(root.resolve()) for root in policy.roots) or "no folder"


def _resolve(candidate: Path, *, strict: bool, given: str) -> Path:
    """Path.resolve with client-safe errors: they echo only the client's own path."""
    given = _echo(given)
    try:
        return candidate.resolve(strict=strict)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidReference(f"reference file not found: {given}") from None
    except (OSError, RuntimeError):  # symlink loops, unreadable folders
        raise InvalidReference(f"reference path could not be resolved: {given}") from None


def _echo(given: str) -> str:
    """The client's path for an error message, cut short (a mis-sniffed base64 blob can be huge)."""
    return given if len(given) <= 200 else given[:200] + "…"


def _require_inside(path: Path, roots: list[Path]) -> None:
    if not any(path.is_relative_to(root) for root in roots):
        raise ForbiddenReference(_OUTSIDE)


def from_path(path: str, policy: ReferencePolicy) -> ReferenceAudio:
    """Load reference audio from a file inside the allowed folders (blocking)."""
    real = resolve_path(path, policy)
    # NOFOLLOW: the resolved path has no symlinks, so one appearing now is a swap; NONBLOCK: a FIFO
    # swapped in must not hang the server. fstat re-checks the file actually opened.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError:
        raise InvalidReference(f"reference file could not be read: {_echo(path)}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ForbiddenReference("reference path is not a regular file")
        data = file.read(policy.limits.max_bytes + 1)
    return from_bytes(data, policy, "path")


_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


def is_blocked_address(address: str | IPAddress) -> bool:
    """True for addresses a client-supplied URL must not reach: loopback, private, link-local, etc."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d connects to a.b.c.d itself: judge that
            return is_blocked_address(ip.ipv4_mapped)
        # 6to4 and Teredo addresses carry an IPv4 address the network may route to.
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and is_blocked_address(embedded):
            return True
        if ip in _SITE_LOCAL:  # deprecated (RFC 3879) but still routed inside some sites; Python calls it global
            return True
    return (
        not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


def _redact(url: httpx.URL) -> str:
    """scheme://host:port/path: query strings and credentials may hold tokens, so they never reach logs."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


async def _resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address the host name resolves to (or the literal address itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidReference("could not fetch reference URL: host not found") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def _check_target(url: httpx.URL, policy: ReferencePolicy) -> None:
    """Refuse a URL (first or redirected) by scheme, credentials or resolved address."""
    if url.scheme not in ("http", "https"):
        raise ForbiddenReference("only http and https reference URLs are allowed")
    if url.userinfo:
        raise ForbiddenReference("reference URLs must not contain credentials")
    if not url.host:
        raise InvalidReference("reference URL has no host")
    if policy.allow_private_urls:
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    if any(is_blocked_address(ip) for ip in await _resolve_host(url.raw_host.decode("ascii"), port)):
        raise ForbiddenReference(_PRIVATE)


def _check_peer(network_stream: Any, policy: ReferencePolicy) -> None:
    """Refuse a connection whose actual peer is internal (the name may have re-resolved since the check)."""
    if policy.allow_private_urls:
        return
    try:
        ip = ipaddress.ip_address(network_stream.get_extra_info("server_addr")[0])
    except (AttributeError, TypeError, IndexError, ValueError):
        raise ForbiddenReference("could not verify the reference URL's server address") from None
    if is_blocked_address(ip):
        raise ForbiddenReference(_PRIVATE)


def _peer_guard(policy: ReferencePolicy) -> Any:
    """httpcore trace hook: check the peer right after connecting, before the request is sent."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            stream = info["return_value"]
            try:
                _check_peer(stream, policy)
            except ForbiddenReference:
                await stream.aclose()  # httpcore has not taken ownership of it yet
                raise

    return trace


async def _read_body(response: httpx.Response, limits: ReferenceLimits) -> bytes:
    """Read a 2xx body, refusing it as soon as it is known to exceed the size cap."""
    if not 200 <= response.status_code < 300:
        raise InvalidReference(f"could not fetch reference URL: HTTP {response.status_code}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(int(declared), limits)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limits.max_bytes:
            raise _too_large(None, limits)
    return bytes(body)


async def _download(url: httpx.URL, policy: ReferencePolicy) -> bytes:
    """GET the URL, following at most MAX_REDIRECTS redirects and re-checking every hop."""
    async with httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment would hide the real peer from the checks
        timeout=policy.limits.url_timeout,
        headers={"Accept-Encoding": "identity"},  # compressed bodies could inflate far past the cap
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            await _check_target(url, policy)
            log.info("fetching reference audio from %s", _redact(url))
            async with client.stream("GET", url, extensions={"trace": _peer_guard(policy)}) as response:
                _check_peer(response.extensions.get("network_stream"), policy)
                if response.status_code not in _REDIRECT_STATUSES or "location" not in response.headers:
                    return await _read_body(response, policy.limits)
                url = response.url.join(response.headers["location"])
    raise InvalidReference("could not fetch reference URL: too many redirects")


async def from_url(url: str, policy: ReferencePolicy) -> ReferenceAudio:
    """Download and decode reference audio over http(s); decoding runs in a worker thread."""
    if not policy.allow_urls:
        raise ForbiddenReference("reference URLs are not enabled on this server")
    timeout = policy.limits.url_timeout
    try:
        async with asyncio.timeout(timeout):  # the whole download: a trickling server cannot hold us
            data = await _download(httpx.URL(url.strip()), policy)
    except (TimeoutError, httpx.TimeoutException):
        raise InvalidReference(f"could not fetch reference URL: timed out after {timeout:g} s") from None
    except httpx.InvalidURL:
        raise InvalidReference("reference URL is not valid") from None
    except httpx.HTTPError:
        raise InvalidReference("could not fetch reference URL: connection failed") from None
    return await asyncio.to_thread(from_bytes, data, policy, "url")


async def load_reference(value: str | bytes, policy: ReferencePolicy) -> ReferenceAudio:
    """Load a reference from whatever a client sent: file bytes, a URL, base64 text or a server path."""
    if isinstance(value, bytes | bytearray | memoryview):
        return await asyncio.to_thread(from_bytes, bytes(value), policy, "upload")
    text = value.strip()
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return await from_url(text, policy)
    if _OTHER_SCHEME.match(text):
        raise ForbiddenReference("only http and https reference URLs are allowed")
    if lowered.startswith("data:") or (len(text) >= BASE64_SNIFF_CHARS and _BASE64_TEXT.fullmatch(text)):
        return await asyncio.to_thread(from_base64, text, policy)
    return await asyncio.to_thread(from_path, text, policy)

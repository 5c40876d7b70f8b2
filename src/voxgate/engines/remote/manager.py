"""Every configured upstream: its kind, its backend, its voices (as registry voices), its health.

`Upstreams` is what the composition root builds from the settings. It is
- the voice provider the registry lists upstream voices from (`voices()`, `capabilities()`, `reload()`):
  each upstream voice is a `VoiceInfo` with id `NAME:voice`, engine `upstream`, `upstream = NAME`, and
  `engine_data = {"voice": <the upstream's id>, "kind": KIND}`;
- the owner of one `RemoteBackend` per upstream (`backends`), which the router sends those voices' jobs to;
- the timer that lists each upstream's voices again every `refresh_seconds` (every few seconds while it is
  down, so an upstream that comes up later is found soon); a failed listing keeps the voices it had;
- the source of `/ready`'s and `/metrics`' per-upstream state (`health()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from voxgate.engines.base import Capabilities, VoiceInfo
from voxgate.engines.remote.backend import RemoteBackend
from voxgate.engines.remote.base import KINDS, UpstreamConfig, UpstreamError, UpstreamKind, UpstreamVoice
from voxgate.engines.remote.config import redacted
from voxgate.errors import VoxgateError

_LOG = logging.getLogger("voxgate.upstream")
ENGINE = "upstream"  # VoiceInfo.engine of every upstream voice (scheduling.backend.UPSTREAM_ENGINE)
DOWN_RETRY = 5.0  # seconds between voice listings while an upstream is down (at most refresh_seconds)
RELOAD_WAIT = 15.0  # seconds a reload from another thread waits for the listings
START_WAIT = 5.0  # seconds the server's start waits for the first listings
# Languages an upstream voice of unknown language is taken to speak: routing then leaves all of a request's
# text to it (the upstream knows what it can say) instead of handing Latin or Han script to a local voice.
ANY_LANGUAGE = ("en", "zh", "ja", "ko", "yue", "fr", "de", "es", "it", "pt", "ru", "nl", "pl", "cs", "sv", "da",
                "nb", "fi", "tr", "ar", "hi", "vi", "th", "id", "uk", "el", "hu", "ro", "he", "fa", "ca")
# Speaking rates each kind's server honours itself (the core time-stretches beyond): OpenAI's speed 0.25–4,
# GPT-SoVITS speed_factor, none in Wyoming. A kind class may say otherwise with a `speed_range` attribute.
SPEED_RANGES: Mapping[str, tuple[float, float]] = {
    "openai": (0.25, 4.0), "gptsovits": (0.5, 2.0), "wyoming": (1.0, 1.0),
}
DEFAULT_RATES: Mapping[str, int] = {"openai": 24_000, "gptsovits": 32_000, "wyoming": 22_050}


class UpstreamUnavailableKind(VoxgateError):
    """A configured kind whose module is missing from this installation."""


def load_kind(kind: str) -> type[Any]:
    """The class of a kind, imported by its path in KINDS."""
    module_name, _, attr = KINDS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UpstreamUnavailableKind(f"upstream kind {kind!r} cannot be loaded ({exc})") from exc
    return getattr(module, attr)  # type: ignore[no-any-return]


@dataclass
class Upstream:
    """One configured upstream and what is known about it."""

    config: UpstreamConfig
    kind: UpstreamKind
    backend: RemoteBackend
    voices: tuple[VoiceInfo, ...] = ()
    listed: bool = False  # its voices were listed at least once
    reachable: bool | None = None  # its last contact (listing or request) succeeded; None: no contact yet
    last_error: str | None = None
    refreshed_at: float | None = None  # time.time() of the last successful listing
    listed_at: float = 0.0  # time.monotonic() of the last listing attempt

    @property
    def state(self) -> str:
        """up, down, open (breaker open: not asked), half-open, or unknown (never reached yet)."""
        breaker = self.backend.breaker.state
        if breaker in ("open", "half-open"):
            return breaker
        if self.reachable is None:
            return "unknown"
        return "up" if self.reachable else "down"


class Upstreams:
    """Every configured upstream (see the module docstring)."""

    def __init__(self, configs: list[UpstreamConfig], refresh_seconds: float = 60.0,
                 on_change: Callable[[], object] | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.refresh_seconds = refresh_seconds
        self.http = http or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        quiet = logging.getLogger("httpx")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)  # not a log line per upstream request (the upstream log says more)
        self.upstreams: dict[str, Upstream] = {}
        for config in configs:
            try:
                kind = load_kind(config.kind)(config, self.http)
            except VoxgateError as exc:  # a bad option, or a kind missing from this installation
                raise type(exc)(f"--upstream {config.name}: {exc}") from None
            upstream = Upstream(config, kind, RemoteBackend(kind))
            upstream.backend._on_contact = self._contact_hook(upstream)
            self.upstreams[config.name] = upstream
        self.on_change = on_change  # called (on the event loop) when a listing changed the voices
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Task[None] | None = None

    @property
    def backends(self) -> dict[str, RemoteBackend]:
        return {name: upstream.backend for name, upstream in self.upstreams.items()}

    def _contact_hook(self, upstream: Upstream) -> Callable[[bool], None]:
        def contact(ok: bool) -> None:
            was = upstream.reachable
            upstream.reachable = ok
            if not ok:
                upstream.last_error = upstream.backend.stats.last_error
            if was is not None and was != ok:
                _LOG.warning("upstream %s is %s", upstream.config.name, "up again" if ok else "down")
        return contact

    # -- the registry's voice provider -------------------------------------------------------------------

    def voices(self) -> list[VoiceInfo]:
        """Every upstream voice known now (from the last successful listing of each upstream)."""
        return [voice for upstream in self.upstreams.values() for voice in upstream.voices]

    def capabilities(self, voice: VoiceInfo) -> Capabilities:
        """What the upstream behind `voice` does itself; the core does the rest (tempo beyond its range)."""
        upstream = self.upstreams.get(str(voice.upstream))
        kind = upstream.config.kind if upstream else ""
        speed = getattr(upstream.kind, "speed_range", None) if upstream else None
        return Capabilities(languages=tuple({v.language for v in upstream.voices}) if upstream else (),
                            streaming="chunk", speed_range=speed or SPEED_RANGES.get(kind, (1.0, 1.0)),
                            match_base=False)

    def reload(self) -> None:
        """List every upstream's voices again now (the registry's reload). From another thread it waits for
        the listings (bounded); on the event loop's own thread it only schedules them."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self.refresh())
            return
        future = asyncio.run_coroutine_threadsafe(self.refresh(notify=False), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=RELOAD_WAIT)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """List every upstream's voices once (an upstream that is down does not hold the start up for
        longer than its connect and read timeouts), then keep them fresh on a timer."""
        self._loop = asyncio.get_running_loop()
        for upstream in self.upstreams.values():
            _LOG.info("upstream %s", redacted(upstream.config))
        first = self._loop.create_task(self.refresh())
        await asyncio.wait({first}, timeout=START_WAIT)  # a slow one goes on listing in the background
        self._timer = self._loop.create_task(self._keep_fresh(first))

    async def stop(self) -> None:
        """Stop the timer, every request in flight, and close every connection."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        for upstream in self.upstreams.values():
            upstream.backend.close()
            with contextlib.suppress(Exception):
                await upstream.kind.aclose()
        await self.http.aclose()

    async def _keep_fresh(self, first: asyncio.Task[bool]) -> None:
        """List each upstream again when it is due: every refresh_seconds, every DOWN_RETRY s while down."""
        with contextlib.suppress(Exception):
            await first
        while True:
            now = time.monotonic()
            due = {name: self._due(upstream) for name, upstream in self.upstreams.items()}
            wait = min(due.values(), default=now + self.refresh_seconds) - now
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            names = [name for name, when in due.items() if when <= now]
            try:
                changed = any(await asyncio.gather(*(self._list(self.upstreams[n]) for n in names)))
                if changed and self.on_change is not None:
                    self.on_change()
            except Exception:  # the timer must outlive any one failure
                _LOG.exception("upstream voice refresh failed")

    def _due(self, upstream: Upstream) -> float:
        """When `upstream`'s voices are next listed (time.monotonic())."""
        down = not upstream.listed or upstream.reachable is False
        return upstream.listed_at + (min(self.refresh_seconds, DOWN_RETRY) if down else self.refresh_seconds)

    async def refresh(self, name: str | None = None, notify: bool = True) -> bool:
        """List the voices of one upstream (or all) again; True when the voice list changed."""
        targets = [self.upstreams[name]] if name else list(self.upstreams.values())
        changed = any(await asyncio.gather(*(self._list(u) for u in targets)))
        if changed and notify and self.on_change is not None:
            self.on_change()
        return changed

    async def _list(self, upstream: Upstream) -> bool:
        config = upstream.config
        upstream.listed_at = time.monotonic()
        try:
            async with asyncio.timeout(config.connect_timeout + config.timeout):
                listed = await upstream.kind.voices()
        except Exception as exc:  # UpstreamError, TimeoutError, OSError, httpx.HTTPError, or a kind's bug
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, UpstreamError | TimeoutError | OSError | httpx.HTTPError):
                _LOG.exception("upstream %s: listing its voices failed unexpectedly", config.name)
            if upstream.reachable is not False or upstream.last_error != message:
                _LOG.warning("upstream %s: cannot list its voices: %s", config.name, message)
            upstream.reachable, upstream.last_error = False, message
            return self._configured(upstream)
        voices = tuple(self._info(upstream, v) for v in listed)
        if upstream.reachable is False:
            _LOG.warning("upstream %s is up again (%d voices)", config.name, len(voices))
        upstream.reachable, upstream.refreshed_at = True, time.time()
        changed = voices != upstream.voices or not upstream.listed
        if changed:
            _LOG.info("upstream %s lists %d voices", config.name, len(voices))
        upstream.voices, upstream.listed = voices, True
        return changed

    def _configured(self, upstream: Upstream) -> bool:
        """An upstream that is down before it was ever listed: the voices its operator named (a kind's optional
        `configured_voices()`), so they resolve and fail (or fall back) as its voices, not as unknown ones."""
        named = getattr(upstream.kind, "configured_voices", None)
        if upstream.listed or upstream.voices or named is None:
            return False
        try:
            voices = named()
        except UpstreamError as exc:
            _LOG.warning("upstream %s: %s", upstream.config.name, exc)
            return False
        upstream.voices = tuple(self._info(upstream, v) for v in voices or ())
        return bool(upstream.voices)

    def _info(self, upstream: Upstream, voice: UpstreamVoice) -> VoiceInfo:
        config = upstream.config
        language = voice.language or config.options.get("language")
        rate = voice.sample_rate or _int(config.options.get("sample_rate")) or \
            getattr(upstream.kind, "sample_rate", None) or DEFAULT_RATES.get(config.kind, 24_000)
        return VoiceInfo(id=f"{config.name}:{voice.id}", name=voice.name or voice.id, engine=ENGINE,
                         language=language or "und", sample_rate=int(rate), gender=voice.gender,
                         languages=() if language else ANY_LANGUAGE,
                         upstream=config.name, engine_data={"voice": voice.id, "kind": config.kind})

    # -- state ------------------------------------------------------------------------------------------

    def health(self) -> dict[str, dict[str, object]]:
        """Per upstream: what /ready shows."""
        report: dict[str, dict[str, object]] = {}
        for name, upstream in self.upstreams.items():
            stats, breaker = upstream.backend.stats, upstream.backend.breaker
            mean = stats.first_audio_sum / stats.first_audio_count if stats.first_audio_count else None
            report[name] = {
                "kind": upstream.config.kind, "url": upstream.config.url, "state": upstream.state,
                "voices": len(upstream.voices), "requests": stats.requests, "succeeded": stats.succeeded,
                "failures": stats.failed, "rejected": stats.rejected, "refused": stats.refused,
                "retries": stats.retried, "cancelled": stats.cancelled, "active": stats.active,
                "queued": upstream.backend.gate.queued, "concurrency": upstream.config.concurrency,
                "breaker": {"state": breaker.state, "failures_in_a_row": breaker.consecutive,
                            "opened": breaker.opened, "retry_in_s": round(breaker.retry_in(), 1)},
                "first_audio_ms": {"mean": round(mean * 1000, 1) if mean is not None else None,
                                   "last": round(stats.last_first_audio * 1000, 1)
                                   if stats.last_first_audio is not None else None},
                "last_error": upstream.last_error if upstream.reachable is False or breaker.state != "closed"
                else None,
            }
        return report


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


__all__ = ["ANY_LANGUAGE", "ENGINE", "Upstream", "UpstreamUnavailableKind", "Upstreams", "load_kind"]

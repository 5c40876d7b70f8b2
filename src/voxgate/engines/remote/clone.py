"""Cloning through an upstream: a voice registered from reference audio is also sent to an upstream that can
clone (CosyVoice `/clone`, Flash-TTS `/add_speaker`, another voxgate), so it speaks in the upstream's
real clone; the local matched voice stays as its fallback.

The registration path (core/voicebank.py `VoiceBank.register`, which every dialect's "add a voice" route
ends in) calls an `UpstreamCloner` when one is configured (`--clone-upstream NAME`, or a request's own
`upstream` field). It answers the metadata to store with the voice — `{"upstream": NAME, "upstream_voice":
ID}` — or None when the upstream cannot or did not clone (the voice is then local only, and the log says
why). The voice registry turns that metadata into a voice spoken by the upstream's `NAME:ID`
(voices/registry.py `upstream_info`). Kinds without a clone call (GPT-SoVITS, AllTalk, Wyoming, plain
OpenAI servers) raise NotSupported: for GPT-SoVITS the operator shares a reference folder with the upstream
instead (docs/upstreams.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voxgate.engines.remote.base import NotSupported, UpstreamError, UpstreamKind
from voxgate.errors import InvalidInput

_LOG = logging.getLogger(__name__)
UPSTREAM_KEY = "upstream"  # meta key: the upstream's voxgate name (voices/registry.py reads the same two)
VOICE_KEY = "upstream_voice"  # meta key: the voice id on that upstream
WHY = {  # what the operator can do instead, per kind that cannot clone
    "gptsovits": "GPT-SoVITS takes reference audio only as a path on its own disk: share a folder with it "
                 "and speak with ref_audio_path (docs/upstreams.md)",
    "alltalk": "AllTalk has no API to add a voice: copy the WAV into its voices/ folder",
}


class UpstreamCloner:
    """Sends reference audio to the clone call of a configured upstream; one per server."""

    def __init__(self, kinds: Callable[[str], UpstreamKind | None], default: str | None = None,
                 relist: Callable[[str], Awaitable[object]] | None = None) -> None:
        self._kinds = kinds  # upstream name → its kind instance (None: no such upstream)
        self.default = default  # --clone-upstream: used when a request names none
        self._relist = relist  # re-reads an upstream's voice list, so the new NAME:voice is listed at once

    def check(self, upstream: str | None) -> str | None:
        """The upstream a registration clones on (`upstream` or the default); InvalidInput when it names no
        configured upstream, so the client hears it before anything is stored."""
        name = upstream or self.default
        if name is not None and self._kinds(name) is None:
            raise InvalidInput(f"upstream {name!r} is not configured (see --upstream)", param="upstream")
        return name

    async def __call__(self, voice_id: str, wav: bytes, transcript: str | None, language: str | None,
                       upstream: str | None = None) -> dict[str, Any] | None:
        """Clone `wav` (a WAV file's bytes) on the upstream as `voice_id`; the metadata to store, or None when
        it was not cloned there (logged: the voice stays local)."""
        name = self.check(upstream)
        if name is None:
            return None
        kind = self._kinds(name)
        assert kind is not None
        try:
            remote_id = await kind.clone(voice_id, wav, transcript, language)
        except NotSupported as exc:
            hint = WHY.get(kind.config.kind, "this kind of upstream has no clone call")
            _LOG.warning("voice %s not cloned on upstream %s: %s (%s); it speaks with its local matched voice",
                         voice_id, name, exc.message, hint)
            return None
        except (TimeoutError, UpstreamError) as exc:
            _LOG.warning("voice %s not cloned on upstream %s: %s; it speaks with its local matched voice",
                         voice_id, name, getattr(exc, "message", exc) or type(exc).__name__)
            return None
        _LOG.info("voice %s cloned on upstream %s as %s", voice_id, name, remote_id)
        if self._relist is not None:
            try:
                await self._relist(name)
            except UpstreamError as exc:  # listed on the next refresh; until then the local voice speaks
                _LOG.warning("upstream %s: voice list not re-read after cloning: %s", name, exc.message)
        return {UPSTREAM_KEY: name, VOICE_KEY: remote_id}


"""`gptsovits` upstreams: GPT-SoVITS's api_v2 server (`python api_v2.py`, POST /tts), or another voxgate.

api_v2 has no list of speakers: a voice there is a reference recording on the GPU box (`ref_audio_path`,
a path the server reads) with its transcript (`prompt_text`) and language (`prompt_lang`), spoken by the
weights loaded with /set_gpt_weights and /set_sovits_weights. So the operator names the voices, in the
upstream's options:
- `voices`: comma-separated `name=ref_audio_path` entries (a bare path is named by its file name without
  extension; against another voxgate a voice id is a valid ref_audio_path), or a JSON object
  `{"name": {"ref_audio_path": …, "prompt_text": …, "prompt_lang": …, "language": …}, …}`
  (a string value is the ref_audio_path);
- `refs`: the path of a JSON file holding that object on the voxgate host (read again at every listing,
  so an edit shows on the next refresh or reload);
- `prompt_text`, `prompt_lang`: defaults for entries without them (prompt_lang default: the voice's
  language in GPT-SoVITS's terms, else `auto`);
- `language`: the language of the voices whose entry does not say; `text_lang`: a fixed text_lang
  (default: the voice's language in GPT-SoVITS's terms, `auto` when unknown);
- any /tts tuning parameter (top_k, temperature, text_split_method, fragment_interval, streaming_mode, …)
  is sent as given.

Requests are POST /tts with `media_type=wav` (its header gives the model's rate: 32 kHz v2, 24 kHz v3,
48 kHz v4) and `streaming_mode=true` (per-fragment streaming, understood by old and new api_v2).
Listing the voices also probes the server with GET /tts?text_lang=en&prompt_lang=en (its 400 "ref_audio_path
is required" proves it is up; nothing is synthesized).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from voxgate.core.types import Piece
from voxgate.engines.remote import httpwire
from voxgate.engines.remote.base import (
    UpstreamConfig,
    UpstreamDefaults,
    UpstreamError,
    UpstreamRequest,
    UpstreamVoice,
)
from voxgate.engines.remote.pcmstream import WavStream
from voxgate.engines.remote.wire import GPTSOVITS_LANGUAGES, GPTSOVITS_RATE, GPTSOVITS_TUNABLE, gptsovits_language

MAX_REFS_BYTES = 1 << 20  # a refs file larger than this is refused
PROBE = {"text_lang": "en", "prompt_lang": "en"}  # GET /tts with these and nothing else: a 400, no synthesis


class GptSovitsUpstream(UpstreamDefaults):
    """A client of one GPT-SoVITS api_v2 server."""

    no_clone = ("GPT-SoVITS api_v2 has no upload call: share the reference with the upstream and name its path "
                "in the upstream's voices or refs option")

    speed_range = (0.5, 2.0)
    sample_rate = GPTSOVITS_RATE

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.url = httpwire.http_base(config) + "/tts"
        self._refs: dict[str, dict[str, Any]] = {}
        self._rate: int | None = None  # the model's output rate, once a WAV answer said it (encodes)
        for key in ("text_lang", "prompt_lang"):
            value = config.options.get(key)
            if value is not None and value.lower() not in GPTSOVITS_LANGUAGES:
                raise UpstreamError(f"{key} must be one of {', '.join(GPTSOVITS_LANGUAGES)} (got {value!r})",
                                    upstream=config.name)
        self.tuning = {k: _value(v) for k, v in config.options.items() if k in GPTSOVITS_TUNABLE}

    def _entries(self) -> dict[str, dict[str, Any]]:
        """The configured voices: name → /tts reference fields (and `language`)."""
        options = self.config.options
        entries: dict[str, Any] = {}
        refs = options.get("refs")
        if refs:
            path = Path(refs).expanduser()
            try:
                if path.stat().st_size > MAX_REFS_BYTES:
                    raise UpstreamError(f"refs file {path} is larger than 1 MiB", upstream=self.config.name)
                entries.update(_object(json.loads(path.read_text(encoding="utf-8")), f"refs file {path}"))
            except (OSError, ValueError) as exc:
                raise UpstreamError(f"cannot read refs file {path}: {exc}", upstream=self.config.name) from None
        text = options.get("voices", "").strip()
        if text.startswith("{"):
            try:
                entries.update(_object(json.loads(text), "voices"))
            except ValueError as exc:
                raise UpstreamError(f"voices is not valid JSON: {exc}", upstream=self.config.name) from None
        elif text:
            for item in (part.strip() for part in text.split(",")):
                if not item:
                    continue
                name, eq, path_text = item.partition("=")
                if not eq:
                    path_text = item
                    name = Path(item).stem if ("/" in item or "\\" in item or "." in Path(item).name) else item
                entries[name.strip()] = path_text.strip()
        out: dict[str, dict[str, Any]] = {}
        for name, entry in entries.items():
            fields = {"ref_audio_path": entry} if isinstance(entry, str) else dict(entry)
            if not isinstance(fields.get("ref_audio_path"), str) or not fields["ref_audio_path"]:
                raise UpstreamError(f"voice {name!r} has no ref_audio_path", upstream=self.config.name)
            out[str(name)] = fields
        return out

    def _listed(self, entries: Mapping[str, Mapping[str, Any]]) -> list[UpstreamVoice]:
        default_language = self.config.options.get("language")
        return [UpstreamVoice(id=name, name=str(fields.get("name") or name),
                              language=fields.get("language") or default_language or None)
                for name, fields in entries.items()]

    def configured_voices(self) -> list[UpstreamVoice] | None:
        """The voices the operator named, listed even while the server is down."""
        self._refs = self._entries()
        return self._listed(self._refs)

    async def voices(self) -> list[UpstreamVoice]:
        entries = await asyncio.to_thread(self._entries)  # may read the refs file
        # Both language fields: the original's GET handler calls .lower() on them before it checks anything
        # (500 without them); with them and no ref_audio_path/text it answers 400 and synthesizes nothing.
        async with httpwire.transport(self.config):
            response = await self.http.get(self.url, params=PROBE, headers=httpwire.bearer(self.config),
                                           timeout=httpwire.timeout(self.config))
        if response.status_code >= 500 or response.status_code in (401, 403, 404):
            raise httpwire.failed(self.config, "GET /tts", response.status_code,
                                  httpwire.message_of(response.content, response.reason_phrase))
        self._refs = entries
        return self._listed(entries)

    def _body(self, request: UpstreamRequest) -> dict[str, Any]:
        fields = self._refs.get(request.voice)
        if fields is None:
            raise UpstreamError(f"voice {request.voice!r} is not configured for this upstream",
                                upstream=self.config.name, status=404)
        options = self.config.options
        language = fields.get("language") or request.language
        text_lang = options.get("text_lang") or gptsovits_language(language)
        prompt_lang = fields.get("prompt_lang") or options.get("prompt_lang") or gptsovits_language(language)
        body: dict[str, Any] = {"streaming_mode": True, **self.tuning}
        body.update({
            "text": request.text, "text_lang": text_lang.lower(), "ref_audio_path": fields["ref_audio_path"],
            "prompt_text": fields.get("prompt_text", options.get("prompt_text", "")),
            "prompt_lang": str(prompt_lang).lower(), "media_type": "wav", "speed_factor": request.speed,
        })
        if fields.get("aux_ref_audio_paths"):
            body["aux_ref_audio_paths"] = list(fields["aux_ref_audio_paths"])
        return body

    async def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        if not self._refs:
            self._refs = await asyncio.to_thread(self._entries)
        body = self._body(request)
        async with httpwire.open_stream(self.http, self.config, "POST", self.url, "synthesis", json=body) as response:
            async for piece in httpwire.stream_pieces(self.config, response, WavStream()):
                self._rate = piece.rate  # the model's rate, from its WAV header: raw passes through at it
                yield piece

    # -- passthrough (engines/remote/base.py EncodingKind): the server's own bytes in the client's format --

    def encodes(self, fmt: str, rate: int) -> bool:
        """Raw pcm (media_type=raw: int16 mono, joins anywhere) at the model's rate, once a WAV answer told it
        (v2 32 kHz, v3 24 kHz, v4 48 kHz; its raw answer has no header to say so). Not ogg (a whole Ogg file
        per fragment), aac (ADTS at the model's rate, not the client's) nor streamed wav (sizes zero)."""
        return fmt == "pcm" and self._rate is not None and rate == self._rate

    async def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        if not self._refs:
            self._refs = await asyncio.to_thread(self._entries)
        body = {**self._body(request), "media_type": "raw" if fmt == "pcm" else fmt}
        async for data in httpwire.stream_bytes(self.http, self.config, "POST", self.url,
                                                lambda exc: "media_type" in exc.message.lower(), json=body):
            yield data  # api_v2: 400 "media_type: raw is not supported"


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object of voice name → entry")
    return data


def _value(text: str) -> Any:
    """An option's text as the JSON value it spells (numbers, true/false), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


__all__ = ["GptSovitsUpstream"]

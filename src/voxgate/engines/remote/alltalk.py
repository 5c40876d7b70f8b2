"""AllTalk v2 (`alltalkbeta`, port 7851) as an upstream.

Wire (docs/upstreams.md, specs/dialects.md §1): `GET /api/voices` lists voice files; `GET
/api/tts-generate-streaming?text&voice&language&output_file` streams a WAV whose header says 0 frames,
then int16 PCM as the model makes it (XTTS). Engines that cannot stream answer that with 400 "Streaming not
supported…"; then (and for a speed other than 1, which the streaming call has no field for) the kind uses
`POST /api/tts-generate` (a form), which answers with the URL of a file the upstream wrote — only its path
is used, and only `/audio/<file>` or `/audiocache/<file>` of this same upstream is ever fetched.
AllTalk has no API to add a voice: clone() is NotSupported (copy the WAV into its `voices/` folder).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from voxgate.core.types import Piece
from voxgate.engines.remote import httpwire
from voxgate.engines.remote.base import (
    NotSupported,
    UpstreamConfig,
    UpstreamDefaults,
    UpstreamError,
    UpstreamRequest,
    UpstreamVoice,
)
from voxgate.engines.remote.pcmstream import AudioFormatError, WavStream, decode_file
from voxgate.engines.remote.wire import ALLTALK_STREAM_HEADER, ALLTALK_STREAM_RATE

_LOG = logging.getLogger(__name__)
LANGUAGES = ("ar", "zh-cn", "cs", "nl", "en", "fr", "de", "hu", "hi", "it", "ja", "ko", "pl", "pt", "ru", "es",
             "tr")  # XTTS's languages as AllTalk names them
NOT_STREAMING = "Streaming not supported"
NO_VOICES = "No Voices Found"
FILE_PATH = re.compile(r"^/(audio|audiocache)/[A-Za-z0-9_.\-]+$")  # what an output URL may point at
OUTPUT_NAME = "voxgate"  # output_file / output_file_name sent (files land in the upstream's outputs/)


def language_code(tag: str | None, default: str) -> str:
    """AllTalk's language code for a BCP-47-ish tag (zh → zh-cn); `default` for none or one it lacks."""
    if not tag:
        return default
    primary = tag.replace("_", "-").split("-")[0].lower()
    if primary == "zh":
        return "zh-cn"
    return primary if primary in LANGUAGES else default


class AllTalkUpstream(UpstreamDefaults):
    """A client of one AllTalk v2 server."""

    no_clone = ("AllTalk has no API to add a voice; copy the WAV into its voices/ folder and use it as "
                "NAME:file.wav")

    def __init__(self, config: UpstreamConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._language = config.options.get("language", "en")
        self._streams = config.options.get("stream", "true").lower() not in ("0", "false", "no")
        self._raw = True  # its streams start with the header AllTalk's own (and voxgate's) streaming route writes

    async def voices(self) -> list[UpstreamVoice]:
        answer = await httpwire.request_json(self._http, self.config, "GET", "/api/voices", "listing voices")
        if not isinstance(answer, dict) or answer.get("status") != "success":
            message = answer.get("message") if isinstance(answer, dict) else None
            raise httpwire.failed(self.config, "listing voices", 200, str(message or f"{answer!r:.80}"))
        return [UpstreamVoice(id=str(v), name=str(v).removesuffix(".wav"))
                for v in answer.get("voices") or [] if v != NO_VOICES]

    def synthesize(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        return self._speak(request)

    def _stream_call(self, request: UpstreamRequest, language: str) -> tuple[str, dict[str, str]]:
        url = httpwire.http_base(self.config) + "/api/tts-generate-streaming"
        return url, {"text": request.text, "voice": request.voice, "language": language, "output_file": OUTPUT_NAME}

    async def _speak(self, request: UpstreamRequest) -> AsyncIterator[Piece]:
        language = language_code(request.language, self._language)
        if self._streams and request.speed == 1.0:
            url, params = self._stream_call(request, language)
            try:
                async with httpwire.open_stream(self._http, self.config, "GET", url, "synthesis",
                                                params=params) as response:
                    async for piece in httpwire.stream_pieces(self.config, response, WavStream()):
                        yield piece
                return
            except UpstreamError as exc:
                if exc.status != 400 or NOT_STREAMING not in exc.message:
                    raise
                _LOG.info("upstream %s: its engine does not stream; generating files instead", self.config.name)
                self._streams = False
        yield await self._generate(request, language)

    async def _generate(self, request: UpstreamRequest, language: str) -> Piece:
        """POST /api/tts-generate, then the file it names, fetched from this upstream."""
        form = {"text_input": request.text, "text_filtering": "none", "character_voice_gen": request.voice,
                "narrator_enabled": "false", "language": language, "output_file_name": OUTPUT_NAME,
                "output_file_timestamp": "true", "autoplay": "false"}
        if request.speed != 1.0:
            form["speed"] = f"{min(max(request.speed, 0.25), 2.0):g}"  # AllTalk's range
        answer = await httpwire.request_json(self._http, self.config, "POST", "/api/tts-generate", "synthesis",
                                             data=form)
        if not isinstance(answer, dict) or answer.get("status") != "generate-success":
            message = answer.get("error") or answer.get("message") if isinstance(answer, dict) else None
            raise httpwire.failed(self.config, "synthesis", 200, str(message or f"{answer!r:.80}"))
        path = _file_path(answer)
        if path is None:
            raise httpwire.failed(self.config, "synthesis", 200,
                                  f"no /audio/ file in the answer: {answer.get('output_file_url')!r:.80}")
        data = await httpwire.fetch_bytes(self._http, self.config, path, "fetching the audio file")
        try:
            samples, rate = decode_file(data)
        except AudioFormatError as exc:
            raise httpwire.failed(self.config, "fetching the audio file", 200, str(exc)) from None
        return Piece(samples, rate)

    async def health(self) -> bool:
        return await httpwire.answers(self._http, self.config, "/api/ready")

    # -- passthrough (engines/remote/base.py EncodingKind): the server's own bytes in the client's format --

    def encodes(self, fmt: str, rate: int) -> bool:
        """Raw pcm at 24 kHz: the body of AllTalk's streaming WAV after its header, which is the very header the
        AllTalk dialect's streaming route writes (a 0-frame header, 24 kHz mono 16-bit), so header + body reach
        the client as the upstream sent them. While it streams (speed 1; not after a 400 "Streaming not
        supported") and until an answer came with another header."""
        return fmt == "pcm" and rate == ALLTALK_STREAM_RATE and self._streams and self._raw

    async def encoded(self, request: UpstreamRequest, fmt: str) -> AsyncIterator[bytes]:
        url, params = self._stream_call(request, language_code(request.language, self._language))
        head = b""
        answer = httpwire.stream_bytes(self._http, self.config, "GET", url, lambda exc: NOT_STREAMING in exc.message,
                                       params=params)
        async with contextlib.aclosing(answer):  # closes the upstream request however this ends
            async for data in answer:
                if len(head) < len(ALLTALK_STREAM_HEADER):
                    head += data
                    if len(head) < len(ALLTALK_STREAM_HEADER):
                        continue
                    if not head.startswith(ALLTALK_STREAM_HEADER):  # another rate or layout: decode it instead
                        self._raw = False
                        raise NotSupported(f"its stream's header is not AllTalk's 24 kHz one: {head[:44]!r}",
                                           upstream=self.config.name)
                    data = head[len(ALLTALK_STREAM_HEADER):]
                if data:
                    yield data
        if len(head) < len(ALLTALK_STREAM_HEADER):
            raise httpwire.failed(self.config, "synthesis", None, "the stream ended inside its WAV header")


def _file_path(answer: dict[str, Any]) -> str | None:
    """The path of the generated file on the upstream: v2 answers `/audio/<f>`, legacy mode an absolute URL
    whose host is the upstream's own idea of itself — only the path is kept, and only a plain file name
    under /audio/ or /audiocache/ is accepted."""
    for key in ("output_file_url", "output_cache_url"):
        value = answer.get(key)
        if isinstance(value, str) and value:
            path = urlsplit(value).path
            if FILE_PATH.match(path):
                return path
    return None


"""The AllTalk dialect's services: voices by AllTalk name, the active model, synthesis of part lists, files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voxgate.audio.encoders import encode_all
from voxgate.audio.pcm import int16_bytes, wav_header
from voxgate.core.context import Context
from voxgate.core.parts import Part, is_ssml
from voxgate.core.service import SynthesisStream
from voxgate.core.types import SynthesisRequest, VoiceInfo
from voxgate.dialects.alltalk.narrator import assign, clean_text, split_parts
from voxgate.dialects.alltalk.outputs import OutputStore
from voxgate.dialects.alltalk.protocol import GenerateParams, language_tag
from voxgate.dialects.common import first_then_rest
from voxgate.errors import EngineFailure, VoiceNotFound, VoxgateError
from voxgate.safefs import UnsafePath

_LOG = logging.getLogger(__name__)
VOICEMAP_KEY = "alltalk.openai_voicemap"  # in the voice store's key-value table: survives restarts
STREAM_RATE = 24_000  # Hertz of the streaming endpoints: what XTTS streams and AllTalk clients assume


@dataclass
class DialectState:
    """What /api/reload and /api/stop-generation change; one per server."""

    model: str | None = None  # voice id of the active model; None = the server's default voice
    changing: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop_epoch: int = 0  # bumped by /api/stop-generation: multi-part work started before it stops


def _speakable(text: str) -> bool:
    return any(c.isalnum() for c in text)



class AllTalk:
    """The dialect's services: voices by AllTalk name, the output folder, and synthesis of part lists."""

    def __init__(self, ctx: Context, state: DialectState, store: OutputStore, aliases: Mapping[str, str],
                 max_characters: int) -> None:
        self.ctx = ctx
        self.state = state
        self.store = store
        self.aliases = {k.lower(): v for k, v in aliases.items()}
        self.max_characters = max_characters

    # --- voices and models -------------------------------------------------------------------------------

    def voice(self, name: str) -> VoiceInfo:
        """A voice by id, AllTalk alias (female_01.wav), or id with a .wav suffix."""
        key = name.strip()
        target = self.aliases.get(key.lower())
        first_error: VoiceNotFound | None = None
        for candidate in ([target] if target else []) + [key, key.removesuffix(".wav")]:
            try:
                return self.ctx.voices.resolve(candidate)
            except VoiceNotFound as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise VoiceNotFound(f"voice {key!r} is not installed; "
                            f"available: {', '.join(self.voice_names()[:20])}", param="voice") from first_error

    def voice_names(self) -> list[str]:
        """What /api/voices lists: installed and registered voice ids, then AllTalk aliases that resolve."""
        names = [v.id for v in self.ctx.voices.list()]
        for alias, target in self.aliases.items():
            try:
                self.ctx.voices.resolve(target)
            except VoiceNotFound:
                continue
            names.append(alias)
        return names

    def active(self) -> VoiceInfo:
        """The active model: set by /api/reload, else the server's default voice."""
        if self.state.model is not None:
            try:
                return self.ctx.voices.resolve(self.state.model)
            except VoiceNotFound:
                _LOG.warning("active AllTalk model %s is gone; using the default voice", self.state.model)
                self.state.model = None
        return self.ctx.voices.resolve(None)

    @staticmethod
    def model_name(voice: VoiceInfo) -> str:
        return f"{voice.engine} - {voice.id}"

    def models(self) -> dict[str, VoiceInfo]:
        """`<engine> - <voice id>` → voice, for every installed model."""
        return {self.model_name(v): v for v in self.ctx.voices.installed()}

    def load_voicemap(self) -> None:
        """Apply the OpenAI voice map stored by PUT /api/openai-voicemap (blocking: reads the store)."""
        stored = self.ctx.voicebank.store.get_value(VOICEMAP_KEY)
        if not isinstance(stored, dict):
            return
        for alias, target in stored.items():
            try:
                self.ctx.voices.set_alias(alias, target)
            except VoiceNotFound:
                _LOG.warning("stored OpenAI voice map: %s → %s is not installed; kept the old mapping", alias, target)

    # --- synthesis ----------------------------------------------------------------------------------------

    def plan(self, params: GenerateParams) -> list[tuple[str, str]]:
        """(voice id, text) to speak in order, after filtering and narrator splitting."""
        if params.narrator_enabled == "false":
            voice = self.voice(params.character_voice_gen).id
            text = params.text_input  # SSML is not filtered: the filters would delete its markup (docs/ssml.md)
            return [(voice, text if is_ssml(text) else clean_text(text, params.text_filtering))]
        ids: dict[str, str] = {}

        def vid(name: str) -> str:
            if name not in ids:
                ids[name] = self.voice(name).id
            return ids[name]

        parts = assign(split_parts(params.text_input), params.narrator_enabled, params.text_not_inside,
                       params.character_voice_gen, params.narrator_voice_gen)
        cleaned = [(name, clean_text(text, params.text_filtering)) for name, text in parts]
        return [(vid(name), text) for name, text in cleaned if _speakable(text)]

    @staticmethod
    def request(params: GenerateParams, voice: str, text: str, rate: int | None) -> SynthesisRequest:
        return SynthesisRequest(text=text, voice=voice, language=language_tag(params.language), speed=params.speed,
                                pitch=params.pitch, sample_rate=rate)

    def _script(self, params: GenerateParams, plan: list[tuple[str, str]], rate: int | None) -> SynthesisRequest:
        """The plan as one request: several parts (one slot, in order) when the narrator split it; one part is
        a plain request, whose text may be SSML."""
        request = self.request(params, *plan[0], rate)
        if len(plan) == 1:
            return request
        return replace(request, parts=tuple(Part(text, voice) for voice, text in plan))

    async def render(self, params: GenerateParams, plan: list[tuple[str, str]],
                     rate: int | None) -> tuple[np.ndarray, int]:
        """Every part synthesized in order and concatenated, as one request of several parts (one admission
        slot); a stop request (service.stop_all) ends it after the current piece."""
        if not plan:
            return np.zeros(0, np.float32), rate or self.active().sample_rate
        pcm = await self.ctx.service.synthesize(self._script(params, plan, rate))
        return pcm.samples, pcm.rate

    async def stream(self, params: GenerateParams,
                     plan: list[tuple[str, str]]) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        """AllTalk's streaming WAV: a header with zero sizes, then int16 PCM as each piece is ready.

        Returns the body and a closer that ends whichever part is being synthesized when the response ends.
        """
        # output "pcm": an upstream voice's own int16 bytes pass through (SynthesisService.passthrough); the
        # alltalk kind's come from AllTalk's streaming route behind the same header as this one's
        request = replace(self._script(params, plan, STREAM_RATE), output="pcm", int16_chunks=True)
        opened: list[SynthesisStream] = [await self.ctx.service.open(request)]
        chunks = await first_then_rest(opened[0])

        async def body() -> AsyncIterator[bytes]:
            yield wav_header(STREAM_RATE, unknown="zero")
            try:
                async for chunk in chunks:
                    yield (chunk.encoded if chunk.encoded is not None else chunk.pcm16 if chunk.pcm16 is not None
                           else int16_bytes(chunk.samples))
            except VoxgateError as exc:  # after the header an error can only end the stream
                _LOG.warning("AllTalk stream ended early: %s", exc)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]

        async def close() -> None:
            for stream in opened:
                await stream.aclose()

        return body(), close

    async def save(self, samples: np.ndarray, rate: int, name: str) -> Path:
        """Write a WAV into the output folder (off the loop) and prune old files."""
        data = await asyncio.to_thread(encode_all, samples, rate, "wav")
        try:
            return await asyncio.to_thread(self.store.write, name, data)
        except UnsafePath as exc:  # the output folder was made a link out of the data folder
            _LOG.error("refusing to write an AllTalk output: %s", exc)
            raise EngineFailure("could not write the output file (see the server log)") from None

"""What `describe` answers (every voice voxgate can speak) and which voice a `synthesize` names."""

from __future__ import annotations

from typing import Any

from wyoming.event import Event
from wyoming.info import Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker

from voxgate import __version__
from voxgate.core.context import Context
from voxgate.core.parts import is_ssml
from voxgate.core.types import VoiceInfo
from voxgate.errors import VoiceNotFound

PROGRAM = "voxgate"
ENGINE_URLS = {
    "piper": "https://github.com/OHF-Voice/piper1-gpl",
    "kokoro": "https://huggingface.co/hexgrad/Kokoro-82M",
    "espeak": "https://github.com/espeak-ng/espeak-ng",
}


def _listed(voices: list[VoiceInfo]) -> list[VoiceInfo]:
    """The voices `info` lists: a multi-speaker model once, with its speakers, not once per speaker."""
    ids = {v.id for v in voices}
    return [v for v in voices if not (v.speaker and "@" in v.id and v.id.rsplit("@", 1)[0] in ids)]


def _voice(v: VoiceInfo) -> TtsVoice:
    kind = "registered from reference audio, " if v.registered else ""
    speakers = [TtsVoiceSpeaker(name=s) for s in v.speakers] if v.speakers and not v.speaker else None
    return TtsVoice(name=v.id, description=f"{v.name} ({kind}{v.engine})",
                    attribution=Attribution(name=v.engine, url=ENGINE_URLS.get(v.engine, "")),
                    installed=True, version=None, languages=[v.language], speakers=speakers)


class Catalogue:
    """The `info` event, rebuilt only when the voice list changes (it is read from memory, never loaded)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._key: tuple[str, ...] | None = None
        self._event: Event | None = None

    def info(self) -> Event:
        """The current `info` event."""
        voices = self._ctx.voices.list()
        key = tuple(v.id for v in voices)
        if self._event is None or key != self._key:
            program = TtsProgram(
                name=PROGRAM, description="voxgate: every voice of every engine, one OpenAI-style server",
                attribution=Attribution(name="voxgate", url=""),  # no public home page to point at
                installed=True, version=__version__, voices=[_voice(v) for v in _listed(voices)],
                supports_synthesize_streaming=True)
            self._event, self._key = Info(tts=[program]).event(), key
        return self._event


def _tag(language: str) -> str:
    return language.replace("_", "-").casefold()


def choose(ctx: Context, voice: object) -> VoiceInfo:
    """The voice a synthesize/synthesize-start names: {name, speaker}, {language} or nothing (the default).
    Raises VoiceNotFound for a name, speaker or language voxgate does not have."""
    voices = ctx.voices
    spec: dict[str, Any] = {"name": voice} if isinstance(voice, str) else voice if isinstance(voice, dict) else {}
    name, speaker, language = spec.get("name"), spec.get("speaker"), spec.get("language")
    if not isinstance(name, str | None) or not isinstance(speaker, str | None):
        raise VoiceNotFound("voice name and speaker must be strings", param="voice")
    if name:
        found = voices.resolve(name)
        if speaker and found.speakers:
            model = found.id.split("@", 1)[0]
            by_index = found.speakers[int(speaker)] if speaker.isdigit() and int(speaker) < len(found.speakers) \
                else None
            chosen = speaker if speaker in found.speakers else by_index
            if chosen is None:
                raise VoiceNotFound(f"voice {model!r} has no speaker {speaker!r}; its speakers: "
                                    f"{', '.join(found.speakers[:20])}", param="voice")
            return voices.resolve(f"{model}@{chosen}")
        return found  # a speaker for a one-speaker voice is ignored, as wyoming-piper does
    if isinstance(language, str) and language.strip():
        wanted = _tag(language.strip())
        default = voices.resolve(None)
        every = [default, *voices.list()]
        for match in (lambda v: _tag(v.language) == wanted,
                      lambda v: _tag(v.language).split("-")[0] == wanted.split("-")[0]):
            found = next((v for v in every if match(v)), None)
            if found is not None:
                return found
        raise VoiceNotFound(f"no voice speaks {language!r}", param="voice")
    return voices.resolve(None)


def ssml_text(text: str, text_format: object) -> str:
    """The text of a `synthesize` as the core reads it: with `text_format: ssml`, SSML (wrapped in
    `<speak>…</speak>` when it has no root of its own); otherwise as it is (which is SSML too when it
    starts with `<speak>`, as on every other route)."""
    return text if text_format != "ssml" or is_ssml(text) else f"<speak>{text}</speak>"

"""Language routing: which installed voice speaks each part of a request's text.

Every dialect's language field goes through `route`. A voice speaks a language when its own language
has the same primary subtag, or when its engine says it also speaks it (`VoiceInfo.languages`, e.g. a
Kokoro voice reads English as well as Japanese). For a language the requested voice cannot speak, the
best installed voice is chosen: neural engines first, then SVOX Pico for the languages where it was
measured more intelligible than espeak-ng (a Pico voice says so in `routed`), then espeak-ng
(which speaks every language, so no language is left unspoken), then Pico's other languages; within a
tier a native speaker before one that also speaks it, an exact region match before another region, the
requested voice's own style in the other language (`family`, e.g. a Kokoro style reading
Mandarin), the default voice, an engine's measured default for the language (`route_default`,
e.g. Kokoro's Chinese style), then by id.
"""

from __future__ import annotations

from typing import NamedTuple

from voxgate.engines.base import VoiceInfo
from voxgate.errors import InvalidInput
from voxgate.text.language import LanguageChoice, Mode, detect_spans, parse_language, primary
from voxgate.voices.registry import VoiceRegistry

FALLBACK_ENGINES = ("espeak",)  # chosen only when no other engine speaks the language
SECONDARY_ENGINES = ("pico",)  # after neural engines; ahead of espeak-ng only where measured better
_LATIN_LANGUAGES = frozenset(
    "en fr de es it pt nl pl cs sk sl hr sv da nb nn no fi et lv lt hu ro tr id ms vi ca eu gl af sw "
    "cy ga is mt sq tl eo la".split()
)


class LanguageNotSpoken(InvalidInput):
    """No installed engine speaks the requested language."""


class Span(NamedTuple):
    """A piece of the text and the voice that speaks it."""

    text: str
    voice: VoiceInfo
    language: str | None  # the piece's language tag; None when it has no script (digits, punctuation)


def voice_languages(voice: VoiceInfo) -> set[str]:
    """Primary subtags of every language `voice` speaks (a reference voice: what its base speaks)."""
    if voice.reference is not None and voice.reference.speaks:
        return {primary(str(tag)) for tag in voice.reference.speaks}
    spoken = {primary(voice.language)}
    spoken.update(primary(str(tag)) for tag in voice.languages)
    return spoken


def native_language(voice: VoiceInfo) -> str:
    """The primary subtag a voice speaks natively (a reference voice: its base's language)."""
    speaks_ = voice.reference.speaks if voice.reference is not None else ()
    return primary(str(speaks_[0])) if speaks_ else primary(voice.language)


def reference_english(registry: VoiceRegistry, voice: VoiceInfo) -> VoiceInfo | None:
    """For a reference voice, the voice that reads its English: itself on an English base, or its
    variant on one; None for an installed voice (it reads English itself, if it can)."""
    if voice.reference is None or not voice.reference.speaks:
        return None
    if native_language(voice) == "en":
        return voice
    return registry.variant(voice, "en")


def spoken_languages(registry: VoiceRegistry) -> set[str]:
    """Primary subtags of every language an installed voice speaks (what routing can serve)."""
    return set().union(*(voice_languages(v) for v in registry.installed()))


def speaks(voice: VoiceInfo, language: str) -> bool:
    """True when `voice` can speak `language` (compared by primary subtag)."""
    return primary(language) in voice_languages(voice)


def best_voice(registry: VoiceRegistry, language: str, preferred: VoiceInfo | None = None) -> VoiceInfo:
    """The voice that speaks `language` best: `preferred` if it speaks it natively, else its variant on a
    native base (a reference voice), else `preferred` if it can speak it at all, else the best installed one."""
    if preferred is not None:
        if native_language(preferred) == primary(language):
            return preferred
        variant = registry.variant(preferred, language)
        if variant is not None:
            return variant
        if speaks(preferred, language):
            return preferred
    default = registry.resolve(None)
    candidates = [v for v in registry.installed() if speaks(v, language)]
    if not candidates:
        raise LanguageNotSpoken(f"no installed voice speaks {language!r}", param="language")

    family = (preferred.family or preferred.id) if preferred is not None else None

    def rank(voice: VoiceInfo) -> tuple[int, bool, bool, bool, bool, bool, str]:
        return (_tier(voice), primary(voice.language) != primary(language),
                voice.language.lower() != language.lower(), (voice.family or voice.id) != family,
                voice.id != default.id, not voice.route_default, voice.id)

    return min(candidates, key=rank)


def _tier(voice: VoiceInfo) -> int:
    """0 neural, 1 Pico where measured better than espeak-ng, 2 espeak-ng, 3 Pico elsewhere."""
    if voice.engine in FALLBACK_ENGINES:
        return 2
    if voice.engine in SECONDARY_ENGINES:
        return 1 if voice.routed else 3
    return 0


def route(registry: VoiceRegistry, voice: str | VoiceInfo | None, language: str | None, text: str) -> list[Span]:
    """Cut `text` into spans, each with the voice that speaks it.

    `voice` is the requested voice (id, alias or spec; None = the default voice; or the voice itself,
    already resolved, so a request resolves it once) and `language` any
    dialect's language field (None or `auto` = detect by script). Raises VoiceNotFound for an unknown
    voice, UnknownLanguage for a tag that is no language, LanguageNotSpoken when no engine speaks it.
    """
    choice = parse_language(language)
    requested = voice if isinstance(voice, VoiceInfo) else registry.resolve(voice)
    if choice.tag is not None and choice.mode is Mode.STRICT:
        return [Span(text, best_voice(registry, choice.tag, requested), choice.tag)]
    if choice.tag is not None:
        return _mixed(registry, choice, requested, text)
    return _auto(registry, choice, requested, text)


def _mixed(registry: VoiceRegistry, choice: LanguageChoice, requested: VoiceInfo, text: str) -> list[Span]:
    """The language's voice for everything, except Latin-script words, which are English: read by the
    reference voice's English base when the requested voice is a reference voice (GPT-SoVITS `zh`, `ja`,
    `ko`, `yue` mean "that language mixed with English"), else by the language's voice if it can."""
    assert choice.tag is not None
    main = best_voice(registry, choice.tag, requested)
    if primary(choice.tag) in _LATIN_LANGUAGES:
        return [Span(text, main, choice.tag)]
    english = reference_english(registry, requested)
    if english is None or english.id == main.id:
        if speaks(main, "en"):
            return [Span(text, main, choice.tag)]
        english = best_voice(registry, "en", requested)
    spans = []
    for piece, lang in detect_spans(text, han=choice.han, latin="en"):
        if lang == "en":
            spans.append(Span(piece, english, "en"))
        else:
            spans.append(Span(piece, main, choice.tag))
    return _merge(spans)


def _auto(registry: VoiceRegistry, choice: LanguageChoice, requested: VoiceInfo, text: str) -> list[Span]:
    """Every span in the language its script says, by the requested voice where it speaks it."""
    own = primary(requested.language)
    han = own if own in {"zh", "yue", "ja"} and choice.han == "zh" else choice.han
    latin = own if own in _LATIN_LANGUAGES else "en"
    spans = []
    for piece, lang in detect_spans(text, han=han, latin=latin):
        if lang is None:
            spans.append(Span(piece, requested, None))
        else:
            try:
                voice = best_voice(registry, _tag_for(requested, lang), requested)
            except LanguageNotSpoken:  # detected, not asked for: the requested voice does its best
                voice = requested
            spans.append(Span(piece, voice, lang))
    return _merge(spans)


def _tag_for(voice: VoiceInfo, language: str) -> str:
    """The voice's full tag when it is of `language` (so its region is preferred), else `language`."""
    return voice.language if primary(voice.language) == language else language


def _merge(spans: list[Span]) -> list[Span]:
    """Join neighbouring spans spoken by the same voice; a script-less span joins its neighbour."""
    merged: list[Span] = []
    for span in spans:
        if merged and merged[-1].voice.id == span.voice.id:
            last = merged[-1]
            merged[-1] = Span(last.text + span.text, last.voice, last.language or span.language)
        else:
            merged.append(span)
    return merged

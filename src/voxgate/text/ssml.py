"""A subset of SSML 1.1 for input that starts with `<speak>`: turned into parts the core speaks in order.

Supported: `<break time|strength>`, `<prosody rate pitch volume>`, `<say-as interpret-as=…>` (characters,
cardinal, ordinal, date, time, telephone; English readings, see text/ssml_sayas.py), `<phoneme
alphabet="ipa" ph>`, `<sub alias>`, `<voice name>`, `<p>`, `<s>`. Any other element is read as its text
(`<emphasis>`, `<audio>`'s fallback text, a vendor's tags); `<mark>` and `<desc>` say nothing.

Parsed by defusedxml: a DTD or an entity declaration is refused (no billion laughs, no external
entities); the five predefined entities (`&amp;` …) and character references work. Markup that is not
well-formed is an InvalidInput naming the line and column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from voxgate.errors import InvalidInput
from voxgate.text.lexicon import check_phonemes
from voxgate.text.ssml_sayas import say_as

MAX_BREAK = 10.0  # seconds: one break, as Amazon Polly and Azure cap it
_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.4, "strong": 0.75, "x-strong": 1.2}  # seconds
_RATE = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.75}
_PITCH = {"x-low": -4.0, "low": -2.0, "medium": 0.0, "default": 0.0, "high": 2.0, "x-high": 4.0}  # semitones
_VOLUME = {"silent": -math.inf, "x-soft": -12.0, "soft": -6.0, "medium": 0.0, "default": 0.0, "loud": 6.0,
           "x-loud": 12.0}  # decibels
_TIME = re.compile(r"^\s*(\d{1,6}(?:\.\d{1,3})?)\s*(ms|s)\s*$")
_END = re.compile(r"</(?:[A-Za-z_][\w.-]{0,30}:)?speak\s{0,64}>")  # the root's end tag (prefixed or not)
_NUMBER = re.compile(r"^\s*([+-]?\d{1,4}(?:\.\d{1,3})?)\s*(%|st|dB|hz|Hz)?\s*$")


@dataclass(frozen=True)
class Part:
    """A run of text with one voice and prosody, or a pause (text empty, pause > 0)."""

    text: str = ""  # may hold inline phoneme overrides, [word](/ipa/)
    voice: str | None = None  # <voice name>; None = the request's voice
    rate: float = 1.0  # multiplies the request's speed
    pitch: float = 0.0  # semitones added to the request's pitch
    volume: float = 1.0  # multiplies the request's volume (linear gain)
    pause: float = 0.0  # seconds of silence (a break); a pause part has no text

    def same_voicing(self, other: Part) -> bool:
        """True when the two parts can be spoken as one run."""
        return (self.voice, self.rate, self.pitch, self.volume) == (other.voice, other.rate, other.pitch,
                                                                    other.volume)


def is_ssml(text: str) -> bool:
    """True for input that starts with a `<speak>` element (leading whitespace and an XML declaration
    allowed); also for a DOCTYPE before `<speak`, so that the DTD is refused rather than read aloud."""
    head = text.lstrip()
    if head.startswith("<?xml"):
        end = head.find("?>", 0, 200)
        head = head[end + 2:].lstrip() if end > 0 else head
    if head.startswith("<!DOCTYPE"):
        return "<speak" in head[:4096]
    head = head[:7]
    return head.startswith("<speak") and (len(head) == 6 or head[6] in "> \t\n\r/")


def starts_ssml(text: str) -> bool | None:
    """For text that arrives in pieces: True once its start is SSML (as is_ssml says), False once it cannot
    be, None while what came so far could still become `<speak`, an XML declaration or a DOCTYPE."""
    head = text.lstrip()
    if head.startswith("<?xml"):
        end = head.find("?>", 0, 200)
        if end < 0:
            return None if len(head) < 200 else False
        head = head[end + 2:].lstrip()
    if head.startswith("<!DOCTYPE") and "<speak" not in head[:4096]:
        return None if len(head) < 4096 else False
    if not head or any(len(head) <= len(p) and p.startswith(head) for p in ("<?xml", "<!DOCTYPE", "<speak")):
        return None  # "<speak" itself is undecided too: it may go on as "<speaker>"
    return is_ssml(text)


def document_end(text: str, start: int = 0) -> int | None:
    """Where an SSML document that `text` begins ends: the offset just past its `</speak>`, searched from
    `start` (the text seen before may be skipped, less a tag's length); None while it is still open."""
    match = _END.search(text, max(0, start - 128))  # an end tag is at most ~100 characters
    return match.end() if match else None


def parse(text: str) -> list[Part]:
    """The parts of an SSML document, in order; raises InvalidInput for bad markup or values."""
    try:
        root = fromstring(text.strip(), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        reason = str(exc).split(":")[0]
        raise InvalidInput(f"SSML is not well-formed: {reason} at line {line}, column {column + 1}",
                           param="text") from None
    except DefusedXmlException as exc:
        raise InvalidInput(f"SSML may not hold a DTD or entity declarations ({type(exc).__name__})",
                           param="text") from None
    if _local(root.tag) != "speak":
        raise InvalidInput("SSML must have <speak> as its root element", param="text")
    builder = _Builder()
    builder.walk(root, Part())
    return builder.parts()


def _local(tag: object) -> str:
    """An element's name without its namespace (`{http://www.w3.org/2001/10/synthesis}break` → break)."""
    name = tag if isinstance(tag, str) else ""
    return name.rsplit("}", 1)[-1].lower()


class _Builder:
    """Walks the tree and collects parts, merging neighbouring text of the same voicing."""

    def __init__(self) -> None:
        self._parts: list[Part] = []

    def parts(self) -> list[Part]:
        """Parts with something in them; a pause at a text boundary stays where it is."""
        return [p for p in self._parts if p.pause > 0 or p.text.strip()]

    def text(self, text: str | None, style: Part) -> None:
        if not text:
            return
        last = self._parts[-1] if self._parts else None
        if last is not None and last.pause == 0 and last.same_voicing(style):
            self._parts[-1] = replace(last, text=last.text + text)
        else:
            self._parts.append(replace(style, text=text, pause=0.0))

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            self.text(" ", self._parts[-1] if self._parts else Part())
            return
        last = self._parts[-1] if self._parts else None
        if last is not None and last.pause > 0:
            self._parts[-1] = replace(last, pause=min(last.pause + seconds, MAX_BREAK))
        else:
            self._parts.append(Part(pause=min(seconds, MAX_BREAK)))

    def walk(self, element: Element, style: Part) -> None:
        name = _local(element.tag)
        if name == "break":
            self.pause(_break(element))
        elif name in ("mark", "desc", "lexicon", "metadata", "meta"):
            pass  # nothing to say
        elif name == "phoneme":
            self._phoneme(element, style)
        elif name == "sub":
            alias = element.get("alias")
            if alias is None:
                raise InvalidInput("<sub> needs an alias attribute", param="text")
            self.text(alias, style)
        elif name == "say-as":
            self.text(say_as(_inner(element), element.get("interpret-as", ""), element.get("format")), style)
        else:
            inner = _styled(element, style) if name in ("prosody", "voice") else style
            if name == "p" and self._parts and not self._parts[-1].pause:
                self.pause(_STRENGTH["strong"])  # a paragraph is set off from text before it
            self.text(element.text, inner)
            for child in element:
                self.walk(child, inner)
                self.text(child.tail, inner)
            if name == "s":
                self.text(". ", inner)  # a sentence ends here even without its full stop
            if name == "p":
                self.pause(_STRENGTH["strong"])
        return

    def _phoneme(self, element: Element, style: Part) -> None:
        alphabet = (element.get("alphabet") or "ipa").lower()
        if alphabet != "ipa":
            raise InvalidInput(f"<phoneme alphabet={alphabet!r}> is not supported; use alphabet=\"ipa\"",
                               param="text")
        ph = element.get("ph")
        word = " ".join(_inner(element).split())
        if not ph:
            raise InvalidInput("<phoneme> needs a ph attribute", param="text")
        try:
            ipa = check_phonemes(ph, word)
        except InvalidInput as exc:
            raise InvalidInput(f"<phoneme ph={ph!r}>: {exc.message}", param="text") from None
        self.text(f"[{word or 'phonemes'}](/{ipa}/)", style)


def _inner(element: Element) -> str:
    return "".join(element.itertext())


def _break(element: Element) -> float:
    time = element.get("time")
    if time is not None:
        match = _TIME.match(time)
        if match is None:
            raise InvalidInput(f"<break time={time!r}>: write a time such as 500ms or 1.5s", param="text")
        value = float(match.group(1))
        return value / 1000.0 if match.group(2) == "ms" else value
    strength = (element.get("strength") or "medium").lower()
    if strength not in _STRENGTH:
        raise InvalidInput(f"<break strength={strength!r}>: use one of {', '.join(_STRENGTH)}", param="text")
    return _STRENGTH[strength]


def _styled(element: Element, style: Part) -> Part:
    """The style inside a <prosody> or <voice> element."""
    if _local(element.tag) == "voice":
        name = element.get("name")
        if not name:
            raise InvalidInput("<voice> needs a name attribute (a voice id)", param="text")
        return replace(style, voice=name.strip())
    rate, pitch, volume = style.rate, style.pitch, style.volume
    if (value := element.get("rate")) is not None:
        rate *= _rate(value)
    if (value := element.get("pitch")) is not None:
        pitch += _pitch(value)
    if (value := element.get("volume")) is not None:
        volume *= _volume(value)
    return replace(style, rate=rate, pitch=max(-12.0, min(12.0, pitch)), volume=volume)


def _rate(value: str) -> float:
    word = value.strip().lower()
    if word in _RATE:
        return _RATE[word]
    match = _NUMBER.match(value)
    if match and match.group(2) in (None, "%"):
        number = float(match.group(1))
        rate = number / 100.0 if match.group(2) == "%" else number
        if 0.1 <= rate <= 10.0:
            return rate
    raise InvalidInput(f"<prosody rate={value!r}>: use x-slow…x-fast, a percentage (150%) or a multiplier "
                       "(1.5) between 0.1 and 10", param="text")


def _pitch(value: str) -> float:
    word = value.strip().lower()
    if word in _PITCH:
        return _PITCH[word]
    match = _NUMBER.match(value)
    if match and match.group(2) == "st":
        return float(match.group(1))
    if match and match.group(2) == "%":
        factor = 1.0 + float(match.group(1)) / 100.0
        if factor > 0:
            return 12.0 * math.log2(factor)
    raise InvalidInput(f"<prosody pitch={value!r}>: use x-low…x-high, semitones (+2st) or a percentage "
                       "(+10%); Hz is not supported", param="text")


def _volume(value: str) -> float:
    word = value.strip().lower()
    decibels = _VOLUME.get(word)
    if decibels is None:
        match = _NUMBER.match(value)
        if match is None or match.group(2) != "dB" or not -40.0 <= float(match.group(1)) <= 20.0:
            raise InvalidInput(f"<prosody volume={value!r}>: use silent, x-soft…x-loud or decibels "
                               "(-6dB, +3dB) between -40 and +20", param="text")
        decibels = float(match.group(1))
    return 0.0 if decibels == -math.inf else 10.0 ** (decibels / 20.0)


__all__ = ["MAX_BREAK", "Part", "document_end", "is_ssml", "parse", "starts_ssml"]

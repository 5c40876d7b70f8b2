"""Language tags from every dialect, normalised; and script-based language spans for `auto` text.

Dialects name languages in their own ways: GPT-SoVITS `all_zh`, `zh`, `auto`, `auto_yue`; AllTalk
`zh-cn`, `ja`; StackFlow model names `zh-CN`, `ja-JP`, `en-US`; others write `english` or `zh_CN`.
`parse_language` turns any of them into one `LanguageChoice`: a BCP-47-ish tag (primary subtag lower
case, region upper case, script title case: `en-US`, `zh`, `yue`) or None for automatic detection, and a
mode that says how strictly the text is held to it.

`detect_spans` cuts text where the writing system changes: kana means Japanese (and then Han characters
are Japanese too), Hangul Korean, Han Chinese (or the hint, e.g. Cantonese), Latin the hint for Latin
(English unless said otherwise), Cyrillic Russian, and so on. Characters of no script (spaces, digits,
punctuation) stay with the span they follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from voxgate.errors import InvalidInput


class UnknownLanguage(InvalidInput, ValueError):
    """A language tag that is not one any dialect uses and not a well-formed BCP-47 tag."""


class Mode(StrEnum):
    """How a request's text is held to its language."""

    AUTO = "auto"  # every span in the language its script says
    MIXED = "mixed"  # the language, with words in Latin script spoken as English (GPT-SoVITS `zh`, `ja`)
    STRICT = "strict"  # all of the text in the language (GPT-SoVITS `all_zh`; tags with a region)


@dataclass(frozen=True)
class LanguageChoice:
    """A request's language, normalised."""

    tag: str | None  # BCP-47-ish tag; None = detect per span
    mode: Mode
    han: str = "zh"  # the language Han characters are taken for when detecting (auto_yue → yue)

    @property
    def primary(self) -> str | None:
        """The primary language subtag (`en` of `en-US`)."""
        return primary(self.tag) if self.tag else None


_AUTO = {"", "auto", "und", "mul", "multi", "multilingual", "detect", "auto_yue", "auto-yue"}
# Names and codes dialects use that are not the BCP-47 tag of their language.
_ALIASES = {
    "cmn": "zh", "zho": "zh", "chi": "zh", "cn": "zh", "chinese": "zh", "mandarin": "zh", "zh-hans": "zh",
    "zh-hant": "zh-TW", "jp": "ja", "jpn": "ja", "japanese": "ja", "kr": "ko", "kor": "ko", "korean": "ko",
    "cantonese": "yue", "zh-yue": "yue", "zh-hk": "yue", "eng": "en", "english": "en", "american": "en-US",
    "british": "en-GB", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
    "russian": "ru", "arabic": "ar", "hindi": "hi", "dutch": "nl", "polish": "pl", "turkish": "tr",
    "czech": "cs", "hungarian": "hu", "vietnamese": "vi", "thai": "th", "indonesian": "id",
}
_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")


def _case(tag: str) -> str:
    parts = tag.split("-")
    out = [parts[0]]
    private = False
    for part in parts[1:]:
        private = private or part == "x"
        if private:
            out.append(part)
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part)
    return "-".join(out)


def normalize_language(tag: str | None) -> str | None:
    """A dialect's language code as a BCP-47-ish tag (`zh-cn` → `zh-CN`, `all_ja` → `ja`); None = auto."""
    return parse_language(tag).tag


def parse_language(tag: str | None) -> LanguageChoice:
    """Read any dialect's language field; raises UnknownLanguage for what is not a language."""
    raw = (tag or "").strip().lower().replace("_", "-")
    if raw.replace("-", "_") in _AUTO or raw in _AUTO:
        return LanguageChoice(None, Mode.AUTO, han="yue" if "yue" in raw else "zh")
    strict = raw.startswith("all-")
    raw = raw.removeprefix("all-")
    raw = _ALIASES.get(raw, raw)
    if not _TAG.match(raw.lower()):
        raise UnknownLanguage(f"unknown language {tag!r}; use a code such as en, zh, ja, ko, yue or auto",
                              param="language")
    parts = raw.lower().split("-")
    parts[0] = _ALIASES.get(parts[0], parts[0])
    normal = _case("-".join(parts))
    if normal.split("-")[0] in {"zh", "ja", "ko", "yue"} and len(normal.split("-")) == 2 \
            and normal.split("-")[1] in {"CN", "JP", "KR", "SG"}:
        normal = normal.split("-")[0]  # the region adds nothing to choosing a voice for these
    return LanguageChoice(normal, Mode.STRICT if strict else Mode.MIXED, han=primary(normal)
                          if primary(normal) in {"zh", "yue", "ja"} else "zh")


def primary(tag: str) -> str:
    """The primary subtag of a tag (`en` of `en-US`), lower case."""
    return tag.split("-", 1)[0].lower()


# Writing systems by code-point range → the language a run of them is taken for ("han" and "latin" are
# decided by hints). Ranges cover the blocks that matter for choosing a voice; others are neutral.
_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "latin"), (0x0061, 0x007A, "latin"), (0x00C0, 0x024F, "latin"), (0x1E00, 0x1EFF, "latin"),
    (0x0370, 0x03FF, "el"), (0x0400, 0x04FF, "ru"), (0x0530, 0x058F, "hy"), (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "ar"), (0x0900, 0x097F, "hi"), (0x0980, 0x09FF, "bn"), (0x0A80, 0x0AFF, "gu"),
    (0x0B80, 0x0BFF, "ta"), (0x0C00, 0x0C7F, "te"), (0x0C80, 0x0CFF, "kn"), (0x0D00, 0x0D7F, "ml"),
    (0x0E00, 0x0E7F, "th"), (0x0E80, 0x0EFF, "lo"), (0x1000, 0x109F, "my"), (0x10A0, 0x10FF, "ka"),
    (0x1100, 0x11FF, "ko"), (0x1200, 0x137F, "am"), (0x1780, 0x17FF, "km"),
    (0x3040, 0x309F, "kana"), (0x30A0, 0x30FF, "kana"), (0x31F0, 0x31FF, "kana"), (0xFF66, 0xFF9F, "kana"),
    (0x3130, 0x318F, "ko"), (0xAC00, 0xD7AF, "ko"),
    (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"), (0xF900, 0xFAFF, "han"), (0x20000, 0x2FA1F, "han"),
)

def script_of(char: str) -> str | None:
    """The script class of one character, or None for spaces, digits, punctuation and symbols."""
    code = ord(char)
    if code < 0x41:
        return None
    for start, end, name in _SCRIPTS:
        if start <= code <= end:
            return name
    return None


def _char_class(ranges: list[tuple[int, int]]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"\\U{start:08x}-\\U{end:08x}" for start, end in ranges) + "]")


# Characters of a script other than Latin, and Latin letters (the ranges of _SCRIPTS, as script_of reads them).
_OTHER_SCRIPT = _char_class([(start, end) for start, end, name in _SCRIPTS if name != "latin"])
_LATIN = _char_class([(start, end) for start, end, name in _SCRIPTS if name == "latin"])


def detect_spans(text: str, han: str = "zh", latin: str = "en") -> list[tuple[str, str | None]]:
    """Cut `text` into (span, language) where the script changes; None when it has no script at all.

    Kana in a sentence makes its Han characters Japanese (Japanese writing mixes the two); otherwise
    Han is `han`. Latin letters are `latin`. Neutral characters join the span before them (or the first one).
    """
    if _OTHER_SCRIPT.search(text) is None:
        # Only Latin letters and neutral characters: one span, the answer of the scan below without a Python
        # step per character (every request is routed, most texts are like this: issue 13, the loop's CPU).
        return [(text, latin if _LATIN.search(text) else None)] if text else []
    classes = [script_of(c) for c in text]
    japanese = _sentences_with_kana(text, classes)
    names = {"kana": "ja", "latin": latin}
    spans: list[tuple[str, str | None]] = []
    start, current = 0, None
    for i, cls in enumerate(classes):
        if cls is None:
            continue
        lang = ("ja" if japanese[i] else han) if cls == "han" else names.get(cls, cls)
        if current is None:
            current = lang
        elif lang != current:
            spans.append((text[start:i], current))
            start, current = i, lang
    spans.append((text[start:], current))
    return [(s, lang) for s, lang in spans if s]


_SENTENCE_ENDS = frozenset("。！？.!?\n")


def _sentences_with_kana(text: str, classes: list[str | None]) -> list[bool]:
    """For each character: does the sentence it is in contain kana?"""
    marks, start, seen = [False] * len(text), 0, False
    for i, (char, cls) in enumerate(zip(text, classes, strict=True)):
        seen = seen or cls == "kana"
        if char in _SENTENCE_ENDS or i == len(text) - 1:
            marks[start:i + 1] = [seen] * (i + 1 - start)
            start, seen = i + 1, False
    return marks

"""Text normalisation: clean-up, then the words a person would say for what is written.

`normalize(text)` keeps its old contract (a string in, the string to speak out) and now also reads
numbers, money, dates, times, units, abbreviations, URLs and symbols aloud and drops markdown and emoji;
`normalize(text, spoken=False)` is the clean-up alone (the per-request opt-out). `normalize_mapped` gives
the same text as a `Normalized`, whose `source_span` maps any output span back to the input (captions).

Steps, each one linear pass and each mapped: NFC → markdown and emoji → white space and typography →
numbers in Chinese or Japanese context → English. Which languages' rules run follows the `language`
hint (a BCP-47-ish tag); without one, CJK rules run next to CJK characters and English rules on the rest
unless its common words say it is another Latin-script language.
"""

from __future__ import annotations

import re

from voxgate.text.normalize.clean import clean, is_speakable, nfc
from voxgate.text.normalize.clean import tidy as _tidy
from voxgate.text.normalize.en import verbalize_en
from voxgate.text.normalize.ja import verbalize_ja
from voxgate.text.normalize.markup import strip_markup
from voxgate.text.normalize.offsets import Normalized
from voxgate.text.normalize.zh import verbalize_zh

__all__ = ["Normalized", "clean", "is_speakable", "normalize", "normalize_mapped"]

_WORD = re.compile(r"[a-zà-ÿ]+")
_ENGLISH_WORDS = frozenset("the and is are of to a an in it that you for with on was this be at by not or "
                           "from have has".split())
_OTHER_WORDS = frozenset("der die das und ist nicht ein eine ich mit auf den dem zu le la les et est une un "
                         "des du pas avec pour dans el los las y es una por con para del al il che di non "
                         "gli sono het een niet ik wij och att är inte não uma".split())
_KANA = re.compile(r"[\u3040-\u30ff]")
_SAMPLE = 4000  # characters looked at to guess a Latin text's language


def _english(text: str, language: str | None) -> bool:
    """Whether English rules apply: an English, Chinese or Japanese hint (Latin words in those are
    spoken as English), or no hint and more English than other common words in the text."""
    if language is not None:
        return language in ("en", "zh", "yue", "ja")
    english = other = 0
    for word in _WORD.findall(text[:_SAMPLE].lower()):
        english += word in _ENGLISH_WORDS
        other += word in _OTHER_WORDS
    return other <= english


def _chain(mapped: Normalized, step: Normalized) -> Normalized:
    return mapped if step.text == mapped.text else mapped.then(step)


def normalize_mapped(text: str, language: str | None = None, *, spoken: bool = True) -> Normalized:
    """The text to speak, with its map back to `text` (built when first read); `spoken=False` only cleans up."""
    return _normalized(text, language, spoken)


def _normalized(text: str, language: str | None, spoken: bool) -> Normalized:
    if not spoken:
        return clean(text)
    primary = language.split("-", 1)[0].lower() if language else None
    mapped = nfc(text)
    mapped = _chain(mapped, strip_markup(mapped.text))
    mapped = _chain(mapped, _tidy(mapped.text))
    japanese = primary == "ja" or (primary is None and _KANA.search(mapped.text) is not None)
    if japanese:
        mapped = _chain(mapped, verbalize_ja(mapped.text, default=primary == "ja"))
    else:
        mapped = _chain(mapped, verbalize_zh(mapped.text, default=primary in ("zh", "yue")))
    if _english(mapped.text, primary):
        mapped = _chain(mapped, verbalize_en(mapped.text))
        text = mapped.text
        if "  " in text or " \n" in text or "\n " in text or text[:1] == " " or text[-1:] == " ":
            mapped = _chain(mapped, _tidy(text))  # rules that read a mark as nothing leave double spaces
    return mapped


def normalize(text: str, language: str | None = None, *, spoken: bool = True) -> str:
    """The text to speak: cleaned up and, unless `spoken=False`, written out as it is read aloud."""
    return normalize_mapped(text, language, spoken=spoken).text

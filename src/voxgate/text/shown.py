"""The client's text as a reader sees it, at the client's own offsets.

Word timings point into the text the client sent (`SynthesisRequest.text`). Where that text holds markup
(an SSML document's tags and entities, an inline override `[word](/ipa/)`), the words a reader sees are not
its characters as they stand: `shown` gives the same-length text a reader sees, with what is not shown blanked
to spaces and what stands for something shorter padded with PAD, which is never shown. Word spans of it are the
words of captions and timestamps; their offsets are the client's.
"""

from __future__ import annotations

import re

from voxgate.text.lexicon import INLINE
from voxgate.text.ssml import is_ssml

PAD = "\x00"  # fills the rest of a shown stand-in's place: in no XML document's text, nor a client's words
_MARKUP = re.compile(r"<[^>]*>|&#?\w+;")


def shown(text: str, ssml: bool | None = None) -> str:
    """`text` as a reader sees it, at the same offsets:

    - an SSML document (`ssml`, or `is_ssml(text)` when None): its tags blanked to spaces (to PAD when
      punctuation follows one right away, so "WWW</sub>." keeps its full stop), each entity its
      character followed by PAD to the entity's length ("AT&amp;T" → "AT&" + 4 × PAD + "T": one word, shown
      "AT&T"); an entity for a space, or one that is not known, blanked as a tag is;
    - an inline override `[word](/ipa/)`: its word followed by PAD ("kubectl" and 15 × PAD: one word).

    Other text is as it is."""
    if is_ssml(text) if ssml is None else ssml:
        text = _MARKUP.sub(_entity_or_blank, text)
    if "](/" in text:
        text = INLINE.sub(lambda m: m.group(1) + PAD * (len(m.group()) - len(m.group(1))), text)
    return text


def _entity_or_blank(match: re.Match[str]) -> str:
    """An entity as its character, padded; a tag as spaces, or as PAD when punctuation follows it right away
    in the document (`match.string`): "WWW</sub>." keeps its full stop, "WWW" and PAD and "."."""
    found = match.group()
    if found[0] == "&":
        char = _XML_ENTITIES.get(found[1:-1]) if found[1] != "#" else _reference(found[2:-1])
        if char is not None and not char.isspace():
            return char + PAD * (len(found) - 1)
        return " " * len(found)
    after = match.string[match.end():match.end() + 1]
    return (PAD if after and not after.isspace() and not after.isalnum() else " ") * len(found)


_XML_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}  # XML's own five, nothing more


def _reference(number: str) -> str | None:
    """The character of a character reference's number ("x1F600" or "233"), as XML reads it (not HTML's
    windows-1252 remapping of 128–159); None when it names none."""
    try:
        code = int(number[1:], 16) if number[:1] in ("x", "X") else int(number)
    except ValueError:
        return None
    return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else None


__all__ = ["PAD", "shown"]

"""AllTalk's text filters (none / standard / html) and narrator mode: *narration*, "speech", and the rest."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# AllTalk's `api_allowed_filter`: every character outside this class is deleted by `standard` filtering
# (Latin incl. accented, Cyrillic, Devanagari, CJK, Kana, Hangul, Arabic, common and full-width punctuation).
_ALLOWED = (
    "a-zA-Z0-9\\s.,;:!?\\-'\"$"
    "\u0400-\u04ff\u00c0-\u017f\u0150\u0151\u0170\u0171\u011e\u011f\u0130\u0131\u0900-\u097f"
    "\u2018\u2019\u201c\u201d\u3001\u3002\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
    "\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"
    "\uff01\uff0c\uff1a\uff1b\uff1f"
)
_DISALLOWED = re.compile(f"[^{_ALLOWED}]")
_REPEATED_STOP = re.compile(r"([!?.])\1+")
_NEWLINES = re.compile(r"\n+")
_ELLIPSIS = re.compile(r"\.{3,}")
# *narration* or "speech"; neither may contain the other's marker (as upstream), so nesting is not parsed.
_PART = re.compile(r'\*[^*"]+\*|"[^"*]+"')
MIN_PART_CHARS = 3  # parts this short or shorter are dropped (AllTalk's api_length_stripping)


def clean_text(text: str, filtering: str) -> str:
    """Apply `none`, `standard` or `html` filtering exactly in AllTalk's order."""
    if filtering == "none":
        return text
    if filtering == "html":
        text = text.replace("*", "").replace("\n\n", "\n").replace("&#x27;", "'")
        text = html.unescape(text)
    text = _REPEATED_STOP.sub(r"\1", text)
    text = _DISALLOWED.sub("", text)
    return _NEWLINES.sub(" ", text)


@dataclass(frozen=True)
class Part:
    """One piece of narrator-mode text and who it belongs to: narrator, character or ambiguous."""

    kind: str
    text: str


def split_parts(text: str) -> list[Part]:
    """Cut text into narrator (*…*), character ("…") and ambiguous (everything else) parts, in order."""
    text = _ELLIPSIS.sub(".", html.unescape(text))
    parts: list[Part] = []
    start = 0
    for match in _PART.finditer(text):
        before = text[start : match.start()].strip()
        if before:
            parts.append(Part("ambiguous", before))
        found = match.group(0)
        kind = "narrator" if found.startswith("*") else "character"
        parts.append(Part(kind, found.strip(found[0]).strip()))
        start = match.end()
    rest = text[start:].strip()
    if rest:
        parts.append(Part("ambiguous", rest))
    return parts


def assign(parts: list[Part], narrator_enabled: str, text_not_inside: str, character: str,
           narrator: str) -> list[tuple[str, str]]:
    """(voice, text) to speak in order: silent parts and parts of ≤ 3 characters are skipped."""
    spoken = []
    for part in parts:
        if len(part.text.strip()) <= MIN_PART_CHARS:
            continue
        if part.kind == "narrator":
            if narrator_enabled == "silent":
                continue
            voice = narrator
        elif part.kind == "character":
            voice = character
        elif text_not_inside == "silent":
            continue
        else:
            voice = character if text_not_inside == "character" else narrator
        spoken.append((voice, part.text))
    return spoken

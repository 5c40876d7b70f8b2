"""Text clean-up before segmentation: Unicode, invisible characters, whitespace and typography.

Every step is a single pass (str methods, translate tables, or regexes without nested quantifiers),
so the whole of `normalize` is linear in the length of the text.
"""

from __future__ import annotations

import re
import unicodedata

# Typographic quotes that English phonemizers handle worse than ASCII; guillemets and CJK corner
# brackets are left alone because their own languages' phonemizers expect them.
_TYPOGRAPHY = {
    ord("\u2018"): "'",  # ‘
    ord("\u2019"): "'",  # ’ (also the apostrophe in "don’t")
    ord("\u201a"): "'",  # ‚
    ord("\u201b"): "'",  # ‛
    ord("\u201c"): '"',  # “
    ord("\u201d"): '"',  # ”
    ord("\u201e"): '"',  # „
    ord("\u201f"): '"',  # ‟
    ord("\u2026"): "...",  # …
}

# Line breaks other than "\n" (str.splitlines' list) become "\n" so they keep separating words.
_LINE_BREAKS = {ord(c): "\n" for c in "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}

_TABLE = {**_TYPOGRAPHY, **_LINE_BREAKS}

_SPACE_RUN = re.compile(r"[ \t]+")
_SPACE_AT_BREAK = re.compile(r" ?\n ?")  # runs are single spaces by the time this runs
_MANY_BREAKS = re.compile(r"\n{3,}")


def _replace_unprintable(ch: str) -> str:
    """Map one non-printable character to what a speech engine should see instead."""
    if ch in "\n\t":
        return ch
    category = unicodedata.category(ch)
    if category == "Zs":  # NBSP, thin space, ideographic space U+3000, ...: a plain space is safe in CJK too
        return " "
    if category in ("Zl", "Zp"):
        return "\n"
    if category in ("Cc", "Cf", "Cs"):  # controls, zero-width chars, BOM, bidi marks, lone surrogates
        return ""
    return ch  # private-use and unassigned code points may be newer emoji or glyphs: keep them


def normalize(text: str) -> str:
    """Return text in NFC with invisible characters dropped and whitespace and quotes tidied."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").translate(_TABLE)
    if not text.isprintable():  # fast path: most text has nothing but ASCII spaces to fix
        text = "".join(ch if ch.isprintable() else _replace_unprintable(ch) for ch in text)
    text = _SPACE_RUN.sub(" ", text)
    text = _SPACE_AT_BREAK.sub("\n", text)
    text = _MANY_BREAKS.sub("\n\n", text)
    return text.strip()


def is_speakable(text: str) -> bool:
    """True when the text holds at least one letter or digit, in any script."""
    return any(map(str.isalnum, text))

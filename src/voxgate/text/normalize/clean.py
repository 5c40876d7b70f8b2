"""Text clean-up before anything else: Unicode, invisible characters, whitespace and typography.

One pass over the characters (after NFC), keeping the map back to the input, so it is linear in the
length of the text.
"""

from __future__ import annotations

import re
import unicodedata

from voxgate.text.normalize.offsets import Builder, Normalized

# Typographic quotes that English phonemizers handle worse than ASCII; guillemets and CJK corner
# brackets are left alone because their own languages' phonemizers expect them.
_TYPOGRAPHY = {
    "\u2018": "'",  # ‘
    "\u2019": "'",  # ’ (also the apostrophe in "don’t")
    "\u201a": "'",  # ‚
    "\u201b": "'",  # ‛
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u201e": '"',  # „
    "\u201f": '"',  # ‟
    "\u2026": "...",  # …
}

_NON_SPACE = re.compile(r"\S+")
_TYPOGRAPHIC = re.compile("[" + "".join(_TYPOGRAPHY) + "]")
# Line breaks other than "\n" (str.splitlines' list) keep separating words.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _replace_unprintable(ch: str) -> str:
    """Map one non-printable character to what a speech engine should see instead."""
    if ch == "\t":
        return " "
    category = unicodedata.category(ch)
    if category == "Zs":  # NBSP, thin space, ideographic space U+3000, ...: a plain space is safe in CJK too
        return " "
    if category in ("Zl", "Zp"):
        return "\n"
    if category in ("Cc", "Cf", "Cs"):  # controls, zero-width chars, BOM, bidi marks, lone surrogates
        return ""
    return ch  # private-use and unassigned code points may be newer emoji or glyphs: keep them


def nfc(text: str) -> Normalized:
    """NFC, mapped: each run from one starter (combining class 0) to the next is composed on its own."""
    if unicodedata.is_normalized("NFC", text):
        return Normalized.identity(text)
    out = Builder(len(text))
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or unicodedata.combining(text[i]) == 0:
            run = text[start:i]
            composed = unicodedata.normalize("NFC", run)
            if composed == run:
                out.copy(run, start)
            else:
                out.replace(composed, start, i)
            start = i
    return out.build()


def _word(out: Builder, word: str, start: int) -> None:
    """Append one run of non-white-space characters, quotes made plain and invisible characters dropped."""
    if word.isprintable() and not _TYPOGRAPHIC.search(word):
        out.copy(word, start)
        return
    run = 0  # start of the characters still to copy unchanged
    for k, ch in enumerate(word):
        spoken = _TYPOGRAPHY.get(ch, ch) if ch.isprintable() else _replace_unprintable(ch)
        if spoken != ch:
            out.copy(word[run:k], start + run)
            out.replace(spoken, start + k, start + k + 1)
            run = k + 1
    out.copy(word[run:], start + run)


def _tidy_already(text: str) -> bool:
    """Whether `tidy` would give `text` back unchanged, character for character (checked at C speed):
    printable apart from line breaks, no typographic quotes, words parted by one space or one "\\n"."""
    return (not text or (text[0] not in " \n" and text[-1] not in " \n")) and not (
        "  " in text or " \n" in text or "\n " in text or "\n\n" in text) and (
        text.isascii() or not _TYPOGRAPHIC.search(text)) and text.replace("\n", "").isprintable()


def tidy(text: str) -> Normalized:
    """Quotes, invisible characters, spaces and line breaks, in one pass over the words.

    Words and gaps that stay as they are are written as one stretch (the same map as piece by piece).
    """
    if _tidy_already(text):
        return Normalized.identity(text)
    core = text.strip()
    if len(core) < len(text) and _tidy_already(core):  # white space around tidy text: dropped
        out = Builder(len(text))
        out.copy(core, len(text) - len(text.lstrip()))
        return out.build()
    out = Builder(len(text))
    started = False  # a word was written
    same = -1  # start of the stretch written as it is so far (words and one-character gaps), or -1
    gap_start = 0  # start of the white space before the next word
    for m in _NON_SPACE.finditer(text):
        start, end = m.span()
        word = m.group()
        plain = word.isascii() and word.isprintable()
        if not plain:
            visible = "".join(_TYPOGRAPHY.get(ch, ch) if ch.isprintable() else _replace_unprintable(ch)
                              for ch in word)
            if not visible.strip():  # only invisible characters: part of the gap
                continue
        if started and gap_start < start:
            gap = text[gap_start:start]  # white space and any invisible-only words since the last word
            if gap == " " or gap == "\n":  # kept as it is
                same = gap_start if same < 0 else same
            else:
                if same >= 0:
                    out.copy(text[same:gap_start], same)
                    same = -1
                breaks = sum(ch in _LINE_BREAKS for ch in gap) - gap.count("\r\n")
                out.replace("\n" * min(breaks, 2) if breaks else " ", gap_start, start)
        if plain or (word.isprintable() and not _TYPOGRAPHIC.search(word)):  # kept as it is
            same = start if same < 0 else same
        else:
            if same >= 0:
                out.copy(text[same:start], same)
                same = -1
            _word(out, word, start)
        started = True
        gap_start = end
    if same >= 0:
        out.copy(text[same:gap_start], same)
    return out.build()  # white space at the end is never flushed: stripped


def clean(text: str) -> Normalized:
    """NFC with invisible characters dropped and white space and quotes tidied, mapped to the input."""
    composed = nfc(text)
    return composed.then(tidy(composed.text))


def is_speakable(text: str) -> bool:
    """True when the text holds at least one letter or digit, in any script."""
    return any(map(str.isalnum, text))

"""Markdown and emoji that should not be read aloud, dropped in one left-to-right pass (mapped).

Dropped: heading marks (`## `), quote marks (`> `) and bullets (`- `, `* `, `+ `) at the start of a line;
`**`, `__`, `~~` and backticks anywhere; a single `*` or `_` that opens or closes emphasis (next to a
letter on one side only, so `snake_case` and `2 * 3` stay); link and image syntax, keeping the link text
(`[docs](https://…)` → `docs`), except misaki-style inline pronunciations (`[word](/wˈɜːd/)`), which are
the lexicon's; emoji, their skin tones, variation selectors and keycaps. White space is tidied after.
"""

from __future__ import annotations

import re

from voxgate.text.normalize.offsets import Builder, Normalized

_SPECIAL = re.compile("[\n\\[\\]!*_~`\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0E\uFE0F\u20E3"
                      "\u200D\u231A\u231B\u3030\u303D\u23E9-\u23FA\U000E0020-\U000E007F]")
_LINK_TEXT_MAX = 200  # a "[" with no "](" within this many characters is just a bracket
_LINK_TARGET_MAX = 2000


def is_emoji(ch: str) -> bool:
    """Pictographs, dingbats, flags, skin tones, variation selectors and keycap marks."""
    cp = ord(ch)
    return (0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF or 0x2B00 <= cp <= 0x2BFF
            or cp in (0xFE0E, 0xFE0F, 0x20E3, 0x200D, 0x231A, 0x231B, 0x3030, 0x303D)
            or 0x23E9 <= cp <= 0x23FA or 0xE0020 <= cp <= 0xE007F)


def _line_prefix(text: str, i: int) -> int:
    """Length of a heading, quote or bullet mark (with its space) at line start i; 0 when none."""
    j = i
    n = len(text)
    while j < n and j - i < 8 and text[j] in " \t":
        j += 1
    if j < n and text[j] == "#":
        k = j
        while k < n and k - j < 6 and text[k] == "#":
            k += 1
        return k + 1 - i if k < n and text[k] == " " else 0
    while j < n and text[j] == ">":  # nested quotes: "> > text"
        j += 1
        while j < n and text[j] == " ":
            j += 1
        if j >= n or text[j] != ">":
            return j - i
    if j + 1 < n and text[j] in "-*+" and text[j + 1] == " ":
        return j + 2 - i
    return 0


class _Links:
    """Finds `[text](target)` in linear total time: remembers the next "]" it found."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._close = -1  # position of the next "]" after the last search, or -1

    def at(self, i: int) -> tuple[int, int, int] | None:
        """For a "[" at i: (end of text, start of target, end of link), or None if it is no link."""
        text = self.text
        if self._close <= i:
            self._close = text.find("]", i, i + _LINK_TEXT_MAX)
            if self._close < 0:
                self._close = i + 1  # none near: the next "[" searches again from its own place
                return None
        close = self._close
        if close + 1 >= len(text) or text[close + 1] != "(" or "\n" in text[i:close]:
            return None
        end = text.find(")", close + 2, close + 2 + _LINK_TARGET_MAX)
        if end < 0 or " " in text[close + 2:end]:
            return None
        return close, close + 2, end + 1


def strip_markup(text: str) -> Normalized:
    """Text without markdown syntax or emoji, mapped to the input."""
    out = Builder(len(text))
    links = _Links(text)
    n = len(text)
    closers: list[int] = []  # positions of "]" whose link syntax is still to drop, innermost last
    i = 0
    line_start = True
    while i < n:
        ch = text[i]
        if line_start:
            line_start = False
            skip = _line_prefix(text, i)
            if skip:
                out.replace("", i, i + skip)
                i += skip
                continue
        if ch == "\n":
            line_start = True
            out.copy(ch, i)
            i += 1
        elif closers and i == closers[-1]:  # the "](target)" of a link whose text was kept
            closers.pop()
            target_end = text.find(")", i) + 1
            out.replace("", i, target_end)
            i = target_end
        elif (ch == "[" or (ch == "!" and text.startswith("[", i + 1))) and (
                link := links.at(i + (ch == "!"))) is not None and not (closers and closers[-1] == link[0]):
            close, target, end = link
            if text.startswith("/", target):  # an inline pronunciation: the lexicon's to read
                out.copy(text[i:end], i)
                i = end
                continue
            out.replace("", i, i + 1 + (ch == "!"))
            closers.append(close)
            i += 1 + (ch == "!")
        elif ch in "*_~`":
            run = 1
            while i + run < n and text[i + run] == ch:
                run += 1
            if (ch == "`" or (run >= 2 and ch in "*_") or (run == 2 and ch == "~")
                    or (run == 1 and ch in "*_" and _emphasis(text, i, run))):
                out.replace("", i, i + run)
            else:
                out.copy(text[i:i + run], i)
            i += run
        elif is_emoji(ch):
            out.replace("", i, i + 1)
            i += 1
        else:
            nxt = _SPECIAL.search(text, i + 1)
            stop = nxt.start() if nxt else n
            out.copy(text[i:stop], i)
            i = stop
    return out.build()


def _emphasis(text: str, i: int, run: int) -> bool:
    """A single `*` or `_` next to a word character on exactly one side opens or closes emphasis."""
    before = text[i - 1].isalnum() if i > 0 else False
    after = text[i + run].isalnum() if i + run < len(text) else False
    return before != after

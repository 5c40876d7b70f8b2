"""`<say-as>` readings, in English words: characters, cardinal, ordinal, date, time, telephone.

Number words come from text/normalize/numbers.py, so a say-as reads a number as plain text would.
Input a reading cannot parse is left as written (the engine's own reading), never dropped.
"""

from __future__ import annotations

import re

from voxgate.errors import InvalidInput
from voxgate.text.normalize import numbers

_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_DIGIT_NAMES = dict(zip("0123456789", numbers.ONES[:10], strict=True))
_SYMBOLS = {"+": "plus", "#": "hash", "*": "star", "@": "at", "&": "and", "-": "dash", ".": "dot", "_": "underscore",
            "/": "slash"}
MAX_DIGITS = 15


def cardinal(n: int) -> str:
    """English words for an integer: 1234 → one thousand two hundred thirty-four."""
    return "minus " + numbers.cardinal(str(-n)) if n < 0 else numbers.cardinal(str(n))


def ordinal(n: int) -> str:
    """English ordinal words: 1 → first, 23 → twenty-third."""
    return "minus " + numbers.ordinal(str(-n)) if n < 0 else numbers.ordinal(str(n))


def _integer(text: str) -> int | None:
    digits = text.strip().replace(",", "").replace(" ", "")
    digits = digits.removesuffix(".")
    for suffix in ("st", "nd", "rd", "th"):
        digits = digits.removesuffix(suffix)
    if re.fullmatch(rf"-?\d{{1,{MAX_DIGITS}}}", digits):
        return int(digits)
    return None


def year(n: int) -> str:
    """A year as spoken: 1999 → nineteen ninety-nine, 2005 → two thousand five, 2024 → twenty twenty-four."""
    return numbers.year(str(n)) if n >= 0 else cardinal(n)


def date(text: str, fmt: str | None) -> str | None:
    """`2024-03-05`, `03/05/2024`, with format mdy, dmy, ymd, md, dm, my, ym, y (default ymd for ISO, else mdy)."""
    fields = re.findall(r"\d{1,4}", text)
    if not fields or len(fields) > 3:
        return None
    order = (fmt or ("ymd" if len(fields[0]) == 4 else "mdy"))[:len(fields)].lower()
    if len(order) != len(fields) or set(order) - set("ymd"):
        return None
    parts = dict(zip(order, (int(f) for f in fields), strict=True))
    month, day, yr = parts.get("m"), parts.get("d"), parts.get("y")
    if (month is not None and not 1 <= month <= 12) or (day is not None and not 1 <= day <= 31):
        return None
    words = []
    if month is not None:
        words.append(_MONTHS[month - 1])
    if day is not None:
        words.append(ordinal(day) if month is not None else "the " + ordinal(day))
    spoken = " ".join(words)
    if yr is not None:
        spoken = f"{spoken}, {year(yr)}" if spoken else year(yr)
    return spoken


def clock(text: str) -> str | None:
    """`14:30` → fourteen thirty; `2:05 pm` → two oh five p m; `9:00` → nine o'clock."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp]\.?[Mm]\.?)?\s*", text)
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    spoken = cardinal(hour)
    if minute == 0:
        spoken += "" if match.group(4) else " o'clock" if hour <= 12 else " hundred"
    else:
        spoken += " " + (cardinal(minute) if minute >= 10 else "oh " + cardinal(minute))
    if match.group(4):
        spoken += " " + " ".join(match.group(4).replace(".", "").lower())
    return spoken


def characters(text: str) -> str:
    """Each letter and digit on its own: `ABC1` → A B C one."""
    out = []
    for char in text:
        if char.isdigit() and char in _DIGIT_NAMES:
            out.append(_DIGIT_NAMES[char])
        elif char.isalnum():
            out.append(char.upper())
        elif char in _SYMBOLS:
            out.append(_SYMBOLS[char])
    return " ".join(out)


def telephone(text: str) -> str:
    """Digits one by one, groups separated by a short pause: `555-1234` → five five five, one two three four."""
    groups = [g for g in re.split(r"[\s\-./()]+", text) if g]
    spoken = []
    for group in groups:
        words = [_DIGIT_NAMES.get(c) or ("plus" if c == "+" else c) for c in group]
        spoken.append(" ".join(words))
    return ", ".join(spoken)


def say_as(text: str, interpret_as: str, fmt: str | None) -> str:
    """The reading of a <say-as> element's text; unknown kinds read the text as written."""
    kind = interpret_as.strip().lower()
    if kind in ("characters", "spell-out", "verbatim"):
        return characters(text)
    if kind in ("cardinal", "number"):
        n = _integer(text)
        return text if n is None else cardinal(n)
    if kind == "ordinal":
        n = _integer(text)
        return text if n is None else ordinal(n)
    if kind == "date":
        return date(text, fmt) or text
    if kind == "time":
        return clock(text) or text
    if kind == "telephone":
        return telephone(text)
    if not kind:
        raise InvalidInput("<say-as> needs an interpret-as attribute", param="text")
    return text


__all__ = ["cardinal", "characters", "clock", "date", "ordinal", "say_as", "telephone", "year"]

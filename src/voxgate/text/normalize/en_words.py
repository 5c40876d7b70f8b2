"""English spoken forms of single tokens: numbers with their signs, suffixes and units, money, times,
dates, phone numbers, URLs and e-mail addresses, Roman numerals. Each function takes one token's core
(no surrounding punctuation, at most `MAX_TOKEN` characters) and returns its spoken form or None.

Tokens are parsed by hand (`split_number`) or with fully anchored patterns without nested repeats, on
bounded input, so nothing here can backtrack for long.
"""

from __future__ import annotations

import re
from functools import lru_cache

from voxgate.text.normalize import numbers as num
from voxgate.text.normalize.en_tables import (
    CURRENCIES,
    MONTHS,
    SCALE_WORDS,
    SYMBOLS,
    TLDS,
    UNITS,
    URL_SYMBOLS,
)

MAX_TOKEN = 64
_SIGNS = {"-": "minus", "−": "minus", "+": "plus", "±": "plus or minus", "~": "about", "≈": "about"}
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_SLASH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_DOT_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_PHONE = re.compile(r"(?:\+(\d{1,3})[-. ])?\(?(\d{3})\)?[-. ]?(\d{3})[-.](\d{4})")
_LOCAL_PHONE = re.compile(r"([2-9]\d{2})-(\d{4})")
_EMAIL = re.compile(r"[\w.+-]{1,40}@[\w-]{1,40}(?:\.[\w-]{1,20}){1,4}")
_ROMAN = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_MONEY_FIRST = frozenset("$€£¥₹₩₽₿UCA")
_AMPM = {"am": "AM", "pm": "PM", "a.m.": "AM", "p.m.": "PM", "a.m": "AM", "p.m": "PM"}
_AMPM_SUFFIXES = tuple(_AMPM)
_VULGAR = {"½": ("1", "2"), "¼": ("1", "4"), "¾": ("3", "4"), "⅓": ("1", "3"), "⅔": ("2", "3"),
           "⅛": ("1", "8"), "⅜": ("3", "8"), "⅝": ("5", "8"), "⅞": ("7", "8"), "⅕": ("1", "5")}


@lru_cache(maxsize=4096)
def split_number(core: str) -> tuple[str, str, str | None, str] | None:
    """(sign, whole digits without commas, fraction digits or None, suffix) of a token that starts
    with a number (`-1,234.5km` → `-`, `1234`, `5`, `km`), or None when it does not start with one."""
    i = 0
    sign = ""
    if core[:1] in _SIGNS and len(core) > 1:
        sign, i = core[0], 1
    start = i
    n = len(core)
    while i < n and ((core[i].isdigit() and core[i].isascii())
                     or (core[i] == "," and i + 3 < n and core[i + 1:i + 4].isdigit() and i > start)):
        i += 1
    whole = core[start:i]
    if "," in whole and not all(len(g) == 3 for g in whole.split(",")[1:]):
        return None  # "1,2,3" is a list, not a grouped number
    fraction = None
    if i + 1 < n and core[i] == "." and core[i + 1].isdigit():
        j = i + 1
        while j < n and core[j].isdigit():
            j += 1
        fraction, i = core[i + 1:j], j
    if not whole and fraction is None:
        return None
    return sign, whole.replace(",", ""), fraction, core[i:]


def number(sign: str, whole: str, fraction: str | None) -> str:
    """A plain number with its sign: `-`, `3`, `14` → `minus three point one four`."""
    spoken = num.decimal(whole, fraction) if fraction is not None else num.cardinal(whole)
    return f"{_SIGNS[sign]} {spoken}" if sign else spoken


def money(amount: tuple[str, str, str | None], names: tuple[str, str, str, str], scale: str = "") -> str:
    """`$`-style amounts: `3`, `50` → `three dollars and fifty cents`; with a scale word, `one point
    five million dollars`."""
    sign, whole, fraction = amount
    one, many, minor_one, minor_many = names
    minus = _SIGNS[sign] + " " if sign else ""
    if scale:
        return f"{minus}{number('', whole, fraction)} {scale} {many}"
    if fraction is not None and (len(fraction) > 2 or not minor_one):
        return f"{minus}{number('', whole, fraction)} {many}"
    cents = int((fraction or "0").ljust(2, "0"))
    main = int(whole or "0")
    parts = []
    if main or not cents:
        parts.append(f"{num.cardinal(whole or '0')} {one if main == 1 else many}")
    if cents:
        parts.append(f"{num.cardinal(str(cents))} {minor_one if cents == 1 else minor_many}")
    return minus + " and ".join(parts)


@lru_cache(maxsize=4096)
def split_money(core: str) -> tuple[str, str, str, str | None, str] | None:
    """(sign, currency symbol, whole, fraction, suffix) of `-$1,234.50k`, or None if it is not money."""
    sign = core[0] if core[:1] in ("-", "−") else ""
    rest = core[len(sign):]
    if rest[:1] not in _MONEY_FIRST:
        return None
    for symbol in ("US$", "C$", "A$", *"$€£¥₹₩₽₿"):
        if rest.startswith(symbol):
            break
    else:
        return None
    parsed = split_number(rest[len(symbol):])
    if parsed is None or parsed[0]:
        return None
    return sign, symbol, parsed[1], parsed[2], parsed[3]


def money_token(core: str) -> str | None:
    """`$3.50`, `-$5`, `€20`, `£1.5bn`, `$5k`, `US$10`, `$10-20`; None if the token is not money."""
    parsed = split_money(core)
    if parsed is None:
        return None
    sign, symbol, whole, fraction, suffix = parsed
    names = CURRENCIES[symbol]
    if suffix in SCALE_WORDS:
        return money((sign, whole, fraction), names, SCALE_WORDS[suffix])
    if suffix[:1] in "-–" and len(suffix) > 1:
        high = split_number(suffix[1:].removeprefix(symbol))
        if high is None or high[0] or high[3]:
            return None
        return f"{number(sign, whole, fraction)} to {money(('', high[1], high[2]), names)}"
    if suffix[:1] == "/" and suffix[1:].isalpha():  # $100/month
        return f"{money((sign, whole, fraction), names)} per {suffix[1:]}"
    return money((sign, whole, fraction), names) if not suffix else None


def clock(hours: str, minutes: str, seconds: str | None = None, ampm: str = "") -> str:
    """`10`, `05` → `ten oh five`; `10`, `00` → `ten o'clock`, or `ten AM` with a suffix."""
    h = num.cardinal(hours)
    if minutes == "00":
        spoken = f"{h} {ampm}" if ampm else f"{h} o'clock"
    else:
        m = num.cardinal(minutes) if minutes[0] != "0" else "oh " + num.ONES[int(minutes[1])]
        spoken = f"{h} {m}" + (f" {ampm}" if ampm else "")
    if seconds is not None:
        s = int(seconds)
        spoken += f" and {num.cardinal(seconds)} {'second' if s == 1 else 'seconds'}"
    return spoken


def time_token(core: str, ampm: str = "") -> str | None:
    """`10:30`, `7:05pm`, `10am`, `23:59:30`."""
    lower = core.lower()
    for suffix, spoken in _AMPM.items() if lower.endswith(_AMPM_SUFFIXES) else ():
        if lower.endswith(suffix) and len(lower) > len(suffix):
            core, ampm = core[:-len(suffix)], spoken
            if core.isdigit() and 1 <= int(core) <= 12:
                return f"{num.cardinal(core)} {ampm}"
            break
    m = _TIME.fullmatch(core)
    return clock(m[1], m[2], m[3], ampm) if m else None


def date(year: str | None, month: int, day: str) -> str | None:
    """`2024`, 2, `15` → `March fifteenth, twenty twenty-four` (month counted from 0)."""
    if not 0 <= month < 12 or not 1 <= int(day) <= 31:
        return None
    spoken = f"{MONTHS[month]} {num.ordinal(day)}"
    return f"{spoken}, {num.year(year)}" if year else spoken


def date_token(core: str) -> str | None:
    """`2024-03-15` (ISO), `3/15/2024` (month first, as in the US), `15.03.2024` (day first)."""
    if m := _ISO_DATE.fullmatch(core):
        return date(m[1], int(m[2]) - 1, m[3])
    if m := _SLASH_DATE.fullmatch(core):
        return date(m[3], int(m[1]) - 1, m[2])
    if m := _DOT_DATE.fullmatch(core):
        return date(m[3], int(m[2]) - 1, m[1])
    return None


def phone_token(core: str) -> str | None:
    """`555-123-4567`, `(555) 123-4567` (joined by the caller), `+1-555-123-4567`, `555-1234`."""
    groups: list[str]
    if m := _PHONE.fullmatch(core):
        groups = [g for g in m.groups() if g]
        if m[1]:
            groups[0] = "+" + groups[0]
    elif m := _LOCAL_PHONE.fullmatch(core):
        groups = [m[1], m[2]]
    else:
        return None
    return digit_groups(groups)


def digit_groups(groups: list[str]) -> str:
    """Groups of digits read one by one, a pause between groups: `+1`, `555` → `plus one, five five five`."""
    return ", ".join(("plus " if g.startswith("+") else "") + num.digit_by_digit(g.lstrip("+"))
                     for g in groups)


def _spell_part(part: str) -> str:
    """A URL or e-mail piece: words as they are, digits one by one, symbols named."""
    words = []
    for piece in re.findall(r"[A-Za-z]+|\d+|.", part):  # one alternative per character class: linear
        if piece.isdigit():
            words.append(num.digit_by_digit(piece) if len(piece) > 1 else num.ONES[int(piece)])
        elif piece in URL_SYMBOLS:
            words.append(URL_SYMBOLS[piece])
        elif piece.isalpha():
            words.append(piece)
    return " ".join(words)


def url_token(core: str) -> str | None:
    """`https://example.com/docs` → `example dot com slash docs`; `www.x.org`; bare `example.com`."""
    lower = core.lower()
    body = core
    for scheme in ("https://", "http://", "ftp://"):
        if lower.startswith(scheme):
            body = core[len(scheme):]
            break
    else:
        if not lower.startswith("www."):
            host, _, _ = lower.partition("/")
            labels = host.split(".")
            if len(labels) < 2 or labels[-1] not in TLDS or not all(labels) or not labels[0].isalnum():
                return None
            if not any(c.isalpha() for c in labels[0]):
                return None
    body = body.rstrip("/")
    if body.lower().startswith("www."):
        body = "w w w." + body[4:]
    return _spell_part(body)


def email_token(core: str) -> str | None:
    """`jane.doe@example.com` → `jane dot doe at example dot com`."""
    if not _EMAIL.fullmatch(core):
        return None
    user, _, host = core.partition("@")
    return f"{_spell_part(user)} at {_spell_part(host)}"


def roman_value(core: str) -> int | None:
    """The value of a well-formed Roman numeral, or None."""
    if not core or not _ROMAN.fullmatch(core):
        return None
    total = 0
    for i, ch in enumerate(core):
        value = _ROMAN_VALUES[ch]
        total += -value if i + 1 < len(core) and _ROMAN_VALUES[core[i + 1]] > value else value
    return total


def vulgar_fraction(core: str) -> str | None:
    """`½` → `one half`, `1½` → `one and a half`, `2¾` → `two and three quarters`."""
    if not core or core[-1] not in _VULGAR:
        return None
    top, bottom = _VULGAR[core[-1]]
    whole = core[:-1]
    if whole and not whole.isdigit():
        return None
    if whole:
        part = "a half" if bottom == "2" else num.fraction(top, bottom).replace("one ", "a ", 1)
        return f"{num.cardinal(whole)} and {part}"
    return num.fraction(top, bottom)


def symbol_word(core: str) -> str | None:
    """A token that is one symbol: `&` → `and`."""
    return SYMBOLS.get(core) if len(core) == 1 else None


def unit_name(unit: str, sign: str, whole: str, fraction: str | None) -> str | None:
    """The unit's name in the number's agreement: `1 km` → `kilometer`, `2 km` → `kilometers`."""
    names = UNITS.get(unit)
    if names is None:
        return None
    return names[0] if whole == "1" and fraction is None and not sign else names[1]

"""English number words: cardinals, ordinals, years, decimals, digit by digit, fractions.

All functions take digit strings (no signs or separators) so callers decide what a token means.
Numbers of more than 36 digits have no name here and are read digit by digit.
"""

from __future__ import annotations

from functools import lru_cache

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion", "sextillion",
          "septillion", "octillion", "nonillion", "decillion"]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
MAX_DIGITS = 3 * len(SCALES)


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        words.append(TENS[rest // 10] + (f"-{ONES[rest % 10]}" if rest % 10 else ""))
    elif rest:
        words.append(ONES[rest])
    return " ".join(words)


_BELOW_THOUSAND = [_below_thousand(n) for n in range(1000)]


def cardinal(digits: str) -> str:
    """`1234` → `one thousand two hundred thirty-four` (American style, no "and")."""
    if len(digits) <= _CACHED_DIGITS:
        return _cardinal(digits)
    digits = digits.lstrip("0") or "0"
    return digit_by_digit(digits) if len(digits) > MAX_DIGITS else _cardinal(digits)


_CACHED_DIGITS = 2 * MAX_DIGITS  # bounds what the cache holds; longer input is seldom repeated


@lru_cache(maxsize=8192)
def _cardinal(digits: str) -> str:
    digits = digits.lstrip("0") or "0"
    if len(digits) > MAX_DIGITS:
        return digit_by_digit(digits)
    n = int(digits)
    if n == 0:
        return "zero"
    groups = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_BELOW_THOUSAND[group] + (f" {SCALES[scale]}" if scale else ""))
        scale += 1
    return " ".join(reversed(groups))


def ordinal_word(words: str) -> str:
    """The ordinal of a spelled cardinal: `twenty-one` → `twenty-first`."""
    head, sep, last = max(words.rpartition(" "), words.rpartition("-"), key=lambda p: len(p[0]))
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def ordinal(digits: str) -> str:
    """`21` → `twenty-first`."""
    return _ordinal(digits) if len(digits) <= _CACHED_DIGITS else ordinal_word(cardinal(digits))


@lru_cache(maxsize=4096)
def _ordinal(digits: str) -> str:
    return ordinal_word(cardinal(digits))


def digit_by_digit(digits: str, zero: str = "zero") -> str:
    """`007` → `zero zero seven`."""
    return " ".join(zero if d == "0" else ONES[int(d)] for d in digits)


def year(digits: str) -> str:
    """`1999` → `nineteen ninety-nine`, `2005` → `two thousand five`, `1905` → `nineteen oh five`."""
    n = int(digits)
    if len(digits) != 4 or n < 1000:
        return cardinal(digits)
    high, low = divmod(n, 100)
    if n % 1000 == 0 or (2000 <= n < 2010):
        return cardinal(digits)
    if low == 0:
        return f"{cardinal(str(high))} hundred"
    if low < 10:
        return f"{cardinal(str(high))} oh {ONES[low]}"
    return f"{cardinal(str(high))} {cardinal(str(low))}"


def decimal(whole: str, fraction: str) -> str:
    """`3`, `14` → `three point one four`; an empty whole part is read as nothing (`.5` → `point five`)."""
    head = cardinal(whole.replace(",", "")) + " " if whole else ""
    return f"{head}point {digit_by_digit(fraction)}"


_DENOMINATORS = {"2": ("half", "halves"), "4": ("quarter", "quarters")}


def fraction(numerator: str, denominator: str) -> str:
    """`3`, `4` → `three quarters`; `1`, `3` → `one third`; `5`, `16` → `five sixteenths`."""
    top = cardinal(numerator)
    singular, plural = _DENOMINATORS.get(denominator.lstrip("0"), ("", ""))
    if not singular:
        singular = ordinal(denominator)
        plural = singular + "s"
    return f"{top} {singular if int(numerator) == 1 else plural}"


def plural_noun(n_text: str, singular: str, plural: str) -> str:
    """`singular` when the number read is exactly one, else `plural`."""
    return singular if n_text in ("1", "one", "-1") else plural

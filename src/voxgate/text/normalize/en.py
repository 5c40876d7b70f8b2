"""English text normalisation: what a person says for numbers, money, dates, times, units,
abbreviations, URLs and symbols, with every rewrite mapped back to the characters it replaced.

The text is cut at white space into tokens (one pass); each token's core (without the quotes,
brackets and punctuation around it) is read by the first rule that matches, some rules looking one or
two tokens ahead or one back (`5 km`, `March 15, 2024`, `Dr. Smith`, `Henry VIII`). Tokens longer than
`MAX_TOKEN` characters are left alone, which keeps every rule's cost bounded per token.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from voxgate.text.normalize import en_words as w
from voxgate.text.normalize import numbers as num
from voxgate.text.normalize.en_tables import (
    ABBREVIATIONS,
    BEFORE_OR_AFTER,
    CURRENCY_CODES,
    MONTH_INDEX,
    MONTHS,
    NUMBER_ABBREVIATIONS,
    REGNAL_NAMES,
    ROMAN_CARDINAL_CUES,
    ROMAN_EXCLUDED,
    SCALE_NAMES,
    SILENT_MARKS,
    TITLES,
    UNITS,
    YEAR_CUES,
)
from voxgate.text.normalize.offsets import Builder, Normalized

_TOKEN = re.compile(r"\S+")
_LEAD = frozenset("\"'([{¿¡")
_TRAIL = frozenset("\"')]}.,;:!?")
_SENTENCE_END = frozenset(".!?")
_DAY = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?")
_YEAR = re.compile(r"\d{4}")
_PERIOD = re.compile(r"q[1-4]|h[12]|fy|fy\d\d")  # Q3 2024, H1 2023, FY 2025 (lower-cased)
_ERAS = frozenset({"BC", "AD", "BCE", "CE"})
_NEXT_TOKEN_UNITS_EXCLUDED = frozenset({"x", "h", "l", "L", "V", "W", "g", "m", "ha"})
_MATH = re.compile(r"\d+(?:\.\d+)?|[-+×*=^÷<>−]|[^\d+×*=^÷<>−-]+")
_MATH_WORDS = {"+": "plus", "-": "minus", "−": "minus", "×": "times", "*": "times", "=": "equals",
               "^": "to the power of", "÷": "divided by", "<": "is less than", ">": "is greater than"}
_MID_SENTENCE = frozenset({"vs.", "e.g.", "i.e.", "ca.", "approx.", "No.", "no."})  # never end one
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})
_MINUTES_BEFORE = re.compile(r"\d{1,2}h")
# Cheap tests that let `read` skip a rule that cannot match (each rule checks the same and more):
_NUMBER_FIRST = frozenset(".-−+±~≈$€£¥₹₩₽₿UCA")  # first characters of money and signed or bare numbers
_ROMAN_LETTERS = frozenset("IVXLCDM")
_ABBREVIATION_KEYS = {*ABBREVIATIONS, *BEFORE_OR_AFTER, *NUMBER_ABBREVIATIONS}
_ABBREVIATION_CORES = frozenset({*_ABBREVIATION_KEYS, *(k[:-1] for k in _ABBREVIATION_KEYS if k.endswith("."))})
_GO_ON = object()  # `_token_head`: no rule of its own read the token, the next ones may


class Token(NamedTuple):
    start: int  # the whole token, with its punctuation
    end: int
    cs: int  # its core
    ce: int


class Match(NamedTuple):
    spoken: str
    last: int  # index of the last token read
    end: int  # input offset just after what was read
    start: int = -1  # input offset where it starts, when not at the first token's core


def _tokens(text: str) -> list[Token]:
    tokens = []
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        cs, ce = start, end
        while cs < ce and text[cs] in _LEAD and not (text[cs] == "'" and text[cs + 1:cs + 2].isdigit()):
            cs += 1  # "'90s" keeps its apostrophe: the decade rule reads it
        while ce > cs and text[ce - 1] in _TRAIL:
            ce -= 1
        tokens.append(Token(start, end, cs, ce))
    return tokens


class _Reader:
    """The rules, with the tokens around the one being read."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.cores = [text[t.cs:t.ce] if t.ce - t.cs <= w.MAX_TOKEN else "" for t in self.tokens]

    def core(self, i: int) -> str:
        """Token i's core ("" when there is none or it is longer than `MAX_TOKEN`)."""
        return self.cores[i] if 0 <= i < len(self.cores) else ""

    def period_after(self, i: int) -> bool:
        t = self.tokens[i]
        return t.ce < t.end and self.text[t.ce] == "."

    def sentence_starts_at(self, i: int) -> bool:
        """Token i opens a sentence: the first token, or one after a full stop, ! or ?."""
        if i == 0:
            return True
        prev = self.tokens[i - 1]
        return any(ch in _SENTENCE_END for ch in self.text[prev.ce:prev.end])

    def read(self, i: int) -> Match | None:
        core = self.cores[i]
        if not core:
            return None
        if core.isalpha() and self._plain_word(i, core):
            return None
        first = core[0]
        found = None
        if first.isupper() or (first.isdecimal() and self.core(i + 1)[:1].isupper()):  # month, or day month
            found = self._date(i, core)
        if found is None and (first == "+" or self.text[self.tokens[i].start] == "("):
            found = self._phone_groups(i, core)
        if found is None and (first in _NUMBER_FIRST or first.isdigit()):
            found = self._with_next(i, core)
        if found is None and first in _ROMAN_LETTERS:
            found = self._roman(i, core)
        if found is None and core in _ABBREVIATION_CORES:
            found = self._abbreviation(i, core)
        if found is not None:
            return found
        spoken = self._single(i, core)
        return Match(spoken, i, self.tokens[i].ce) if spoken is not None else None

    def _plain_word(self, i: int, core: str) -> bool:
        """A word of letters that no rule reads (the common case, skipped at once)."""
        if self.period_after(i) or core in ABBREVIATIONS or core in BEFORE_OR_AFTER:
            return False
        if core[0].isupper() and (core.lower() in MONTH_INDEX or core.strip("IVXLCDM") == ""):
            return False
        return core[-1] not in SILENT_MARKS

    # -- rules that look at more than one token --------------------------------------------------

    def _date(self, i: int, core: str) -> Match | None:
        """`March 15, 2024`, `Jan. 5th`, `15 March 2024`, `March 2024`."""
        month_key = core.lower() + ("." if self.period_after(i) and len(core) == 3 else "")
        month = MONTH_INDEX.get(month_key, MONTH_INDEX.get(core.lower()) if core[:1].isupper() else None)
        if month is not None and core[:1].isupper():
            day = _DAY.fullmatch(self.core(i + 1))
            if day and 1 <= int(day[1]) <= 31:
                spoken = f"{MONTHS[month]} {num.ordinal(day[1])}"
                return self._with_year(i + 1, spoken)
            if _YEAR.fullmatch(self.core(i + 1)):
                return Match(f"{MONTHS[month]} {num.year(self.core(i + 1))}", i + 1, self.tokens[i + 1].ce)
            return None
        day = _DAY.fullmatch(core)
        if day and 1 <= int(day[1]) <= 31 and self.tokens[i].ce == self.tokens[i].end:
            nxt = self.core(i + 1)
            month = MONTH_INDEX.get(nxt.lower()) if nxt[:1].isupper() else None
            if month is not None:
                return self._with_year(i + 1, f"the {num.ordinal(day[1])} of {MONTHS[month]}")
        return None

    def _with_year(self, i: int, spoken: str) -> Match:
        """A date read up to token i, with the year of the next token if it has one."""
        t = self.tokens[i]
        between = self.text[t.ce:t.end]
        if between in ("", ",") and _YEAR.fullmatch(self.core(i + 1)):
            return Match(f"{spoken}, {num.year(self.core(i + 1))}", i + 1, self.tokens[i + 1].ce)
        return Match(spoken, i, t.ce)

    def _phone_groups(self, i: int, core: str) -> Match | None:
        """`(555) 123-4567` and `+44 20 7946 0958`: phone numbers cut by spaces."""
        t = self.tokens[i]
        raw = self.text[t.start:t.end]
        nxt = self.core(i + 1)
        if len(raw) == 5 and raw[0] == "(" and raw[4] == ")" and raw[1:4].isdigit():
            if re.fullmatch(r"\d{3}-\d{4}", nxt):
                spoken = w.digit_groups([raw[1:4], *nxt.split("-")])
                return Match(spoken, i + 1, self.tokens[i + 1].ce, t.start)
        if core.startswith("+") and 2 <= len(core) <= 4 and core[1:].isdigit():
            groups = [core]
            j = i + 1
            while j < len(self.tokens) and len(groups) < 6:
                part = self.core(j)
                if not (part.isdigit() and 2 <= len(part) <= 4):
                    break
                groups.append(part)
                j += 1
            if len(groups) >= 3:
                return Match(w.digit_groups(groups), j - 1, self.tokens[j - 1].ce)
        return None

    def _with_next(self, i: int, core: str) -> Match | None:
        """A number and the word after it: `5 km`, `10 USD`, `$1.5 million`, `10:30 pm`, `1 1/2`."""
        t = self.tokens[i]
        if t.ce != t.end or i + 1 >= len(self.tokens):  # punctuation between: not one phrase
            return None
        nxt = self.cores[i + 1]
        if not (nxt in UNITS or nxt in CURRENCY_CODES or nxt in SCALE_NAMES or "/" in nxt
                or nxt.lower() in w._AMPM):  # none of the words read with a number
            return None
        nxt_end = self.tokens[i + 1].ce
        ampm = nxt.lower() + ("." if self.period_after(i + 1) and nxt.lower() in ("a.m", "p.m") else "")
        if ampm in w._AMPM:
            spoken = w.time_token(core, w._AMPM[ampm])
            if spoken is None and core.isdigit() and 1 <= int(core) <= 12:
                spoken = f"{num.cardinal(core)} {w._AMPM[ampm]}"
            if spoken is not None:
                end = nxt_end + (1 if ampm.endswith(".") and not nxt.endswith(".") else 0)
                return Match(spoken, i + 1, end)
        money = w.split_money(core)
        if nxt in SCALE_NAMES and money is not None and not money[4]:
            sign, symbol, whole, fraction, _ = money
            return Match(w.money((sign, whole, fraction), w.CURRENCIES[symbol], nxt), i + 1, nxt_end)
        parsed = w.split_number(core)
        if parsed is None or parsed[3]:
            return None
        sign, whole, fraction, _ = parsed
        if nxt in CURRENCY_CODES:
            return Match(w.money((sign, whole, fraction), CURRENCY_CODES[nxt]), i + 1, nxt_end)
        if nxt not in _NEXT_TOKEN_UNITS_EXCLUDED and nxt in UNITS:
            unit = w.unit_name(nxt, sign, whole, fraction)
            return Match(f"{w.number(sign, whole, fraction)} {unit}", i + 1, nxt_end)
        top, slash, bottom = nxt.partition("/")
        if (not sign and fraction is None and slash and top.isdigit() and bottom.isdigit()
                and 0 < int(top) < int(bottom) <= 100):
            part = "a half" if bottom == "2" else num.fraction(top, bottom)
            return Match(f"{num.cardinal(whole)} and {part}", i + 1, nxt_end)
        return None

    def _roman(self, i: int, core: str) -> Match | None:
        """`Henry VIII` → `Henry the Eighth`, `World War II` → `World War two`, `Chapter IV`."""
        value = w.roman_value(core)
        if value is None or core in ROMAN_EXCLUDED or i == 0:
            return None
        prev = self.core(i - 1)
        cue = prev.lower()
        if self.tokens[i - 1].ce != self.tokens[i - 1].end:  # "Chapter, I": not a numeral
            return None
        if cue in REGNAL_NAMES and prev[:1].isupper():
            return Match(f"the {num.ordinal(str(value)).capitalize()}", i, self.tokens[i].ce)
        if cue in ROMAN_CARDINAL_CUES or (len(core) >= 2 and prev[:1].isupper() and prev.isalpha()):
            return Match(num.cardinal(str(value)), i, self.tokens[i].ce)
        return None

    def _abbreviation(self, i: int, core: str) -> Match | None:
        """`Dr.` (Doctor before a name, Drive after one), `etc.`, `No. 5`; the period is read too."""
        t = self.tokens[i]
        dotted = core + "." if self.period_after(i) else core
        end = t.ce + (dotted != core)
        if dotted in NUMBER_ABBREVIATIONS and self.core(i + 1)[:1].isdigit():
            return Match(NUMBER_ABBREVIATIONS[dotted], i, end)
        if dotted in BEFORE_OR_AFTER:
            title, place = BEFORE_OR_AFTER[dotted]
            prev = self.core(i - 1)
            after_name = prev[:1].isupper() and not self.sentence_starts_at(i - 1) if i else False
            before_name = self.core(i + 1)[:1].isupper()
            if before_name and not after_name:
                return Match(title, i, end)
            return Match(place + self._full_stop(i, dotted), i, end)
        if dotted in ABBREVIATIONS:
            return Match(ABBREVIATIONS[dotted] + self._full_stop(i, dotted), i, end)
        if core in ABBREVIATIONS and "." not in core:
            return Match(ABBREVIATIONS[core], i, t.ce)
        return None

    def _full_stop(self, i: int, dotted: str) -> str:
        """"." when an abbreviation's period also ends the sentence (last token, or a capital next)."""
        if not dotted.endswith(".") or dotted in TITLES or dotted in _MID_SENTENCE:
            return ""
        t = self.tokens[i]
        if t.ce + 1 < t.end:  # more punctuation follows ("etc.)"): that carries the pause
            return ""
        nxt = self.core(i + 1)
        return "." if i + 1 >= len(self.tokens) or nxt[:1].isupper() else ""

    # -- one token -------------------------------------------------------------------------------

    def _single(self, i: int, core: str) -> str | None:
        spoken = _token_head(core)
        if spoken is not _GO_ON:
            return spoken  # type: ignore[return-value]
        parsed = w.split_number(core)
        if parsed is not None:
            return self._number(i, core, *parsed)
        return _token_tail(core)

    def _number(self, i: int, core: str, sign: str, whole: str, fraction: str | None, suffix: str) -> str | None:
        """A token that starts with a number: plain, %, ordinal, decade, range, fraction, unit, x."""
        if not suffix:
            if fraction is None and not sign and (len(whole) > 15 or (len(whole) > 1 and whole[0] == "0")):
                return num.digit_by_digit(whole)
            if fraction is None and not sign and "," not in core and self._is_year(i, whole):
                return num.year(whole)
            return w.number(sign, whole, fraction)
        if suffix == "m" and _MINUTES_BEFORE.fullmatch(self.core(i - 1)):  # 3h 45m: minutes, not meters
            return f"{w.number(sign, whole, fraction)} {'minute' if whole == '1' else 'minutes'}"
        if suffix == "%":
            return f"{w.number(sign, whole, fraction)} percent"
        if suffix == "+" and not sign:
            return f"{w.number(sign, whole, fraction)} plus"
        if suffix in _ORDINAL_SUFFIXES and fraction is None and not sign and whole:
            return num.ordinal(whole)
        if suffix == "s" and fraction is None and not sign and len(whole) in (2, 4) and whole.endswith("0"):
            words = num.year(whole) if len(whole) == 4 else num.cardinal(whole)
            return words[:-1] + "ies" if words.endswith("y") else words + "s"
        if suffix[0] == "-" and suffix[1:].replace("-", "").isalpha() and fraction is None:
            return f"{w.number(sign, whole, fraction)}-{suffix[1:]}"  # 20-year-old
        if suffix[0] in "-–" and len(suffix) > 1:
            return self._range(i, sign, whole, fraction, suffix[1:])
        if suffix[0] == "/" and fraction is None and not sign and suffix[1:].isdigit():
            if whole == "24" and suffix == "/7":
                return "twenty-four seven"
            if int(suffix[1:]) == 0:
                return None
            return num.fraction(whole, suffix[1:])
        if (unit := w.unit_name(suffix, sign, whole, fraction)) is not None:
            return f"{w.number(sign, whole, fraction)} {unit}"
        if suffix in ("k", "M", "bn"):  # not K or B: "4K" and "221B" are names, not thousands or billions
            return f"{w.number(sign, whole, fraction)} {w.SCALE_WORDS[suffix]}"
        if any(c in "+×*=^÷<>" for c in suffix):
            return _math(core)
        return None

    def _range(self, i: int, sign: str, whole: str, fraction: str | None, rest: str) -> str | None:
        """`10-20`, `1990–1995`, `1990-95`, `10-20%`, `5-10km`."""
        high = w.split_number(rest)
        if high is None or high[0]:
            return None
        _, hwhole, hfraction, hsuffix = high
        if (len(whole) == 4 and not sign and fraction is None and hfraction is None and not hsuffix
                and 1000 <= int(whole) <= 2099 and len(hwhole) in (2, 4)):
            return f"{num.year(whole)} to {num.year(hwhole) if len(hwhole) == 4 else num.cardinal(hwhole)}"
        low = w.number(sign, whole, fraction)
        upper = self._number(i, rest, "", hwhole, hfraction, hsuffix)
        return f"{low} to {upper}" if upper is not None else None

    def _is_year(self, i: int, whole: str) -> bool:
        """A four-digit number read as a year: after `in`, `since`, a month…, before `BC`, or alone."""
        if len(whole) != 4 or not 1000 <= int(whole) <= 2099:
            return False
        prev = self.core(i - 1).lower()
        if prev in YEAR_CUES or prev in MONTH_INDEX or self.core(i + 1) in _ERAS or _PERIOD.fullmatch(prev):
            return True
        t = self.tokens[i]
        return 1100 <= int(whole) and (t.ce < t.end or self.sentence_starts_at(i)) and not (
            1000 <= int(whole) < 1100)


# -- one token, whatever is around it (cached: texts repeat their numbers) ---------------------------

@lru_cache(maxsize=4096)
def _token_head(core: str) -> str | object | None:
    """URLs, e-mail addresses, handles, money, dates, times, phone numbers, fractions and decades: the
    spoken form, None when the token is read as written, `_GO_ON` when none of these rules is its."""
    if "://" in core or core.lower().startswith("www.") or ("." in core and core[-1:].isalpha()):
        if "@" in core:
            return w.email_token(core)
        if (spoken := w.url_token(core)) is not None:
            return spoken
    if "@" in core and len(core) > 1:
        return w.email_token(core) or (f"at {core[1:]}" if core[0] == "@" and core[1:].isalnum() else None)
    if core[0] in "~≈" and (spoken := w.money_token(core[1:])) is not None:
        return f"about {spoken}"
    separated = "-" in core or "." in core or "/" in core  # every date and phone number has one
    spoken = w.money_token(core)
    if spoken is None and separated:
        spoken = w.date_token(core)
    if spoken is None:
        spoken = w.time_token(core)
    if spoken is None and separated:
        spoken = w.phone_token(core)
    if spoken is None:
        spoken = w.vulgar_fraction(core)
    if spoken is not None:
        return spoken
    if core[0] == "'" and len(core) == 4 and core[1:3].isdigit() and core.endswith("0s"):
        return num.cardinal(core[1:3])[:-1] + "ies"  # '90s
    return _GO_ON


@lru_cache(maxsize=4096)
def _token_tail(core: str) -> str | None:
    """A token that is one symbol (`&` → `and`) or a word with symbols in it."""
    if (spoken := w.symbol_word(core)) is not None:
        return spoken
    return _word_with_symbols(core)


def _math(core: str) -> str | None:
    """`2+2=4` → `two plus two equals four`."""
    words = []
    for piece in _MATH.findall(core):
        if piece in _MATH_WORDS:
            words.append(_MATH_WORDS[piece])
        elif (parsed := w.split_number(piece)) is not None and not parsed[3]:
            words.append(w.number(*parsed[:3]))
        else:
            return None
    return " ".join(words)


def _word_with_symbols(core: str) -> str | None:
    """`R&D` → `R and D`, `COVID-19` → `COVID nineteen`, `#1` → `number one`, `Acme™` → `Acme`."""
    if core[-1] in SILENT_MARKS and len(core) > 1:
        return core.rstrip("®™")
    if core.startswith("#") and core[1:].isdigit():
        return f"number {num.cardinal(core[1:])}"
    if "&" in core and core.replace("&", "").isalpha():
        return " and ".join(core.split("&"))
    head, dash, tail = core.rpartition("-")
    if dash and head.isalpha() and tail.isdigit() and len(tail) <= 4:
        return f"{head} {num.cardinal(tail) if tail[0] != '0' else num.digit_by_digit(tail)}"
    if any(c in "+=×÷^" for c in core) and any(c.isdigit() for c in core):
        return _math(core)
    return None


def verbalize_en(text: str) -> Normalized:
    """English spoken forms of the text's numbers, symbols and abbreviations, mapped to the input."""
    reader = _Reader(text)
    out = Builder(len(text))
    pos = 0
    i = 0
    tokens = reader.tokens
    while i < len(tokens):
        found = reader.read(i)
        if found is None:
            i += 1
            continue
        start = found.start if found.start >= 0 else tokens[i].cs
        if start > pos:
            out.copy(text[pos:start], pos)
        out.replace(found.spoken, start, found.end)
        pos = found.end
        i = found.last + 1
    if pos < len(text):
        out.copy(text[pos:], pos)
    return out.build()

"""Numbers in Chinese and Japanese text: found by one hand scan, read by cn2an (Chinese) or rewritten
into the forms pyopenjtalk reads with the right counters (Japanese), each mapped to its input span.

A number run is digits (ASCII or full width) with the separators that live inside numbers (`.,:/-%`),
an optional sign or currency sign before and, for Chinese, one Han character after (the counter or
unit: `年`, `元`, `个`…, which cn2an needs to read dates and money). A run is CJK when the nearest
non-space character on either side is Han or kana, or when the request's language is Chinese or
Japanese and neither side is a Latin letter. (`engines/zh_numbers.py` does the same rewrites for
Kokoro's own Mandarin path when normalisation is off; engines may not import `text`.)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

from voxgate.text.normalize.offsets import Builder, Normalized

MAX_RUN = 40  # longer digit runs are left for the engine to read
_DIGITS = "零一二三四五六七八九"
_INNER = frozenset(".,:/-%．：，／－％")
_CURRENCY = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_DATE = re.compile(r"(\d{4})[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])")
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_RANGE = re.compile(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)")
_CODE = re.compile(r"0\d+|\d{11,}")
_CJK_RANGES = "\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\u3000-\u303f\uff01-\uff0f\U00020000-\U0002fa1f"
_ANY_CJK = re.compile(f"[{_CJK_RANGES}]")  # what `is_cjk` is true for
# Where a run may start: ASCII digits, "-" and "$", and any other character that is not ASCII or CJK (no
# digit or currency sign is CJK: tests/unit/test_normalize_cjk.py checks), so scanning skips the rest.
_RUN_START = re.compile(f"[0-9$-]|[^\x00-\x7f{_CJK_RANGES}]")


def is_cjk(ch: str) -> bool:
    """Han, kana or CJK punctuation ("" is not)."""
    if not ch:
        return False
    cp = ord(ch)
    return (0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x3040 <= cp <= 0x30FF
            or 0x3000 <= cp <= 0x303F or 0xFF01 <= cp <= 0xFF0F or 0x20000 <= cp <= 0x2FA1F)


def _is_han(ch: str) -> bool:
    cp = ord(ch)
    return 0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F


def _neighbour(text: str, i: int, step: int) -> str:
    """The nearest character from i (inclusive) going by step that is not a space, or ""."""
    while 0 <= i < len(text) and text[i] == " ":
        i += step
    return text[i] if 0 <= i < len(text) else ""


def scan(text: str, default_cjk: bool, convert: Callable[[str], str | None], take_counter: bool) -> Normalized:
    """Replace every CJK number run of `text` by `convert(run)` (None leaves it), mapped."""
    if not default_cjk and not _ANY_CJK.search(text):
        return Normalized.identity(text)  # no run has a CJK neighbour
    out = Builder(len(text))
    pos = 0
    i = 0
    n = len(text)
    next_start = _RUN_START.search
    while (found := next_start(text, i)) is not None:
        i = found.start()
        ch = text[i]
        starts_run = ch.isdigit() or (ch in "-¥￥$€£" and i + 1 < n and text[i + 1].isdigit())
        if not starts_run or (i > 0 and (text[i - 1].isdigit() or (text[i - 1].isalpha() and not is_cjk(text[i - 1])))):
            i += 1
            continue
        j = i + 1
        while j < n and (text[j].isdigit() or (text[j] in _INNER and j + 1 < n and text[j + 1].isdigit()
                         and (text[j] not in ",，" or _thousands(text, j)))):
            j += 1
        if j < n and text[j] in "%％":
            j += 1
        before, after = _neighbour(text, i - 1, -1), _neighbour(text, j, 1)
        cjk = is_cjk(before) or is_cjk(after) or (default_cjk and not (before.isalpha() or after.isalpha()))
        if not cjk or j - i > MAX_RUN or (j < n and text[j].isalpha() and not is_cjk(text[j])):
            i = j
            continue
        end = j + 1 if take_counter and j < n and _is_han(text[j]) else j
        spoken = convert(text[i:end])
        if spoken is not None and spoken != text[i:end]:
            out.copy(text[pos:i], pos)
            out.replace(spoken, i, end)
            pos = end
        i = end
    out.copy(text[pos:], pos)
    return out.build()


def _thousands(text: str, j: int) -> bool:
    """The comma at j separates thousands: exactly three digits follow it."""
    return text[j + 1:j + 4].isdigit() and len(text[j + 1:j + 4]) == 3 and not text[j + 4:j + 5].isdigit()


def _widths(run: str) -> str:
    return unicodedata.normalize("NFKC", run)


def _sixty(two: str) -> str:
    """Minutes or seconds: `05` → 零五 (as said on a clock), `30` stays for cn2an."""
    return "零" + _DIGITS[int(two[1])] if two[0] == "0" else two


def _time(m: re.Match[str]) -> str:
    spoken = f"{int(m[1])}点" + ("整" if m[2] == "00" and not m[3] else f"{_sixty(m[2])}分")
    return spoken + (f"{_sixty(m[3])}秒" if m[3] else "")


@lru_cache(maxsize=4096)
def zh_number(run: str) -> str | None:
    """One Chinese number run (with its counter) read aloud: `2024-03-15` → 二零二四年三月十五日."""
    import cn2an

    run = _widths(run)
    counter = run[-1] if _is_han(run[-1]) else ""
    body = run[: len(run) - len(counter)]
    if body[:1] in _CURRENCY:
        body, counter = body[1:], _CURRENCY[body[0]] + ("" if counter in ("元", "") else counter)
    if counter in ("月", "日", "号", "点", "时") and body.startswith("0") and len(body) == 2:
        body = body[1:]  # 05月 is 五月, not 零五月
    if m := _DATE.fullmatch(body):
        body = f"{m[1]}年{int(m[2])}月{int(m[3])}日"
    elif m := _TIME.fullmatch(body):
        body = _time(m)
    elif _CODE.fullmatch(body) and counter not in ("年",):
        return "".join(_DIGITS[int(d)] for d in body) + counter
    elif _GROUPED.fullmatch(body):
        body = body.replace(",", "")
    elif m := _RANGE.fullmatch(body):
        body = f"{m[1]}到{m[2]}"
    elif body.isdigit() and len(body) == 4 and counter == "年":
        return "".join(_DIGITS[int(d)] for d in body) + counter
    try:
        return cn2an.transform(body + counter, "an2cn")
    except Exception:  # cn2an refuses some shapes (e.g. 1.2.3): leave them to the engine
        return None


def verbalize_zh(text: str, default: bool) -> Normalized:
    """Chinese readings of the numbers in Chinese context (everywhere when `default`)."""
    return scan(text, default, zh_number, take_counter=True)

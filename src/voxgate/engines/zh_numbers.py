"""Chinese text: the number forms cn2an (inside misaki's G2P) does not read, rewritten into forms it does.

cn2an reads `2024年3月15日`, `12.5%`, `-5`, `1/2` and `5999元` as Chinese. Before it, this turns
`10:30` into `10点30分`, `2024-03-15` into `2024年3月15日`, `1,000,000` into `1000000`, full-width digits
and `％` into ASCII, and digit strings that are codes rather than amounts (11 digits or more, or a
leading 0: phone numbers, ids) into one character per digit (`13800138000` → 一三八零零一三八零零零).
"""

from __future__ import annotations

import re
import unicodedata

_DIGITS = "零一二三四五六七八九"
_WIDE = re.compile(r"[０-９％]|(?<=[0-9０-９])[．：，／－](?=[0-9０-９])")  # punctuation only between digits
_TIME = re.compile(r"(?<![\d:])([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?(?![\d:])")
_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])(?!\d)")
_GROUPED = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d,])")
_PADDED = re.compile(r"(?<![\d.])0(\d)(?=[月日号时点])")  # 05月 is 五月, not 零五月
_CODE = re.compile(r"(?<![\d.])(?:0\d+|\d{11,})(?![\d.%])")


def _time(match: re.Match[str]) -> str:
    hours, minutes, seconds = match.group(1), match.group(2), match.group(3)
    spoken = f"{int(hours)}点" + ("整" if minutes == "00" and not seconds else f"{minutes}分")
    return spoken + (f"{int(seconds)}秒" if seconds else "")


def normalize_numbers(text: str) -> str:
    """Rewrite times, dates, grouped numbers and digit codes so cn2an reads them as Chinese."""
    text = _WIDE.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    text = _DATE.sub(lambda m: f"{m.group(1)}年{int(m.group(2))}月{int(m.group(3))}日", text)
    text = _TIME.sub(_time, text)
    text = _GROUPED.sub(lambda m: m.group().replace(",", ""), text)
    text = _PADDED.sub(r"\1", text)
    return _CODE.sub(lambda m: "".join(_DIGITS[int(d)] for d in m.group()), text)

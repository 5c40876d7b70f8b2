"""Numbers in Japanese text, only where pyopenjtalk (the G2P of the Kokoro Japanese voices) misreads them.

pyopenjtalk already reads numerals with their counters (`3匹` さんびき, `3本` さんぼん, `1人` ひとり,
`20日` はつか, `4月1日` しがつついたち), grouped digits (`1,000円`) and `%`; it reads `10:30` as
じゅう：さんじゅう, leaves `¥` unread and reads ISO dates digit group by digit group. So only those
shapes are rewritten here, into the forms it reads right: `10:30` → `10時30分`, `2024-03-15` →
`2024年3月15日`, `¥1,000` → `1,000円`, `$5` → `5ドル`.
"""

from __future__ import annotations

import re
import unicodedata

from voxgate.text.normalize.offsets import Normalized
from voxgate.text.normalize.zh import scan

_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_DATE = re.compile(r"(\d{4})[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])")
_CURRENCY = {"¥": "円", "￥": "円", "$": "ドル", "€": "ユーロ", "£": "ポンド"}


def ja_number(run: str) -> str | None:
    """One Japanese number run rewritten for pyopenjtalk, or None when it reads it right already."""
    run = unicodedata.normalize("NFKC", run)
    if run[:1] in _CURRENCY:
        return run[1:] + _CURRENCY[run[0]]
    if m := _DATE.fullmatch(run):
        return f"{m[1]}年{int(m[2])}月{int(m[3])}日"
    if m := _TIME.fullmatch(run):
        spoken = f"{int(m[1])}時" + ("" if m[2] == "00" and not m[3] else f"{int(m[2])}分")
        return spoken + (f"{int(m[3])}秒" if m[3] else "")
    return None


def verbalize_ja(text: str, default: bool) -> Normalized:
    """Japanese readings of the number shapes pyopenjtalk misreads (in Japanese context)."""
    return scan(text, default, ja_number, take_counter=False)

"""GPT-SoVITS text cutting: `text_split_method` cut0–cut5 and the pipeline's post-processing, exactly.

Mirrors `GPT_SoVITS/TTS_infer_pack/text_segmentation_method.py` and `TextPreprocessor.pre_seg_text` /
`replace_consecutive_punctuation`, so a client gets the same fragments (and so the same per-fragment
chunks and silences) as from the original. Every function is a single pass or a regex without nested
quantifiers: linear in the length of the text. Where voxgate deviates (a prefix mark the original adds
for its own model, finer pieces for streaming modes 2/3) it happens in `fragments` / `plan`, never in
the upstream-exact functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from voxgate.core.parts import is_ssml
from voxgate.errors import InvalidInput

SPLITS = frozenset("，。？！,.?!~:：—…")  # the original's `splits`: marks the common helper cuts after
PUNCTUATION = frozenset("!?…,.- ")  # the original's `punctuation`: lines made only of these are dropped
CUT5_MARKS = frozenset(",.;?!、，。？！：…")  # marks cut5 cuts after (its `punds`)
COLLAPSIBLE = frozenset("!?…,.-")  # runs of these collapse to their first mark (non-streaming only)
MIN_LINE = 5  # chars: shorter lines are merged into the next one
MAX_LINE = 510  # chars: longer lines are split at punctuation (the original's BERT limit)
CUT1_GROUP = 4  # pieces per line in cut1
CUT2_CHARS = 50  # chars per line in cut2
FIXED_CHARS = 48  # chars: longest piece streaming mode 3 sends the engine
NO_TEXT = "请输入有效文本"  # the original's "please enter valid text"

_WORD = re.compile(r"\w")
_DOT_NOT_IN_NUMBER = re.compile(r"(?<!\d)\.(?!\d)")
_BIG_SPLIT = re.compile("([" + re.escape("".join(sorted(SPLITS))) + "])")


def replace_consecutive_punctuation(text: str) -> str:
    """Collapse each run of `! ? … , . -` to its first mark ("?!." → "?")."""
    out = []
    previous = ""
    for ch in text:
        if not (ch in COLLAPSIBLE and previous in COLLAPSIBLE):
            out.append(ch)
        previous = ch
    return "".join(out)


def split(text: str) -> list[str]:
    """The common helper of cut1/cut2: `……`→`。`, `——`→`，`, final `。` added, cut after every mark."""
    text = text.replace("……", "。").replace("——", "，")
    if not text:
        return []
    if text[-1] not in SPLITS:
        text += "。"
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if ch in SPLITS:
            pieces.append(text[start : i + 1])
            start = i + 1
    return pieces


def _keep(items: Iterable[str], marks: frozenset[str]) -> list[str]:
    """Drop items made only of `marks` (the empty string included, as in the original)."""
    return [item for item in items if not set(item) <= marks]


def cut0(text: str) -> str:
    """No cut; text of only punctuation and spaces gives nothing (the original returns the typo "/n")."""
    return text if not set(text) <= PUNCTUATION else "\n"


def cut1(text: str) -> str:
    """Glue the helper's pieces in fours; the last line takes the remainder (5–8 pieces); ≤ 4: unchanged."""
    text = text.strip("\n")
    pieces = split(text)
    starts = list(range(0, len(pieces), CUT1_GROUP))
    if len(starts) > 1:
        bounds = [*starts[:-1], len(pieces)]
        lines = ["".join(pieces[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    else:
        lines = [text]
    return "\n".join(_keep(lines, PUNCTUATION))


def cut2(text: str) -> str:
    """Gather the helper's pieces until a line exceeds 50 chars; a shorter last line joins the one before."""
    text = text.strip("\n")
    pieces = split(text)
    if len(pieces) < 2:
        return text
    lines: list[str] = []
    buffer: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        buffer.append(piece)
        if total > CUT2_CHARS:
            lines.append("".join(buffer))
            buffer, total = [], 0
    if buffer:
        lines.append("".join(buffer))
    if len(lines) > 1 and len(lines[-1]) < CUT2_CHARS:
        last = lines.pop()
        lines[-1] += last
    return "\n".join(_keep(lines, PUNCTUATION))


def cut3(text: str) -> str:
    """Cut at the Chinese full stop `。` (which is dropped)."""
    text = text.strip("\n")
    return "\n".join(_keep(text.strip("。").split("。"), PUNCTUATION))


def cut4(text: str) -> str:
    """Cut at `.` (dropped) unless it sits between two digits."""
    text = text.strip("\n")
    return "\n".join(_keep(_DOT_NOT_IN_NUMBER.split(text.strip(".")), PUNCTUATION))


def _cut5_items(text: str) -> list[str]:
    """Cut after every cut5 mark, keeping it, except a `.` between two digits; nothing dropped."""
    items, start, last = [], 0, len(text) - 1
    for i, ch in enumerate(text):
        if ch not in CUT5_MARKS:
            continue
        if ch == "." and 0 < i < last and text[i - 1].isdigit() and text[i + 1].isdigit():
            continue
        items.append(text[start : i + 1])
        start = i + 1
    if start < len(text):
        items.append(text[start:])
    return items


def cut5(text: str) -> str:
    """Cut after every `, . ; ? ! 、 ， 。 ？ ！ ： …`, keeping the mark (not a `.` in a number like 3.14)."""
    return "\n".join(_keep(_cut5_items(text.strip("\n")), CUT5_MARKS))


METHODS: dict[str, Callable[[str], str]] = {
    "cut0": cut0, "cut1": cut1, "cut2": cut2, "cut3": cut3, "cut4": cut4, "cut5": cut5,
}


def first_clause(text: str) -> str:
    """Text up to the first mark of SPLITS, stripped (the original's `get_first`)."""
    for i, ch in enumerate(text):
        if ch in SPLITS:
            return text[:i].strip()
    return text.strip()


def merge_short(lines: list[str], threshold: int = MIN_LINE) -> list[str]:
    """Join consecutive lines until each has ≥ threshold chars; a short rest joins the last line."""
    if len(lines) < 2:
        return lines
    result: list[str] = []
    buffer = ""
    for line in lines:
        buffer += line
        if len(buffer) >= threshold:
            result.append(buffer)
            buffer = ""
    if buffer:
        if result:
            result[-1] += buffer
        else:
            result.append(buffer)
    return result


def split_big_text(text: str, max_len: int = MAX_LINE) -> list[str]:
    """Pack a long line into pieces of ≤ max_len chars, cutting only at SPLITS marks.

    A run longer than max_len without any mark stays whole, as in the original. The original can also
    emit empty or mark-only pieces here; they would produce no audio, so they are dropped.
    """
    result, current = [], ""
    for segment in _BIG_SPLIT.split(text):
        if len(current) + len(segment) > max_len:
            result.append(current)
            current = segment
        else:
            current += segment
    if current:
        result.append(current)
    return [piece for piece in result if _WORD.search(piece)]


def _pre_seg(text: str, lang: str, method: str) -> tuple[list[str], bool]:
    """pre_seg_text, plus whether it put a mark in front of the text."""
    text = text.strip("\n")
    if not text:
        return [], False
    prefixed = text[0] not in SPLITS and len(first_clause(text)) < 4
    if prefixed:
        text = ("." if lang == "en" else "。") + text
    lines = METHODS[method](text).split("\n")  # blank lines vanish in the filter below, as "\n\n" did
    if all(line in ("", " ") for line in lines):
        raise InvalidInput(NO_TEXT, param="text")
    lines = merge_short([line for line in lines if line not in ("", " ")])
    out: list[str] = []
    for line in lines:
        if not line.strip() or not _WORD.search(line):
            continue  # blank, or nothing but symbols
        if line[-1] not in SPLITS:
            line += "." if lang == "en" else "。"
        out.extend(split_big_text(line) if len(line) > MAX_LINE else [line])
    return out, prefixed


def pre_seg_text(text: str, lang: str, method: str) -> list[str]:
    """The original's fragments for `text` in language `lang` (lower case) cut by `method`."""
    return _pre_seg(text, lang, method)[0]


def fragments(text: str, lang: str, method: str, *, streaming: bool) -> list[str]:
    """The fragments voxgate speaks: the original's, minus the mark it puts in front of a short first clause.

    That mark helps GPT-SoVITS's model with short starts; espeak would read a leading "." as "dot".
    Raises InvalidInput("请输入有效文本") when nothing speakable is left.
    """
    if not streaming:
        text = replace_consecutive_punctuation(text)
    pieces, prefixed = _pre_seg(text, lang, method)
    mark = "." if lang == "en" else "。"
    if prefixed and pieces and pieces[0].startswith(mark):
        pieces[0] = pieces[0][1:]
    if not pieces:
        raise InvalidInput(NO_TEXT, param="text")
    return pieces


def clauses(fragment: str, max_chars: int | None = None) -> list[str]:
    """Cut one fragment finer for streaming: at clause marks, then (max_chars) at spaces; joins back exactly."""
    pieces: list[str] = []
    for item in _cut5_items(fragment):
        if pieces and set(item) <= CUT5_MARKS | {" "}:
            pieces[-1] += item  # a lone mark stays with the words before it
        else:
            pieces.append(item)
    pieces = merge_short(pieces)
    if max_chars is None:
        return pieces
    return [part for piece in pieces for part in _fixed(piece, max_chars)]


def _fixed(text: str, max_chars: int) -> list[str]:
    """Cut text into pieces of ≤ max_chars, at the last space when there is one (CJK: at the limit)."""
    out, start = [], 0
    while len(text) - start > max_chars:
        space = text.rfind(" ", start + 1, start + max_chars + 1)
        end = space if space > start else start + max_chars
        out.append(text[start:end])
        start = end
    out.append(text[start:])
    return out


@dataclass(frozen=True)
class Plan:
    """What the engine is given for one request, and which fragment each piece belongs to."""

    segments: tuple[str, ...]  # pieces in speaking order (SynthesisRequest.segments)
    fragment_of: tuple[int, ...]  # fragment index of each piece; silence follows each fragment

    @property
    def fragments(self) -> int:
        """How many fragments the text was cut into."""
        return self.fragment_of[-1] + 1 if self.fragment_of else 0


def plan(text: str, lang: str, method: str, mode: int) -> Plan:
    """Pieces for streaming mode 0–3: fragments for 0/1, clauses for 2, fixed-size clauses for 3."""
    if is_ssml(text):  # SSML is one fragment, cut by the core (docs/ssml.md)
        return Plan((text,), (0,))
    frags = fragments(text, lang, method, streaming=mode != 0)
    if mode < 2:
        return Plan(tuple(frags), tuple(range(len(frags))))
    segments: list[str] = []
    owner: list[int] = []
    for index, fragment in enumerate(frags):
        for piece in clauses(fragment, FIXED_CHARS if mode == 3 else None):
            segments.append(piece)
            owner.append(index)
    return Plan(tuple(segments), tuple(owner))

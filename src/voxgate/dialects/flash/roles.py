"""`<role:NAME,pitch:P,speed:S>` scripts of /multi_speak, parsed into lines (no voice lookup here)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from voxgate.dialects.flash.protocol import LEVELS
from voxgate.errors import InvalidInput

# A tag: the name, then any number of ",key:value" attributes. Every repetition starts at a comma the
# previous one cannot consume, and no part may contain "<", so a failed attempt never runs past the next
# tag: matching stays linear on hostile text.
TAG = re.compile(r"<role:([^,<>]+)((?:,[^,<>]*)*)>")
ATTRIBUTES = ("pitch", "speed")


@dataclass(frozen=True)
class Line:
    """One stretch of the script in one voice."""

    role: str | None  # None: text before the first tag, spoken in the default voice
    text: str
    pitch: str | None = None  # a level name, or None (unchanged)
    speed: str | None = None


class ScriptError(InvalidInput):
    """A /multi_speak script that cannot be spoken (bad tag attributes, nothing to say)."""


def _attributes(tag: str, raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in raw.split(",")[1:]:
        key, sep, value = part.partition(":")
        key, value = key.strip().lower(), value.strip().lower()
        if not sep or key not in ATTRIBUTES:
            raise ScriptError(f"unknown attribute {part.strip()!r} in {tag}; use pitch:LEVEL and speed:LEVEL",
                              param="text")
        if key in found:
            raise ScriptError(f"{key} given twice in {tag}", param="text")
        if value not in LEVELS:
            raise ScriptError(f"invalid {key} {value!r} in {tag}; use one of {', '.join(LEVELS)}", param="text")
        found[key] = value
    return found


def parse(text: str) -> list[Line]:
    """Split a script into lines in order; blank or punctuation-only stretches are dropped."""
    lines: list[Line] = []
    position = 0
    current: tuple[str | None, dict[str, str]] = (None, {})
    for match in TAG.finditer(text):
        _append(lines, current, text[position:match.start()])
        name = match.group(1).strip()
        if not name:
            raise ScriptError(f"empty role name in {match.group(0)}", param="text")
        current = (name, _attributes(match.group(0), match.group(2)))
        position = match.end()
    _append(lines, current, text[position:])
    if not lines:
        raise ScriptError(f"The multi-role text parsing result is empty. Please check the input text format: "
                          f"{text[:200]}", param="text")
    return lines


def _append(lines: list[Line], current: tuple[str | None, dict[str, str]], said: str) -> None:
    said = said.strip()
    if any(c.isalnum() for c in said):  # punctuation-only stretches have nothing to speak
        role, attributes = current
        lines.append(Line(role, said, attributes.get("pitch"), attributes.get("speed")))

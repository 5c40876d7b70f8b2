"""Several parts spoken in order as one request: a narrator and a character, the roles of a script, SSML.

A request with `parts` takes one admission slot however many parts it has, and its stream plays them in
order at one rate. Each part is checked as a request of its own would be (its text against the input
limit, its numbers, its voice and language); what a part leaves as None is the request's.

SSML input (text/ssml.py) is read into a `Script`: its runs of one voice and prosody become parts, its
breaks become pauses before them, so `<voice>` and `<prosody>` go through the same one-slot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from voxgate.text import ssml
from voxgate.text.normalize import is_speakable

if TYPE_CHECKING:
    from voxgate.core.service import Limits
    from voxgate.core.types import SynthesisRequest


@dataclass(frozen=True)
class Part:
    """One piece of a request, in its own voice and manner."""

    text: str
    voice: str | None = None  # voice id, alias or name; None: the request's voice
    language: str | None = None  # None: the request's language ("auto" detects by script)
    speed: float | None = None  # None: the request's
    pitch: float | None = None  # semitones; None: the request's
    volume: float | None = None  # None: the request's


@dataclass(frozen=True)
class Script:
    """SSML read as parts: `pauses[i]` seconds of silence come before `parts[i]`, `end_pause` after all."""

    parts: tuple[Part, ...]
    pauses: tuple[float, ...]
    end_pause: float


def from_ssml(request: SynthesisRequest, text: str, limits: Limits) -> Script:
    """The parts of an SSML document with the request's prosody applied (rates multiply, pitches add, volumes
    multiply; each kept within the service's bounds); raises InvalidInput for bad markup."""
    parts: list[Part] = []
    pauses: list[float] = []
    pause = 0.0
    for run in ssml.parse(text):
        if run.pause:
            pause += run.pause
            continue
        if not is_speakable(run.text):
            continue
        speed = min(max(request.speed * run.rate, limits.min_speed), limits.max_speed)
        pitch = min(max(request.pitch + run.pitch, -12.0), 12.0)
        parts.append(Part(run.text, run.voice or request.voice, None, speed, pitch, request.volume * run.volume))
        pauses.append(pause)
        pause = 0.0
    return Script(tuple(parts), tuple(pauses), pause)


is_ssml = ssml.is_ssml  # for dialects that must not filter or cut SSML input (they import the core only)

__all__ = ["Part", "Script", "from_ssml", "is_ssml"]

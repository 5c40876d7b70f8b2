"""SSML input turned into the segments of one stream: each with its voice and prosody, plus the pauses.

One request, one admission slot, several voices: `<voice name>` switches the voice for its text, which
is routed (by language) like any text of that voice. When the core gains `SynthesisRequest.parts` (a list
of parts spoken in order in one slot), `ssml.parse` can feed it directly and this module goes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from voxgate.core.types import SynthesisRequest
from voxgate.engines.base import VoiceInfo
from voxgate.text import ssml
from voxgate.text.normalize import normalize
from voxgate.text.segment import SegmentPolicy, split_text

_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")

if TYPE_CHECKING:
    from voxgate.core.service import SynthesisService


@dataclass(frozen=True)
class Style:
    """A part's prosody, relative to the request's own."""

    rate: float = 1.0  # multiplies the request's speed
    pitch: float = 0.0  # semitones added to the request's pitch
    volume: float = 1.0  # multiplies the request's volume


@dataclass
class Plan:
    """What a stream speaks: segments in order, the style of the ones that have one, and the pauses."""

    segments: list[tuple[int, str, VoiceInfo]]
    styles: dict[int, Style]  # segment index → its style (absent: the request's prosody)
    pauses: dict[int, float]  # segment index → seconds of silence before it; len(segments) = at the end
    joined: set[int]  # segments whose trailing silence is cut to a short gap (the next one's leading too)


def plan_ssml(service: SynthesisService, request: SynthesisRequest, text: str,
              policy: SegmentPolicy | None) -> Plan:
    """Parse SSML and cut each part into segments routed to the voice that speaks them."""
    plan = Plan([], {}, {}, set())
    pause = 0.0
    for part in ssml.parse(text):
        if part.pause:
            pause += part.pause
            continue
        style = Style(part.rate, part.pitch, part.volume)
        asked = replace(request, voice=part.voice) if part.voice else request
        voice = service.voices.resolve(asked.voice)
        first = True
        for span in service.route(asked, service.lexicon.rewrite(normalize(part.text), voice.language, voice.id)):
            for piece in split_text(span.text, policy) if policy else [span.text]:
                index = len(plan.segments)
                # Where a part starts mid-sentence (at a break, or where prosody or voice change), the
                # engine's end-of-sentence silence is cut to a short gap, so a break adds its own time to
                # what the text would have without it, and a prosody change makes no pause; at the end of a
                # sentence the engine's pause stays, and a break adds to it.
                previous = plan.segments[-1][1].rstrip() if plan.segments else ""
                if (first or pause) and (not previous or not previous.endswith(_SENTENCE_END)):
                    plan.joined.add(index - 1)
                if pause:
                    plan.pauses[index], pause = pause, 0.0
                first = False
                if style != Style():
                    plan.styles[index] = style
                plan.segments.append((index, piece, span.voice))
    if pause:
        plan.pauses[len(plan.segments)] = pause
    return plan


is_ssml = ssml.is_ssml  # for dialects that must not filter or cut SSML input (they import the core only)

__all__ = ["Plan", "Style", "is_ssml", "plan_ssml"]

"""Several parts spoken in order as one request: a narrator and a character, the roles of a script.

A request with `parts` takes one admission slot however many parts it has, and its stream plays them in
order at one rate. Each part is checked as a request of its own would be (its text against the input
limit, its numbers, its voice and language); what a part leaves as None is the request's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One piece of a request, in its own voice and manner."""

    text: str
    voice: str | None = None  # voice id, alias or name; None: the request's voice
    language: str | None = None  # None: the request's language ("auto" detects by script)
    speed: float | None = None  # None: the request's
    pitch: float | None = None  # semitones; None: the request's
    volume: float | None = None  # None: the request's


__all__ = ["Part"]

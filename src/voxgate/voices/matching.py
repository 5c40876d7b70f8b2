"""Choosing the installed voice nearest to a reference, and what to store so the choice is made once.

This is voice matching, not cloning: an installed voice chosen by speaker embedding, then moved
toward the reference in pitch, pitch range, formants and spectral envelope. A real zero-shot cloning
engine takes over registered voices instead (see VoiceRegistry) without any dialect changing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxgate.audio.voiceshift import Shift, VoiceProfile, plan_shift
from voxgate.voices.embedding import cosine

# Read by every candidate base voice once. Pitch range and envelope depend on what is said, so the
# text is long (~25 s of speech) and phonetically varied (Harvard sentences) for stable measurements.
PROFILE_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch. "
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. "
    "Four hours of steady work faced us. A large size in stockings is hard to sell. "
    "The boy was there when the sun rose. A rod is used to catch pink salmon. "
    "The source of the huge river is the clear spring. Kick the ball straight and follow through. "
    "Help the woman get back to her feet. A pot of tea helps to pass the evening."
)


@dataclass(frozen=True)
class Candidate:
    """An installed voice measured for matching."""

    voice_id: str
    language: str  # BCP-47-ish tag
    embedding: np.ndarray  # speaker embedding, L2-normalised
    profile: VoiceProfile

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, to cache in the store."""
        return {"voice_id": self.voice_id, "language": self.language,
                "embedding": [round(float(x), 6) for x in self.embedding], "profile": self.profile.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        """Back from the cached form."""
        return cls(str(data["voice_id"]), str(data["language"]), np.asarray(data["embedding"], np.float32),
                   VoiceProfile.from_dict(data["profile"]))


@dataclass(frozen=True)
class Match:
    """The outcome of matching a reference: which voice speaks it, and how it is moved."""

    base_voice: str
    similarity: float  # cosine of speaker embeddings, reference vs unmodified base voice
    shift: Shift
    strength: float  # 0 = the base voice as it is, 1 = the full measured move


def same_language(a: str | None, b: str | None) -> bool:
    """True when both tags name the same primary language ("en-US" and "en" agree)."""
    if not a or not b:
        return False
    return a.replace("_", "-").split("-")[0].lower() == b.replace("_", "-").split("-")[0].lower()


def choose(
    embedding: np.ndarray, profile: VoiceProfile, candidates: Iterable[Candidate],
    language: str | None, strength: float,
) -> Match:
    """The candidate nearest by embedding, preferring the reference's language when one is given."""
    pool = list(candidates)
    if not pool:
        raise ValueError("no installed voice to match against")
    speaking = [c for c in pool if same_language(c.language, language)]
    best = max(speaking or pool, key=lambda c: cosine(embedding, c.embedding))
    return Match(best.voice_id, cosine(embedding, best.embedding), plan_shift(best.profile, profile, strength),
                 strength)


def primary_language(tag: str | None) -> str:
    """The primary subtag of a tag, lower case ("" for none)."""
    return (tag or "").replace("_", "-").split("-")[0].lower()


def choose_variants(
    embedding: np.ndarray, profile: VoiceProfile, candidates: Iterable[Candidate], primary: Match,
    strength: float,
) -> dict[str, Match]:
    """Per language of the candidates, the nearest candidate that natively speaks it, when that is not
    the primary base: the reference moved onto a native speaker (English spans of a Chinese request are
    read by an English base shifted toward the same reference, not by a Japanese one)."""
    by_language: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_language.setdefault(primary_language(candidate.language), []).append(candidate)
    variants = {}
    for language, pool in sorted(by_language.items()):
        best = max(pool, key=lambda c: cosine(embedding, c.embedding))
        if best.voice_id != primary.base_voice:
            variants[language] = Match(best.voice_id, cosine(embedding, best.embedding),
                                       plan_shift(best.profile, profile, strength), strength)
    return variants


def _match_dict(match: Match) -> dict[str, Any]:
    return {"base_voice": match.base_voice, "similarity": round(match.similarity, 4),
            "shift": match.shift.to_dict(), "strength": match.strength}


def features(embedding: np.ndarray, profile: VoiceProfile, match: Match,
             variants: Mapping[str, Match] | None = None, bases: Iterable[str] = ()) -> dict[str, Any]:
    """What a reference voice stores: its own measurements, the match made from them, the per-language
    variants, and which base voices were measured when it was matched (so a later, fuller set can
    trigger a new match)."""
    return {
        "embedding": [round(float(x), 6) for x in embedding],
        "profile": profile.to_dict(),
        **_match_dict(match),
        "variants": {lang: _match_dict(m) for lang, m in (variants or {}).items()},
        "bases": sorted(bases),
    }

"""Voice names of peer servers that OpenAI-speech clients send: Kokoro-FastAPI's names and blends, and
Flash-TTS's built-in roles. Both tables come from the settings (the dialect's config), never from here."""

from __future__ import annotations

import re
from collections.abc import Mapping

from voxgate.core.context import Context
from voxgate.errors import VoiceNotFound

KOKORO_PREFIXES = ("kokoro:", "kokoro-zh:")  # Kokoro styles reading Han as Japanese, as Mandarin: both blend
# One term of a Kokoro-FastAPI blend: a name, then an optional weight in parentheses (`af_bella(2)`).
_TERM = re.compile(r"([A-Za-z0-9_]+?)(?:\((\d+(?:\.\d*)?|\.\d+)\))?")
MAX_TERMS = 16  # terms in one blend


def _terms(spec: str) -> list[tuple[str, float, int]] | None:
    """`af_bella(2)+af_sky-am_adam` → [(name, weight, sign)], or None if it is no blend of plain names."""
    cleaned = spec.replace(" ", "")
    if not cleaned or cleaned[0] in "+-" or cleaned[-1] in "+-" or re.search(r"[+-]{2,}", cleaned):
        return None
    pieces = re.split(r"([+-])", cleaned)
    if len(pieces) > 2 * MAX_TERMS:
        return None
    terms, sign = [], 1
    for index, piece in enumerate(pieces):
        if index % 2:
            sign = 1 if piece == "+" else -1
            continue
        match = _TERM.fullmatch(piece)
        if match is None:
            return None
        terms.append((match.group(1).lower(), float(match.group(2) or 1.0), sign))
    return terms


def kokoro_voice(table: Mapping[str, str], spec: str) -> str | None:
    """The voice spec a Kokoro-FastAPI voice name or blend stands for; None if it names none of `table`
    (lower-case Kokoro-FastAPI name → voice id or spec).

    Blends whose voices all map to Kokoro styles of one reading (`kokoro:` or `kokoro-zh:`) become a Kokoro
    blend with the same weights; otherwise the voice with the largest total weight speaks (the engines cannot
    mix). Subtracted voices (`a-b`) are dropped: no engine here can subtract a style.
    """
    terms = _terms(spec) if table else None
    if not terms or not any(name in table for name, _, _ in terms):
        return None
    unknown = [name for name, _, _ in terms if name not in table]
    if unknown:
        raise VoiceNotFound(f"voice {unknown[0]!r} in {spec!r} is not a Kokoro voice this server maps; known: "
                            f"{', '.join(sorted(table)[:20])}, …", param="voice")
    weights: dict[str, float] = {}
    for name, weight, sign in terms:
        if sign > 0 and weight > 0:
            target = table[name]
            weights[target] = weights.get(target, 0.0) + weight
    if not weights:
        raise VoiceNotFound(f"voice blend {spec!r} has no voice with a positive weight", param="voice")
    for prefix in KOKORO_PREFIXES:
        if len(weights) > 1 and all(t.startswith(prefix) for t in weights):
            return prefix + "+".join(f"{t.removeprefix(prefix)}*{w:g}" for t, w in weights.items())
    return max(weights.items(), key=lambda item: item[1])[0]  # the first of equals wins (dicts keep order)


def flash_role(roles: Mapping[str, str], name: str) -> str | None:
    """The voice a Flash-TTS built-in role (`female`, `male`) is mapped to in `roles`; None for any other name."""
    return roles.get(name.strip().lower())


def peer_voice(ctx: Context, kokoro: Mapping[str, str], roles: Mapping[str, str], name: str) -> str | None:
    """The voice id a peer server's voice name stands for here, or None if it is no such name."""
    spec = flash_role(roles, name) or kokoro_voice(kokoro, name)
    if spec is None:
        return None
    try:
        return ctx.voices.resolve(spec).id
    except VoiceNotFound:
        raise VoiceNotFound(f"voice {name!r} stands for {spec!r}, which is not installed (see the alias "
                            f"settings kokoro_voice_aliases / flash_builtin_roles)", param="voice") from None

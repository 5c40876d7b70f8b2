"""Regex entries of the lexicon: ordered (pattern, replacement) pairs, as openedai-speech's
`pre_process_map.yaml` holds them, applied to a request's text before the word entries.

A user's pattern must not be able to hang the server: patterns run on the `regex` module with a time
limit per substitution (RULE_TIMEOUT), and a pattern that needs more than that on an adversarial probe
when it is added (nested quantifiers such as `(a+)+$`) is refused then.
"""

from __future__ import annotations

import logging
import re as stdlib_re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import regex

from voxgate.errors import InvalidInput

if TYPE_CHECKING:
    from voxgate.text.lexicon import Entry

_LOG = logging.getLogger(__name__)
MAX_PATTERN_CHARS = 200
RULE_TIMEOUT = 0.05  # seconds one substitution may take on one request's text
_PROBES = ("a" * 4000 + "!", "0" * 4000 + "x", " " * 4000 + "x", ("ab" * 2000) + "\n", "." * 4000 + "!")
_GROUP_REF = stdlib_re.compile(r"\\(\d{1,2})|\\g<([^>]{1,32})>")


class RuleTimeout(InvalidInput):
    """A regex entry took too long on a request's text."""


def parse_rule(data: Mapping[str, Any]) -> Entry:
    """A regex entry from JSON, CSV or YAML: `word` the pattern, `respelling` the replacement ('' allowed)."""
    from voxgate.text.lexicon import Entry

    pattern, replacement = data.get("word"), data.get("respelling")
    if replacement is None:
        replacement = ""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidInput(f"a regex entry's 'word' must be a pattern of 1–{MAX_PATTERN_CHARS} characters",
                           param="word")
    if not isinstance(replacement, str) or len(replacement) > MAX_PATTERN_CHARS:
        raise InvalidInput(f"a regex entry's 'respelling' must be text up to {MAX_PATTERN_CHARS} characters",
                           param="respelling")
    if data.get("phonemes"):
        raise InvalidInput("a regex entry takes a 'respelling' (its replacement), not 'phonemes'", param="phonemes")
    compiled = compile_rule(pattern)
    for number, name in _GROUP_REF.findall(replacement):
        missing = int(number) > compiled.groups if number else not name.isdigit() and name not in compiled.groupindex
        if missing:
            raise InvalidInput(f"replacement {replacement!r} refers to a group {pattern!r} does not have",
                               param="respelling")
    for field in ("language", "voice"):
        if data.get(field) is not None and not isinstance(data.get(field), str):
            raise InvalidInput(f"'{field}' must be a string", param=field)
    return Entry(pattern, None, replacement, data.get("language") or None, data.get("voice") or None, regex=True)


def compile_rule(pattern: str) -> Any:
    """Compile a user's pattern, refusing bad syntax and patterns that backtrack catastrophically."""
    try:
        compiled = regex.compile(pattern, regex.VERSION0)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"regex {pattern!r} is not valid: {exc}", param="word") from None
    own = sorted({c for c in pattern if c.isalnum()})[:6]  # runs of the pattern's own letters, too
    for probe in (*_PROBES, *(c * 3000 + "\x00" for c in own)):
        try:
            compiled.sub("", probe, timeout=RULE_TIMEOUT)
        except TimeoutError:
            raise InvalidInput(f"regex {pattern!r} takes too long on some text (nested repetition such as "
                               "(a+)+ backtracks without end); simplify it", param="word") from None
    return compiled


class Rules:
    """The regex entries, in order, compiled once."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._rules = []
        for entry in entries:
            try:
                self._rules.append((entry, regex.compile(entry.word, regex.VERSION0)))
            except regex.error as exc:  # stored by an older version: skipped, loudly
                _LOG.warning("lexicon regex %r is not valid and is skipped: %s", entry.word, exc)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def apply(self, text: str, language: str | None, voice: str | None) -> str:
        """Every rule for this language and voice, in order; RuleTimeout when one runs too long."""
        from voxgate.text.lexicon import primary

        for entry, compiled in self._rules:
            if entry.voice is not None and entry.voice != voice:
                continue
            if entry.language is not None and (language is None or primary(entry.language) != primary(language)):
                continue
            try:
                text = compiled.sub(entry.respelling or "", text, timeout=RULE_TIMEOUT)
            except TimeoutError:
                raise RuleTimeout(f"lexicon regex {entry.word!r} took too long on this text", param="text") from None
        return text


__all__ = ["RULE_TIMEOUT", "RuleTimeout", "Rules", "compile_rule", "parse_rule"]

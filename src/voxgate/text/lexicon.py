"""The pronunciation lexicon: words a user taught the server to say, applied to every dialect and engine.

An entry maps a word (or a few words) to IPA phonemes, to a respelling, or to both, for every language
or one (`en` covers `en-US` and `en-GB`; `en-GB` only British voices), for every voice or one.

Matching rules (docs/lexicon.md):
- Whole words only. A word is a run of letters, digits and marks, with `'` `’` `-` joining two such
  runs (`don't`, `e-mail`); an entry of several words matches them separated by any whitespace.
  In text without spaces (Han, kana, Hangul…) an entry written in that script matches anywhere.
- Case: an entry written all in lower case matches any casing (`voxgate` matches `Voxgate`, `VOXGATE`);
  an entry with a capital letter matches that casing only (`US` does not match `us`).
- Precedence: the longest match first; among entries for the same words, one for the voice beats one for
  the language, which beats one for every language; an exact-case entry beats a lower-case one.

Inline overrides in the text, misaki style, beat the lexicon: `[voxgate](/vˈɑksɡeɪt/)`.

How an entry is applied depends on the engine of the voice that speaks the word: engines that take
phonemes get the IPA (as a `[[…]]` block, see engines/base.py); the others get the respelling; an entry
with phonemes only, for an engine that cannot take them, is a clear error, never silently dropped.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from voxgate.errors import InvalidInput

MAX_WORD_CHARS = 100
MAX_PHONEME_CHARS = 200
MAX_WORDS = 4  # words in one entry ("New York City")
MAX_ENTRIES = 20_000
RELOAD_CHECK = 1.0  # seconds between checks for changes another process made to the stored lexicon

# A word: letters/digits/marks, joined by single apostrophes or hyphens. No nested quantifier can
# backtrack: the joiner is not a word character, so each position is tried once.
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
# An inline override, misaki style: [word](/phonemes/). Bounded lengths, no nesting: linear.
INLINE = re.compile(r"\[([^\[\]\n]{1,100})\]\(/([^/()\[\]\n]{1,200})/\)")
# What IPA may hold: Latin letters, IPA and phonetic extensions, modifier letters, combining marks, a few
# Greek and Latin-1 letters IPA uses, stress and length marks, spaces between words, and '.' for syllables.
_IPA_CHARS = re.compile(
    "[a-z\u00e6\u00e7\u00f0\u00f8\u0153\u014b\u0250-\u02af\u02b0-\u02ff\u0300-\u036f\u03b2\u03b8\u03c7"
    "\u1d00-\u1dbf\uab67 .'\u203f-]+"
)
_NO_SPACE_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")


def _no_space_script(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_NO_SPACE_SCRIPTS)


def primary(tag: str) -> str:
    """The primary subtag of a language tag, lower case."""
    return tag.replace("_", "-").split("-")[0].lower()


def check_phonemes(phonemes: str, word: str = "") -> str:
    """IPA phonemes, tidied (NFC, single spaces); raises InvalidInput for anything that is not IPA."""
    text = " ".join(unicodedata.normalize("NFC", phonemes).replace("/", " ").split())
    if not text or len(text) > MAX_PHONEME_CHARS:
        raise InvalidInput(f"phonemes for {word!r} must be 1–{MAX_PHONEME_CHARS} characters of IPA",
                           param="phonemes")
    if not _IPA_CHARS.fullmatch(text):
        bad = next(c for c in text if not _IPA_CHARS.fullmatch(c))
        raise InvalidInput(f"phonemes for {word!r} hold {bad!r} (U+{ord(bad):04X}), which is not IPA; "
                           "write IPA such as /vˈɑksɡeɪt/", param="phonemes")
    return text.replace("'", "ˈ")  # an ASCII apostrophe for primary stress, as some lexicons write it


@dataclass(frozen=True)
class Entry:
    """One lexicon entry."""

    word: str  # as written; lower case = any casing
    phonemes: str | None = None  # IPA, for engines that take phonemes
    respelling: str | None = None  # plain text read instead of the word, for every engine
    language: str | None = None  # BCP-47-ish tag; None = every language
    voice: str | None = None  # voice id; None = every voice
    regex: bool = False  # `word` is a regular expression and `respelling` its replacement (text/lexicon_rules.py)

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies an entry: a new one with the same key replaces it."""
        return (("re:" if self.regex else "") + self.word, (self.language or "").lower(), self.voice or "")

    def to_dict(self) -> dict[str, Any]:
        """The wire and export form: absent fields left out."""
        data = {"word": self.word, "phonemes": self.phonemes, "respelling": self.respelling,
                "language": self.language, "voice": self.voice, "regex": self.regex or None}
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Entry:
        """Validate one entry from JSON, CSV or the CLI; raises InvalidInput naming the field."""
        if not isinstance(data, Mapping):
            raise InvalidInput("each entry must be an object with 'word' and 'phonemes' or 'respelling'",
                               param="entries")
        unknown = set(data) - {"word", "phonemes", "respelling", "language", "voice", "regex"}
        if unknown:
            raise InvalidInput(f"unknown entry field {sorted(unknown)[0]!r}", param=sorted(unknown)[0])
        if data.get("regex") not in (None, False, True):
            raise InvalidInput("'regex' must be true or false", param="regex")
        if data.get("regex"):
            from voxgate.text.lexicon_rules import parse_rule

            return parse_rule(data)
        fields: dict[str, str | None] = {}
        for name in ("word", "phonemes", "respelling", "language", "voice"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"'{name}' must be a string", param=name)
            fields[name] = value.strip() if value and value.strip() else None
        word = " ".join(unicodedata.normalize("NFC", fields["word"] or "").split())
        if not word or len(word) > MAX_WORD_CHARS:
            raise InvalidInput(f"'word' must be 1–{MAX_WORD_CHARS} characters", param="word")
        if len(_words(word)) > MAX_WORDS or "".join(_words(word)).replace(" ", "") != _squash(word):
            raise InvalidInput(f"'word' {word!r} must be 1–{MAX_WORDS} words of letters or digits "
                               "(apostrophes and hyphens may join them)", param="word")
        phonemes = check_phonemes(fields["phonemes"], word) if fields["phonemes"] else None
        respelling = fields["respelling"]
        if respelling is not None:
            respelling = " ".join(unicodedata.normalize("NFC", respelling).split())
            if len(respelling) > MAX_PHONEME_CHARS or INLINE.search(respelling) or "[[" in respelling:
                raise InvalidInput(f"'respelling' for {word!r} must be plain text up to {MAX_PHONEME_CHARS} "
                                   "characters", param="respelling")
        if phonemes is None and respelling is None:
            raise InvalidInput(f"entry {word!r} needs 'phonemes' (IPA) or 'respelling'", param="phonemes")
        language = fields["language"]
        if language is not None and not re.fullmatch(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}", language):
            raise InvalidInput(f"'language' {language!r} is not a language tag such as en or en-GB",
                               param="language")
        return cls(word, phonemes, respelling, language.replace("_", "-") if language else None, fields["voice"])


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _squash(text: str) -> str:
    return "".join(text.split())


@dataclass(frozen=True)
class Reading:
    """What a matched word becomes for the voice that speaks it."""

    phonemes: str | None
    respelling: str | None
    word: str  # as written in the text


class PhonemesNotAccepted(InvalidInput):
    """A word has phonemes only, and the voice's engine cannot take phonemes."""


def render(reading: Reading, engine: str, takes_phonemes: bool) -> str:
    """The text an engine gets for one matched word: `[[ipa]]`, the respelling, or a clear error."""
    if takes_phonemes and reading.phonemes:
        return f"[[{reading.phonemes}]]"
    if reading.respelling:
        return reading.respelling
    raise PhonemesNotAccepted(
        f"{reading.word!r} has IPA phonemes only, and the {engine} engine cannot take phonemes "
        "(piper, kokoro and hibari voices can); add a respelling for it or choose such a voice", param="text")


class Lexicon:
    """Every entry in memory, indexed for matching; persisted through a store when one is given."""

    def __init__(self, store: Any = None) -> None:
        self._store = store  # voices.lexicon_store.LexiconStore, or None (in memory only)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], Entry] = {}
        self._index: dict[str, list[Entry]] = {}  # folded words -> entries
        self._longest = 1  # words in the longest entry
        self._unspaced: dict[str, list[str]] = {}
        self.rules: Any = None  # lexicon_rules.Rules: the regex entries, in the order they were added
        self._checked = time.monotonic()
        if store is not None:
            self._replace_all(Entry(**row) for row in store.load())

    def _refresh(self) -> None:
        """Reload from the store when another process changed it (checked at most every RELOAD_CHECK s)."""
        now = time.monotonic()
        if self._store is None or now - self._checked < RELOAD_CHECK:
            return
        self._checked = now
        if self._store.changed():
            with self._lock:
                self._replace_all(Entry(**row) for row in self._store.load())

    def _replace_all(self, entries: Iterable[Entry]) -> None:
        self._entries = {e.key: e for e in entries}
        self._reindex()

    def _reindex(self) -> None:
        from voxgate.text.lexicon_rules import Rules

        index: dict[str, list[Entry]] = {}
        longest = 1
        self.rules = Rules(e for e in self._entries.values() if e.regex)
        for entry in self._entries.values():
            if entry.regex:
                continue
            words = _words(entry.word)
            index.setdefault(_fold(" ".join(words)), []).append(entry)
            longest = max(longest, len(words))
        self._index, self._longest = index, longest
        # entries in scripts without spaces, longest first, for matching inside runs (kept with the index)
        unspaced: dict[str, list[str]] = {}
        for key in sorted((k for k in index if k and _no_space_script(k[0])), key=len, reverse=True):
            unspaced.setdefault(key[0], []).append(key)
        self._unspaced = unspaced  # first character -> keys, longest first

    def list(self, language: str | None = None, voice: str | None = None) -> list[Entry]:
        """Entries, sorted by word; optionally only those of one language tag or voice."""
        self._refresh()
        with self._lock:
            entries = list(self._entries.values())
        if language is not None:
            entries = [e for e in entries if (e.language or "").lower() == language.lower()]
        if voice is not None:
            entries = [e for e in entries if e.voice == voice]
        words = sorted((e for e in entries if not e.regex),
                       key=lambda e: (e.word.casefold(), e.word, e.language or "", e.voice or ""))
        return words + [e for e in entries if e.regex]  # rules in the order they apply

    def put(self, entries: Iterable[Entry]) -> list[Entry]:
        """Add or replace entries (same word, language and voice), all at once or none."""
        new = list(entries)
        with self._lock:
            if len({*self._entries, *(e.key for e in new)}) > MAX_ENTRIES:
                raise InvalidInput(f"the lexicon holds at most {MAX_ENTRIES} entries", param="entries")
            if self._store is not None:
                self._store.put(new)
            for entry in new:
                self._entries.pop(entry.key, None)  # a replaced rule moves to the end, as in the store
                self._entries[entry.key] = entry
            self._reindex()
        return new

    def empty(self) -> bool:
        """True when there is no entry (word or regex rule) at all."""
        self._refresh()
        return not self._entries

    def has(self, word: str, language: str | None = None, voice: str | None = None, regex: bool = False) -> bool:
        """True when there is an entry for exactly this word (or pattern), language and voice."""
        return _key(word, language, voice, regex) in self._entries

    def rewrite(self, text: str, language: str | None, voice: str | None) -> str:
        """The text after the regex entries (openedai-speech style rules), bounded in time."""
        self._refresh()
        rules = self.rules
        return rules.apply(text, language, voice) if rules else text

    def delete(self, word: str, language: str | None = None, voice: str | None = None,
               every: bool = False, regex: bool = False) -> int:
        """Remove the entry for `word` (and language and voice); with `every`, all its entries. Returns how many."""
        key = _key(word, language, voice, regex)
        with self._lock:
            if every:
                keys = [k for k in self._entries if k[0] == key[0]]
            else:
                keys = [key] if key in self._entries else []
            if keys and self._store is not None:
                self._store.delete(keys)
            for key in keys:
                del self._entries[key]
            self._reindex()
        return len(keys)

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        with self._lock:
            keys = list(self._entries)
            if keys and self._store is not None:
                self._store.delete(keys)
            self._entries = {}
            self._reindex()
        return len(keys)

    def lookup(self, words: str, language: str | None, voice: str | None) -> Entry | None:
        """The best entry for `words` as written in the text (see the module's precedence rules)."""
        candidates = self._index.get(_fold(words))
        if not candidates:
            return None
        best: tuple[bool, int, bool] | None = None
        found = None
        for entry in candidates:
            exact = entry.word == words
            if entry.word != entry.word.lower() and not exact:
                continue  # an entry with capitals matches that casing only
            if entry.voice is not None and entry.voice != voice:
                continue
            specific = 0
            if entry.language is not None:
                wanted = entry.language.lower()
                if language is None or primary(wanted) != primary(language):
                    continue
                if "-" in wanted and wanted != language.lower():
                    continue
                specific = 2 if "-" in wanted else 1
            score = (entry.voice is not None, specific, exact)
            if best is None or score > best:
                best, found = score, entry
        return found

    def apply(self, text: str, *, language: str | None, voice: str | None, engine: str,
              takes_phonemes: bool) -> str:
        """`text` as the engine should get it: inline overrides and lexicon words replaced."""
        self._refresh()
        if not self._index and "](/" not in text:
            return _escape(text) if takes_phonemes else text
        out: list[str] = []
        pos = 0
        for match in INLINE.finditer(text):
            out.append(self._words(text[pos:match.start()], language, voice, engine, takes_phonemes))
            word, ipa = match.group(1), check_phonemes(match.group(2), match.group(1))
            out.append(render(Reading(ipa, None, word), engine, takes_phonemes))
            pos = match.end()
        out.append(self._words(text[pos:], language, voice, engine, takes_phonemes))
        return "".join(out)

    def _words(self, text: str, language: str | None, voice: str | None, engine: str,
               takes_phonemes: bool) -> str:
        text = _escape(text) if takes_phonemes else text
        index, longest = self._index, self._longest
        if not index or not text:
            return text
        tokens = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        out, pos, i = [], 0, 0
        while i < len(tokens):
            matched = False
            for n in range(min(longest, len(tokens) - i), 0, -1):
                group = tokens[i:i + n]
                if any(text[a[1]:b[0]].strip() for a, b in itertools.pairwise(group)):
                    continue  # words joined by anything but whitespace are no multi-word entry
                words = " ".join(text[s:e] for s, e in group)
                entry = self.lookup(words, language, voice)
                if entry is not None:
                    start, end = group[0][0], group[-1][1]
                    out += [text[pos:start], render(Reading(entry.phonemes, entry.respelling, words), engine,
                                                    takes_phonemes)]
                    pos, i, matched = end, i + n, True
                    break
            if not matched:
                s, e = tokens[i]
                if any(_no_space_script(c) for c in text[s:e]):
                    replaced = self._substrings(text[s:e], language, voice, engine, takes_phonemes)
                    if replaced is not None:
                        out += [text[pos:s], replaced]
                        pos = e
                i += 1
        out.append(text[pos:])
        return "".join(out)

    def _substrings(self, run: str, language: str | None, voice: str | None, engine: str,
                    takes_phonemes: bool) -> str | None:
        """Entries inside a run of a script written without spaces, longest first; None if none matched."""
        by_first = self._unspaced
        if not by_first:
            return None
        out, i, changed = [], 0, False
        while i < len(run):
            for key in by_first.get(run[i], ()):
                if run.startswith(key, i):
                    entry = self.lookup(key, language, voice)
                    if entry is not None:
                        out.append(render(Reading(entry.phonemes, entry.respelling, key), engine, takes_phonemes))
                        i += len(key)
                        changed = True
                        break
            else:
                out.append(run[i])
                i += 1
        return "".join(out) if changed else None


def _key(word: str, language: str | None, voice: str | None, regex: bool) -> tuple[str, str, str]:
    text = word if regex else " ".join(unicodedata.normalize("NFC", word).split())
    return (("re:" if regex else "") + text, (language or "").lower(), voice or "")


def _fold(words: str) -> str:
    return words.casefold()


def _escape(text: str) -> str:
    """Literal `[[` in text an engine reads as the start of phonemes: spaced out, so it stays text."""
    return text.replace("[[", "[ [").replace("]]", "] ]") if "[[" in text or "]]" in text else text


def strip_inline(text: str) -> str:
    """Text with inline overrides reduced to their words (for captions and language detection)."""
    return INLINE.sub(lambda m: m.group(1), text) if "](/" in text else text


__all__ = ["INLINE", "Entry", "Lexicon", "PhonemesNotAccepted", "Reading", "check_phonemes", "render",
           "strip_inline"]

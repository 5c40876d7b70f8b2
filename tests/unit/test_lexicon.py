"""The pronunciation lexicon: entry validation, matching rules, inline overrides, regex entries, storage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from voxgate.errors import InvalidInput
from voxgate.text.lexicon import Entry, Lexicon, PhonemesNotAccepted, check_phonemes
from voxgate.text.lexicon_rules import RuleTimeout
from voxgate.voices.lexicon_store import LexiconStore
from voxgate.voices.store import VoiceStore


def lexicon(*entries: dict[str, object]) -> Lexicon:
    lx = Lexicon()
    lx.put([Entry.parse(e) for e in entries])
    return lx


def apply(lx: Lexicon, text: str, *, language: str = "en-US", voice: str = "v", phonemes: bool = True) -> str:
    return lx.apply(text, language=language, voice=voice, engine="piper" if phonemes else "pico",
                    takes_phonemes=phonemes)


def test_entry_validation_names_the_field() -> None:
    cases = [({"word": "x"}, "phonemes"), ({"word": "", "respelling": "a"}, "word"),
             ({"word": "C++", "respelling": "see plus plus"}, "word"),
             ({"word": "x", "phonemes": "<b>"}, "phonemes"), ({"word": "x", "respelling": 3}, "respelling"),
             ({"word": "x", "respelling": "y", "language": "english!"}, "language"),
             ({"word": "x", "respelling": "y", "colour": "red"}, "colour"),
             ({"word": "a b c d e", "respelling": "y"}, "word")]
    for data, param in cases:
        with pytest.raises(InvalidInput) as caught:
            Entry.parse(data)
        assert caught.value.param == param, (data, caught.value.message)
    entry = Entry.parse({"word": "  New   York ", "phonemes": "/nuː ˈjɔːk/", "language": "en_GB"})
    assert (entry.word, entry.phonemes, entry.language) == ("New York", "nuː ˈjɔːk", "en-GB")
    assert check_phonemes("t'eɪ") == "tˈeɪ"  # an ASCII apostrophe is primary stress


def test_whole_words_case_rules_and_precedence() -> None:
    lx = lexicon({"word": "voxgate", "phonemes": "vˈɑksɡeɪt"}, {"word": "US", "respelling": "you ess"},
                 {"word": "tomato", "respelling": "tomahto", "language": "en-GB"},
                 {"word": "tomato", "respelling": "tomayto", "language": "en"},
                 {"word": "tomato", "respelling": "TOMATO FOR V", "voice": "special"},
                 {"word": "new york", "respelling": "noo yawk"})
    assert apply(lx, "Voxgate, VOXGATE and voxgates.") == "[[vˈɑksɡeɪt]], [[vˈɑksɡeɪt]] and voxgates."
    assert apply(lx, "The US and us.") == "The you ess and us."  # a capitalised entry matches its casing only
    assert apply(lx, "tomato") == "tomayto"
    assert apply(lx, "tomato", language="en-GB") == "tomahto"  # region beats language
    assert apply(lx, "tomato", language="fr") == "tomato"
    assert apply(lx, "tomato", voice="special") == "TOMATO FOR V"  # voice beats language
    assert apply(lx, "In New\nYork, new-york.") == "In noo yawk, new-york."  # whitespace only between words
    assert apply(lx, "tomato's", language="en") == "tomato's"  # an apostrophe joins a word


def test_phonemes_need_an_engine_that_takes_them_or_a_respelling() -> None:
    lx = lexicon({"word": "voxgate", "phonemes": "vˈɑksɡeɪt"}, {"word": "nginx", "phonemes": "ˈɛndʒɪn ˈɛks",
                                                                "respelling": "engine x"})
    with pytest.raises(PhonemesNotAccepted, match="pico engine cannot take phonemes"):
        apply(lx, "I like voxgate", phonemes=False)
    assert apply(lx, "nginx", phonemes=False) == "engine x"
    assert apply(lx, "nginx") == "[[ˈɛndʒɪn ˈɛks]]"


def test_inline_overrides_and_literal_brackets() -> None:
    lx = Lexicon()
    assert apply(lx, "Say [voxgate](/vˈɑksɡeɪt/) now.") == "Say [[vˈɑksɡeɪt]] now."
    assert apply(lx, "Text with [[brackets]] stays text.") == "Text with [ [brackets] ] stays text."
    with pytest.raises(PhonemesNotAccepted):
        apply(lx, "Say [voxgate](/vˈɑksɡeɪt/).", phonemes=False)
    with pytest.raises(InvalidInput, match="not IPA"):
        apply(lx, "[x](/1234/)")


def test_text_without_spaces_matches_inside_runs() -> None:
    lx = lexicon({"word": "東京", "respelling": "とうきょう", "language": "ja"})
    assert apply(lx, "明日東京へ行く", language="ja") == "明日とうきょうへ行く"


def test_regex_entries_apply_in_order_and_are_bounded() -> None:
    lx = lexicon({"word": r"e\.g\.", "respelling": "for example", "regex": True},
                 {"word": r"([0-9]+)-([0-9]+)", "respelling": r"\1 to \2", "regex": True})
    assert lx.rewrite("e.g. pages 3-5", "en", "v") == "for example pages 3 to 5"
    assert [e.regex for e in lx.list()] == [True, True]
    for pattern in (r"(a+)+$", r"(\w+\s?)+$", r"(x+x+)+y"):
        start = time.monotonic()
        with pytest.raises(InvalidInput, match="takes too long"):
            Entry.parse({"word": pattern, "respelling": "", "regex": True})
        assert time.monotonic() - start < 2.0
    with pytest.raises(InvalidInput, match="not valid"):
        Entry.parse({"word": "(", "respelling": "", "regex": True})
    with pytest.raises(InvalidInput, match="group"):
        Entry.parse({"word": "(a)", "respelling": r"\2", "regex": True})


def test_a_slow_rule_on_a_request_is_an_error_not_a_hang() -> None:
    lx = Lexicon()
    slow = Entry(r"(a+)+$", None, "", None, None, regex=True)  # not probed: put in directly
    lx._entries[slow.key] = slow
    lx._reindex()
    start = time.monotonic()
    with pytest.raises(RuleTimeout):
        lx.rewrite("a" * 5000 + "!", "en", "v")
    assert time.monotonic() - start < 1.0


def test_entries_persist_in_the_voice_store(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    lx = Lexicon(LexiconStore(store))
    lx.put([Entry.parse({"word": "voxgate", "phonemes": "vˈɑksɡeɪt", "voice": "hibari:heart"}),
            Entry.parse({"word": "x-ray", "respelling": "ex ray", "language": "en"}),
            Entry.parse({"word": "a", "respelling": "b", "regex": True})])
    assert lx.delete("x-ray", "EN") == 1
    store.close()
    again = VoiceStore(tmp_path)
    reloaded = Lexicon(LexiconStore(again))
    assert [e.to_dict() for e in reloaded.list()] == [
        {"word": "voxgate", "phonemes": "vˈɑksɡeɪt", "voice": "hibari:heart"},
        {"word": "a", "respelling": "b", "regex": True}]
    # a second process (the CLI) adds an entry: the first sees it without a restart
    other = VoiceStore(tmp_path)
    Lexicon(LexiconStore(other)).put([Entry.parse({"word": "gif", "respelling": "jiff"})])
    other.close()
    reloaded._checked = 0.0
    assert apply(reloaded, "a gif") == "a jiff"
    again.close()

"""Tests for text normalisation and the incremental segmenter."""

from __future__ import annotations

import random
import re

import pytest

from voxgate.text import (
    SENTENCE_POLICY,
    Segmenter,
    SegmentPolicy,
    cut_at_word,
    is_speakable,
    normalize,
    split_text,
)
from voxgate.text.segment import squeeze

PARAGRAPH = (
    "The sun rose slowly over the quiet hills, painting the sky in gold. "
    "Birds began to sing in the tall trees. "
    "A farmer walked out to check on his fields. "
    "The wheat was nearly ready for harvest. "
    "He smiled and wiped his brow. "
    "His daughter ran up the path behind him. "
    "She carried a basket of fresh bread. "
    "They sat together on the old stone wall. "
    "Neither of them said a word for a long time. "
    "Then the church bell rang out across the valley."
)

CORPUS = [
    PARAGRAPH,
    "Hello there, my friend. How are you?",
    "Mr. Smith met Dr. Jones at 3.14 p.m. today. They talked, e.g. about J. R. R. Tolkien. Fine!",
    "Visit https://example.com/a.b?x=1. Email me at a.b@c.org. Thanks!",
    'He said "Stop." Then he left. "Why?" she asked. Wait... what? Hmm... OK.',
    "Title\nBody text here. More text.\n\n\nAnother paragraph, with a clause; and more: yes — no.",
    "你好，世界。今天天气很好！我们去公园吧？",
    "こんにちは。元気ですか？「はい、元気です。」と彼は言った。",
    "I said 你好，世界。Then I left. 我们走吧！OK?",
    "Hello! ... World. !!! ??? Done. ...",
    "1,000 people came at 10:30. Room No. 5 is on p. 12. Prices rose 2.5% vs. last year etc. Then what?",
    "word " * 120,
    "x" * 900 + " tail. And more, more, more; " * 5,
]

LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def collapse(text: str) -> str:
    """Collapse whitespace the way the segmenter does: "\\n" for runs with a line break, else " "."""
    return re.sub(r"\s+", lambda m: "\n" if any(c in LINE_BREAKS for c in m.group()) else " ", text).strip()


def feed_in_chunks(text: str, policy: SegmentPolicy, rng: random.Random) -> list[str]:
    """Feed text in random-sized pieces and return every segment, finish() included."""
    segmenter = Segmenter(policy)
    out: list[str] = []
    i = 0
    while i < len(text):
        step = rng.choice((1, 1, 2, 3, 5, 8, 17, 60))
        out += segmenter.add(text[i : i + step])
        i += step
    return out + segmenter.finish()


def assert_covers(text: str, segments: list[str], policy: SegmentPolicy) -> None:
    """Segments are in-order slices of the collapsed text; only letterless text may fall between."""
    flat, i = collapse(text), 0
    for seg in segments:
        assert seg and seg == seg.strip() and is_speakable(seg)
        assert len(seg) <= policy.max_chars
        j = flat.find(seg, i)
        assert j >= 0, f"{seg!r} not found after {flat[i : i + 60]!r}"
        assert not is_speakable(flat[i:j]), f"lost {flat[i:j]!r}"
        i = j + len(seg)
    assert not is_speakable(flat[i:]), f"lost tail {flat[i:]!r}"


# -- normalize ------------------------------------------------------------------------------------


def test_normalize_nfc() -> None:
    assert normalize("cafe\u0301") == "caf\u00e9"


def test_normalize_drops_invisible_characters() -> None:
    text = "\ufeffa\u200bb\u200cc\u200dd\u200ee\u200ff\u202ag\u202eh\u2066i\u00adj\x00k\x07l\x1bm"
    assert normalize(text) == "abcdefghijklm"


def test_normalize_maps_exotic_spaces_and_collapses_runs() -> None:
    assert normalize("a\u00a0b\u2009c\u202fd\u3000e\u2003f") == "a b c d e f"
    assert normalize("你好\u3000世界") == "你好 世界"
    assert normalize("a \t\t  b\t\tc") == "a b c"


def test_normalize_line_breaks() -> None:
    assert normalize("a\r\nb\rc\u2028d") == "a\nb\nc\nd"
    assert normalize("a  \n  b") == "a\nb"
    assert normalize("a\n\n\n\n\nb\n\nc") == "a\n\nb\n\nc"
    assert normalize("a \n \n \n b") == "a\n\nb"


def test_normalize_quotes_and_ellipsis() -> None:
    assert normalize("\u201cDon\u2019t,\u201d she said\u2026 \u2018ok\u2019") == "\"Don't,\" she said... 'ok'"
    assert normalize("\u00abbonjour\u00bb \u300c\u306f\u3044\u300d") == "\u00abbonjour\u00bb \u300c\u306f\u3044\u300d"


def test_normalize_strips() -> None:
    assert normalize("  \n\t hello \u200b\n ") == "hello"
    assert normalize("") == ""


@pytest.mark.timeout(10)
def test_normalize_linear_on_large_input() -> None:
    text = "a \u200b\u00a0b \u201cc\u201d \u2026 \n\n\n\n d\t\t" * 50_000
    assert normalize(text).startswith('a b "c" ...\n\nd a')


@pytest.mark.parametrize("text", ["", "   ", "...", "!!!", "\u3002\uff01", "\u2014 \u2026", "\u0301"])
def test_is_speakable_false(text: str) -> None:
    assert not is_speakable(text)


@pytest.mark.parametrize("text", ["a", "5", "\u4f60", "\u0416", "\u0661", "...ok!", "\u0928\u092e"])
def test_is_speakable_true(text: str) -> None:
    assert is_speakable(text)


# -- segmentation: fixed texts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there, my friend. How are you?", ["Hello there,", "my friend.", "How are you?"]),
        ("Hi. How are you doing today?", ["Hi.", "How are you doing today?"]),
        ("Oh, hi, there is more. Next.", ["Oh, hi, there is more.", "Next."]),
        (
            "Oh, hi, how have you been lately, my friend? Good.",
            ["Oh, hi, how have you been lately,", "my friend?", "Good."],
        ),
        ("No punctuation at all", ["No punctuation at all"]),
        ("", []),
        ("   \n ", []),
    ],
)
def test_first_clause(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected


def test_first_min_chars() -> None:
    text = "Oh, hi, there is more. Next."
    assert split_text(text, SegmentPolicy(first_min_chars=3)) == ["Oh,", "hi, there is more.", "Next."]
    assert split_text(text, SegmentPolicy(first_min_chars=0)) == ["Oh,", "hi, there is more.", "Next."]
    assert split_text(text, SegmentPolicy(first_clause=False)) == ["Oh, hi, there is more.", "Next."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith met Dr. Jones. Mrs. Ms. Prof. St. Louis is far vs. Paris. Next.",
            ["Mr. Smith met Dr. Jones.", "Mrs. Ms. Prof. St. Louis is far vs. Paris.", "Next."],
        ),
        ("Pi is 3.14159 roughly. The price rose 2.5% today.", ["Pi is 3.14159 roughly.", "The price rose 2.5% today."]),
        ("Use a tool, e.g. a hammer, i.e. this one. Done.", ["Use a tool, e.g. a hammer, i.e. this one.", "Done."]),
        ("J. R. R. Tolkien wrote it. So did I. The end.", ["J. R. R. Tolkien wrote it.", "So did I.", "The end."]),
        (
            "Visit https://example.com/a.b?x=1. Email me at a.b@c.org. Thanks!",
            ["Visit https://example.com/a.b?x=1.", "Email me at a.b@c.org.", "Thanks!"],
        ),
        (
            "We bought apples, pears, etc. and more. It was fun.",
            ["We bought apples, pears, etc. and more.", "It was fun."],
        ),
        ("I like fruit etc. Then I left.", ["I like fruit etc.", "Then I left."]),
        ("Sammy Davis Jr. was a singer. King Jr. He won.", ["Sammy Davis Jr. was a singer.", "King Jr.", "He won."]),
        ("Room No. 5 is on p. 12 of the book. Okay.", ["Room No. 5 is on p. 12 of the book.", "Okay."]),
        ("We met at 5 p.m. today. Then we ate.", ["We met at 5 p.m. today.", "Then we ate."]),
        ("1,000 people came at 10:30 sharp. Yes.", ["1,000 people came at 10:30 sharp.", "Yes."]),
    ],
)
def test_english_sentence_ends(text: str, expected: list[str]) -> None:
    assert split_text(text, SENTENCE_POLICY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('"Why?" she asked. Fine.', ['"Why?" she asked.', "Fine."]),
        ("(It was late.) We slept.", ["(It was late.)", "We slept."]),
        ("Wait... what? Hmm... OK.", ["Wait... what?", "Hmm...", "OK."]),
        ("Wait\u2026 what? Hmm\u2026 OK.", ["Wait\u2026 what?", "Hmm\u2026", "OK."]),
        ("Really?! Yes!!! No.", ["Really?!", "Yes!!!", "No."]),
        ("Title\nBody text here\nMore.", ["Title", "Body text here", "More."]),
        ("One.\n\n\nTwo.", ["One.", "Two."]),
    ],
)
def test_quotes_ellipses_newlines(text: str, expected: list[str]) -> None:
    assert split_text(text, SENTENCE_POLICY) == expected


def test_line_break_is_a_hard_boundary_for_gathering() -> None:
    policy = SegmentPolicy(first_clause=False, growth=False)
    assert split_text("One. Two. Three.\nFour. Five.", policy) == ["One.", "Two. Three.", "Four. Five."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好，世界。今天天气很好！我们去公园吧？", ["你好，世界。", "今天天气很好！", "我们去公园吧？"]),
        ("你好．世界｡再见", ["你好．", "世界｡", "再见"]),
        (
            "こんにちは。元気ですか？「はい、元気です。」と彼は言った。",
            ["こんにちは。", "元気ですか？", "「はい、元気です。」", "と彼は言った。"],
        ),
        ("他说……我不知道。好吧。", ["他说……", "我不知道。", "好吧。"]),
        ("I said 你好，世界。Then I left. 我们走吧！OK?", ["I said 你好，世界。", "Then I left.", "我们走吧！", "OK?"]),
        ("Hello.你好", ["Hello.", "你好"]),
    ],
)
def test_cjk(text: str, expected: list[str]) -> None:
    assert split_text(text, SENTENCE_POLICY) == expected


def test_cjk_first_clause() -> None:
    text = "我们今天下午三点在学校门口见面，然后一起去看电影。好吗？"
    assert split_text(text) == ["我们今天下午三点在学校门口见面，", "然后一起去看电影。", "好吗？"]


def test_growth() -> None:
    segments = split_text(PARAGRAPH)
    assert segments == [
        "The sun rose slowly over the quiet hills,",
        "painting the sky in gold.",
        "Birds began to sing in the tall trees.",
        "A farmer walked out to check on his fields. The wheat was nearly ready for harvest. "
        "He smiled and wiped his brow.",
        "His daughter ran up the path behind him. She carried a basket of fresh bread. "
        "They sat together on the old stone wall. Neither of them said a word for a long time. "
        "Then the church bell rang out across the valley.",
    ]
    assert [len(s) for s in segments] == [41, 25, 38, 113, 212]


def test_growth_caps_at_grow_to_and_max() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(60))
    segments = split_text(text)
    assert all(len(s) <= 240 for s in segments[2:])
    assert max(len(s) for s in segments) > 200  # later groups really grow
    assert_covers(text, segments, SegmentPolicy())


def test_no_growth_and_sentence_policy() -> None:
    flat = SegmentPolicy(first_clause=False, growth=False, grow_to_chars=100)
    assert split_text(PARAGRAPH, flat) == [
        "The sun rose slowly over the quiet hills, painting the sky in gold.",
        "Birds began to sing in the tall trees. A farmer walked out to check on his fields.",
        "The wheat was nearly ready for harvest. He smiled and wiped his brow.",
        "His daughter ran up the path behind him. She carried a basket of fresh bread.",
        "They sat together on the old stone wall. Neither of them said a word for a long time.",
        "Then the church bell rang out across the valley.",
    ]
    assert len(split_text(PARAGRAPH, SENTENCE_POLICY)) == 10


def test_overlong_sentence_cut_at_clause_then_space_then_hard() -> None:
    policy = SegmentPolicy(max_chars=60)
    text = "This sentence keeps going, and going, and going " + "word " * 30 + "until it ends."
    assert split_text(text, policy) == [
        "This sentence keeps going,",
        "and going,",
        "and going word word word word word word word word word word",
        "word word word word word word word word word word word word",
        "word word word word word word word word until it ends.",
    ]
    assert split_text("a" * 25 + " " + "b" * 10, SegmentPolicy(max_chars=10)) == [
        "a" * 10,
        "a" * 10,
        "a" * 5,
        "b" * 10,
    ]


def test_hard_cut_keeps_combining_marks_with_their_base() -> None:
    text = "e\u0301" * 10  # decomposed é: a hard cut at 5 would orphan an accent
    segments = split_text(text, SegmentPolicy(max_chars=5))
    assert "".join(segments) == text
    assert all(s[0] != "\u0301" for s in segments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello! ... World.", ["Hello!", "... World."]),
        ("... Hello.", ["... Hello."]),
        ("!!! ??? Hello there.", ["!!! ??? Hello there."]),
        ("...", []),
        ("!!!", []),
        ("Hello. !!!", ["Hello."]),  # nothing left to merge into: dropped
        ("First one here. Second one. Third one. !!!", ["First one here.", "Second one.", "Third one. !!!"]),
        ("Yes\n...\nNo.", ["Yes", "...\nNo."]),
    ],
)
def test_unspeakable_bits_merge(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected


# -- segmentation: streaming ----------------------------------------------------------------------


def test_streaming_decisions() -> None:
    seg = Segmenter()
    assert seg.add("Hello there,") == []  # "1,000"?
    assert seg.add(" ") == ["Hello there,"]  # a clause end only needs to see whitespace
    assert seg.add("my friend.") == []  # could be "friend.com" or "friend. and"
    assert seg.add(" ") == []  # still: a lowercase word next would continue the sentence
    assert seg.add("Mr.") == ["my friend."]
    assert seg.add(" Smith paid 3.") == []  # "Mr." never ends a sentence; "3." could be "3.14"
    assert seg.add("14 today.") == []
    assert seg.pending == "Mr. Smith paid 3.14 today."
    assert seg.finish() == ["Mr. Smith paid 3.14 today."]
    assert seg.pending == ""


def test_streaming_line_break_decides_at_once() -> None:
    seg = Segmenter(SENTENCE_POLICY)
    assert seg.add("A heading") == []
    assert seg.add("\n") == ["A heading"]
    assert seg.add("Done.\n") == ["Done."]


def test_flush_forces_everything_out() -> None:
    seg = Segmenter()
    assert seg.add("the model keeps talking without any") == []
    assert seg.flush() == ["the model keeps talking without any"]
    assert seg.pending == ""
    # Later segments gather: flush also releases complete sentences held back for growth.
    assert seg.add("punctuation. Short one. ") == ["punctuation."]
    assert seg.add("Another") == []
    assert seg.pending == "Short one. Another"
    assert seg.flush() == ["Short one. Another"]
    # The stream goes on: no first-clause treatment again after a flush.
    assert seg.add("Well, after the pause, it goes on. ") == []
    assert seg.finish() == ["Well, after the pause, it goes on."]


def test_finish_resets_for_reuse() -> None:
    seg = Segmenter()
    first = seg.add(PARAGRAPH) + seg.finish()
    second = seg.add(PARAGRAPH) + seg.finish()
    assert first == second == split_text(PARAGRAPH)


@pytest.mark.parametrize("policy_index", range(4))
def test_chunked_equals_whole(policy_index: int) -> None:
    policy = [
        SegmentPolicy(),
        SENTENCE_POLICY,
        SegmentPolicy(max_chars=30, grow_to_chars=25, grow_from_chars=10, first_min_chars=4),
        SegmentPolicy(max_chars=7, grow_to_chars=40),
    ][policy_index]
    rng = random.Random(20240611 + policy_index)
    for text in CORPUS:
        whole = split_text(text, policy)
        assert_covers(text, whole, policy)
        for _ in range(3):
            assert feed_in_chunks(text, policy, rng) == whole
        one_by_one = Segmenter(policy)
        assert [s for ch in text for s in one_by_one.add(ch)] + one_by_one.finish() == whole


def test_chunked_equals_whole_random_texts() -> None:
    pieces = [*"abcdefgh  ABC...,,!?;:—–\n\"')(3.14你好。，！？「」"]
    pieces += ["Mr. ", "e.g. ", "J. ", "etc. ", " the ", "I. ", "No. 5", "...", "\n\n", "…", "。」", "\t "]
    policies = [SegmentPolicy(), SegmentPolicy(max_chars=12, grow_to_chars=10, grow_from_chars=3, first_min_chars=4)]
    rng = random.Random(7)
    for _ in range(150):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        for policy in policies:
            whole = split_text(text, policy)
            assert_covers(text, whole, policy)
            assert feed_in_chunks(text, policy, rng) == whole


def test_no_text_lost() -> None:
    def squash(text: str) -> str:
        return "".join(text.split())

    for text in CORPUS:
        assert squash(" ".join(split_text(text))) == squash(text)
    # The one exception: letterless text after the last emitted segment has no neighbour left.
    assert split_text("Hello. ...") == ["Hello."]


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        SegmentPolicy(max_chars=0)
    with pytest.raises(ValueError):
        SegmentPolicy(first_min_chars=-1)
    with pytest.raises(ValueError):
        SegmentPolicy(grow_factor=0)


# -- pathological input: each must stay linear ----------------------------------------------------


@pytest.mark.timeout(10)
def test_long_unpunctuated_text() -> None:
    text = ("lorem ipsum dolor sit amet " * 8000)[:200_000]
    segments = split_text(text)
    assert all(len(s) <= 400 for s in segments)
    assert " ".join(segments) == text.strip()


@pytest.mark.timeout(10)
def test_long_token_is_hard_cut() -> None:
    segments = split_text("x" * 200_000)
    assert len(segments) == 500 and all(s == "x" * 400 for s in segments)


@pytest.mark.timeout(10)
def test_many_dots() -> None:
    assert split_text("." * 200_000) == []
    assert split_text("ok" + "." * 200_000 + " fine")[0] == "ok" + "." * 398


@pytest.mark.timeout(10)
def test_many_tiny_sentences() -> None:
    segments = split_text("a." * 100_000)
    assert "".join(segments) == "a." * 100_000
    segments = split_text("A. b. " * 30_000)
    assert all(len(s) <= 400 for s in segments)


@pytest.mark.timeout(10)
def test_long_whitespace_runs() -> None:
    # The segmenter squeezes whitespace with regexes: one that rescans a blank run from each of its positions is
    # quadratic (40,000 spaces took 6 s on the event loop); these are 1.2 million characters of runs.
    assert split_text("a" + " \t" * 200_000 + "b.") == ["a b."]
    assert split_text("a" + " \n" * 200_000 + "b.") == ["a", "b."]
    assert split_text("a" + "\u3000" * 400_000 + "b.") == ["a b."]


def test_squeeze_matches_a_run_by_run_rule() -> None:
    # Each whitespace run becomes a line break if it holds one (of str.splitlines' breaks), else a space.
    breaks = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
    rule = re.compile(r"\s+")
    alphabet = list(" \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029\u3000ab.")
    draw = random.Random(7)
    for _ in range(20_000):
        text = "".join(draw.choice(alphabet) for _ in range(draw.randint(0, 24)))
        expected = rule.sub(lambda m: "\n" if breaks & set(m.group()) else " ", text)
        assert squeeze(text) == expected, repr(text)


@pytest.mark.timeout(10)
def test_many_titles() -> None:
    segments = split_text("Mr. " * 20_000)
    assert all(len(s) <= 400 for s in segments)
    assert " ".join(segments) == ("Mr. " * 20_000).strip()


@pytest.mark.timeout(10)
def test_char_by_char_unpunctuated_stream() -> None:
    text = ("streaming words without any end " * 700)[:20_000]
    seg = Segmenter()
    out = [s for ch in text for s in seg.add(ch)]
    out += seg.finish()
    assert " ".join(out) == text.strip()
    assert all(len(s) <= 400 for s in out)


@pytest.mark.timeout(10)
def test_char_by_char_pathological_runs() -> None:
    for text in ("." * 20_000, "a" + " " * 20_000 + "b", "a." + ")" * 20_000, "Mr. " * 5_000):
        seg = Segmenter()
        out = [s for ch in text for s in seg.add(ch)]
        out += seg.finish()
        assert out == split_text(text)


@pytest.mark.parametrize(("text", "head"), [
    ("Our library opens at nine every weekday and at ten on Saturdays.", "Our library opens at nine"),
    ("The train to the airport leaves from platform four every twenty minutes.", "The train to the airport leaves"),
    ("Antidisestablishmentarianism notwithstanding, everybody eventually understood everything.",
     "Antidisestablishmentarianism notwithstanding, everybody"),  # no phrase word near: the nearest space
])
def test_cut_at_word_prefers_a_phrase_start_near_the_target(text: str, head: str) -> None:
    cut = cut_at_word(text, 30)
    assert cut is not None and cut[0] == head and f"{cut[0]} {cut[1]}" == text


def test_cut_at_word_leaves_short_texts_whole() -> None:
    assert cut_at_word("Three words only.", 5) is None
    assert cut_at_word("one two three four five", 2) is None  # 3 words must stay on each side
    assert cut_at_word("one two three four five six", 2) == ("one two three", "four five six")

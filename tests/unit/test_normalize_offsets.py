"""The map from normalised text back to the input (captions depend on it), and linear cost on
adversarial input (results only: the time per kB is the benchmark's, bench/bench_normalize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from voxgate.text.normalize import Normalized, normalize, normalize_mapped
from voxgate.text.normalize.offsets import Builder


def _source_of(mapped: Normalized, source: str, spoken_part: str) -> str:
    """The input text that the first occurrence of `spoken_part` in the output came from."""
    start = mapped.text.index(spoken_part)
    a, b = mapped.source_span(start, start + len(spoken_part))
    return source[a:b]


def test_rewrite_maps_to_the_token_it_replaced() -> None:
    text = "I paid $3.50 for it."
    mapped = normalize_mapped(text)
    assert mapped.text == "I paid three dollars and fifty cents for it."
    assert _source_of(mapped, text, "three dollars and fifty cents") == "$3.50"
    assert _source_of(mapped, text, "dollars") == "$3.50"  # any part of a rewrite maps to all of it
    assert _source_of(mapped, text, "for it.") == "for it."
    assert _source_of(mapped, text, "I paid") == "I paid"
    assert mapped.source_span(0, len(mapped.text)) == (0, len(text))


def test_every_step_composes() -> None:
    text = "  **Dr.**  \u201cSmith\u201d\u200b paid\u00a0$5 \u2026 on 2024-03-15 🎉\n\n\n\nDone  "
    mapped = normalize_mapped(text)
    assert mapped.text == 'Doctor "Smith" paid five dollars ... on March fifteenth, twenty twenty-four\n\nDone'
    assert _source_of(mapped, text, "Doctor") == "Dr."
    assert _source_of(mapped, text, '"Smith"') == "\u201cSmith\u201d"
    assert _source_of(mapped, text, "five dollars") == "$5"
    assert _source_of(mapped, text, "...") == "\u2026"
    assert _source_of(mapped, text, "March fifteenth, twenty twenty-four") == "2024-03-15"
    assert _source_of(mapped, text, "Done") == "Done"
    # the line breaks map to the white space (and dropped emoji) they replaced
    a, b = mapped.source_span(mapped.text.index("\n\n"), mapped.text.index("\n\n") + 2)
    assert text[a:b].strip(" \n🎉") == "" and "\n" in text[a:b]


def test_multi_token_rules_map_to_all_their_tokens() -> None:
    text = "Call (555) 123-4567 on March 15, 2024 at 6:30 pm."
    mapped = normalize_mapped(text)
    assert _source_of(mapped, text, "five five five, one two three, four five six seven") == "(555) 123-4567"
    assert _source_of(mapped, text, "March fifteenth, twenty twenty-four") == "March 15, 2024"
    assert _source_of(mapped, text, "six thirty PM") == "6:30 pm"


def test_chinese_and_japanese_rewrites_map_back() -> None:
    text = "价格是100元，增长12.5%"
    mapped = normalize_mapped(text)
    assert mapped.text == "价格是一百元，增长百分之十二点五"
    assert _source_of(mapped, text, "一百元") == "100元"
    assert _source_of(mapped, text, "百分之十二点五") == "12.5%"
    assert _source_of(mapped, text, "价格是") == "价格是"
    text = "会議は10:30から"
    mapped = normalize_mapped(text)
    assert mapped.text == "会議は10時30分から"
    assert _source_of(mapped, text, "10時30分") == "10:30"


def test_nfc_composition_maps_to_the_combining_sequence() -> None:
    text = "cafe\u0301 $1"
    mapped = normalize_mapped(text)
    assert mapped.text == "caf\u00e9 one dollar"
    assert _source_of(mapped, text, "\u00e9") == "e\u0301"
    assert _source_of(mapped, text, "one dollar") == "$1"


def test_empty_spans_and_bounds() -> None:
    mapped = normalize_mapped("a $1 b")
    assert mapped.text == "a one dollar b"
    assert mapped.source_span(2, 2) == (2, 2)  # empty: at the source of the next character
    assert mapped.source_span(14, 14) == (6, 6)  # at the end: the end of the input
    with pytest.raises(ValueError):
        mapped.source_span(3, 99)
    empty = normalize_mapped("")
    assert empty.text == "" and empty.source_span(0, 0) == (0, 0)


def test_offsets_never_go_backwards() -> None:
    text = "On 1/2/2024, **Dr. Lee** paid $1,234.56 (approx. 10% of £12k) at 10:30 pm; see www.x.org 🎉."
    mapped = normalize_mapped(text)
    assert len(mapped.starts) == len(mapped.ends) == len(mapped.text)
    assert np.all(np.diff(mapped.starts) >= 0) and np.all(np.diff(mapped.ends) >= 0)
    assert np.all(mapped.starts <= mapped.ends) and mapped.ends.max() <= len(text)


def test_builder_and_then() -> None:
    first = Builder(5)
    first.copy("ab", 0)
    first.replace("XYZ", 2, 4)  # "cd" → "XYZ"
    first.copy("e", 4)
    inner = first.build()
    assert inner.text == "abXYZe"
    assert list(inner.starts) == [0, 1, 2, 2, 2, 4] and list(inner.ends) == [1, 2, 4, 4, 4, 5]
    second = Builder(6)
    second.copy("a", 0)
    second.insert("-", 1)
    second.replace("Q", 1, 6)  # "bXYZe" → "Q"
    outer = inner.then(second.build())
    assert outer.text == "a-Q"
    assert outer.source_span(0, 1) == (0, 1)
    assert outer.source_span(1, 2) == (1, 1)  # inserted: no source of its own
    assert outer.source_span(2, 3) == (1, 5)
    assert Normalized.identity("abc").source_span(1, 3) == (1, 3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("text", "check"), [
    ("a." * 50_000, lambda out: out == "a." * 50_000),
    ("7" * 100_000, lambda out: out == "7" * 100_000),  # too long to be a number: left to the engine
    ("[" * 20_000 + "**" * 20_000 + "x" + "]" * 20_000, lambda out: out == "[" * 20_000 + "x" + "]" * 20_000),
    ("[a](" * 20_000, lambda out: out == "[a](" * 20_000),
    ("🎉" * 50_000 + "ok", lambda out: out == "ok"),
    ("$3.50 12.5% 10:30 1,234 " * 5_000,
     lambda out: out.startswith("three dollars and fifty cents twelve point five percent ten thirty one thousand")),
    ("1." * 50_000, lambda out: out.startswith("1.1.1.")),
    ("-" * 100_000 + "5", lambda out: out.endswith("5")),
])
def test_adversarial_input_is_read(text: str, check) -> None:  # type: ignore[no-untyped-def]
    mapped = normalize_mapped(text)
    assert check(mapped.text)
    assert mapped.source_span(0, len(mapped.text))[1] <= len(text)


def test_chinese_digits_at_length_are_left() -> None:
    assert normalize("7" * 100_000, "zh") == "7" * 100_000


_PIECES = [*"abcXYZ IVXLM0123456789.,:;/-–%$€£¥&+=*_~`#@[]()!?'\"\n\t价格元年月日时分の円時½°CkmgMBK", "🎉", "\u200b",
           "\u0301", "Dr.", "St.", " am", " pm", "http://", "www.", ".com", "March ", "Henry ", "II", "1/2",
           "10:30", "2024-03-15", "$3.50", "**", "[a](b)", "[w](/x/)", "No. ", "etc."]


@pytest.mark.parametrize("language", [None, "en", "zh", "ja", "de"])
def test_random_text_keeps_a_monotonic_map(language: str | None) -> None:
    import random

    rng = random.Random(19)
    for _ in range(400):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 60)))
        mapped = normalize_mapped(text, language)
        assert len(mapped.starts) == len(mapped.ends) == len(mapped.text)
        if mapped.text:
            assert np.all(np.diff(mapped.starts) >= 0) and np.all(np.diff(mapped.ends) >= 0), text
            assert np.all(mapped.starts <= mapped.ends) and mapped.ends.max() <= len(text), text

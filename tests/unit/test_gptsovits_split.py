"""GPT-SoVITS text cutting: cut0–cut5 and pre_seg_text on fixed texts, expected pieces as the original gives."""

from __future__ import annotations

import time

import pytest

from voxgate.dialects.gptsovits.split import (
    FIXED_CHARS,
    METHODS,
    NO_TEXT,
    clauses,
    cut0,
    cut1,
    cut2,
    cut3,
    cut4,
    cut5,
    fragments,
    merge_short,
    plan,
    pre_seg_text,
    replace_consecutive_punctuation,
    split,
    split_big_text,
)
from voxgate.errors import InvalidInput

EN = "Hello there, my friend. Pi is about 3.14, right? Yes! It is; really. Good night."
ZH = "今天天气很好，我们去公园散步吧。你觉得怎么样？我觉得很好！那就走吧……出发——现在。"
MIXED = "Hi, 你好！This costs 3.5 dollars. 好的。"
LONG = ("One two three four five six, seven eight nine ten eleven, twelve thirteen fourteen fifteen sixteen, "
        "seventeen eighteen nineteen twenty. Twenty one twenty two, twenty three. End of the list here!")

# (text, language, method) → the original's fragments (checked against GPT-SoVITS's own functions).
EXPECTED: dict[tuple[str, str, str], list[str]] = {
    (EN, "en", "cut0"): [EN],
    (EN, "en", "cut1"): [EN],  # 8 pieces: the last group takes them all
    (EN, "en", "cut2"): [EN],  # the short second line joins the first
    (EN, "en", "cut3"): [EN],
    (EN, "en", "cut4"): ["Hello there, my friend.", " Pi is about 3.14, right? Yes! It is; really.", " Good night."],
    (EN, "en", "cut5"): ["Hello there,", " my friend.", " Pi is about 3.14,", " right?", " Yes!", " It is;.",
                         " really.", " Good night."],
    (ZH, "zh", "cut0"): [ZH],
    (ZH, "zh", "cut1"): ["今天天气很好，我们去公园散步吧。你觉得怎么样？我觉得很好！那就走吧。出发，现在。"],
    (ZH, "zh", "cut2"): ["今天天气很好，我们去公园散步吧。你觉得怎么样？我觉得很好！那就走吧。出发，现在。"],
    (ZH, "zh", "cut3"): ["今天天气很好，我们去公园散步吧。", "你觉得怎么样？我觉得很好！那就走吧……出发——现在。"],
    (ZH, "zh", "cut4"): [ZH],
    (ZH, "zh", "cut5"): ["今天天气很好，", "我们去公园散步吧。", "你觉得怎么样？", "我觉得很好！", "那就走吧…",
                         "出发——现在。"],
    (MIXED, "zh", "cut0"): ["。" + MIXED],
    (MIXED, "zh", "cut1"): ["。" + MIXED],
    (MIXED, "zh", "cut2"): ["。" + MIXED],
    (MIXED, "zh", "cut3"): ["Hi, 你好！This costs 3.5 dollars. 好的。"],  # the prefix 。 is stripped by cut3
    (MIXED, "zh", "cut4"): ["。Hi, 你好！This costs 3.5 dollars 好的。"],  # cut, then the short rest merged
    (MIXED, "zh", "cut5"): ["Hi, 你好！", "This costs 3.5 dollars. 好的。"],
    (LONG, "en", "cut0"): [LONG],
    (LONG, "en", "cut1"): [LONG],
    (LONG, "en", "cut2"): ["One two three four five six, seven eight nine ten eleven,",
                           " twelve thirteen fourteen fifteen sixteen, seventeen eighteen nineteen twenty.",
                           " Twenty one twenty two, twenty three. End of the list here!"],
    (LONG, "en", "cut3"): [LONG],
    (LONG, "en", "cut4"): ["One two three four five six, seven eight nine ten eleven, twelve thirteen fourteen "
                           "fifteen sixteen, seventeen eighteen nineteen twenty.",
                           " Twenty one twenty two, twenty three.", " End of the list here!"],
    (LONG, "en", "cut5"): ["One two three four five six,", " seven eight nine ten eleven,",
                           " twelve thirteen fourteen fifteen sixteen,", " seventeen eighteen nineteen twenty.",
                           " Twenty one twenty two,", " twenty three.", " End of the list here!"],
}


@pytest.mark.parametrize(("text", "lang", "method"), list(EXPECTED))
def test_every_method_gives_the_originals_fragments(text: str, lang: str, method: str) -> None:
    assert pre_seg_text(text, lang, method) == EXPECTED[(text, lang, method)]


def test_methods_are_cut0_to_cut5() -> None:
    assert list(METHODS) == ["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"]


def test_common_split_helper() -> None:
    assert split("a,b。c") == ["a,", "b。", "c。"]  # final 。 added
    assert split("等等……好——吧") == ["等等。", "好，", "吧。"]  # …… → 。, —— → ，
    assert split("x~y:z：w—v…") == ["x~", "y:", "z：", "w—", "v…"]
    assert split("3.14") == ["3.", "14。"]  # the helper has no digit rule (cut4/cut5 do)


def test_cut0_keeps_text_and_drops_pure_punctuation() -> None:
    assert cut0("Hello, world") == "Hello, world"
    assert cut0("... !!") == "\n"


def test_cut1_glues_fours_and_the_last_group_takes_the_rest() -> None:
    nine = "a1,b2,c3,d4,e5,f6,g7,h8,i9"
    assert cut1(nine) == "a1,b2,c3,d4,\ne5,f6,g7,h8,i9。"
    assert cut1("a1,b2,c3,d4,e5,f6,g7,h8") == "a1,b2,c3,d4,e5,f6,g7,h8。"  # 8 pieces: one line
    assert cut1("a1,b2,c3,d4") == "a1,b2,c3,d4"  # ≤ 4 pieces: the input unchanged (no 。 added)
    assert cut1("a,b,c,d,e,f,g,h,!,.") == "a,b,c,d,\ne,f,g,h,!,."


def test_cut2_gathers_past_50_chars_and_merges_a_short_tail() -> None:
    pieces = [f"piece number {n:02d} here," for n in range(6)]  # 23 chars each
    text = "".join(pieces)
    # 23+23+23 = 69 > 50 → cut after 3 pieces; the second line is also 69 ≥ 50, so it stays.
    assert cut2(text) == "".join(pieces[:3]) + "\n" + "".join(pieces[3:])
    assert cut2(text + " and the end") == "".join(pieces[:3]) + "\n" + "".join(pieces[3:]) + " and the end。"
    assert cut2("one, two, three") == "one, two, three。"  # one line < 50: the last merges into nothing
    assert cut2("single") == "single"  # < 2 pieces: unchanged


def test_cut3_cuts_at_the_chinese_full_stop() -> None:
    assert cut3("。第一句。第二句。") == "第一句\n第二句"
    assert cut3("no full stop. at all") == "no full stop. at all"


def test_cut4_cuts_at_dots_but_not_in_numbers() -> None:
    assert cut4("Pi is 3.14 exactly. E is 2.71 too.") == "Pi is 3.14 exactly\n E is 2.71 too"
    assert cut4("Pi is 3.14. E is 2.71.") == "Pi is 3.14. E is 2.71"  # "4." has a digit before: no cut
    assert cut4("a. . b") == "a\n b"  # the " " line is punctuation only
    assert cut4("version 1.2.3 ok") == "version 1.2.3 ok"


def test_cut5_keeps_marks_and_numbers() -> None:
    assert cut5("Pi is 3.14, e is 2.71; ok") == "Pi is 3.14,\n e is 2.71;\n ok"
    assert cut5("好，坏、对。错？是！否：嗯…") == "好，\n坏、\n对。\n错？\n是！\n否：\n嗯…"
    assert cut5("Wow!!! Really?") == "Wow!\n Really?"  # "!" alone is dropped
    assert cut5("end.") == "end."
    assert cut5(".5 and 5.") == "5 and 5."  # a leading "." alone is dropped


def test_first_short_clause_gets_a_mark_in_front() -> None:
    assert pre_seg_text("Hi, there friend", "en", "cut0") == [".Hi, there friend."]
    assert pre_seg_text("Hi, there friend", "zh", "cut0") == ["。Hi, there friend。"]
    assert pre_seg_text("Hello, there friend", "en", "cut0") == ["Hello, there friend."]  # 5 chars: none
    assert pre_seg_text("!Hi, there", "en", "cut0") == ["!Hi, there."]  # starts with a mark: none
    # voxgate speaks without it (espeak would say "dot")
    assert fragments("Hi, there friend", "en", "cut0", streaming=True) == ["Hi, there friend."]
    assert fragments("Hi, there friend", "zh", "cut0", streaming=True) == ["Hi, there friend。"]


def test_lines_merge_until_five_chars() -> None:
    assert pre_seg_text("Ok. Go. Now we run.", "en", "cut5") == ["Ok. Go.", " Now we run."]
    assert merge_short(["a", "bc", "def", "ghijk", "l"]) == ["abcdef", "ghijkl"]
    assert merge_short(["ab", "c"]) == ["abc"]  # nothing reached 5: kept as one
    assert merge_short(["abc"]) == ["abc"]


def test_final_punctuation_depends_on_language() -> None:
    assert pre_seg_text("first part. second part", "en", "cut4") == ["first part.", " second part."]
    assert pre_seg_text("first part. second part", "ja", "cut4") == ["first part。", " second part。"]
    assert pre_seg_text("first part~", "en", "cut0") == ["first part~"]  # ~ is final punctuation


def test_lines_over_510_chars_are_split_at_punctuation() -> None:
    text = "abcdefghi, " * 60  # 660 chars, one cut0 line
    pieces = pre_seg_text(text, "en", "cut0")
    assert len(pieces) == 2 and all(len(p) <= 510 for p in pieces)
    assert "".join(pieces) == text.strip("\n") + "."
    assert split_big_text("x" * 600 + "。") == ["x" * 600]  # no mark to cut at: kept whole (as the original)


def test_pure_symbol_lines_are_dropped() -> None:
    # newlines separate lines in every method; "???" + "……" merge into one 5-char line that says nothing
    assert pre_seg_text("Hello there.\n???\n……\nGood night.", "en", "cut0") == ["Hello there.", "Good night."]
    assert pre_seg_text("Hello there.\n#$%@!\nGood night.", "en", "cut3") == ["Hello there.", "Good night."]
    assert pre_seg_text("Hello there.\n#$%\nGood night.", "en", "cut3") == ["Hello there.", "#$%Good night."]


def test_non_streaming_collapses_punctuation_runs() -> None:
    assert replace_consecutive_punctuation("Wait...what?!! No -- way,,, ok") == "Wait.what? No - way, ok"
    assert replace_consecutive_punctuation("。。。") == "。。。"  # only ! ? … , . - collapse
    assert fragments("Well... okay -- fine", "en", "cut0", streaming=False) == ["Well. okay - fine."]
    assert fragments("Well... okay -- fine", "en", "cut0", streaming=True) == ["Well... okay -- fine."]


@pytest.mark.parametrize("text", ["", "\n\n", " ", "   ", "!!!", "...", "……", "。", " \n ", "#$%"])
@pytest.mark.parametrize("method", list(METHODS))
def test_nothing_to_say_is_invalid(text: str, method: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        fragments(text, "en", method, streaming=False)
    assert raised.value.message == NO_TEXT


def test_clauses_join_back_and_respect_the_fixed_length() -> None:
    fragment = ("This is a rather long fragment, with a clause or two; and then many more words that go on "
                "without any mark at all until the very end of the line.")
    assert "".join(clauses(fragment)) == fragment
    assert clauses(fragment)[0] == "This is a rather long fragment,"
    fixed = clauses(fragment, FIXED_CHARS)
    assert "".join(fixed) == fragment and all(len(p) <= FIXED_CHARS for p in fixed)
    cjk = "一" * 100
    assert clauses(cjk, FIXED_CHARS) == ["一" * 48, "一" * 48, "一" * 4]
    assert clauses("Oh, hi, there you are, friend.") == ["Oh, hi,", " there you are,", " friend."]


def test_plan_maps_pieces_to_fragments() -> None:
    text = "First fragment here, with a clause. Second one!"
    one = plan(text, "en", "cut4", 1)
    assert one.segments == ("First fragment here, with a clause.", " Second one!") and one.fragment_of == (0, 1)
    two = plan(text, "en", "cut4", 2)
    assert two.segments == ("First fragment here,", " with a clause.", " Second one!")
    assert two.fragment_of == (0, 0, 1) and two.fragments == 2
    assert plan("Wow!!! Yes...", "en", "cut0", 0).segments == ("Wow! Yes.",)


@pytest.mark.parametrize("method", list(METHODS))
def test_linear_time_on_pathological_input(method: str) -> None:
    texts = ["a" * 200_000, "." * 200_000 + "a", ",a" * 100_000, "3.1" * 70_000, "。" * 100_000 + "好",
             "a " * 100_000]
    started = time.perf_counter()
    for text in texts:
        try:
            fragments(text, "en", method, streaming=False)
            plan(text, "en", method, 3)
        except InvalidInput:
            pass
    assert time.perf_counter() - started < 5.0

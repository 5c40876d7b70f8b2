"""Numbers in Chinese (cn2an) and Japanese text (only the shapes pyopenjtalk misreads)."""

from __future__ import annotations

import pytest

from voxgate.text.normalize import normalize


@pytest.mark.parametrize(("text", "spoken"), [
    ("价格是100元。", "价格是一百元。"),
    ("他借了¥500，还了￥200。", "他借了五百元，还了二百元。"),
    ("增长12.5%，下降３％", "增长百分之十二点五，下降百分之三"),
    ("2024年3月5日和2024-03-15和2024/3/5", "二零二四年三月五日和二零二四年三月十五日和二零二四年三月五日"),
    ("10:05开会，23:59:30结束，12:00吃饭", "十点零五分开会，二十三点五十九分三十秒结束，十二点整吃饭"),
    ("１２：３０出发", "十二点三十分出发"),
    ("气温-5度，1/2的人", "气温负五度，二分之一的人"),
    ("共1,234,567人", "共一百二十三万四千五百六十七人"),
    ("电话13800138000，编号007", "电话一三八零零一三八零零零，编号零零七"),
    ("第3名，3 个苹果", "第三名，三 个苹果"),
    ("10-20个", "十到二十个"),
    ("05月06日", "五月六日"),
    ("15，10和20", "十五，十和二十"),  # a comma between numbers is a list here, not thousands
])
def test_chinese_numbers(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_chinese_context_decides() -> None:
    assert normalize("iPhone 15很贵") == "iPhone 十五很贵"  # the number touches Chinese on one side
    assert normalize("I paid 100元") == "I paid 一百元"
    assert normalize("我买了 iPhone 15 Pro") == "我买了 iPhone fifteen Pro"  # Latin on both sides: English
    assert normalize("100") == "one hundred"
    assert normalize("100", "zh") == "一百"  # with a Chinese hint, numbers alone are Chinese
    assert normalize("100", "zh-CN") == "一百"


@pytest.mark.parametrize(("text", "spoken"), [
    ("会議は10:30から", "会議は10時30分から"),
    ("9:00に起きた", "9時に起きた"),
    ("2024-03-15に", "2024年3月15日に"),
    ("価格は¥1,000です", "価格は1,000円です"),
    ("$5のコーヒー", "5ドルのコーヒー"),
    ("猫が3匹、本が3本、1人", "猫が3匹、本が3本、1人"),  # counters: pyopenjtalk reads them right already
    ("50%です", "50%です"),
])
def test_japanese_numbers(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyopenjtalk-plus calls a deprecated sudachi API
def test_japanese_rewrites_read_right_in_pyopenjtalk() -> None:
    pyopenjtalk = pytest.importorskip("pyopenjtalk")
    assert pyopenjtalk.g2p(normalize("10:30に", "ja"), kana=True) == pyopenjtalk.g2p("十時三十分に", kana=True)
    assert pyopenjtalk.g2p(normalize("¥1,000", "ja"), kana=True) == "センエン"
    assert pyopenjtalk.g2p("3匹", kana=True) == "サンビキ"  # why counters are left alone


def test_japanese_hint_without_kana() -> None:
    assert normalize("10:30", "ja") == "10時30分"
    assert normalize("会議10:30", "zh") == "会议十点三十分" or normalize("会議10:30", "zh") == "会議十点三十分"


def test_the_scan_skips_no_character_that_may_start_a_number() -> None:
    """The Chinese/Japanese scan jumps over ASCII letters and CJK characters: none is a digit or a sign."""
    from voxgate.text.normalize.zh import _RUN_START

    skipped = [chr(c) for c in range(0x30000) if not _RUN_START.match(chr(c))]
    assert len(skipped) > 90_000  # ASCII and the CJK blocks
    assert not [c for c in skipped if c.isdigit() or c in "-¥￥$€£"]

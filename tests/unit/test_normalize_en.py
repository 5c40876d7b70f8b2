"""English normalisation: the spoken form of numbers, money, dates, times, units, abbreviations, URLs,
symbols and markup (text/normalize)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxgate.text.normalize import normalize

BENCH = Path(__file__).resolve().parents[2] / "bench" / "data"


@pytest.mark.parametrize(("text", "spoken"), [
    # cardinals, decimals, signs
    ("I have 3 cats.", "I have three cats."),
    ("1,234,567", "one million two hundred thirty-four thousand five hundred sixty-seven"),
    ("It was 0.5 or .5", "It was zero point five or point five"),
    ("-7 and −12.5 and +3", "minus seven and minus twelve point five and plus three"),
    ("1000000000000", "one trillion"),
    ("1234567890123456789", "one two three four five six seven eight nine zero one two three four five six "
                            "seven eight nine"),
    ("007", "zero zero seven"),
    # ordinals, fractions, percentages, ranges
    ("1st 2nd 3rd 4th 11th 12th 13th 22nd 101st", "first second third fourth eleventh twelfth thirteenth "
                                                 "twenty-second one hundred first"),
    ("3/4 and 1/3 and 5/16", "three quarters and one third and five sixteenths"),
    ("1 1/2 cups and 2¾ miles", "one and a half cups and two and three quarters miles"),
    ("50% and 12.5% and -3%", "fifty percent and twelve point five percent and minus three percent"),
    ("pages 10-20 and 10–20% and 5-10km", "pages ten to twenty and ten to twenty percent and five to ten kilometers"),
    ("from 1990-95", "from nineteen ninety to ninety-five"),
    # money
    ("$3.50", "three dollars and fifty cents"),
    ("$1 $2 $0.01 $0.10", "one dollar two dollars one cent ten cents"),
    ("$1.5 million", "one point five million dollars"),
    ("$5k and £2bn", "five thousand dollars and two billion pounds"),
    ("€20.05 £1.01 ¥1000 ₹50", "twenty euros and five cents one pound and one penny one thousand yen fifty rupees"),
    ("-$20", "minus twenty dollars"),
    ("20 EUR and 1 USD", "twenty euros and one US dollar"),
    ("$1.234", "one point two three four dollars"),
    # years and decades
    ("in 1999, in 2000, in 2008, in 1905, in 1800", "in nineteen ninety-nine, in two thousand, in two thousand "
                                                    "eight, in nineteen oh five, in eighteen hundred"),
    ("500 BC", "five hundred BC"),
    ("the 1990s and the 2000s", "the nineteen nineties and the two thousands"),
    # dates and times
    ("2024-03-15", "March fifteenth, twenty twenty-four"),
    ("12/31/2023", "December thirty-first, twenty twenty-three"),
    ("15.03.2024", "March fifteenth, twenty twenty-four"),
    ("March 15, 2024", "March fifteenth, twenty twenty-four"),
    ("on 4 July 1776.", "on the fourth of July, seventeen seventy-six."),
    ("Sept. 3rd", "September third"),
    ("10:30 and 7:05 and 8:00", "ten thirty and seven oh five and eight o'clock"),
    ("6:30 pm, 9am, 5 p.m., 11:00 AM", "six thirty PM, nine AM, five PM, eleven AM"),
    ("23:59:30", "twenty-three fifty-nine and thirty seconds"),
    # phone numbers
    ("555-123-4567", "five five five, one two three, four five six seven"),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
    # units
    ("5 km, 1 km, 10kg, 2 ft, 1 ft", "five kilometers, one kilometer, ten kilograms, two feet, one foot"),
    ("25°C, -3°F, 90°", "twenty-five degrees Celsius, minus three degrees Fahrenheit, ninety degrees"),
    ("3.5GB at 100 Mbps", "three point five gigabytes at one hundred megabits per second"),
    ("10x faster", "ten times faster"),
    # abbreviations
    ("Dr. Who met Mr. Bean on Baker St. near St. Paul's.",
     "Doctor Who met Mister Bean on Baker Street near Saint Paul's."),
    ("Ask Prof. Lee, Jr. about it.", "Ask Professor Lee, Junior about it."),
    ("Apples, pears, etc.", "Apples, pears, et cetera."),
    ("Fruit (e.g. apples) and so on, i.e. food.", "Fruit (for example apples) and so on, that is food."),
    ("No. 5 and pp. 10", "number five and pages ten"),
    ("The U.S. and the U.K.", "The U S and the U K."),  # its period also ends the text
    # Roman numerals, only where unambiguous
    ("Henry VIII, Louis XIV, Elizabeth I", "Henry the Eighth, Louis the Fourteenth, Elizabeth the First"),
    ("World War II, Chapter IV, Part III, Super Bowl LVII",
     "World War two, Chapter four, Part three, Super Bowl fifty-seven"),
    ("I think I will. MIX it, I said. CD and DVD. Vitamin C.", "I think I will. MIX it, I said. CD and DVD. "
                                                             "Vitamin C."),
    # URLs and e-mail addresses
    ("https://example.com/a-b_c", "example dot com slash a dash b underscore c"),
    ("www.python.org", "w w w dot python dot org"),
    ("mail bob.smith+tts@mail.example.co.uk", "mail bob dot smith plus tts at mail dot example dot co dot uk"),
    ("see example.com.", "see example dot com."),
    ("file.txt and Mr.Smith", "file.txt and Mr.Smith"),
    # symbols
    ("Tom & Jerry, R&D, AT&T", "Tom and Jerry, R and D, AT and T"),
    ("2+2=4 and 3 × 4 and 10 ÷ 2", "two plus two equals four and three times four and ten divided by two"),
    ("#1 hit, ~5 min, ≈ 3", "number one hit, about five minutes, approximately three"),
    ("Acme™ and Foo®", "Acme and Foo"),
    ("COVID-19 and F-16", "COVID nineteen and F sixteen"),
    ("24/7", "twenty-four seven"),
    # compounds and look-alikes
    ("A 20-year-old paid $100/month, ~$50 each.", "A twenty-year-old paid one hundred dollars per month, about "
                                                 "fifty dollars each."),
    ("Q3 2024, 3h 45m, 1M users, 10k steps", "Q3 twenty twenty-four, three hours forty-five minutes, one "
                                             "million users, ten thousand steps"),
    ("Apt. 4B, 221B Baker St., a 4K TV, version 2.0.1, 16:9", "Apartment 4B, 221B Baker Street, a 4K TV, "
                                                              "version 2.0.1, 16:9"),
    ("≈ ~ & =", "approximately about and equals"),
])
def test_spoken_forms(text: str, spoken: str) -> None:
    assert normalize(text, "en") == spoken


@pytest.mark.parametrize(("text", "spoken"), [
    ("**Bold** and __strong__ and *em* and _em_", "Bold and strong and em and em"),
    ("snake_case and 2 * 3", "snake_case and two times three"),
    ("`code` here", "code here"),
    ("## Heading\n> quoted\n- one\n* two\n+ three", "Heading\nquoted\none\ntwo\nthree"),
    ("Click [here](https://x.io) or ![logo](a.png)", "Click here or logo"),
    ("Say [voxgate](/vˈɑksɡeɪt/) now", "Say [voxgate](/vˈɑksɡeɪt/) now"),
    ("Great job 🎉👍🏽 ok ❤️ ✅", "Great job ok"),
    ("family 👨‍👩‍👧 here", "family here"),
    ("~~gone~~ stays", "gone stays"),
])
def test_markup_and_emoji_dropped(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_language_choice() -> None:
    # no hint: English rules for English text, none for text whose common words are another language's
    assert normalize("I have 3 cats") == "I have three cats"
    assert normalize("$3.50") == "three dollars and fifty cents"
    assert normalize("Ich habe 3 Katzen und der Hund") == "Ich habe 3 Katzen und der Hund"
    # a hint of another Latin-script language: its engine reads the numbers itself
    assert normalize("Il y a 3 chats", "fr") == "Il y a 3 chats"
    assert normalize("I have 3 cats", "de-DE") == "I have 3 cats"
    assert normalize("I have 3 cats", "en-GB") == "I have three cats"


def test_opt_out_is_the_old_clean_up() -> None:
    text = "**$3.50** \u201cDr.\u201d  Smith\u200b 🎉\n\n\n2024-03-15"
    assert normalize(text, spoken=False) == "**$3.50** \"Dr.\" Smith 🎉\n\n2024-03-15"
    assert normalize(text) == "three dollars and fifty cents \"Doctor\" Smith\n\nMarch fifteenth, twenty twenty-four"


def test_native_route_carries_the_opt_out() -> None:
    """`"normalize": false` on the native `POST /v1/speech` reaches the core's request (issue 19); a value
    that is not a boolean is refused naming the field (the OpenAI route's is tested end to end)."""
    from voxgate.dialects.native.speech import _parsed
    from voxgate.errors import InvalidInput

    assert _parsed({"text": "$3.50", "normalize": False}).to_request("hibari:heart").normalize is False
    assert _parsed({"text": "$3.50"}).to_request("hibari:heart").normalize is True
    with pytest.raises(InvalidInput, match="normalize"):
        _parsed({"text": "$3.50", "normalize": "no"})


def test_text_without_anything_to_rewrite_is_unchanged() -> None:
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    assert normalize(text) == text


@pytest.mark.parametrize("name", ["normalize_en.tsv", "normalize_zh.tsv"])
def test_bench_sets_read_as_expected(name: str) -> None:
    """Every line of the bench's hard-case sets (bench/bench_normalize.py reports the same rate)."""
    language = "zh" if name.endswith("zh.tsv") else "en"
    misses = []
    for line in (BENCH / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            text, expected = line.split("\t")
            if normalize(text, language) != expected:
                misses.append((text, normalize(text, language), expected))
    assert not misses

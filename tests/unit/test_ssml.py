"""The SSML subset: parts, prosody values, say-as readings, and clear errors for bad markup."""

from __future__ import annotations

import pytest

from voxgate.errors import InvalidInput
from voxgate.text.ssml import Part, document_end, is_ssml, parse, starts_ssml
from voxgate.text.ssml_sayas import cardinal, clock, date, ordinal, say_as, telephone


def test_only_input_starting_with_speak_is_ssml() -> None:
    assert is_ssml("<speak>Hi</speak>") and is_ssml("  \n<speak xml:lang='en'>Hi</speak>")
    assert is_ssml('<?xml version="1.0"?>\n<speak>Hi</speak>')
    assert is_ssml('<!DOCTYPE speak [<!ENTITY a "b">]><speak>&a;</speak>')  # so its DTD is refused, not read
    assert not is_ssml("<speaker>Hi") and not is_ssml("Say <speak>") and not is_ssml("speak")
    assert parse('<?xml version="1.0" encoding="UTF-8"?><speak>Hi</speak>') == [Part(text="Hi")]


def test_streamed_text_is_ssml_once_its_start_says_so_and_ends_at_its_end_tag() -> None:
    undecided = ["", "  ", "<", "<spe", "<speak", "<?xml", '<?xml version="1.0"?>', "<!DOCTYPE"]
    assert all(starts_ssml(t) is None for t in undecided)  # could still become <speak…>
    assert starts_ssml("<speak>") and starts_ssml(' <?xml version="1.0"?><speak ') is True
    assert starts_ssml("<speaker>") is False and starts_ssml("Hello") is False and starts_ssml("<3") is False
    doc = '<speak>Hi <s:b/></speak  > after'
    assert document_end(doc) == doc.index(" after") and document_end("<speak>Hi</spea") is None
    assert document_end("<x:speak>a</x:speak>", 12) == 20  # found though it began before `start`


def test_parts_in_order_with_breaks_prosody_voice_and_text() -> None:
    parts = parse('<speak xmlns="http://www.w3.org/2001/10/synthesis">Hello <break time="500ms"/>world. '
                  '<prosody rate="slow" pitch="+2st" volume="-6dB">slow</prosody> '
                  '<voice name="kokoro:jf_alpha">other <emphasis>voice</emphasis></voice>'
                  '<break strength="strong"/><break time="2s"/><mark name="m"/>end</speak>')
    assert parts[0] == Part(text="Hello ")
    assert parts[1] == Part(pause=0.5)
    assert parts[2] == Part(text="world. ")
    assert parts[3].text == "slow" and parts[3].rate == 0.75 and parts[3].pitch == 2.0
    assert parts[3].volume == pytest.approx(10 ** (-6 / 20))
    voiced = [p for p in parts if p.voice == "kokoro:jf_alpha"]
    assert [p.text for p in voiced] == ["other voice"]  # unknown tags are read as their text
    assert Part(pause=2.75) in parts  # neighbouring breaks add up
    assert parts[-1] == Part(text="end")


def test_phoneme_sub_say_as_and_sentences() -> None:
    parts = parse('<speak><phoneme alphabet="ipa" ph="vˈɑksɡeɪt">voxgate</phoneme> '
                  '<sub alias="World Wide Web">WWW</sub> <say-as interpret-as="characters">AB1</say-as> '
                  '<s>One</s><s>Two</s> &amp; &#x41;</speak>')
    assert parts == [Part(text="[voxgate](/vˈɑksɡeɪt/) World Wide Web A B one One. Two.  & A")]
    paragraphs = parse("<speak><p>First.</p><p>Second.</p></speak>")
    assert [p.pause or p.text for p in paragraphs] == ["First.", 0.75, "Second.", 0.75]


@pytest.mark.parametrize(("markup", "message"), [
    ("<speak>Hello <b>world</speak>", "mismatched tag at line 1, column 24"),
    ("<speak>\nHello\n <break time='1s'>\n</speak>", "mismatched tag at line 4, column 3"),
    ("<speak>a & b</speak>", "not well-formed (invalid token) at line 1, column 11"),
    ("<speak>Hi", "no element found at line 1, column 10"),
    ('<!DOCTYPE speak [<!ENTITY x "lol">]><speak>&x;</speak>', "may not hold a DTD"),
    ('<!DOCTYPE speak SYSTEM "file:///etc/passwd"><speak>x</speak>', "may not hold a DTD"),
    ('<speak><break time="fast"/></speak>', "write a time such as 500ms"),
    ('<speak><break strength="huge"/></speak>', "use one of none"),
    ('<speak><prosody rate="-5%">x</prosody></speak>', "rate='-5%'"),
    ('<speak><prosody pitch="+20Hz">x</prosody></speak>', "Hz is not supported"),
    ('<speak><prosody volume="+99dB">x</prosody></speak>', "between -40 and +20"),
    ('<speak><phoneme alphabet="x-sampa" ph="h@">x</phoneme></speak>', "use alphabet=\"ipa\""),
    ('<speak><phoneme ph="<>">x</phoneme></speak>', "not well-formed"),
    ('<speak><phoneme ph="1">x</phoneme></speak>', "not IPA"),
    ('<speak><sub>x</sub></speak>', "needs an alias"),
    ('<speak><voice>x</voice></speak>', "needs a name"),
])
def test_bad_markup_is_a_clear_error(markup: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(markup)
    assert message in caught.value.message, caught.value.message
    assert caught.value.param == "text"


def test_breaks_are_capped() -> None:
    assert parse('<speak><break time="99s"/>x</speak>')[0] == Part(pause=10.0)


def test_say_as_readings() -> None:
    assert cardinal(0) == "zero" and cardinal(-15) == "minus fifteen"
    assert cardinal(1_000_101) == "one million one hundred one"
    assert [ordinal(n) for n in (1, 2, 3, 12, 20, 21, 100)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty-first", "one hundredth"]
    assert date("2024-03-05", None) == "March fifth, twenty twenty-four"
    assert date("05/03/2024", "dmy") == "March fifth, twenty twenty-four"
    assert date("1999", "y") == "nineteen ninety-nine" and date("13/40", "md") is None
    assert clock("14:30") == "fourteen thirty" and clock("9:05 PM") == "nine oh five p m"
    assert clock("9:00") == "nine o'clock" and clock("25:00") is None
    assert telephone("+1 555-0123") == "plus one, five five five, zero one two three"
    assert say_as("1,234", "cardinal", None) == "one thousand two hundred thirty-four"
    assert say_as("3rd", "ordinal", None) == "third"
    assert say_as("soon", "date", None) == "soon"  # unreadable: as written, never dropped
    assert say_as("x", "unknown-kind", None) == "x"

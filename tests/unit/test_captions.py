"""Words and captions from timings (core/captions.py), on hand-built timings: what every surface serves."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass

import srt
import webvtt

from voxgate.core.captions import CuePolicy, WordTrack, caption_file, cues, to_srt, to_vtt, width, words, wrap
from voxgate.core.types import Timing, word_spans
from voxgate.text.shown import PAD, shown

TEXT = "I paid 25 dollars, then left. Was it worth it? <Yes> & no."


def _timings(text: str, step: float = 0.3) -> list[Timing]:
    """One timing per white-space word of `text`, `step` seconds each, back to back."""
    out, at, start = [], 0, 0.0
    for token in text.split():
        at = text.index(token, at)
        out.append(Timing(at, at + len(token), start, start + step))
        at += len(token)
        start += step
    return out


def test_words_are_the_clients_text_with_their_times() -> None:
    got = words(TEXT, _timings(TEXT))
    assert [w.text for w in got] == TEXT.split()
    assert got[2].text == "25" and (got[2].start_char, got[2].end_char) == (7, 9)  # the number as written
    assert [round(w.start, 2) for w in got[:3]] == [0.0, 0.3, 0.6]
    assert all(TEXT[w.start_char:w.end_char] == w.text for w in got)


def test_spans_are_trimmed_and_empty_or_outside_ones_skipped() -> None:
    text = "Hello  world"
    got = words(text, [Timing(0, 6, 0.0, 0.4), Timing(6, 7, 0.4, 0.5), Timing(7, 12, 0.5, 0.9),
                       Timing(20, 30, 1.0, 1.2)])
    assert [(w.text, w.start_char, w.end_char) for w in got] == [("Hello", 0, 5), ("world", 7, 12)]
    assert words(text, None) == []


def test_times_never_go_back_across_chunks() -> None:
    track = WordTrack("one two three")
    first = track.add([Timing(0, 3, 1.0, 1.2)])
    second = track.add([Timing(4, 7, 0.9, 0.8), Timing(8, 13, 1.5, 1.9)])  # a bad engine's times
    assert [w.start for w in first + second] == [1.0, 1.0, 1.5]
    assert second[0].end == 1.0  # never before its start
    assert [w.text for w in track.words] == ["one", "two", "three"]


def test_sentences_close_cues_and_long_ones_split_at_a_clause() -> None:
    text = ("This first sentence is fairly long, and it goes on well past one line of captions. Short one. "
            "Then a very long sentence without any commas that simply has to be cut somewhere sensible.")
    timed = words(text, _timings(text))
    one_line = cues(text, timed, CuePolicy(max_lines=1))
    shown = [c.text for c in one_line]
    assert shown[:3] == ["This first sentence is fairly long,", "and it goes on well past one line of",
                         "captions."]
    assert "Short one." in shown
    assert all(width(c.text) <= 42 for c in one_line)
    assert " ".join(shown) == " ".join(text.split())  # every word once, in order
    for cue in one_line:
        assert cue.start == cue.words[0].start and cue.end == cue.words[-1].end
    # by default a cue has two lines of at most 42 columns, broken as evenly as they can be
    two = cues(text, timed)
    assert [c.text for c in two][:2] == ["This first sentence is fairly long, and\nit goes on well past one line of "
                                         "captions.", "Short one."]
    assert all(width(line) <= 42 for c in two for line in c.text.split("\n"))
    assert " ".join(c.text.replace("\n", " ") for c in two) == " ".join(text.split())


def test_duration_and_pauses_close_cues() -> None:
    text = "a b c d e f g h"
    slow = cues(text, words(text, _timings(text, step=1.0)), CuePolicy(max_seconds=2.5))
    assert [c.text for c in slow] == ["a b", "c d", "e f", "g h"]
    timings = [Timing(0, 1, 0.0, 0.2), Timing(2, 3, 0.2, 0.4), Timing(4, 5, 3.0, 3.2)]
    assert [c.text for c in cues(text, words(text, timings))] == ["a b", "c"]


def test_cjk_cues_keep_the_text_unspaced_and_count_wide_characters() -> None:
    text = "今天天气很好，我们去公园散步吧。明天见！"
    timings = [Timing(i, i + 1, 0.2 * i, 0.2 * i + 0.2) for i, c in enumerate(text) if c not in "，。！"]
    grouped = cues(text, words(text, timings), CuePolicy(max_chars=18, max_lines=1))
    assert [c.text for c in grouped] == ["今天天气很好，", "我们去公园散步吧。", "明天见！"]
    # two lines: broken after the comma, not inside a word
    assert cues(text, words(text, timings), CuePolicy(max_chars=18))[0].text == "今天天气很好，\n我们去公园散步吧。"
    # the last word of a sentence is its last character: the full stop after it is not a timed word
    assert width("今天") == 4


def test_an_abbreviation_s_full_stop_ends_no_cue() -> None:
    # the segmenter's rule: a title before a name, a single capital, a numbering word before a number, or any
    # "." before a lower-case word ("Dr." was a 0.3 s cue of its own)
    text = "We saw 25 dogs. Dr. Who came in with J. Smith, e.g. the vet, to room No. 5 today. Then left."
    shown = [c.text for c in cues(text, words(text, _timings(text, 0.2)), CuePolicy(max_chars=80, max_lines=1))]
    assert shown == ["We saw 25 dogs.", "Dr. Who came in with J. Smith, e.g. the vet, to room No. 5 today.",
                     "Then left."]


def test_the_abbreviation_rule_reads_past_spaces_and_stops_at_a_line_break() -> None:
    for text, expect in [("See No.   5 now. Then go.", ["See No. 5 now.", "Then go."]),
                         ("The price went up.   and then it fell.", ["The price went up. and then it fell."]),
                         ("It ended.\nand then it began.", ["It ended.", "and then it began."]),
                         ("Ask Dr.\nWho came.", ["Ask Dr. Who came."])]:  # a title before a break stays
        timed = words(text, _timings(text, 0.2))
        assert [c.text for c in cues(text, timed, CuePolicy(max_chars=80, max_lines=1))] == expect, text


def test_an_opening_quote_starts_the_next_sentence_s_cue() -> None:
    text = "持って行ってください。「ありがとう」と彼は言った。"
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans][9:12] == ["い。", "「あ", "り"]  # (the quote was "い。「")
    timings = [Timing(a, b, 0.2 * n, 0.2 * n + 0.2) for n, (a, b) in enumerate(spans)]
    shown = [c.text for c in cues(text, words(text, timings))]
    assert shown == ["持って行ってください。", "「ありがとう」と彼は言った。"]


def test_cjk_lines_are_not_broken_inside_a_latin_word_or_a_number() -> None:
    text = "我觉得这本书真的很好看Internationalization这个词很长很长。"
    timings = [Timing(i, i + 1, 0.1 * i, 0.1 * i + 0.1) for i, c in enumerate(text) if c != "。"]
    (cue,) = cues(text, words(text, timings))
    # the word whole, on one line (was "…好看Interna\ntionalization…")
    assert cue.text.split("\n") == ["我觉得这本书真的很好看", "Internationalization这个词很长很长。"]
    assert wrap("一二三四五六七八九十1234567890123456一二三四五六七八九十", 42) == [
        "一二三四五六七八九十", "1234567890123456一二三四五六七八九十"]  # the number kept whole (was split 8 + 8)
    assert wrap("円周率は3.14159265です", 14) == ["円周率は", "3.14159265です"]  # not after its "." (was "3." |)
    assert wrap("値は1,000,000円です", 14) == ["値は1,000,000", "円です"]
    assert wrap("答えはdon'tです本当", 12) == ["答えはdon't", "です本当"]  # (was "答えはdon'" | "tです本当" at 10)
    # a Latin word longer than a line is never cut (was "aaa…a\naaa…a": text without a space read as CJK)
    assert wrap("a" * 43, 42) is None
    (long_word,) = cues("a" * 43 + ".", words("a" * 43 + ".", [Timing(0, 44, 0.0, 1.0)]))
    assert long_word.text == "a" * 43 + "."  # one line, whole
    assert [len(line) for line in wrap("一二三四五六七八九十" * 2 + "一二三", 42) or []] == [11, 12]  # any two CJK
    # characters may part, as before


def test_ssml_captions_show_the_words_not_the_markup() -> None:
    # Timings of an SSML request point into the document: words and cues show its text, not its tags, and an
    # entity as its character (once escaped for WebVTT, not twice), inside the word it is in.
    doc = ('<speak><p>Hello <break time="1s"/> world &amp; friends.</p><p>Call AT&amp;T, x&lt;y '
           '<say-as interpret-as="characters">ABC</say-as> now.</p></speak>')
    spans = word_spans(shown(doc))
    timings = [Timing(a, b, 0.4 * n, 0.4 * n + 0.3) for n, (a, b) in enumerate(spans)]
    timed = words(doc, timings)
    assert [w.text for w in timed] == ["Hello", "world", "friends.", "Call", "AT&T,", "x<y", "ABC", "now."]
    assert doc[timed[4].start_char:timed[4].end_char] == "AT&amp;T,"  # offsets stay the document's
    vtt = list(webvtt.from_buffer(io.StringIO(caption_file(doc, timed, "vtt"))))
    assert [html.unescape(c.text) for c in vtt] == ["Hello world & friends.", "Call AT&T, x<y ABC now."]
    assert vtt[1].text == "Call AT&amp;T, x&lt;y ABC now."
    parsed = list(srt.parse(caption_file(doc, timed, "srt")))
    assert [c.content for c in parsed] == ["Hello world & friends.", "Call AT&T, x<y ABC now."]
    # a full stop right after a closing tag stays its word's, and ends the sentence's cue
    doc = '<speak>Visit the <sub alias="World Wide Web">WWW</sub>. Then <emphasis>go</emphasis>! Home.</speak>'
    spans = word_spans(shown(doc))
    timed = words(doc, [Timing(a, b, 0.4 * n, 0.4 * n + 0.3) for n, (a, b) in enumerate(spans)])
    assert [w.text for w in timed] == ["Visit", "the", "WWW.", "Then", "go!", "Home."]
    assert [c.text for c in cues(doc, timed)] == ["Visit the WWW.", "Then go!", "Home."]
    # character references as XML reads them (not HTML's 128–159 remapping); unknown entities blanked
    assert shown("<speak>&#x80;&#233;t&#xe9; &bogus; x</speak>")[7:] == "\x80" + PAD * 5 + "é" + PAD * 5 + "t" + \
        "é" + PAD * 5 + " " * 8 + " x" + " " * 8
    # an inline override shows as its word
    said = "Please run [kubectl](/kjuːb kənˈtɹoʊl/) now."
    timed = words(said, [Timing(a, b, 0.4 * n, 0.4 * n + 0.3) for n, (a, b) in enumerate(word_spans(shown(said)))])
    assert [w.text for w in timed] == ["Please", "run", "kubectl", "now."]
    assert [c.text for c in cues(said, timed)] == ["Please run kubectl now."]
    # text that is not SSML shows as written, markup-like or not
    assert [w.text for w in words("a <b> c", _timings("a <b> c"))] == ["a", "<b>", "c"]


def test_vtt_parses_back_with_escaped_text_and_ordered_times() -> None:
    timed = words(TEXT, _timings(TEXT))
    vtt = caption_file(TEXT, timed, "vtt")
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> ")
    parsed = webvtt.from_buffer(io.StringIO(vtt))
    # webvtt-py leaves character references as they are: the cue text is escaped as WebVTT requires
    assert [html.unescape(c.text) for c in parsed] == ["I paid 25 dollars, then left.", "Was it worth it?",
                                                       "<Yes> & no."]
    assert parsed[2].text == "&lt;Yes&gt; &amp; no."
    spans = [(c.start_time.in_milliseconds(), c.end_time.in_milliseconds()) for c in parsed]
    assert spans == sorted(spans) and all(end > start for start, end in spans)
    assert parsed[0].start == "00:00:00.000" and parsed[0].end == "00:00:01.800"


def test_srt_parses_back_in_order() -> None:
    text = "Alpha beta. Gamma --> delta --->."
    parsed = list(srt.parse(caption_file(text, words(text, _timings(text, 0.5)), "srt")))
    assert [(s.index, s.content) for s in parsed] == [(1, "Alpha beta."), (2, "Gamma -> delta ->.")]
    assert [s.start.total_seconds() for s in parsed] == [0.0, 1.0]
    assert [s.end.total_seconds() for s in parsed] == [1.0, 3.0]  # "-->" and "--->." are timed words too


def test_no_words_is_a_valid_file_with_no_cues_and_long_times_format() -> None:
    assert to_vtt([]) == "WEBVTT\n" and list(webvtt.from_buffer(io.StringIO(to_vtt([])))) == []
    assert to_srt([]) == ""
    late = cues("late", words("late", [Timing(0, 4, 3725.5, 3725.5)]))  # zero length, past an hour
    assert "01:02:05.500 --> 01:02:05.501" in to_vtt(late)
    assert "01:02:05,500 --> 01:02:05,501" in to_srt(late)


@dataclass(frozen=True)
class _Estimated(Timing):
    """A timing an engine without durations estimated (the core marks them `estimated`)."""

    estimated: bool = True


def test_estimated_timings_stay_marked() -> None:
    got = words("one two", [Timing(0, 3, 0.0, 0.2), _Estimated(4, 7, 0.2, 0.4)])
    assert [w.estimated for w in got] == [False, True]

"""Word timings on the client's text: the pieces that map engine timings back (no engine needed)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from tests.unit.fake_engine import FakeEngine
from voxgate.core.metrics import Metrics
from voxgate.core.parts import Part
from voxgate.core.service import Limits, SynthesisService
from voxgate.core.timemap import WordTimer, align, refine
from voxgate.core.types import SynthesisRequest, Timing, estimate_words, word_spans
from voxgate.engines.espeak import word_events
from voxgate.engines.wordtiming import word_timings
from voxgate.scheduling.backend import LocalBackend
from voxgate.scheduling.pool import WorkerPool
from voxgate.text.normalize import normalize_mapped
from voxgate.voices.registry import VoiceRegistry


def words(text: str, timings: tuple[Timing, ...] | list[Timing]) -> list[str]:
    return [text[t.start_char:t.end_char] for t in timings]


def test_words_are_runs_with_a_letter_or_digit_and_cjk_characters_one_each() -> None:
    text = "Dr. Smith — paid $3.50, 25 % (ok)"
    assert [text[s:e] for s, e in word_spans(text)] == ["Dr.", "Smith", "paid", "$3.50,", "25", "(ok)"]
    assert [("今日は、晴れ。")[s:e] for s, e in word_spans("今日は、晴れ。")] == ["今", "日", "は、", "晴", "れ。"]
    mixed = "我爱 Python 3。"
    assert word_spans(mixed, 10)[0] == (10, 11)  # offsets moved by base
    assert [mixed[s:e] for s, e in word_spans(mixed)] == ["我", "爱", "Python", "3。"]


def _reference_words(text: str) -> list[tuple[int, int]]:
    """word_spans as its docstring says it, a character at a time."""
    from voxgate.core.types import _ANY_CJK, _OPEN

    def cjk(c: str) -> bool:
        return _ANY_CJK.match(c) is not None

    def opens(i: int) -> bool:  # opening marks from i on, then such a character
        while i < len(text) and text[i] in _OPEN:
            i += 1
        return i < len(text) and cjk(text[i])

    out, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        j = i + 1
        if cjk(text[i]) or opens(i):  # one character (and the opening marks before it), with the punctuation
            while not cjk(text[j - 1]):  # after it up to an opening mark
                j += 1
            while j < len(text) and not (text[j].isspace() or cjk(text[j]) or text[j].isalnum() or text[j] == "_"
                                         or text[j] in _OPEN):
                j += 1
        else:
            while j < len(text) and not (text[j].isspace() or cjk(text[j]) or opens(j)):
                j += 1
        if any(c.isalnum() for c in text[i:j]):
            out.append((i, j))
        i = j
    return out


def test_word_spans_are_the_words_their_definition_gives_on_random_text() -> None:
    rng = np.random.default_rng(16)
    alphabet = list("ab Z9_-.,'\"()$%—½²éß\u00a0\t\n\u0301") + list("今日は、。ー・゛ｱ가「」『")
    for n in range(4000):
        chars = alphabet if n % 2 else alphabet[:-11]  # half without Chinese, Japanese or Korean (the quick way)
        text = "".join(rng.choice(chars, int(rng.integers(0, 24))))
        for base in (0, 5):
            assert word_spans(text, base) == [(a + base, b + base) for a, b in _reference_words(text)], repr(text)


@pytest.mark.timeout(20)
def test_word_spans_read_long_runs_of_opening_marks_in_one_pass() -> None:
    # Each opening mark looked ahead over the whole run after it: 100,000 of them took 51 s (quadratic).
    text = "日" + "(" * 100_000 + "a 「日"
    assert word_spans(text) == [(0, 1), (1, 100_002), (100_003, 100_005)]
    assert word_spans("a" + "(" * 50_000 + "x日") == [(0, 50_002), (50_002, 50_003)]


def test_align_skips_squeezed_space_and_falls_back_to_a_diff_for_rewrites() -> None:
    assert align("a b", "a  \n b").tolist() == [0, 1, 5]
    out = align("the colour red", "the color red", 0)  # a lexicon entry changed a word
    assert out[0] == 0 and out[-1] == 12 and out[-3] == 10


def test_readings_of_several_written_words_point_at_their_own() -> None:
    for text, expect in [("on March 3rd.", ["on", "March", "3rd."]),
                         ("5 km in 23 minutes", ["5", "km", "in", "23", "minutes"]),
                         ("3.5 kg, ok", ["3.5", "kg,", "ok"])]:
        norm = refine(normalize_mapped(text, "en-US"), text)
        spans = [norm.source_span(s, e) for s, e in word_spans(norm.text)]
        assert sorted({text[a:b] for a, b in spans}, key=text.index) == expect


def test_a_timer_maps_segments_through_normalisation_and_a_lexicon_rewrite() -> None:
    text = "Dr. Lee has 25 cats.  Colour them!"
    timer = WordTimer(text)
    src = timer.source("text", text, "en-US", True)
    assert src.norm.text == "Doctor Lee has twenty-five cats. Colour them!"
    timer.segment(0, src, "Doctor Lee has twenty-five cats.")
    timer.segment(1, src, "Colour them!")
    timer.prepared(0, "Doctor Lee has twenty-five cats.")
    timer.prepared(1, "Color them!")  # the engine got a lexicon's spelling
    first = timer.take(0, (Timing(0, 6, 0.0, 0.3), Timing(7, 10, 0.3, 0.5), Timing(11, 14, 0.5, 0.7),
                           Timing(15, 21, 0.7, 0.9), Timing(22, 26, 0.9, 1.0), Timing(27, 32, 1.0, 1.3)))
    assert words(text, first) == ["Dr.", "Lee", "has", "25", "cats."]
    assert (first[3].start, first[3].end) == (0.7, 1.0)  # twenty + five: one timing for "25"
    second = timer.take(1, (Timing(0, 5, 0.2, 0.5),), 1.3)  # a piece 1.3 s in; "them!" not timed
    assert words(text, second) == ["Colour"]
    rest = timer.finish()
    assert words(text, rest) == ["them!"] and rest[0].estimated and rest[0].start == 1.8


def test_a_word_the_engine_skipped_is_estimated_between_its_neighbours() -> None:
    text = "one two three"
    timer = WordTimer(text)
    timer.segment(0, timer.source("t", text, "en", True), text)
    timer.prepared(0, text)
    out = timer.take(0, (Timing(0, 3, 0.0, 0.2), Timing(8, 13, 0.6, 0.9)))
    assert words(text, out) == ["one", "two", "three"]
    assert out[1].estimated and (out[1].start, out[1].end) == (0.2, 0.6)
    assert not out[0].estimated and not out[2].estimated


class _MappedTimer(WordTimer):
    by_offset = False  # every source read through the per-character maps


def test_text_left_as_it_is_read_by_offset_gives_the_maps_timings_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """WordTimer's short cut for text normalisation leaves alone (source offset, segment shift) must give the
    timings the per-character maps give, float for float: random texts split into segments, some rewritten
    by a lexicon, with engine timings that skip, merge, split, overrun or cut words, over several pieces. Its
    quicker way still for a piece whose timings are exactly its words (`_whole_words`) is taken as well."""
    whole = 0
    real = WordTimer._whole_words

    def counted(self, *args):  # type: ignore[no-untyped-def]
        nonlocal whole
        words = real(self, *args)
        whole += words is not None
        return words

    monkeypatch.setattr(WordTimer, "_whole_words", counted)
    rng = np.random.default_rng(1616)
    vocab = ["the", "quick,", "brown", "fox.", "Jumps!", "don't", "(over)", "a", "lazy", "dog?", "—", "x",
             "今日", "は、", "晴れ。", "colour", "\n", "  "]
    plain = 0
    for _case in range(300):
        picked = [vocab[i] for i in rng.integers(0, len(vocab), int(rng.integers(1, 30)))]
        text = " ".join(picked).strip() or "ok"
        timers = [WordTimer(text), _MappedTimer(text)]
        language = "ja" if rng.random() < 0.2 else "en"
        sources = [t.source("text", text, language, bool(rng.random() < 0.5)) for t in timers]
        plain += sources[0].offset >= 0
        assert sources[1].offset == -1
        norm = sources[0].norm.text
        cuts = sorted({0, len(norm), *(int(c) for c in rng.integers(0, len(norm) + 1, int(rng.integers(0, 4))))})
        segments = [norm[a:b].strip() for a, b in itertools.pairwise(cuts)]
        segments = [seg for seg in segments if seg] or [norm.strip() or "ok"]
        pieces: list[list[tuple[int, Timing | None, float]]] = []
        clock = 0.0
        for n, seg in enumerate(segments):
            said = seg.replace("colour", "color") if rng.random() < 0.3 else seg  # a lexicon's spelling
            for timer, src in zip(timers, sources, strict=True):
                timer.segment(n, src, seg)
                timer.prepared(n, said)
            spans = word_spans(said)
            events: list[Timing] = []
            k = 0
            while k < len(spans):
                a, b = spans[k]
                roll = rng.random()
                if roll < 0.1:  # skipped
                    k += 1
                    continue
                if roll < 0.2 and k + 1 < len(spans):  # two words said as one
                    b, k = spans[k + 1][1], k + 1
                elif roll < 0.3 and b - a > 1:  # one word said as two
                    half = (a + b) // 2
                    events.append(Timing(a, half, clock, clock + 0.05))
                    a, clock = half, clock + 0.05
                elif roll < 0.35:  # off the word's edges
                    a, b = a - int(rng.integers(0, 3)), b + int(rng.integers(0, 3))
                step = float(rng.uniform(0.01, 0.3))
                events.append(Timing(a, b, clock, clock + step, bool(rng.random() < 0.1)))
                clock += step
                k += 1
            cut = int(rng.integers(0, len(events) + 1))
            pieces.append([(n, None, 0.0)] if not events else [])
            pieces[-1] += [(n, tuple(events[:cut]), 0.0), (n, tuple(events[cut:]), float(rng.uniform(0, 0.01)))]
        got = [[], []]
        for piece in itertools.chain.from_iterable(pieces):
            for out, timer in zip(got, timers, strict=True):
                out += timer.take(piece[0], piece[1], piece[2])
        for out, timer in zip(got, timers, strict=True):
            out += timer.finish()
        assert got[0] == got[1], text
        assert [(t.start_char, t.end_char) for t in got[0]] == timers[0].units  # every word once, in order
    assert plain > 100  # the short cut was taken
    assert whole > 50  # and the whole-words one (82 pieces of these 300 texts)


def test_whole_words_give_what_holding_and_releasing_them_gives() -> None:
    """`_whole_words` against the maps on the cases the random texts rarely make: a word's end as `_hold` puts
    it (0.2 + (0.9 - 0.2) is not 0.9), a timing reaching back before its segment onto a word never timed
    (`_hold` clips it to the segment: it times nothing), and one past the segment's end."""
    text = "one two three four five"
    got = []
    for timer in (WordTimer(text), _MappedTimer(text)):
        src = timer.source("text", text, "en", True)
        for n, seg in enumerate(("one two", "three four", "five")):
            timer.segment(n, src, seg)
            timer.prepared(n, seg)
        out = timer.take(0, (Timing(0, 3, 0.2, 0.9),))  # "two" is not timed
        out += timer.take(1, (Timing(-4, -1, 1.0, 1.1), Timing(0, 5, 1.1, 1.3), Timing(6, 10, 1.3, 1.4)), 0.05)
        out += timer.take(2, (Timing(0, 6, 2.0, 2.2),))  # past "five"'s end
        got.append(out + timer.finish())
    assert got[0] == got[1]
    assert [text[t.start_char:t.end_char] for t in got[0]] == text.split()
    assert got[0][0].end == 0.2 + (0.9 - 0.2) != 0.9
    assert got[0][1].estimated and not got[0][2].estimated  # "two": between its neighbours
    # a word cut between two segments: a timing past the first's end is clipped there, and the word waits
    text = "one two three"
    got = []
    for timer in (WordTimer(text), _MappedTimer(text)):
        src = timer.source("text", text, "en", True)
        for n, seg in enumerate(("one tw", "o three")):
            timer.segment(n, src, seg)
            timer.prepared(n, seg)
        out = timer.take(0, (Timing(0, 3, 0.0, 0.3), Timing(4, 7, 0.3, 0.5)))
        assert len(out) == 1  # "two" waits for the rest of it
        out += timer.take(1, (Timing(0, 1, 0.5, 0.6), Timing(2, 7, 0.6, 0.9)))
        got.append(out + timer.finish())
    assert got[0] == got[1]
    assert [(t.start, t.end) for t in got[0]] == [(0.0, 0.3), (0.3, 0.6), (0.6, 0.9)]


def test_a_segment_prepared_again_is_read_through_the_maps_as_the_maps_read_it() -> None:
    """`prepared` twice for one key (the service keys each engine call by its place in the stream, so only a
    caller of its own does this): the second, which the offset short cut does not fit, must not leave the
    first's offset behind (a review's case, from when a text stream's routed spans shared one key)."""
    japanese = "今日は良い天気ですね、散歩に行きましょう"
    got = []
    for timer in (WordTimer(""), _MappedTimer("")):
        timer.prepared(0, "Hello there friend", "Hello there friend")
        timer.prepared(0, japanese, japanese)
        out = timer.take(0, (Timing(0, 5, 0.0, 0.3), Timing(6, 11, 0.3, 0.6)))
        out += timer.take(0, tuple(Timing(c, c + 1, 0.1 * c, 0.1 * c + 0.1) for c in range(len(japanese))), 1.0)
        got.append(out + timer.finish())
    assert got[0] == got[1] and len(got[0]) == 3  # (the text a key is fed with is the first `prepared`'s)


def test_estimates_spread_words_over_the_voiced_part_by_length() -> None:
    rate = 1000
    x = np.zeros(1000, np.float32)
    x[100:900] = 0.5
    out = estimate_words("ab abcdef", x, rate)
    assert [x for t in out for x in (t.start, t.end)] == pytest.approx([0.1, 0.3, 0.3, 0.9])
    assert all(t.estimated for t in out)


def test_phoneme_durations_become_word_timings_split_at_spaces_not_stress_marks() -> None:
    tokens = list("ɡˈO hˈOm.")  # "Go home." in misaki's alphabet: ˈ is a stress mark, not a gap
    edges = np.arange(len(tokens) + 1) * 0.1
    out = word_timings("Go home.", tokens, edges)
    assert words("Go home.", out) == ["Go", "home."]
    assert [x for t in out for x in (t.start, t.end)] == pytest.approx([0.0, 0.3, 0.4, 0.8])
    # three written words over two phoneme words: shared by weight, snapped to the gap
    out = word_timings("a bb cc", list("aa bbbb"), np.arange(8) * 0.1)
    assert words("a bb cc", out) == ["a", "bb", "cc"] and out[0].start == 0.0 and out[-1].end == pytest.approx(0.7)


def test_espeak_word_events_time_words_and_share_run_together_ones() -> None:
    rate = 1000
    audio = np.full(1000, 0.3, np.float32)
    text = "from the west"
    out = word_events(text, [(0, 4, 0.0), (9, 4, 0.6)], audio, rate)  # no event for "the"
    assert words(text, out) == ["from", "the", "west"]
    assert [x for t in out for x in (t.start, t.end)] == pytest.approx([0.0, 0.6 * 4 / 7, 0.6 * 4 / 7, 0.6, 0.6, 1.0])
    zh = "很好"
    out = word_events(zh, [(0, 2, 0.0)], audio, rate)  # one event for a word of two characters
    assert words(zh, out) == ["很", "好"] and out[1].start == pytest.approx(0.5)


def test_espeak_in_order_path_gives_the_general_grouping_exactly() -> None:
    """`_in_order` (events in the words' order, one word each, words without an event joining the one before)
    must give `_grouped`'s timings float for float; random words and events, most of them in order."""
    from voxgate.engines.espeak import _grouped, _in_order

    rng = np.random.default_rng(16)
    audio = np.zeros(10, np.float32)
    taken = 0
    for _ in range(3000):
        count = int(rng.integers(1, 12))
        lengths = rng.integers(1, 9, count)
        gaps = rng.integers(1, 3, count)
        starts = np.cumsum(gaps + np.concatenate(([0], lengths[:-1])))
        words_ = [(int(s), int(s + n)) for s, n in zip(starts, lengths, strict=True)]
        base = int(rng.integers(0, 3))
        chosen = sorted(rng.choice(count, int(rng.integers(1, count + 1)), replace=False))
        events = []
        for k in chosen:
            s, e = words_[k]
            at = s - base + int(rng.integers(-12, 2)) if rng.random() < 0.2 else s - base  # some off a word's start,
            # some back over a word before it
            length = e - s + (int(rng.integers(-2, 8)) if rng.random() < 0.2 else 0)  # some over the next word
            events.append((at, length, 0.0))
        if rng.random() < 0.1 and len(events) > 1:
            events.reverse()  # out of the words' order
        times = np.sort(rng.uniform(0.0, 2.0, len(events)))
        if rng.random() < 0.2:
            times[rng.integers(0, len(times))] = times[0]  # two events at one time, then sorted by it
        events = [(at, length, float(t)) for (at, length, _), t in zip(events, times, strict=True)]
        events.sort(key=lambda event: event[2])  # as word_events sorts them
        sound_end = float(rng.uniform(0.0, 2.5))
        fast = _in_order(words_, events, base, sound_end)
        if fast is not None:
            taken += 1
            assert fast == _grouped(words_, events, base, sound_end, "", audio, 1000), (words_, events, base)
    assert taken > 1500  # most cases go the fast way
    # a word without an event ("the" in "on the smooth") no longer leaves the fast way
    assert _in_order([(0, 2), (3, 6), (7, 13)], [(0, 2, 0.0), (7, 6, 0.4)], 0, 1.0) is not None
    # but an event that reaches back over a word no event took does: the grouping gives it that word
    words_, events = [(0, 2), (3, 5), (6, 8)], [(3, 2, 0.0), (0, 8, 0.5)]
    assert _in_order(words_, events, 0, 1.0) is None
    assert [(t.start, t.end) for t in _grouped(words_, events, 0, 1.0, "", audio, 1000)] == [
        (0.5, 0.75), (0.0, 0.5), (0.75, 1.0)]



def test_espeak_timings_end_where_the_sound_ends_and_start_words_at_their_sound() -> None:
    from voxgate.engines.espeak import _timings

    rate = 22050
    audio = _tone(rate, [(0.1, 0.3), (0.45, 0.8)])  # a stop's closure: silence from 0.3 to 0.45
    text = "say bat"
    out = _timings(text, [(0, 3, 0.1), (4, 3, 0.31)], audio, rate, 0)
    assert words(text, out) == ["say", "bat"]
    assert out[0].start == 0.1 and out[0].end == 0.31
    assert out[1].start == pytest.approx(0.45, abs=0.011)  # moved from the silent closure to the sound
    assert out[1].end == pytest.approx(0.8, abs=0.006)  # the sound's end, not the clip's (1.0)
    silent = _timings(text, [(0, 3, 0.1), (4, 3, 0.31)], np.zeros(rate, np.float32), rate, 0)
    assert [(t.start, t.end) for t in silent] == [(0.1, 0.31), (0.31, 1.0)]  # no sound: the clip's end

@pytest.fixture(scope="module")
def service():  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    pool = WorkerPool(lambda name: engine, workers=1, threads=1, solo_threads=0, express=0)
    yield SynthesisService(VoiceRegistry({"fake": engine}, {}, "a"), LocalBackend(pool), Metrics(), Limits())
    pool.close()


async def _timed(service: SynthesisService, request: SynthesisRequest) -> tuple[list[Timing], float]:
    timings: list[Timing] = []
    seconds = 0.0
    async for chunk in service.stream(replace(request, timings=True)):  # timings asked for
        assert chunk.timings is not None
        timings += chunk.timings
        seconds += chunk.duration
    return timings, seconds


def _in_order(timings: list[Timing], total: float) -> None:
    end = 0.0
    for t in timings:
        assert end - 1e-9 <= t.start <= t.end <= total + 1e-6
        end = t.end


async def test_parts_ssml_and_dialect_segments_map_to_the_text_the_client_sent(service: SynthesisService) -> None:
    # narrator parts (AllTalk): substrings of the request's text, in their own voices
    text = '*He walks in.* "Hello there," she said.'
    parts = (Part("He walks in.", "a"), Part("Hello there,", "b"), Part("she said.", "a"))
    timings, total = await _timed(service, SynthesisRequest(text=text, voice="a", parts=parts))
    assert words(text, timings) == ["He", "walks", "in.", "Hello", "there,", "she", "said."]
    _in_order(timings, total)
    # SSML: offsets into the document, a break's silence between the words
    doc = '<speak>Good <break time="500ms"/> morning, <prosody rate="2.0">all 3 of you</prosody>.</speak>'
    timings, total = await _timed(service, SynthesisRequest(text=doc, voice="a"))
    assert words(doc, timings) == ["Good", "morning,", "all", "3", "of", "you"]
    assert timings[1].start - timings[0].end >= 0.5 - 1e-3
    _in_order(timings, total)
    # a say-as reading is nowhere in the document: its word is estimated between its neighbours
    doc = '<speak>I have <say-as interpret-as="cardinal">25</say-as> cats &amp; dogs.</speak>'
    timings, total = await _timed(service, SynthesisRequest(text=doc, voice="a"))
    assert words(doc, timings) == ["I", "have", "25", "cats", "dogs."]
    assert [t.estimated for t in timings] == [False, False, True, False, False]
    assert (timings[2].start, timings[2].end) == pytest.approx((timings[1].end, timings[3].start))
    _in_order(timings, total)
    # a sub alias longer than its word: the alias's words are all said in the word's time (it had "World" only,
    # and "Wide Web" were in no word's time)
    doc = '<speak>Visit the <sub alias="World Wide Web">WWW</sub> today.</speak>'
    timings, total = await _timed(service, SynthesisRequest(text=doc, voice="a"))
    assert words(doc, timings) == ["Visit", "the", "WWW", "today."]
    assert not timings[2].estimated
    assert timings[3].start - timings[2].end < 0.05  # no stretch of speech in no word's time
    assert timings[2].end - timings[2].start > 2.5 * (timings[1].end - timings[1].start)
    _in_order(timings, total)
    # an alias whose first words come before its word's own letters ("the UN" for "UN"): they are the word's,
    # not the word before's
    doc = '<speak>He works at <sub alias="the UN">UN</sub> now.</speak>'
    timings, total = await _timed(service, SynthesisRequest(text=doc, voice="a"))
    assert words(doc, timings) == ["He", "works", "at", "UN", "now."]
    assert timings[2].end - timings[2].start == pytest.approx(timings[1].end - timings[1].start)  # "at" alone
    assert timings[3].end - timings[3].start > 1.5 * (timings[2].end - timings[2].start)  # "the UN"
    _in_order(timings, total)
    # an entity inside a word keeps it one word (it was blanked to spaces: "AT" and "T." timed apart)
    doc = "<speak>Call AT&amp;T. Now.</speak>"
    timings, total = await _timed(service, SynthesisRequest(text=doc, voice="a"))
    assert words(doc, timings) == ["Call", "AT&amp;T.", "Now."]
    _in_order(timings, total)
    # a dialect's own segments, several sentences joined, at two speeds
    for speed in (0.5, 2.0):
        said = "First one. Second, two. Third is 3."
        request = SynthesisRequest(text=said, voice="a", speed=speed, segments=("First one.", "Second, two.",
                                                                                "Third is 3."))
        timings, total = await _timed(service, request)
        assert words(said, timings) == said.split()
        assert timings[0].end - timings[0].start == pytest.approx(0.1 / speed, abs=1e-3)
        _in_order(timings, total)


async def test_a_dialect_segment_routed_into_several_voices_times_each_span(service: SynthesisService) -> None:
    # Japanese inside an English segment (GPT-SoVITS cuts the text itself): one segment index, three engine calls
    # in two voices. Each call's words keep their own timings: none is estimated or squeezed to zero length.
    said = "Hello 日本です world. Bye now."
    request = SynthesisRequest(text=said, voice="a", segments=("Hello 日本です world.", "Bye now."))
    chunks = [c async for c in service.stream(replace(request, timings=True))]
    assert [c.index for c in chunks if c.text] == [0, 0, 0, 1, 1]  # the dialect's segment numbers stay
    timings = [t for c in chunks for t in c.timings or ()]
    assert words(said, timings) == ["Hello", "日", "本", "で", "す", "world.", "Bye", "now."]
    assert not any(t.estimated for t in timings)
    # the fake engine says each of its words in 0.1 s: "日本です" is one word to it, shared by its four characters
    lengths = [t.end - t.start for t in timings]
    assert lengths == pytest.approx([0.1, 0.025, 0.025, 0.025, 0.025, 0.1, 0.1, 0.1], abs=1e-3)
    _in_order(timings, sum(c.duration for c in chunks))


def test_a_first_word_put_before_any_sound_keeps_a_length_from_the_first_sound() -> None:
    from voxgate.engines.wordtiming import start_at_first_sound

    rate = 24000
    audio = np.zeros(rate, np.float32)
    audio[int(0.05 * rate):] = 0.3 * np.sin(np.arange(rate - int(0.05 * rate)) * 0.2)  # sound from 50 ms
    said = (Timing(0, 3, 0.0, 0.022), Timing(4, 9, 0.022, 0.3), Timing(10, 13, 0.3, 0.5))
    out = start_at_first_sound(said, audio, rate)
    assert out[0].start == pytest.approx(0.05, abs=0.006)
    assert out[0].end - out[0].start == pytest.approx(0.022, abs=1e-9)  # its predicted length, not empty
    assert out[1].start == out[0].end and out[1].end == 0.3 and out[2] == said[2]
    assert all(a.end <= b.start for a, b in itertools.pairwise(out))
    # the next word is short: the first ends by its middle, and neither is empty
    tight = (Timing(0, 3, 0.0, 0.04), Timing(4, 9, 0.04, 0.07), Timing(10, 13, 0.07, 0.5))
    out = start_at_first_sound(tight, audio, rate)
    assert out[0].end == pytest.approx(0.055) and out[1].start == out[0].end and out[1].end == 0.07


def _tone(rate: int, spans: list[tuple[float, float]]) -> np.ndarray:
    audio = np.zeros(rate, np.float32)
    for a, b in spans:
        n = int(b * rate) - int(a * rate)
        audio[int(a * rate):int(b * rate)] = 0.3 * np.sin(np.arange(n) * 0.2)
    return audio


def test_onsets_are_sound_after_silence_and_the_first_is_the_first_sound() -> None:
    from voxgate.engines.wordtiming import first_sound, onsets

    rate = 22050
    audio = _tone(rate, [(0.1, 0.3), (0.33, 0.4), (0.6, 0.8)])  # a 30 ms gap, then a 200 ms one
    found = onsets(audio, rate)
    assert len(found) == 2 and found[0] == first_sound(audio, rate)
    assert found[0] == pytest.approx(0.1, abs=0.011) and found[1] == pytest.approx(0.6, abs=0.011)
    assert len(onsets(audio, rate, gap=0.02)) == 3


def test_a_word_that_starts_in_silence_starts_at_its_first_sound() -> None:
    from voxgate.engines.wordtiming import snap_to_sound

    rate = 24000
    audio = _tone(rate, [(0.1, 0.3), (0.45, 0.7), (0.7, 0.9)])
    said = (Timing(0, 3, 0.1, 0.3), Timing(4, 9, 0.32, 0.7), Timing(10, 13, 0.7, 0.9),
            Timing(14, 16, 0.92, 0.95))  # the last starts in silence with no sound before its end
    out = snap_to_sound(said, audio, rate)
    assert out[1].start == pytest.approx(0.45, abs=0.011) and out[1].end == 0.7  # moved to its sound
    assert out[0] == said[0] and out[2] == said[2] and out[3] == said[3]  # in sound already, or none to find
    assert all(a.end <= b.start and b.start <= b.end for a, b in itertools.pairwise(out))

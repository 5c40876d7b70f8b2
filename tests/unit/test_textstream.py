"""The text-stream core (text in as it arrives, audio out in order), on the fake engine."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from tests.unit.fake_engine import FakeEngine
from tests.unit.test_scheduling import make_service
from voxgate.core import textstream
from voxgate.core.service import CALIBRATION_TEXT, SynthesisService
from voxgate.core.textstream import TextStream, TextStreamPolicy, open_text_stream
from voxgate.core.types import SynthesisRequest
from voxgate.engines.base import Capabilities
from voxgate.errors import InputTooLong, InvalidInput, VoiceNotFound

FAST = TextStreamPolicy(idle_flush=0.3, stall_flush=0.6)


async def started(engine: FakeEngine, policy: TextStreamPolicy = FAST,
                  timings: bool = False) -> tuple[SynthesisService, TextStream]:
    service = make_service(engine, workers=2)
    await service.warm_up()
    return service, await open_text_stream(service, SynthesisRequest(text="", voice="a", timings=timings),
                                           policy=policy)


async def test_first_clause_is_spoken_before_the_text_ends() -> None:
    engine = FakeEngine()
    service, stream = await started(engine, timings=True)  # its words' timings are checked too
    try:
        words = "Hello there my friend, this is a streamed answer. It keeps going for a while.".split()
        for word in words[:5]:
            stream.feed(word + " ")
        first = await asyncio.wait_for(anext(stream), 5)  # input not finished, no timeout passed
        assert first.index == 0 and first.text == "Hello there my friend,"
        assert not stream.input_done
        for word in words[5:]:
            stream.feed(word + " ")
        stream.finish()
        rest = [c async for c in stream]
        texts = [first.text] + [c.text for c in rest]
        spoken = [t for i, t in enumerate(texts) if i == 0 or t != texts[i - 1]]
        assert " ".join(spoken) == " ".join(words)
        # word timings: offsets into the segments' texts joined by a space (all there is of a text stream)
        timed = [t for c in [first, *rest] for t in c.timings or ()]
        assert [" ".join(spoken)[t.start_char:t.end_char] for t in timed] == words
        assert [c.index for c in rest] == sorted(c.index for c in rest)  # in order
        assert service.active == 0
    finally:
        service.close()


async def test_a_text_stream_segment_in_two_scripts_times_the_words_of_each_voice() -> None:
    # a segment routed into an English and a Japanese span: one index, two engine calls, each call's words timed
    engine = FakeEngine()
    service, stream = await started(engine, timings=True)
    try:
        stream.feed("Hello 日本です. Bye now.")
        stream.finish()
        chunks = [c async for c in stream]
        texts = [t for i, t in enumerate(c.text for c in chunks) if t and (i == 0 or t != chunks[i - 1].text)]
        assert texts == ["Hello", "日本です.", "Bye now."]
        timed = [t for c in chunks for t in c.timings or ()]
        joined = " ".join(texts)  # a text stream's words: its calls' texts joined by a space
        assert [joined[t.start_char:t.end_char] for t in timed] == ["Hello", "日", "本", "で", "す.", "Bye", "now."]
        assert not any(t.estimated for t in timed)
        # the fake engine says "日本です." as one 0.1 s word, shared by its characters' lengths ("す." is two)
        assert [t.end - t.start for t in timed] == pytest.approx([0.1, 0.02, 0.02, 0.02, 0.04, 0.1, 0.1], abs=1e-3)
        assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(timed))
    finally:
        service.close()


async def test_any_chunking_gives_the_same_segments() -> None:
    text = "One, two three four. Five six seven eight nine! 十个字。还有更多，好的。Done."
    results = []
    for size in (1, 3, len(text)):
        engine = FakeEngine()
        service, stream = await started(engine)
        try:
            for i in range(0, len(text), size):
                stream.feed(text[i : i + size])
            stream.finish()
            chunks = [c async for c in stream]
            results.append(sorted({(c.index, c.text) for c in chunks}))
        finally:
            service.close()
    assert results[0] == results[1] == results[2]
    assert results[0][0][1] == "One, two three four."


async def test_unpunctuated_text_is_flushed_when_the_input_goes_quiet() -> None:
    engine = FakeEngine()
    service, stream = await started(engine)
    try:
        stream.feed("no punctuation at all here")
        t0 = time.monotonic()
        chunk = await asyncio.wait_for(anext(stream), 5)
        assert chunk.text == "no punctuation at all here"
        assert time.monotonic() - t0 >= FAST.idle_flush * 0.9
        stream.finish()
        rest = [c async for c in stream]  # the rest of that segment audio, then the end
        assert all(c.index == 0 for c in rest)
        assert service.active == 0
    finally:
        service.close()


async def test_flowing_text_without_punctuation_is_cut_at_a_word_after_the_stall_time() -> None:
    engine = FakeEngine()
    service, stream = await started(engine)
    try:
        async def produce() -> None:
            for n in range(40):  # 4 s of words, never a pause long enough for the idle flush
                stream.feed(f"word{n} " if n % 2 else "wo")
                if n % 2 == 0:
                    await asyncio.sleep(0.05)
                    stream.feed(f"rd{n} ")
                await asyncio.sleep(0.05)
            stream.finish()

        producer = asyncio.ensure_future(produce())
        first = await asyncio.wait_for(anext(stream), 5)
        assert not producer.done()  # spoken while text was still coming
        assert first.text.startswith("word0 word1") and first.text.split()[-1].startswith("word")
        rest = [c async for c in stream]
        await producer
        spoken = []
        for c in [first, *rest]:
            if not spoken or spoken[-1] != (c.index, c.text):
                spoken.append((c.index, c.text))
        assert " ".join(t for _, t in spoken).split() == [f"word{n}" for n in range(40)]  # no word cut
    finally:
        service.close()


async def test_backlog_is_bounded_and_a_finished_stream_refuses_text() -> None:
    engine = FakeEngine()
    service = make_service(engine)
    service.limits = type(service.limits)(max_input_chars=50, max_queue=4)
    stream = await open_text_stream(service, SynthesisRequest(text="", voice="a"), policy=FAST)
    try:
        stream.feed("a" * 30)
        with pytest.raises(InputTooLong):
            stream.feed("b" * 30)
        stream.finish()
        with pytest.raises(InvalidInput):
            stream.feed("more")
        await stream.aclose()
    finally:
        service.close()


async def test_cancel_drops_buffered_and_queued_text_at_once() -> None:
    engine = FakeEngine()
    service, stream = await started(engine)
    try:
        stream.feed("WAIT first sentence here. Second sentence is queued. Third one too. ")
        pull = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        stream.feed("and some buffered words")
        await stream.aclose()
        engine.log.gate.set()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pull, 5)
        await asyncio.sleep(0.1)
        assert all("Second" not in t and "buffered" not in t for t in engine.log.texts())
        assert service.active == 0 and service.metrics.cancelled._value.get() == 1
    finally:
        service.close()


async def test_bad_voice_is_refused_before_admission() -> None:
    engine = FakeEngine()
    service = make_service(engine)
    try:
        with pytest.raises(VoiceNotFound):
            await open_text_stream(service, SynthesisRequest(text="", voice="nobody"))
        assert service.active == 0
    finally:
        service.close()


async def test_an_idle_stream_holds_no_slot_sleeps_and_ends_after_the_quiet_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeEngine()
    service = make_service(engine)
    policy = TextStreamPolicy(idle_flush=0.1, stall_flush=0.2, idle_end=0.5)
    try:
        await service.warm_up()
        idle = [await open_text_stream(service, SynthesisRequest(text="", voice="a"), policy=policy)
                for _ in range(10)]  # more than workers + max_queue (5)
        assert service.active == 0  # opening is free
        talker = idle[0]
        talker.feed("Hello there, friend. ")
        assert service.active == 1
        # No busy polling: it sleeps until its next timer, the idle flush of what the segmenter still holds.
        # Read on the stream's clock at the instant the text came: on a loaded machine more than the quiet
        # time passed between feed and this line (2 runs in 30 failed `> 0.05`, read on the wall clock).
        came = talker._last_text
        monkeypatch.setattr(textstream, "time", SimpleNamespace(monotonic=lambda: came))
        assert talker._timeout() == pytest.approx(policy.idle_flush)
        monkeypatch.undo()
        chunks = [c async for c in talker]  # never finished: ends by itself after idle_end
        assert chunks and talker.input_done and service.active == 0
        for stream in idle[1:]:
            await stream.aclose()
        assert service.active == 0
    finally:
        service.close()


class PhonemeFake(FakeEngine):
    """The fake engine taking `[[ipa]]` blocks, as Piper does: the SSML <phoneme> path runs."""

    def capabilities(self) -> Capabilities:
        return replace(super().capabilities(), phonemes=True)


DOC = ('<speak>Hello <phoneme alphabet="ipa" ph="wɜːld">world</phoneme>. <break time="300ms"/>'
       '<voice name="b">Second voice here.</voice></speak>')


async def test_ssml_split_into_pieces_is_read_as_one_document_never_as_tags() -> None:
    engine = PhonemeFake()
    service, stream = await started(engine)
    try:
        for i in range(0, len(DOC)):  # one character at a time: every tag is split
            stream.feed(DOC[i])
        stream.feed(" Then <plain> text.")  # after the document: plain text, its `<` a character
        stream.finish()
        chunks = [c async for c in stream]
        said = {t: v for v, _, t in engine.log.calls if t != CALIBRATION_TEXT}  # two workers: any order
        assert said == {"Hello [[wɜːld]].": "a", "Second voice here.": "b",  # no tag reached the engine;
                        "Then <plain> text.": "a"}  # <voice> switched, and back after the document
        captions = [c.text for c in chunks if c.text]
        assert "Hello world." in captions and not any("](/" in c or "[[" in c for c in captions)  # markup stripped
        pause = [c for c in chunks if not c.text and c.index == 1]  # the break: silence before segment 1
        assert len(pause) == 1 and abs(pause[0].duration - 0.3) < 0.01 and not pause[0].samples.any()
        assert service.active == 0
    finally:
        service.close()


async def test_ssml_flag_reads_text_without_speak_and_an_unclosed_document_is_an_error() -> None:
    engine = FakeEngine()
    service = make_service(engine, workers=2)
    try:
        await service.warm_up()
        forced = await open_text_stream(service, SynthesisRequest(text="", voice="a"), policy=FAST, ssml=True)
        for piece in ("Hi <bre", 'ak time="200ms"/> there', " &amp; bye."):
            forced.feed(piece)
        await asyncio.sleep(FAST.idle_flush * 1.5)  # idle flush never speaks held SSML
        assert [t for t in engine.log.texts() if t != CALIBRATION_TEXT] == []
        forced.finish()
        chunks = [c async for c in forced]
        said = [t for t in engine.log.texts() if t != CALIBRATION_TEXT]
        assert said == ["Hi", "there and bye."] and any(not c.text and c.duration >= 0.19 for c in chunks)

        broken = await open_text_stream(service, SynthesisRequest(text="", voice="a"), policy=FAST)
        broken.feed("<speak>Never closed. <s>Still open")
        broken.finish()
        with pytest.raises(InvalidInput, match="not well-formed"):
            [c async for c in broken]
        assert service.active == 0

        bad = await open_text_stream(service, SynthesisRequest(text="", voice="a"), policy=FAST)
        with pytest.raises(InvalidInput, match="not well-formed"):  # a complete bad document: at once
            bad.feed("<speak>a <b>c</speak>")
        await bad.aclose()
        assert service.active == 0
    finally:
        service.close()

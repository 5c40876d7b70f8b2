"""`<role:…>` script parsing of the Flash-TTS dialect, and its pitch/speed mapping (no server needed)."""

from __future__ import annotations

import math

import pytest

from voxgate.dialects.flash.protocol import (
    LEVELS,
    PITCH_SEMITONES,
    SPEED_FACTORS,
    MultiSpeakRequest,
    semitones_of_ratio,
    synthesis_request,
)
from voxgate.dialects.flash.roles import Line, ScriptError, parse
from voxgate.errors import InvalidInput


def test_text_before_the_first_tag_is_kept_for_the_default_voice() -> None:
    assert parse("Hello all. <role:A>Hi. <role:B,pitch:high>Yo!") == [
        Line(None, "Hello all."), Line("A", "Hi."), Line("B", "Yo!", pitch="high"),
    ]


def test_text_without_tags_is_one_default_line() -> None:
    assert parse("  Just words.  ") == [Line(None, "Just words.")]


@pytest.mark.parametrize("tag", [
    "<role:A,pitch:low,speed:very_high>", "<role:A,speed:very_high,pitch:low>",
    "<role: A , pitch: LOW , speed : Very_High >",
])
def test_attributes_in_any_order_case_and_spacing(tag: str) -> None:
    assert parse(f"{tag}Words.") == [Line("A", "Words.", pitch="low", speed="very_high")]


def test_attributes_belong_to_their_tag_only() -> None:
    lines = parse("<role:A,speed:low>One.<role:A>Two.")
    assert [(x.speed, x.text) for x in lines] == [("low", "One."), (None, "Two.")]


def test_blank_and_punctuation_only_stretches_are_dropped() -> None:
    assert parse("<role:A>   <role:B>...!? <role:C>Said.\n") == [Line("C", "Said.")]


def test_unicode_role_names_and_multiline_text() -> None:
    assert parse("<role:小明>你好。\n第二行。<role:Zoë>Hi") == [Line("小明", "你好。\n第二行。"), Line("Zoë", "Hi")]


def test_things_that_are_not_tags_stay_text() -> None:
    assert parse("a <role:> b <role:A c <rolex:B>d") == [Line(None, "a <role:> b <role:A c <rolex:B>d")]


@pytest.mark.parametrize(("text", "needle"), [
    ("<role:A,pitch:loud>x", "invalid pitch 'loud'"),
    ("<role:A,volume:high>x", "unknown attribute 'volume:high'"),
    ("<role:A,pitch>x", "unknown attribute 'pitch'"),
    ("<role:A,pitch:low,pitch:high>x", "pitch given twice"),
    ("<role: >x", "empty role name"),
])
def test_bad_tags_are_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse(text)
    assert needle in info.value.message and isinstance(info.value, InvalidInput)


@pytest.mark.parametrize("text", ["", "   ", "<role:A>", "<role:A> ... <role:B>"])
def test_nothing_to_say_is_the_originals_message(text: str) -> None:
    with pytest.raises(ScriptError, match="The multi-role text parsing result is empty"):
        parse(text)


def test_hostile_input_parses_in_linear_time() -> None:
    # Shapes that make backtracking regexes explode; the parse must simply finish (bounded loop, no timing).
    for text in ("<role:" + "a," * 20_000, "<role:a" + ",x" * 20_000 + "!", "<role:" * 20_000):
        lines = parse(text + " end")
        assert lines[-1].text.endswith("end")


def test_levels_map_to_real_shifts_monotonically() -> None:
    assert LEVELS == ("very_low", "low", "moderate", "high", "very_high")
    assert [PITCH_SEMITONES[x] for x in LEVELS] == sorted(PITCH_SEMITONES.values())
    assert [SPEED_FACTORS[x] for x in LEVELS] == sorted(SPEED_FACTORS.values())
    assert PITCH_SEMITONES["moderate"] == 0.0 and SPEED_FACTORS["moderate"] == 1.0
    request = synthesis_request("Hi.", "v", 16000, "very_high", "low")
    assert (request.pitch, request.speed, request.sample_rate) == (6.0, 0.8, 16000)
    plain = synthesis_request("Hi.", "v", 16000)
    assert (plain.pitch, plain.speed) == (0.0, 1.0)


def test_float_pitch_is_a_frequency_ratio_within_an_octave() -> None:
    assert semitones_of_ratio(1.0) == 0.0
    assert math.isclose(semitones_of_ratio(2 ** (7 / 12)), 7.0)
    assert semitones_of_ratio(4.0) == 12.0 and semitones_of_ratio(0.25) == -12.0


def test_models_keep_the_originals_defaults() -> None:
    body = MultiSpeakRequest(text="x")
    assert (body.temperature, body.top_k, body.top_p, body.repetition_penalty, body.max_tokens) == (
        0.9, 50, 0.95, 1.0, 4096)
    assert (body.length_threshold, body.window_size, body.stream, body.response_format) == (50, 50, False, "mp3")

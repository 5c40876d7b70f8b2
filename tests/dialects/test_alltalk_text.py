"""AllTalk's text filters, narrator splitting, form checks and output folder, without a server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError

from voxgate.dialects.alltalk.narrator import Part, assign, clean_text, split_parts
from voxgate.dialects.alltalk.outputs import OutputStore
from voxgate.dialects.alltalk.protocol import ParamError, language_tag, parse_form

DEFAULTS = {
    "text_filtering": "standard", "character_voice_gen": "c", "narrator_enabled": "false",
    "narrator_voice_gen": "n", "text_not_inside": "character", "language": "en", "output_file_name": "out",
    "output_file_timestamp": True, "autoplay": False, "autoplay_volume": 0.5, "speed": 1.0, "temperature": 0.75,
    "repetition_penalty": 10.0, "pitch": 0.0,
}


def test_none_filtering_keeps_everything() -> None:
    text = "Hi!!! <b>*x*</b> Ωμέγα\n\nnext"
    assert clean_text(text, "none") == text


def test_standard_filtering_collapses_stops_drops_disallowed_and_newlines() -> None:
    assert clean_text("Wait!!! Really??? Yes...", "standard") == "Wait! Really? Yes."
    assert clean_text("a *b* <c> Ωμ #1\nline", "standard") == "a b c  1 line"  # *, <, >, Greek, # deleted
    kept = "Привет café 你好 こんにちは 안녕 नमस्ते مرحبا ‘q’ “d” 、。！，：；？"
    assert clean_text(kept, "standard") == kept


def test_html_filtering_unescapes_and_strips_markup_characters() -> None:
    assert clean_text("It&#x27;s &amp; ***bold*** &lt;tag&gt;\n\n\nok", "html") == "It's  bold tag ok"


def test_split_parts_in_order() -> None:
    text = 'Intro here. *He smiles.* "Hello, friend!" Then&amp;more... *Waves.*'
    assert split_parts(text) == [
        Part("ambiguous", "Intro here."), Part("narrator", "He smiles."), Part("character", "Hello, friend!"),
        Part("ambiguous", "Then&more."), Part("narrator", "Waves."),
    ]
    assert split_parts('"a *b* c"') == [Part("ambiguous", '"a'), Part("narrator", "b"), Part("ambiguous", 'c"')]


@pytest.mark.parametrize(
    ("narrator", "inside", "expected"),
    [
        ("true", "character", [("C", "Intro here."), ("N", "He smiles."), ("C", "Hello, friend!")]),
        ("true", "narrator", [("N", "Intro here."), ("N", "He smiles."), ("C", "Hello, friend!")]),
        ("silent", "character", [("C", "Intro here."), ("C", "Hello, friend!")]),
        ("true", "silent", [("N", "He smiles."), ("C", "Hello, friend!")]),
        ("silent", "silent", [("C", "Hello, friend!")]),
    ],
)
def test_assign_routes_parts_and_skips_silent_and_short(narrator: str, inside: str,
                                                        expected: list[tuple[str, str]]) -> None:
    parts = split_parts('Intro here. *He smiles.* "Hello, friend!" *Ok.*')  # "Ok." is ≤ 3 characters
    assert assign(parts, narrator, inside, "C", "N") == expected


def test_form_merges_over_defaults_and_reports_every_bad_field() -> None:
    params = parse_form({"text_input": "Hi", "speed": "1.5", "output_file_timestamp": "false", "pitch": ""},
                        DEFAULTS, 2000)
    assert (params.speed, params.output_file_timestamp, params.pitch, params.language) == (1.5, False, 0.0, "en")
    with pytest.raises(ParamError) as bad:
        parse_form({"text_input": "x" * 11, "language": "xx", "pitch": "11", "narrator_voice_gen": "a|b"},
                   DEFAULTS, 10)
    assert bad.value.message == (
        "text_input: text_input needs to be 10 characters or less.\n"
        "narrator_voice_gen: narrator_voice_gen needs to be the name of a valid voice for the loaded TTS engine.\n"
        "language: language needs to be one of the following: auto, ar, zh-cn, zh, cs, nl, en, fr, de, hu, hi, "
        "it, ja, ko, pl, pt, ru, es, tr.\n"
        "pitch: pitch needs to be between -10 and 10."
    )
    with pytest.raises(RequestValidationError) as typed:
        parse_form({"text_input": "x", "speed": "fast"}, DEFAULTS, 10)
    assert typed.value.errors()[0]["loc"] == ("body", "speed")


def test_language_tags() -> None:
    assert [language_tag(c) for c in ("auto", "zh-cn", "en", "ja")] == [None, "zh", "en", "ja"]


def test_output_store_refuses_names_that_leave_the_folder(tmp_path: Path) -> None:
    store = OutputStore(tmp_path / "outputs")
    written = store.write("ok_1.wav", b"RIFF")
    assert written.read_bytes() == b"RIFF" and store.find("ok_1.wav") == written
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    (tmp_path / "secret.wav").write_bytes(b"x")
    (tmp_path / "outputs" / "link.wav").symlink_to(tmp_path / "secret.wav")
    for name in ("../secret.wav", "..", ".", "", "/etc/passwd", "a/b.wav", ".tmp-x", "link.wav", "missing.wav",
                 "..%2Fsecret.wav", "ok_1.wav\0"):
        assert store.find(name) is None, name
    with pytest.raises(ValueError):
        store.write("../escape.wav", b"x")
    assert not (tmp_path / "escape.wav").exists()


def test_output_store_prunes_by_count_and_age(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, keep=3, max_age=3600)
    now = time.time()
    for i in range(5):
        path = store.write(f"f{i}.wav", b"x")
        os.utime(path, (now - 10 + i, now - 10 + i))  # f4 newest
    assert sorted(p.name for p in store.list()) == ["f2.wav", "f3.wav", "f4.wav"]
    os.utime(tmp_path / "f2.wav", (now - 7200, now - 7200))
    (tmp_path / "notes.txt").write_text("not ours")
    assert [p.name for p in store.prune()] == ["f2.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f3.wav", "f4.wav", "notes.txt"]

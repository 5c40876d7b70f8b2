"""espeak-ng engine: every language as a voice, variants on demand, real audio, one lock for its state."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests.conftest import rms
from voxgate.engines.base import EngineParams
from voxgate.engines.espeak import ESPEAK_LOCK, EspeakEngine
from voxgate.engines.registry import create_engine


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    made = create_engine("espeak")
    assert isinstance(made, EspeakEngine)
    return made


def speak(engine: EspeakEngine, voice_id: str, text: str, speed: float = 1.0) -> tuple[list[np.ndarray], int]:
    voice = engine.voice_for(voice_id)
    assert voice is not None, voice_id
    loaded = engine.load(voice, threads=1)
    return [p.samples for p in loaded.synthesize(text, EngineParams(speed=speed))], loaded.sample_rate


def test_every_language_is_a_voice(engine: EspeakEngine) -> None:
    voices = {v.id: v for v in engine.voices()}
    assert len(voices) > 100
    assert voices["espeak:cmn"].language == "zh" and voices["espeak:yue"].language == "yue"
    assert voices["espeak:ko"].language == "ko" and voices["espeak:en-us"].language == "en-US"
    assert all(v.engine == "espeak" and v.sample_rate == 22050 for v in voices.values())
    assert {"zh", "yue", "ja", "ko", "en-US", "fr-FR", "de", "ru", "ar", "hi"} <= set(engine.capabilities().languages)
    assert "f3" in engine.variants() and "klatt" in engine.variants()


def test_specs_resolve_variants_and_tags(engine: EspeakEngine) -> None:
    assert engine.voice_for("espeak:zh").id == "espeak:cmn"  # the BCP-47 tag finds espeak's name
    variant = engine.voice_for("espeak:en-us+f3")
    assert variant is not None and variant.id == "espeak:en-us+f3" and variant.language == "en-US"
    assert engine.voice_for("espeak:en-us+nobody") is None
    assert engine.voice_for("espeak:tlh") is None
    assert engine.voice_for("en_US-joe-medium") is None


@pytest.mark.parametrize(("voice", "text"), [
    ("espeak:cmn", "你好，世界。今天天气很好。"),
    ("espeak:ko", "안녕하세요. 만나서 반갑습니다."),
    ("espeak:yue", "你好，今日天氣好好。"),
    ("espeak:ja", "こんにちは。"),
])
def test_chinese_korean_cantonese_japanese_speak(engine: EspeakEngine, voice: str, text: str) -> None:
    pieces, rate = speak(engine, voice, text)
    audio = np.concatenate(pieces)
    assert rate == 22050 and audio.dtype == np.float32
    assert 0.5 < len(audio) / rate < 8.0
    assert rms(audio) > 0.03 and np.abs(audio).max() <= 1.0
    if text.count("。") == 2:
        assert len(pieces) == 1  # one call for both sentences: espeak-ng pauses between them itself


def test_speed_and_variants_change_the_audio(engine: EspeakEngine) -> None:
    text = "The rain in Spain stays mainly in the plain."
    normal = np.concatenate(speak(engine, "espeak:en-us", text)[0])
    fast = np.concatenate(speak(engine, "espeak:en-us", text, speed=2.0)[0])
    assert 0.4 < len(fast) / len(normal) < 0.65
    female = np.concatenate(speak(engine, "espeak:en-us+f3", text)[0])
    assert len(female) != len(normal) or not np.allclose(female, normal)


def test_threads_share_the_library_without_corrupting_it(engine: EspeakEngine) -> None:
    jobs = [("espeak:cmn", "你好，世界。"), ("espeak:en-us", "Hello there, world."), ("espeak:ko", "안녕하세요.")]
    expected = {voice: np.concatenate(speak(engine, voice, text)[0]) for voice, text in jobs}
    results: dict[str, list[np.ndarray]] = {voice: [] for voice, _ in jobs}

    def run(voice: str, text: str) -> None:
        for _ in range(5):
            results[voice].append(np.concatenate(speak(engine, voice, text)[0]))

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for voice, outputs in results.items():
        assert len(outputs) == 5
        # espeak-ng varies by a few samples run to run; crossed state would mix voices' audio wholesale
        assert all(abs(len(out) - len(expected[voice])) < 0.02 * len(expected[voice]) for out in outputs), voice
        assert all(abs(rms(out) - rms(expected[voice])) < 0.1 * rms(expected[voice]) for out in outputs), voice
    assert not ESPEAK_LOCK.locked()


_CALLBACKS = """
import hashlib, json, sys
import voxgate.engines.espeak as E
if len(sys.argv) > 1:
    E._BUFFER_MS = int(sys.argv[1])
calls = []
collect = E._Library._collect
def counted(self, wav, count, events):
    calls.append(count)
    return collect(self, wav, count, events)
E._Library._collect = counted
with E.ESPEAK_LOCK:
    audio = E.library().speak("gmw/en-US", "The birch canoe slid on the smooth planks. Glue the sheet.", 175)
    words = E.library().words()
print(json.dumps({"callbacks": len(calls), "audio": hashlib.sha256(audio.tobytes()).hexdigest(), "words": words}))
"""


def test_a_call_comes_back_in_a_few_callbacks_with_the_audio_and_events_of_short_ones() -> None:
    # Each callback is a ctypes call into Python: espeak-ng's default 60 ms buffers made dozens a sentence, ~8% of
    # its synthesis. The library is set up once per process, so each buffer length is read in a process of its own.
    def run(*args: str) -> dict:  # type: ignore[type-arg]
        done = subprocess.run([sys.executable, "-c", _CALLBACKS, *args], capture_output=True, text=True, timeout=60,
                              check=True)
        return json.loads(done.stdout)

    ours, default = run(), run("0")  # 0: espeak-ng's own default
    assert ours["callbacks"] <= 8 < 30 <= default["callbacks"]
    assert ours["audio"] == default["audio"]  # the same samples, bit for bit
    assert ours["words"] == default["words"] and len(ours["words"]) == 10  # the same word events


def test_every_listed_voice_speaks_even_where_its_language_is_no_voice_name(engine: EspeakEngine) -> None:
    """en-gb and fr-fr are language names, not voice names: voices load by their file (gmw/en, roa/fr)."""
    silent = []
    for voice in engine.voices():
        pieces = [p.samples for p in engine.load(voice, threads=1).synthesize("a b c.", EngineParams())]
        if not pieces or rms(np.concatenate(pieces)) < 0.01:
            silent.append(voice.id)
    assert silent == []
    pieces, _ = speak(engine, "espeak:en-gb+f3", "Good morning.")
    assert rms(np.concatenate(pieces)) > 0.02


def _silences(audio: np.ndarray, rate: int, least: float = 0.08) -> list[float]:
    """Lengths in seconds of the runs of 10 ms frames 40 dB below the loudest, of at least `least`, with sound on
    both sides."""
    hop = rate // 100
    frames = audio[:len(audio) // hop * hop].reshape(-1, hop)
    level = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    loud = np.flatnonzero(level > level.max() * 0.01)
    gaps = np.diff(loud) - 1
    return [float(g * hop / rate) for g in gaps if g * hop / rate >= least]


@pytest.mark.parametrize("speed", [1.0, 0.5])
def test_sentences_pause_as_in_one_espeak_call(engine: EspeakEngine, speed: float) -> None:
    """Sentences are said with espeak-ng's own pause between them (0.3 s at 175 words a minute) and after the
    last: called a sentence at a time they ran together (a call's last pause is dropped)."""
    from voxgate.engines.espeak import DEFAULT_WPM, ESPEAK_LOCK, library

    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background! Is it easy?"
    pieces, rate = speak(engine, "espeak:en-us", text, speed)
    ours = np.concatenate(pieces)
    voice = engine.voice_for("espeak:en-us")
    assert voice is not None
    with ESPEAK_LOCK:  # espeak-ng itself, the text in one call
        whole = library().speak(str(voice.engine_data["espeak_identifier"]), text, round(DEFAULT_WPM * speed))
    expected = _silences(whole, rate)
    assert len(expected) == 2 and min(expected) > 0.25 * (1 / speed)  # (the reference itself: two long pauses)
    got = _silences(ours, rate)
    assert len(got) == 2 and np.allclose(got, expected, atol=0.03), (got, expected)
    # and the last sentence ends with its pause too (zeros), as every call's does now
    loud = np.flatnonzero(np.abs(ours) > 0.01 * np.abs(ours).max())
    assert (len(ours) - loud[-1]) / rate > 0.25 * (1 / speed)
    assert not np.any(ours[-int(0.2 * rate):])
    # a line without a closing mark ends as a sentence (espeak-ng alone would run the lines together)
    lines = np.concatenate(speak(engine, "espeak:en-us", "Shopping list\nApples and pears", speed)[0])
    gaps = _silences(lines, rate)
    assert len(gaps) == 1 and abs(gaps[0] - expected[0]) < 0.03, (gaps, expected)


def test_numbers_and_abbreviations_stay_inside_one_call() -> None:
    """"3.50", "e.g." and "Mr." are not sentence ends (espeak-ng reads them in one call); line breaks end a
    call, Chinese full stops need no space, and a call holds at most MAX_CALL_CHARS unless one sentence is longer."""
    from voxgate.engines.espeak import MAX_CALL_CHARS, calls

    text = "Mr. Smith paid 3.50 dollars, e.g. for tea. Then he left!"
    assert list(calls(text)) == [(0, text)]
    assert list(calls("Line one\nLine two.\r\n\n  Three. Four")) == [
        (0, "Line one"), (9, "Line two."), (23, "Three. Four")]
    assert list(calls("你好。世界")) == [(0, "你好。世界")]
    assert list(calls("  \n ")) == []
    many = "Short one. " * 100
    said = list(calls(many))
    assert len(said) > 1 and all(len(part) <= MAX_CALL_CHARS for _, part in said)
    assert "".join(f"{part} " for _, part in said) == many  # whole sentences, in order, none lost
    assert all(many[at:at + len(part)] == part for at, part in said)
    long = "word " * 120 + "end."
    assert list(calls(long + " Next.")) == [(0, long), (len(long) + 1, "Next.")]

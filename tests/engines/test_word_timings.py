"""Word timings from every engine, through the service: one per word of the text the client sent, in order,
inside the audio, on the stream's time axis after tempo stretch, resampling, joins and a voice shift."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from voxgate.audio.voiceshift import BAND_HZ, Shift
from voxgate.core.metrics import Metrics
from voxgate.core.service import Limits, SynthesisService
from voxgate.core.types import SynthesisRequest, Timing, word_spans
from voxgate.engines.espeak import EspeakEngine
from voxgate.engines.hibari import HibariEngine
from voxgate.engines.kokoro import KokoroEngine
from voxgate.engines.pico import PicoEngine
from voxgate.engines.piper import PiperEngine
from voxgate.scheduling.backend import LocalBackend
from voxgate.scheduling.pool import WorkerPool
from voxgate.voices.registry import VoiceRegistry

JOE = "en_US-joe-medium"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthesisService]:
    engines = {"piper": PiperEngine(), "kokoro": KokoroEngine(tmp_path_factory.mktemp("kokoro")),
               "hibari": HibariEngine(), "espeak": EspeakEngine(), "pico": PicoEngine()}
    registry = VoiceRegistry(engines, {}, JOE)
    shift = Shift(f0_ratio=1.25, range_ratio=1.0, formant_ratio=1.06, eq_db=(0.0,) * len(BAND_HZ))
    registry.add_transient("matched", "matched", "en-US", {"base_voice": JOE, "shift": shift.to_dict()}, 22050)
    pool = WorkerPool(lambda name: engines[name], workers=1, threads=1, solo_threads=0, express=0)
    service = SynthesisService(registry, LocalBackend(pool), Metrics(), Limits())
    for voice in (JOE, "kokoro:jf_alpha", "kokoro-zh:jf_nezumi", "hibari:heart", "espeak:en-us", "pico:en-US"):
        service._gains[voice] = 1.0  # no calibration synthesis: levels are not what is tested here
    yield service
    pool.close()


async def spoken(service: SynthesisService, request: SynthesisRequest) -> tuple[list[Timing], np.ndarray, int]:
    timings: list[Timing] = []
    audio = []
    rate = 0
    async for chunk in service.stream(replace(request, timings=True)):  # timings asked for
        assert chunk.timings is not None  # every chunk says which words start in it (maybe none)
        timings += chunk.timings
        audio.append(chunk.samples)
        rate = chunk.rate
    return timings, np.concatenate(audio), rate


def check(text: str, timings: list[Timing], audio: np.ndarray, rate: int, estimated: bool = False) -> list[str]:
    """Every word once, in order, not overlapping, inside the audio; returns the words."""
    assert [(t.start_char, t.end_char) for t in timings] == word_spans(text)
    end = 0.0
    for t in timings:
        assert end - 1e-6 <= t.start <= t.end <= len(audio) / rate + 1e-3, (text[t.start_char:t.end_char], t)
        assert t.estimated is estimated, t
        end = t.end
    return [text[t.start_char:t.end_char] for t in timings]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


@pytest.mark.parametrize("speed", [0.5, 4.0])
async def test_piper_across_speeds_resampling_and_sentences(service: SynthesisService, speed: float) -> None:
    # 4.0 is twice what Piper does itself: the rest is the core's tempo stretch; output resampled to 16 kHz
    text = "Stop. Dr. Lee paid $3.50 for 25 pears, then left."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice=JOE, speed=speed,
                                                                  sample_rate=16000))
    assert rate == 16000
    assert check(text, timings, audio, rate)[4:6] == ["$3.50", "for"]
    first = timings[0]
    inside = audio[int(first.start * rate):int(first.end * rate)]
    after = audio[int(first.end * rate) + int(0.05 * rate):int(timings[1].start * rate)]  # the pause after Stop.
    assert rms(inside) > 3 * rms(after)
    assert timings[-1].end == pytest.approx(len(audio) / rate, abs=0.6 / speed)


async def test_kokoro_japanese_and_chinese_are_timed_character_by_character(service: SynthesisService) -> None:
    for voice, text in (("kokoro:jf_alpha", "今日はいい天気ですね。"), ("kokoro-zh:jf_nezumi", "今天天气很好。")):
        timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice=voice))
        assert check(text, timings, audio, rate) == [text[s:e] for s, e in word_spans(text)]
        assert len(timings) == len(text.rstrip("。"))
        assert timings[-1].end - timings[0].start > 0.5  # spread over the speech, not piled up


async def test_hibari_espeak_and_a_matched_voice(service: SynthesisService) -> None:
    for voice in ("hibari:heart", "espeak:en-us", "matched"):
        text = "I have 25 cats, from the west."
        timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice=voice, speed=2.0))
        assert check(text, timings, audio, rate)[2] == "25"


@pytest.mark.parametrize("speed", [2.6, 4.0])
async def test_espeak_beyond_its_own_rate_is_timed_through_the_core_s_stretch(service: SynthesisService,
                                                                             speed: float) -> None:
    # From 450 wpm (speed 2.57) espeak-ng speeds up with sonic and its word events no longer follow the words:
    # at 4.0 "three", "four" and "five" were empty and after the audio's end, and caption cues overlapped.
    text = "Speed test one two. Three. Four. Five."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice="espeak:en-us", speed=speed))
    check(text, timings, audio, rate)
    assert all(t.end - t.start > 0.03 for t in timings), timings  # every word lasts
    starts = [t.start for t in timings]
    assert starts == sorted(set(starts))
    assert timings[-1].end == pytest.approx(len(audio) / rate, abs=0.08)  # the last word ends with the sound
    plain, plain_audio, _ = await spoken(service, SynthesisRequest(text=text, voice="espeak:en-us", speed=2.0))
    # the same words, stretched: each start about the same share of the clip as at speed 2.0
    shares = [t.start / (len(audio) / rate) for t in timings]
    assert shares == pytest.approx([t.start / (len(plain_audio) / rate) for t in plain], abs=0.08)


@pytest.mark.parametrize("voice", [JOE, "hibari:heart", "kokoro:jf_alpha"])
async def test_an_inline_override_is_one_word_timed_from_its_phonemes(service: SynthesisService, voice: str) -> None:
    # The override's IPA reaches the engine as a [[block]]: Piper reads the block's phoneme words as its own and
    # hibari places its sentence with the block in it, so the clause is timed from the model's durations (on both
    # it was all estimated), and the override is one word of the client's text.
    text = "Please run [kubectl](/kjuːb kənˈtɹoʊl/) now, then stop."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice=voice))
    said = [text[t.start_char:t.end_char] for t in timings]
    assert said == ["Please", "run", "[kubectl](/kjuːb kənˈtɹoʊl/)", "now,", "then", "stop."]
    assert not any(t.estimated for t in timings), timings
    end = 0.0
    for t in timings:
        assert end - 1e-6 <= t.start < t.end <= len(audio) / rate + 1e-3
        end = t.end
    override = timings[2]
    assert override.end - override.start > 0.35  # two phoneme words' worth, not squeezed
    assert rms(audio[int(override.start * rate):int(override.end * rate)]) > 0.02


async def test_pico_timings_are_estimates(service: SynthesisService) -> None:
    text = "Good morning, everyone."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice="pico:en-US"))
    check(text, timings, audio, rate, estimated=True)


def sound_starts(audio: np.ndarray, rate: int, gap: float = 0.15) -> list[float]:
    """Seconds where sound starts after at least `gap` of silence (5 ms steps, silent below −35 dB of the
    loudest 10 ms): the independent check of a word's first sound that bench/bench_timestamps.py uses."""
    hop, win = rate // 200, rate // 100
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), win)[::hop]
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = level > level.max() - 35
    starts, quiet = [], gap
    for i, on in enumerate(loud):
        if on and quiet >= gap:
            starts.append(i * hop / rate)
        quiet = 0.0 if on else quiet + hop / rate
    return starts


def longest_pause(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """(start, end) of the clip's longest silence between sounds (same frames and −35 dB as `sound_starts`; the
    start is the middle of the last loud frame before it): a full stop's pause, however long the engine made it."""
    hop, win = rate // 200, rate // 100
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), win)[::hop]
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > level.max() - 35)
    at = int(np.argmax(np.diff(loud)))
    return float((loud[at] * hop + win / 2) / rate), float(loud[at + 1] * hop / rate)


def longest_pause_end(audio: np.ndarray, rate: int) -> float:
    """Where sound comes back after the clip's longest silence between sounds: the first sound of the word
    after a full stop."""
    return longest_pause(audio, rate)[1]


@pytest.mark.parametrize("voice", [JOE, "kokoro:jf_alpha", "hibari:heart"])
async def test_words_after_silence_start_at_their_first_sound(service: SynthesisService, voice: str) -> None:
    # The clip's first word, and one after a full stop's pause. The pause is found as the longest silence, not
    # as one of at least 0.15 s: Piper draws its durations at random, and 3 runs in 40 made this one shorter.
    text = "Stop. Go home now."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice=voice))
    first, after = sound_starts(audio, rate)[0], longest_pause_end(audio, rate)
    assert after > first + 0.2  # the pause is after "Stop", not inside the clip's lead-in
    for word, sound in ((timings[0], first), (timings[1], after)):
        assert abs(word.start - sound) <= 0.06, (text[word.start_char:word.end_char], word.start, sound)


@pytest.mark.parametrize("voice", ["kokoro:jf_alpha", "hibari:heart"])
@pytest.mark.parametrize("speed", [0.5, 2.0])
async def test_first_word_starts_at_the_first_sound_at_any_speed(service: SynthesisService, voice: str,
                                                                 speed: float) -> None:
    # The decoders start a sentence's first sound ahead of the leading pad's predicted end, by an amount that
    # changes with speed: from the durations alone Kokoro's first word came 250 ms late at 0.5, 40 ms early at 2.0.
    text = "The juice of lemons makes fine punch."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice=voice, speed=speed))
    check(text, timings, audio, rate)
    first = sound_starts(audio, rate)[0]
    assert abs(timings[0].start - first) <= 0.03, (timings[0].start, first)


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0])
async def test_espeak_words_start_at_their_first_sound_not_at_a_silent_closure(service: SynthesisService,
                                                                              speed: float) -> None:
    # espeak-ng's word event comes where the word's phonemes begin, and it renders a stop's closure as
    # digital silence: "Call" at the start of a sentence sounded 85 ms after its event at speed 0.5 (49 ms at
    # 1.0, 28 ms at 2.0), so the first word of a sentence was that early against its first sound.
    text = "Call me at ten. Take the cake."
    timings, audio, rate = await spoken(service, SynthesisRequest(text=text, voice="espeak:en-us", speed=speed))
    words = check(text, timings, audio, rate)
    first, after = sound_starts(audio, rate)[0], longest_pause_end(audio, rate)
    for word, sound in ((timings[0], first), (timings[words.index("Take")], after)):
        assert abs(word.start - sound) <= 0.03, (text[word.start_char:word.end_char], word.start, sound)


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0])
def test_espeak_words_before_a_pause_end_at_their_last_sound(speed: float) -> None:
    # Both sentences are one espeak-ng call, whose word events run on through the pause between them (and
    # through a comma's): the word before a pause ends where its sound does, not where the next word starts.
    from voxgate.engines.base import EngineParams

    engine = EspeakEngine()
    voice = engine.voice_for("espeak:en-us")
    assert voice is not None
    text = "Call me at ten. Take the cake."
    pieces = list(engine.load(voice, threads=1).synthesize(text, EngineParams(speed=speed)))
    assert len(pieces) == 1 and pieces[0].timings is not None
    audio, rate, timings = pieces[0].samples, pieces[0].rate, list(pieces[0].timings)
    words = check(text, timings, audio, rate)
    silent_from, after = longest_pause(audio, rate)
    ten = timings[words.index("Take") - 1]
    assert abs(ten.end - silent_from) <= 0.03 < after - ten.end, (ten.end, silent_from, after)
    assert abs(timings[words.index("Take")].start - after) <= 0.03

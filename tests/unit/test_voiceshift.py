"""Voice matching DSP: pitch and envelope analysis, shift planning, and resynthesis on real Piper speech."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.speech import RATE, piper_speech
from voxgate.audio.voiceshift import (
    EQ_LIMIT_DB,
    N_BANDS,
    Shift,
    VoiceProfile,
    analyse,
    apply_shift,
    plan_shift,
)
from voxgate.errors import InvalidInput

TEXTS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to bring your umbrella, because it might rain later this afternoon.",
)
TILT = tuple(float(g) for g in np.linspace(-4.0, 6.0, N_BANDS))  # a brighter recording chain
STRONG = Shift(f0_ratio=1.6, range_ratio=1.0, formant_ratio=1.15, eq_db=TILT)  # a "different speaker"


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    """One float32 22.05 kHz array per text, spoken by the bundled Piper voice."""
    return piper_speech(*TEXTS)


@pytest.fixture(scope="module")
def base_profile(speech: list[np.ndarray]) -> VoiceProfile:
    return analyse(speech[0], RATE)


@pytest.fixture(scope="module")
def target(speech: list[np.ndarray]) -> np.ndarray:
    """The first sentence turned into a clearly different voice."""
    return apply_shift(speech[0], RATE, STRONG)


@pytest.fixture(scope="module")
def target_profile(target: np.ndarray) -> VoiceProfile:
    return analyse(target, RATE)


def harmonic_tone(f0: float, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A voiced-like tone: 20 harmonics falling 6 dB per octave, slight vibrato."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 21) if k * f0 < rate / 2)
    return (0.3 * tone / np.max(np.abs(tone))).astype(np.float32)


def longest_silence_s(x: np.ndarray, rate: int = RATE) -> float:
    """Longest run of 20 ms frames 50 dB below the loudest frame."""
    frame = int(rate * 0.02)
    energy = np.mean(x[: x.size // frame * frame].reshape(-1, frame).astype(np.float64) ** 2, axis=1)
    silent = energy < energy.max() * 1e-5
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(int), [0]]))))[::2]
    return float(runs.max(initial=0)) * 0.02


@pytest.mark.parametrize("f0", [120.0, 220.0])
def test_analyse_finds_the_pitch_of_a_harmonic_tone(f0: float) -> None:
    profile = analyse(harmonic_tone(f0), RATE)
    assert profile.f0_median == pytest.approx(f0, rel=0.03)
    assert profile.f0_log_std < 0.05


def test_analyse_piper_speech_is_plausible(base_profile: VoiceProfile) -> None:
    assert 70.0 < base_profile.f0_median < 300.0
    assert 0.0 < base_profile.f0_log_std < 0.5
    assert len(base_profile.envelope) == N_BANDS
    assert np.all(np.isfinite(base_profile.envelope))
    assert abs(np.mean(base_profile.envelope)) < 1e-6  # level-free shape


def test_analyse_without_voicing_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        analyse(np.zeros(RATE, dtype=np.float32), RATE)
    with pytest.raises(InvalidInput):
        analyse(np.zeros(100, dtype=np.float32), RATE)


def test_profile_and_shift_round_trip_through_json(base_profile: VoiceProfile) -> None:
    shift = plan_shift(base_profile, VoiceProfile(150.0, 0.2, tuple(reversed(base_profile.envelope))))
    assert VoiceProfile.from_dict(json.loads(json.dumps(base_profile.to_dict()))) == base_profile
    assert Shift.from_dict(json.loads(json.dumps(shift.to_dict()))) == shift
    with pytest.raises(ValueError):
        VoiceProfile.from_dict({**base_profile.to_dict(), "envelope": [0.0] * 3})
    with pytest.raises(ValueError):
        Shift.from_dict({**shift.to_dict(), "grid": "another"})


def test_plan_of_a_voice_to_itself_and_at_strength_zero_is_identity(
    base_profile: VoiceProfile, target_profile: VoiceProfile
) -> None:
    assert plan_shift(base_profile, base_profile).is_identity
    assert plan_shift(base_profile, target_profile, strength=0.0).is_identity
    assert plan_shift(base_profile, target_profile, strength=0.0) == Shift.identity()


def test_plan_recovers_the_shift_and_strength_interpolates_monotonically(
    base_profile: VoiceProfile, target_profile: VoiceProfile
) -> None:
    full = plan_shift(base_profile, target_profile)
    assert full.f0_ratio == pytest.approx(1.6, rel=0.05)
    assert full.formant_ratio == pytest.approx(1.15, rel=0.04)
    plans = [plan_shift(base_profile, target_profile, s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    for field in ("f0_ratio", "formant_ratio"):
        values = [getattr(p, field) for p in plans]
        assert values == sorted(values) and values[0] == 1.0
    eq_sizes = [float(np.abs(p.eq_db).max()) for p in plans]
    assert eq_sizes == sorted(eq_sizes) and eq_sizes[-1] > 1.0


def test_plan_clamps_to_sane_ranges(base_profile: VoiceProfile) -> None:
    wild = VoiceProfile(base_profile.f0_median * 5, base_profile.f0_log_std * 10, tuple(
        60.0 * np.sin(np.arange(N_BANDS) / 2.0)))
    shift = plan_shift(base_profile, wild)
    assert shift.f0_ratio == 2.0 and shift.range_ratio == 2.0
    assert 0.8 <= shift.formant_ratio <= 1.25
    assert max(abs(g) for g in shift.eq_db) <= EQ_LIMIT_DB


def test_identity_shift_returns_the_input(speech: list[np.ndarray]) -> None:
    out = apply_shift(speech[1], RATE, Shift.identity())
    assert np.array_equal(out, speech[1])


def test_pitch_shift_raises_the_measured_median(speech: list[np.ndarray], base_profile: VoiceProfile) -> None:
    x = speech[1]
    y = apply_shift(x, RATE, Shift(1.5, 1.0, 1.0, (0.0,) * N_BANDS))
    assert y.dtype == np.float32 and abs(y.size - x.size) <= 0.01 * x.size
    assert np.max(np.abs(y)) <= 1.0
    assert np.sqrt(np.mean(y**2)) > 0.3 * np.sqrt(np.mean(x**2))
    assert analyse(y, RATE).f0_median / analyse(x, RATE).f0_median == pytest.approx(1.5, rel=0.07)


def test_strong_shift_output_is_sane_speech(speech: list[np.ndarray], target: np.ndarray) -> None:
    x = speech[0]
    assert target.size == x.size and np.max(np.abs(target)) <= 1.0
    assert longest_silence_s(target) <= longest_silence_s(x) + 0.06  # no dropouts
    power = np.abs(np.fft.rfft(target.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(target.size, 1.0 / RATE)
    assert power[(freqs > 80) & (freqs < 5000)].sum() / power.sum() > 0.8  # energy stays in speech bands


def test_silent_unvoiced_and_tiny_input_pass_through(speech: list[np.ndarray]) -> None:
    silent = np.zeros(RATE, dtype=np.float32)
    assert np.array_equal(apply_shift(silent, RATE, STRONG), silent)
    noise = (0.05 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
    out = apply_shift(noise, RATE, STRONG)
    assert out.size == noise.size and np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    tiny = speech[0][RATE : RATE + 100]
    assert apply_shift(tiny, RATE, STRONG).size == tiny.size


def test_matching_moves_another_sentence_toward_the_target_speaker(
    speech: list[np.ndarray], target: np.ndarray, base_profile: VoiceProfile, target_profile: VoiceProfile
) -> None:
    """THE point of the module: a different sentence, shifted by the plan, sounds more like the target."""
    from voxgate.voices.embedding import SpeakerEncoder, cosine

    encoder = SpeakerEncoder()
    target_embedding = encoder.embed(target, RATE)
    other = speech[1]
    before = cosine(encoder.embed(other, RATE), target_embedding)
    moved = apply_shift(other, RATE, plan_shift(base_profile, target_profile))
    after = cosine(encoder.embed(moved, RATE), target_embedding)
    # Measured: about 0.40 before and 0.87 after.
    assert after - before >= 0.25, (before, after)
    assert after > 0.7, (before, after)


# Downward only to -3 st: this ~85 Hz voice at -5 st lands at ~64 Hz, beside the tracker's 60 Hz floor, where
# it reads the shift 0.6-1.0 st short (measured over 8 takes and one CI run); at -3 st it reads 0.1-0.2 short.
@pytest.mark.parametrize("semitones", [-3.0, 4.0])
def test_request_pitch_moves_the_median_by_its_semitones(
    speech: list[np.ndarray], base_profile: VoiceProfile, semitones: float
) -> None:
    shifted = apply_shift(speech[0], RATE, Shift.identity().then(semitones=semitones))
    assert shifted.size == speech[0].size
    measured = 12.0 * np.log2(analyse(shifted, RATE).f0_median / base_profile.f0_median)
    assert abs(measured - semitones) < 0.7, measured


@pytest.mark.parametrize("tempo", [0.5, 1.5, 2.0])
def test_request_tempo_changes_length_and_keeps_pitch(
    speech: list[np.ndarray], base_profile: VoiceProfile, tempo: float
) -> None:
    stretched = apply_shift(speech[0], RATE, STRONG.then(tempo=tempo))
    assert stretched.size == round(speech[0].size / tempo)
    profile = analyse(stretched, RATE)
    assert abs(12.0 * np.log2(profile.f0_median / base_profile.f0_median / STRONG.f0_ratio)) < 0.7
    assert float(np.sqrt(np.mean(stretched ** 2))) > 0.02


def test_tempo_of_an_unvoiced_piece_still_changes_its_length() -> None:
    hiss = (0.05 * np.random.default_rng(0).standard_normal(RATE // 2)).astype(np.float32)
    assert apply_shift(hiss, RATE, Shift.identity().then(tempo=2.0)).size == RATE // 4


def test_shift_then_rejects_a_non_positive_tempo() -> None:
    with pytest.raises(ValueError):
        Shift.identity().then(tempo=0.0)

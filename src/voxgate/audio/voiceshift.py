"""Voice matching DSP: measure a voice once, then move another voice's audio toward it.

This is voice *matching*, not cloning: a base voice's output keeps its own timbre details, and only its
pitch (median and range), formant positions (a frequency-axis warp) and long-term spectral envelope (an
EQ) move toward the target. Praat (praat-parselmouth) does the pitch analysis and the PSOLA-based
"Change gender" resynthesis; the EQ is a linear-phase FIR in numpy. Praat was chosen over WORLD
(pyworld) because WORLD's own f0 trackers (dio, harvest) put this project's Piper voice an octave too
high and miss most of its creaky frames, while Praat agrees with pYIN, and because Praat resynthesis is
about 5x faster for the same embedding movement.

parselmouth does not release the GIL: one call holds it for roughly 1% of the audio's duration.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from voxgate.errors import InvalidInput

N_BANDS = 48  # envelope bands, mel-spaced
BAND_LOW_HZ = 100.0
BAND_HIGH_HZ = 8000.0  # common ground of 16 kHz references and 22.05 kHz voices
GRID_NAME = f"mel{N_BANDS}-{int(BAND_LOW_HZ)}-{int(BAND_HIGH_HZ)}"  # stored with profiles: grids must match
PITCH_FLOOR_HZ = 60.0  # low male voices (this Piper voice creaks down to ~67 Hz)
PITCH_CEILING_HZ = 500.0  # above this Praat starts finding octave-up errors in low voices
PITCH_STEP_S = 0.01
MIN_VOICED_FRAMES = 10  # 0.1 s of voicing: fewer gives no trustworthy median
F0_RATIO_LIMITS = (0.5, 2.0)
RANGE_RATIO_LIMITS = (0.5, 2.0)
FORMANT_RATIO_LIMITS = (0.8, 1.25)
EQ_LIMIT_DB = 12.0
_WARP_STEPS = 45  # per side of 1.0: 0.5% steps between 0.8 and 1.25
_WARP_PRIOR = 50.0  # dB² per (ln ratio)²: prefer no warp when envelopes fit about as well either way
_IDENTITY_TOL = 1e-3
_EQ_TOL_DB = 0.05


def hz_to_mel(hz: Any) -> np.ndarray:
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, hz / (200.0 / 3))


def mel_to_hz(mel: Any) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


BAND_MEL = np.linspace(float(hz_to_mel(BAND_LOW_HZ)), float(hz_to_mel(BAND_HIGH_HZ)), N_BANDS)
BAND_HZ = mel_to_hz(BAND_MEL)  # centre frequency of each envelope band
BAND_MEL.setflags(write=False)
BAND_HZ.setflags(write=False)


def _clamp(value: float, limits: tuple[float, float]) -> float:
    """`value` forced into [low, high]; NaN becomes 1.0 (no change)."""
    return 1.0 if not math.isfinite(value) else min(max(value, limits[0]), limits[1])


def _bands(values: Any, name: str) -> tuple[float, ...]:
    """Validate a per-band sequence read from storage."""
    bands = tuple(float(v) for v in values)
    if len(bands) != N_BANDS or not all(math.isfinite(v) for v in bands):
        raise ValueError(f"{name} needs {N_BANDS} finite values, got {len(bands)}")
    return bands


@dataclass(frozen=True)
class VoiceProfile:
    """Measured once per voice (reference or base voice output). JSON-serialisable via to_dict/from_dict."""

    f0_median: float  # Hertz, over voiced frames
    f0_log_std: float  # spread of natural-log f0 (robust: 1.4826 × median absolute deviation)
    envelope: tuple[float, ...]  # mean log envelope of voiced frames, dB re its own band mean, on BAND_HZ
    formant_scale: float | None = None  # not estimated separately: plan_shift warps the envelope instead

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, tagged with the band grid."""
        return {
            "grid": GRID_NAME, "f0_median": self.f0_median, "f0_log_std": self.f0_log_std,
            "envelope": list(self.envelope), "formant_scale": self.formant_scale,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoiceProfile:
        """Inverse of to_dict; ValueError when the data is for another grid or malformed."""
        if data.get("grid", GRID_NAME) != GRID_NAME:
            raise ValueError(f"profile was measured on grid {data['grid']!r}, this build uses {GRID_NAME!r}")
        scale = data.get("formant_scale")
        return cls(
            f0_median=float(data["f0_median"]), f0_log_std=float(data["f0_log_std"]),
            envelope=_bands(data["envelope"], "envelope"),
            formant_scale=None if scale is None else float(scale),
        )


@dataclass(frozen=True)
class Shift:
    """What to do to a base voice's audio to move it toward a target; JSON-serialisable too."""

    f0_ratio: float  # multiply median pitch
    range_ratio: float  # scale log-f0 deviations around the median
    formant_ratio: float  # >1 shifts formants up (shorter vocal tract)
    eq_db: tuple[float, ...]  # per-band gain on BAND_HZ, smoothed, clamped to ±EQ_LIMIT_DB
    duration_ratio: float = 1.0  # output length / input length (a request's tempo, never stored)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, tagged with the band grid."""
        return {
            "grid": GRID_NAME, "f0_ratio": self.f0_ratio, "range_ratio": self.range_ratio,
            "formant_ratio": self.formant_ratio, "eq_db": list(self.eq_db),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shift:
        """Inverse of to_dict; ValueError when the data is for another grid or malformed."""
        if data.get("grid", GRID_NAME) != GRID_NAME:
            raise ValueError(f"shift was planned on grid {data['grid']!r}, this build uses {GRID_NAME!r}")
        return cls(
            f0_ratio=float(data["f0_ratio"]), range_ratio=float(data["range_ratio"]),
            formant_ratio=float(data["formant_ratio"]), eq_db=_bands(data["eq_db"], "eq_db"),
        )

    @classmethod
    def identity(cls) -> Shift:
        """The shift that changes nothing."""
        return cls(1.0, 1.0, 1.0, (0.0,) * N_BANDS)

    def then(self, semitones: float = 0.0, tempo: float = 1.0) -> Shift:
        """This shift plus a request's pitch change (semitones) and tempo (2.0 = twice as fast)."""
        if tempo <= 0:
            raise ValueError("tempo must be positive")
        return replace(self, f0_ratio=self.f0_ratio * 2.0 ** (semitones / 12.0),
                       duration_ratio=self.duration_ratio / tempo)

    @property
    def moves_pitch_or_formants(self) -> bool:
        """True when Praat resynthesis is needed (the EQ alone is a cheap filter)."""
        ratios = (self.f0_ratio, self.range_ratio, self.formant_ratio, self.duration_ratio)
        return any(abs(r - 1.0) > _IDENTITY_TOL for r in ratios)

    @property
    def has_eq(self) -> bool:
        """True when any band gain is audible enough to filter for."""
        return any(abs(g) > _EQ_TOL_DB for g in self.eq_db)

    @property
    def is_identity(self) -> bool:
        """True when apply_shift would return its input untouched."""
        return not (self.moves_pitch_or_formants or self.has_eq)


# ---------------------------------------------------------------------------------------- analysis


def _sound_and_pitch(x: np.ndarray, rate: int) -> tuple[Any, Any] | None:
    """Praat Sound and its Pitch, or None when the clip is too short for the pitch floor."""
    import parselmouth

    # Praat needs three periods of the pitch floor in one window, and refuses shorter sounds.
    if x.size < int(rate * 3.0 / PITCH_FLOOR_HZ) + 2:
        return None
    sound = parselmouth.Sound(np.asarray(x, dtype=np.float64), sampling_frequency=float(rate))
    pitch = sound.to_pitch_ac(time_step=PITCH_STEP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    return sound, pitch


def _frame_envelopes(x: np.ndarray, rate: int, times: np.ndarray) -> np.ndarray:
    """(len(times), N_BANDS) cepstrally smoothed log power envelopes in dB of 32 ms frames at `times`."""
    win = int(rate * 0.032)
    n_fft = 1 << (win - 1).bit_length()
    padded = np.pad(np.asarray(x, dtype=np.float64), (win, win))
    starts = np.clip(np.round(times * rate).astype(int) + win - win // 2, 0, padded.size - win)
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[starts] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, n_fft, axis=-1)) ** 2
    log_power = np.log(power + 1e-10 * power.max(axis=-1, keepdims=True) + 1e-30)
    cepstrum = np.fft.irfft(log_power, n_fft, axis=-1)
    # Keep quefrencies under 1.6 ms: below the 2 ms period of the highest pitch, so harmonics are gone
    # and the envelope does not depend on f0 (a 1.6x pitch change must not read as an EQ change).
    keep = max(2, int(rate * 0.0016))
    cepstrum[:, keep : n_fft - keep + 1] = 0.0
    envelope = np.fft.rfft(cepstrum, n_fft, axis=-1).real * (10.0 / math.log(10.0))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    # Bands above 95% of Nyquist (e.g. a 16 kHz reference) repeat the last band the audio really has.
    grid = np.minimum(BAND_HZ, 0.95 * rate / 2.0)
    return np.stack([np.interp(grid, freqs, env) for env in envelope])


def analyse(samples: np.ndarray, rate: int) -> VoiceProfile:
    """Measure pitch median and range and the mean spectral envelope; InvalidInput without voicing."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    found = _sound_and_pitch(x, rate)
    if found is None:
        raise InvalidInput("audio too short to measure a voice")
    pitch = found[1]
    f0 = pitch.selected_array["frequency"]
    voiced = f0 > 0
    if int(voiced.sum()) < MIN_VOICED_FRAMES:
        raise InvalidInput("no voiced speech found in the audio")
    log_f0 = np.log(f0[voiced])
    centre = float(np.median(log_f0))
    times = np.asarray(pitch.xs())[voiced]
    # 500 frames at a time keeps memory flat for long references (a full spectrum per frame is large).
    envelope = sum(_frame_envelopes(x, rate, times[i : i + 500]).sum(axis=0) for i in range(0, times.size, 500))
    envelope = envelope / times.size
    envelope -= envelope.mean()  # the shape matters, not the recording level
    return VoiceProfile(
        f0_median=math.exp(centre),
        f0_log_std=1.4826 * float(np.median(np.abs(log_f0 - centre))),
        envelope=tuple(float(v) for v in envelope),
    )


# ---------------------------------------------------------------------------------------- planning


def _warped(envelope: np.ndarray, ratio: float) -> np.ndarray:
    """The envelope with its frequency axis stretched by `ratio` (>1 moves formants up)."""
    return np.interp(hz_to_mel(BAND_HZ / ratio), BAND_MEL, envelope)


def _best_warp(base: np.ndarray, target: np.ndarray) -> float:
    """The formant ratio in FORMANT_RATIO_LIMITS whose warp of `base` best matches `target`'s shape."""
    ratios = FORMANT_RATIO_LIMITS[1] ** (np.arange(-_WARP_STEPS, _WARP_STEPS + 1) / _WARP_STEPS)
    costs = []
    for ratio in ratios:
        diff = target - _warped(base, float(ratio))
        costs.append(float(np.var(diff)) + _WARP_PRIOR * math.log(ratio) ** 2)  # var: level is free
    return float(ratios[int(np.argmin(costs))])


def _smooth(values: np.ndarray) -> np.ndarray:
    """A 5-band triangular moving average, so the EQ follows the envelope's shape, not its noise."""
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    return np.convolve(np.pad(values, 2, mode="edge"), kernel, mode="valid")


def plan_shift(base: VoiceProfile, target: VoiceProfile, strength: float = 1.0) -> Shift:
    """The shift moving `base` toward `target`: 0 is identity, 1 the full move (log-domain interpolation)."""
    s = min(max(float(strength), 0.0), 1.0) if math.isfinite(strength) else 0.0
    base_env = np.asarray(base.envelope, dtype=np.float64)
    target_env = np.asarray(target.envelope, dtype=np.float64)
    formant = _best_warp(base_env, target_env)
    residual = target_env - _warped(base_env, formant)
    eq = np.clip(_smooth(residual - residual.mean()), -EQ_LIMIT_DB, EQ_LIMIT_DB) * s
    f0 = _clamp(target.f0_median / base.f0_median, F0_RATIO_LIMITS)
    spread = _clamp(target.f0_log_std / max(base.f0_log_std, 1e-3), RANGE_RATIO_LIMITS)
    return Shift(
        f0_ratio=f0**s, range_ratio=spread**s, formant_ratio=formant**s,
        eq_db=tuple(float(g) + 0.0 for g in eq),  # + 0.0 turns -0.0 into 0.0 for tidy JSON
    )


# ---------------------------------------------------------------------------------------- applying


@functools.lru_cache(maxsize=64)
def _eq_filter(rate: int, eq_db: tuple[float, ...]) -> np.ndarray:
    """Linear-phase FIR (~23 ms, odd length) whose gain follows `eq_db`, held flat beyond the grid."""
    half = max(32, int(rate * 0.0116))
    taps = 2 * half + 1
    n_fft = 1 << taps.bit_length()
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    gain = 10.0 ** (np.interp(hz_to_mel(freqs), BAND_MEL, np.asarray(eq_db)) / 20.0)
    impulse = np.roll(np.fft.irfft(gain, n_fft), half)[:taps] * np.hanning(taps)
    impulse.setflags(write=False)
    return impulse


def _filter_same(x: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    """Convolve by FFT and drop the filter's delay, so the output lines up with the input."""
    n = x.size + impulse.size - 1
    n_fft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, n_fft) * np.fft.rfft(impulse, n_fft), n_fft)
    delay = impulse.size // 2
    return y[delay : delay + x.size]


def _change_gender(x: np.ndarray, rate: int, shift: Shift) -> np.ndarray | None:
    """Praat PSOLA pitch and formant change, or None when there is too little voicing to do it."""
    from parselmouth.praat import call

    found = _sound_and_pitch(x, rate)
    if found is None:
        return None
    sound, pitch = found
    f0 = pitch.selected_array["frequency"]
    if int((f0 > 0).sum()) < 2:  # Praat warns "no voiced segments" and has nothing to move
        return None
    median = math.exp(float(np.median(np.log(f0[f0 > 0]))))
    new_median = median * _clamp(shift.f0_ratio, F0_RATIO_LIMITS)
    # Praat scales the range in semitones around the new median: the same as scaling log-f0 deviations.
    out = call(
        [sound, pitch], "Change gender", _clamp(shift.formant_ratio, FORMANT_RATIO_LIMITS), new_median,
        _clamp(shift.range_ratio, RANGE_RATIO_LIMITS), shift.duration_ratio,
    )
    y = np.asarray(out.values[0], dtype=np.float64)
    return _fit_length(y, _length(x.size, shift))


def _length(size: int, shift: Shift) -> int:
    return max(1, round(size * shift.duration_ratio))


def _fit_length(y: np.ndarray, size: int) -> np.ndarray:
    return y[:size] if y.size >= size else np.pad(y, (0, size - y.size))


def _stretch_unvoiced(y: np.ndarray, size: int) -> np.ndarray:
    """Change the length of a piece with no pitch to move (breath, silence, a hiss) by interpolation."""
    if size == y.size:
        return y
    return np.interp(np.linspace(0.0, y.size - 1.0, size), np.arange(y.size), y)


def apply_shift(samples: np.ndarray, rate: int, shift: Shift) -> np.ndarray:
    """Move one segment of a base voice toward the target, float32 within [-1, 1].

    The length is the input's times `shift.duration_ratio` (the same length unless a tempo was asked for).
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if shift.is_identity or x.size == 0:
        return x
    y = x.astype(np.float64)
    if shift.moves_pitch_or_formants:
        changed = _change_gender(y, rate, shift)
        # Unvoiced or tiny segments keep their pitch (EQ still applies) and only change length.
        y = _stretch_unvoiced(y, _length(x.size, shift)) if changed is None else changed
    if shift.has_eq:
        eq = tuple(min(max(g, -EQ_LIMIT_DB), EQ_LIMIT_DB) for g in shift.eq_db)
        y = _filter_same(y, _eq_filter(rate, eq))
    # Clipping is a guard for rare EQ overshoot only; loudness is levelled downstream for the whole stream.
    return np.clip(y, -1.0, 1.0).astype(np.float32)

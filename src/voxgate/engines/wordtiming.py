"""Word timings from a model's own phoneme durations (Kokoro, hibari), grouped into the words of the text.

A duration model says how long each phoneme token lasts; the words of the text are laid on that sequence
of sounds in order: each word takes a share of the sounded phonemes by its weight (letters, a kana, a Han
character), and each boundary is then moved to the nearest real word gap of the phonemes (a space or a
punctuation token) when one is close, so a word starts where its first phoneme starts. When the text has
as many words as the phonemes do, they pair one to one. The times are the model's; only which phonemes
belong to which word is inferred, so the timings are not marked estimated.

The audio itself is read through the loudness of 10 ms frames (`_loud`): where a piece first sounds (Kokoro,
hibari) and where a word that starts in silence starts sounding (espeak-ng, `snap_to_sound`). It runs once per
sentence in the synthesis loop, where espeak-ng takes ~2 ms a sentence, so it is computed in float32 and only
frames near the threshold go back to exact float64 sums (issue 16: timings cost at most 5%); espeak-ng takes
the float32 frame sums (`frame_sums`) as they are, for both its loud frames and the end of its sound.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from math import gcd, isfinite

import numpy as np

from voxgate.core.types import Timing, Timings, word_spans

SNAP = 0.45  # a boundary moves to a phoneme word gap within this share of an average word's phonemes
# The sound of a StyleTTS2-style decoder (Kokoro, and hibari distilled from it) comes ahead of the durations'
# sum: hexgrad's kokoro starts its word timestamps at the leading pad's length less 3 frames. Measured here
# against the audio's energy onsets (bench/bench_timestamps.py, 47-48 onsets per engine): with 3 frames the
# starts were 25 ms early (median signed) on both Kokoro and hibari, with none 40-80 ms late; 2 frames it is.
LEAD_FRAMES = 2
_KANA = range(0x3040, 0x3100)
_BLOCK = 8192  # samples squared at a time for the loudness of frames (64 KB of float64)
_BAND = 2.3e-4  # a frame's power this near the loudness edge (1e-3 dB) is decided on exact sums (errors < 2e-5)


@lru_cache(maxsize=4096)  # a phoneme inventory: the same few tokens every time
def _sounded(token: str) -> bool:
    """A phoneme token that is a sound: a letter, not a space, a mark (a pause), a stress or length sign."""
    return any(unicodedata.category(c).startswith("L") and (unicodedata.category(c) != "Lm" or c == "ᵊ")
               for c in token)


@lru_cache(maxsize=4096)
def _separates(token: str) -> bool:
    """A space or punctuation token: between two words (a stress or length mark, a tone sign is not)."""
    return token.isspace() or all(unicodedata.category(c).startswith(("P", "Z")) for c in token)


def weight(word: str) -> float:
    """How many phonemes a written word takes, roughly: its letters and digits, a kana one, a Han
    character two (Japanese readings run to two morae; a Mandarin syllable is two or three phonemes)."""
    total = 0.0
    for c in word:
        if ord(c) in _KANA:
            total += 1.2
        elif unicodedata.category(c) == "Lo":
            total += 2.5
        elif c.isalnum():
            total += 1.0
    return max(total, 0.5)


def word_timings(text: str, tokens: Sequence[str], edges: Sequence[float],
                 spans: Sequence[tuple[int, int]] | None = None, lead: float = 0.0) -> Timings:
    """Timings of the words of `text` (or `spans` of it) from phoneme `tokens` and their time `edges`
    (seconds; edges[i] is where token i starts, edges[i + 1] where it ends), moved `lead` seconds earlier."""
    words = list(spans) if spans is not None else word_spans(text)
    if not words or len(edges) < len(tokens) + 1:
        return ()
    if lead:
        edges = np.maximum(np.asarray(edges, float) - lead, 0.0)
    sounds: list[int] = []  # token indices of the sounds
    gaps = [0]  # indices into `sounds` where a phoneme word starts (after a space or a mark)
    apart = False
    for i, tok in enumerate(tokens):
        if _sounded(tok):
            if apart and sounds:
                gaps.append(len(sounds))
            sounds.append(i)
            apart = False
        elif _separates(tok):
            apart = True
    if not sounds:
        return tuple(Timing(s, e, float(edges[0]), float(edges[0]), True) for s, e in words)
    count = len(sounds)
    if len(gaps) == len(words):
        bounds = [*gaps, count]
    else:
        w = np.array([weight(text[s:e]) for s, e in words], float)
        ideal = (np.concatenate([[0.0], np.cumsum(w) / w.sum()]) * count).tolist()
        reach = SNAP * count / len(words)
        bounds = [0]
        for p in ideal[1:-1]:
            near = _nearest(gaps, p)
            b = near if abs(near - p) <= reach else round(p)
            bounds.append(min(max(b, bounds[-1]), count))
        bounds.append(count)
    if isinstance(edges, np.ndarray):
        edges = edges.tolist()  # the same floats, read faster one at a time
    out = []
    for n, (s, e) in enumerate(words):
        a, b = bounds[n], bounds[n + 1]
        if b > a:
            out.append(Timing(s, e, float(edges[sounds[a]]), float(edges[sounds[b - 1] + 1])))
        else:
            at = float(edges[sounds[min(a, count - 1)]])
            out.append(Timing(s, e, at, at))
    return tuple(out)


def _nearest(gaps: list[int], p: float) -> int:
    """The gap nearest `p` in increasing `gaps`, the earlier of two as near: min(gaps, key=|g - p|), by bisection."""
    k = bisect_left(gaps, p)
    if k == 0:
        return gaps[0]
    if k == len(gaps):
        return gaps[-1]
    return gaps[k - 1] if abs(gaps[k - 1] - p) <= abs(gaps[k] - p) else gaps[k]


def _frame(rate: int) -> tuple[int, int]:
    """(hop, frame length) in samples of the 10 ms frames 5 ms apart that loudness is read in."""
    return max(rate // 200, 1), max(rate // 100, 1)


def _loud(audio: np.ndarray, rate: int, floor_db: float) -> tuple[np.ndarray, int]:
    """(for each 10 ms frame, 5 ms apart: whether it is within `floor_db` of the loudest, the hop in samples).

    The same frames, bit for bit, as `_loud_exact` (float64 sums of squares, levels in dB), for about a third of
    its CPU in the synthesis loop. A frame is loud when its mean square is above the loudest's times
    10**(floor_db / 10), which is what comparing dB levels says. Here the squares are summed in float32 (no
    float64 copy or cast of the clip), once over pieces of gcd(hop, win) samples (a frame is two pieces at 22.05
    and 24 kHz), and compared as powers (no log10). A float32 sum of n squares is within (n + 1) * 2**-24 of the
    exact one, relatively (each product and addition rounds by at most 2**-24; every term is positive): 7e-6
    for a 110-sample piece, so each mean square and the edge are within 2e-5 of their exact values, and the dB
    levels of `_loud_exact` are within 1e-13 dB of exact. A frame more than _BAND from the edge is therefore on
    the same side of it as in `_loud_exact`. When any frame is nearer (one clip in a few hundred), or the rate
    makes a frame many pieces (44.1 kHz: hop 220, win 441) or long ones (win over 1000), `_loud_exact` decides."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf or nan squares: _loud_exact decides, below
        sums, hop, win = frame_sums(audio, rate)
    if sums.dtype != np.float32:  # frame_sums summed in float64 already (that rate or dtype): exact levels
        return _exact_levels(sums, win, floor_db), hop
    if not len(sums):  # shorter than a frame
        return np.zeros(0, bool), hop
    mean = sums / win + 1e-12  # each frame's mean square, as _loud_exact's levels have it (float32)
    top = float(mean.max())
    if not isfinite(top):  # inf or nan: samples beyond float32's squares
        return _loud_exact(audio, rate, floor_db)
    edge = top * 10 ** (floor_db / 10)
    loud = mean > edge * (1 + _BAND)
    if np.count_nonzero(mean > edge * (1 - _BAND)) != np.count_nonzero(loud):  # a frame near the edge
        return _loud_exact(audio, rate, floor_db)
    return loud, hop


def _loud_exact(audio: np.ndarray, rate: int, floor_db: float) -> tuple[np.ndarray, int]:
    """`_loud` from float64 sums of squares: the reference it is decided by near its threshold."""
    hop, win = _frame(rate)
    if len(audio) < win:
        return np.zeros(0, bool), hop
    return _exact_levels(_sums_exact(np.asarray(audio), hop, win), win, floor_db), hop


def _exact_levels(sums: np.ndarray, win: int, floor_db: float) -> np.ndarray:
    """Which frames of float64 sums of squares are within `floor_db` of the loudest, compared as dB levels."""
    level = 10 * np.log10(sums / win + 1e-12)
    return level > level.max() + floor_db


def _sums_exact(audio: np.ndarray, hop: int, win: int) -> np.ndarray:
    """Each frame's sum of squares in float64 (a float32 sample's square is exact there), `len(audio) >= win`."""
    count = (len(audio) - win) // hop + 1
    # Each frame's sum of squares (in float64, where a float32 sample's square is exact), a block of frames at a
    # time: each sample is squared once per block rather than once for each of the two frames it is in, and a
    # block's squares (64 KB) stay in cache and come from the heap, where the whole clip's (370 KB for 2 s at
    # 22 kHz) were a fresh mmap with page faults every call. The same sums, bit for bit, as the mean of each
    # frame's squares (numpy's pairwise sum over the same values in each row); as_strided makes the frames that
    # sliding_window_view(squares, win)[::hop] gives, without its checks' cost.
    sums = np.empty(count)
    per = max(_BLOCK // hop, 1)  # frames per block
    for f in range(0, count, per):
        g = min(f + per, count)
        squares = np.square(audio[f * hop:(g - 1) * hop + win], dtype=np.float64)
        step = squares.strides[0]
        frames = np.lib.stride_tricks.as_strided(squares, (g - f, win), (hop * step, step), writeable=False)
        np.add.reduce(frames, axis=1, out=sums[f:g])
    return sums


def frame_sums(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int, int]:
    """(each 10 ms frame's sum of squares, 5 ms apart; the hop and the frame in samples), in one pass over
    the clip: float32 over pieces of gcd(hop, win) samples (see `_loud`) where a frame is a few pieces, else
    float64 (`_sums_exact`). For espeak-ng's synthesis loop, where each numpy call a sentence shows (issue 16):
    np.vecdot rather than einsum (19 against 28 µs a sentence there; numpy warns of squares beyond float32,
    which espeak's int16 / 32768 cannot have; `_loud` silences that for any engine's audio)."""
    hop, win = _frame(rate)
    piece = gcd(hop, win)
    step, per = hop // piece, win // piece  # pieces a hop, pieces a frame
    audio = np.asarray(audio)
    if len(audio) < win:
        return np.zeros(0, np.float32), hop, win
    if per > 4 or win > 1000 or audio.dtype != np.float32:
        return _sums_exact(audio, hop, win), hop, win
    count = (len(audio) - win) // hop + 1
    pieces = ((count - 1) * hop + win) // piece
    rows = audio[:pieces * piece].reshape(pieces, piece)
    part = np.vecdot(rows, rows)  # each piece's sum of squares, in float32
    span = (count - 1) * step + 1
    sums = part[:span:step]
    for k in range(1, per):
        sums = sums + part[k:k + span:step]
    return sums, hop, win


def first_sound(audio: np.ndarray, rate: int, floor_db: float = -35.0) -> float | None:
    """Seconds where `audio` first sounds: the first 10 ms frame (5 ms steps) within `floor_db` of the loudest."""
    loud, hop = _loud(audio, rate, floor_db)
    found = np.flatnonzero(loud)
    return float(found[0] * hop / rate) if len(found) else None


def onsets(audio: np.ndarray, rate: int, gap: float = 0.08, floor_db: float = -35.0) -> list[float]:
    """Seconds where sound starts after at least `gap` seconds of silence (the start of `audio` counts as
    silence, so the first is `first_sound`), with the frames of `first_sound`."""
    loud, hop = _loud(audio, rate, floor_db)
    need = max(round(gap * 200), 1)  # silent frames (5 ms each) before an onset
    found, quiet = [], need
    for i, on in enumerate(loud.tolist()):
        if on:
            if quiet >= need:
                found.append(i * hop / rate)
            quiet = 0
        else:
            quiet += 1
    return found


def snap_to_sound(timings: Timings, audio: np.ndarray, rate: int, floor_db: float = -45.0,
                  silence: float = 0.03, frames: tuple[bytes, int] | None = None) -> Timings:
    """`timings` (seconds of `audio`) with each word that starts in silence (at least `silence` seconds below
    `floor_db` of the loudest 10 ms) starting at its first sound instead, and each that ends in such silence (a
    pause around its end, before the next word sounds) ending at its last sound (about the middle of its last
    loud frame, as espeak's `_timings` ends the last word), when that sound comes after the word's start frame.
    Starts only move later and ends earlier, inside their own word: every word is kept once, in order, without
    overlap (moved ends leave gaps). `frames`: the loud frames (a byte each) and hop already found (espeak's
    `_timings`), so the clip is read once."""
    if not timings:
        return timings
    if frames is None:
        loud, hop = _loud(audio, rate, floor_db)
        flags = loud.tobytes()  # a byte a frame, 1 where loud: bytes.find gives the first loud frame from any on
    else:
        flags, hop = frames
    if 1 not in flags:
        return timings
    need, count, win = max(round(silence * rate / hop), 1), len(flags), _frame(rate)[1]
    out = list(timings)
    for n, t in enumerate(timings):
        start, end = t.start, t.end
        i = int(start * rate / hop)
        if 0 <= i and i + need <= count and not flags[i]:  # (a word that starts in a loud frame stays)
            ahead = flags.find(1, i)  # the first loud frame from frame i on, if any
            ahead = count if ahead < 0 else ahead
            if i + need <= ahead < int(end * rate / hop):
                start = min(float(ahead * hop / rate), end)
        k = min(int((end * rate - win) / hop), count - 1)  # the last frame that ends before the word's end
        if k > 0 and not flags[k]:
            back = flags.rfind(1, 0, k)  # the silence around the end: from after the last loud frame before it
            ahead = flags.find(1, k)  # to the first loud one after it (or the clip's end)
            if int(start * rate / hop) < back and (count if ahead < 0 else ahead) - back > need:
                end = float((back + 1) * hop / rate)
        if start != t.start or end != t.end:
            # (a Timing made directly: dataclasses.replace looks up the fields each call, ~5x the cost)
            out[n] = Timing(t.start_char, t.end_char, start, end, t.estimated)
    return tuple(out)


def start_at_first_sound(timings: Timings, audio: np.ndarray, rate: int) -> Timings:
    """`timings` with the first word starting where `audio` (the piece they are said in) first sounds, and no
    word before it.

    The duration models do not say when a sentence's first sound comes: Kokoro's and hibari's decoders start
    it ahead of the leading pad's predicted end by an amount that changes with speed (first words against the
    audio's first sound: Kokoro 249 ms late at speed 0.5, 40 ms early at 2.0; hibari 80 ms late and 45 ms
    early; both within 10 ms at 1.0). Nothing but the first word can sound there, so its first sound is its
    start. Where the durations put the first word wholly before that sound (Kokoro at 2.0: "The" 0-22 ms, sound
    at 50 ms), it keeps its predicted length from there, up to the middle of the next word, so no caption is
    empty; later words start no earlier than the word before them ends."""
    sound = first_sound(audio, rate)
    if not timings or sound is None or sound >= timings[-1].end:
        return timings
    first = timings[0]
    end = max(first.end, sound + (first.end - first.start))
    if len(timings) > 1:
        end = min(end, max(first.end, (timings[1].start + timings[1].end) / 2))
    out = [replace(first, start=sound, end=max(end, sound))]
    for t in timings[1:]:
        start = max(t.start, out[-1].end)
        out.append(replace(t, start=start, end=max(t.end, start)))
    return tuple(out)


def edges_from_durations(durations: Sequence[int] | np.ndarray, samples: int, rate: int) -> np.ndarray:
    """Seconds of each token boundary from per-token frame counts (pads included) spread over `samples`."""
    frames = np.concatenate([[0], np.cumsum(np.asarray(durations, np.int64).ravel())])
    if frames[-1] <= 0:
        return np.zeros(len(frames))
    return frames * (samples / frames[-1]) / rate

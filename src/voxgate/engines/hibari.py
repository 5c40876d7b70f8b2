"""hibari (hibari-tts): one int8 ONNX voice distilled from Kokoro's af_heart, 24 kHz, shipped in the wheel.

The package carries the model, its lexicon and its G2P (no espeak-ng). It can also fetch four more voices
from a model hub on first use; voxgate never offers them and never asks for them: only the bundled
`heart` file is loaded, by path, and a missing file is an error, never a download.

Sessions belong to the worker that loaded them (like Piper's); the G2P (lexicons, a small ONNX net for
unknown words) is shared by every session of the engine under a lock. `synthesize` yields one array per
sentence, so first audio waits for one sentence (the server's first segment is one clause).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.core.types import Piece
from voxgate.engines.base import Capabilities, EngineParams, VoiceInfo
from voxgate.engines.ortsession import session_options
from voxgate.engines.patched import patched_model
from voxgate.engines.phonemes import block_spans, to_misaki
from voxgate.engines.wordtiming import LEAD_FRAMES, edges_from_durations, start_at_first_sound, word_timings

PREFIX = "hibari:"
VOICE = "heart"  # the one voice inside the wheel
VOICE_ID = PREFIX + VOICE
SAMPLE_RATE = 24000  # Hertz
SPEED_RANGE = (0.5, 2.0)  # what the model's speed input is trained for
# CPU seconds per audio second of one 1-thread session: 6.6–7.5 ms measured here (bench/cpu_per_audio.py raw,
# the Harvard and medium texts); rounded up.
COMPUTE_PER_SECOND = 0.008
DURATION_TENSOR = "/Cast_32_output_0"  # predicted frames per phoneme id (pads included), as int64


class NormalDraws:
    """The Generator hibari's vocoder is given: it draws one thing, `standard_normal((bins, 2 * frames), float32)`,
    the noise branch's complex Gaussian spectrum (~300,000 samples a 3-second sentence). numpy's float32 ziggurat
    takes ~8 ns a sample there, ~9% of a sentence's CPU; Box–Muller over the same Generator's float32 uniforms,
    in vectorised log/sqrt/cos/sin, takes ~2.5 ns. The samples are standard normal to float32 rounding (the
    radius from 1 − u, u a 24-bit uniform in [0, 1), so never log 0; tails end at 5.8 σ, reached once in
    10⁸); they are not stock hibari's samples for a seed, and a seed still repeats a voxgate sentence exactly."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def standard_normal(self, size: int | tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        shape = (size,) if isinstance(size, int) else tuple(size)
        count = int(np.prod(shape))
        half = (count + 1) // 2
        uniform = self._rng.random((2, half), dtype=np.float32)
        radius, angle = uniform[0], uniform[1]
        np.subtract(np.float32(1.0), radius, out=radius)  # (0, 1]
        np.log(radius, out=radius)
        radius *= np.float32(-2.0)
        np.sqrt(radius, out=radius)
        angle *= np.float32(2 * np.pi)
        out = np.empty(2 * half, np.float32)
        np.cos(angle, out=out[:half])
        np.sin(angle, out=out[half:])
        out[:half] *= radius
        out[half:] *= radius
        return out[:count].reshape(shape).astype(dtype, copy=False)


def _with_durations(model: Path) -> str | bytes:
    """The model patched in memory to also output its predicted frames per phoneme (`duration`); the path
    alone when it has no such tensor or `onnx` is missing."""
    try:
        import onnx
    except ImportError:
        return str(model)
    graph = onnx.load(str(model))
    if not any(DURATION_TENSOR in node.output for node in graph.graph.node):
        return str(model)
    graph.graph.node.append(onnx.helper.make_node("Identity", [DURATION_TENSOR], ["duration"],
                                                  name="voxgate_duration"))
    graph.graph.output.append(onnx.helper.make_tensor_value_info("duration", onnx.TensorProto.INT64, None))
    return graph.SerializeToString()


def bundled_model() -> Path | None:
    """The bundled heart model, or None when hibari-tts is not installed (never downloads)."""
    if importlib.util.find_spec("hibari") is None:
        return None
    from hibari import voices

    entry = voices.VOICES.get(VOICE) or {}
    if not entry.get("bundled"):
        return None
    path = Path(voices.ASSETS) / str(entry["file"])
    return path if path.is_file() else None


class HibariLoadedVoice:
    """One onnxruntime session of the heart model; the engine's G2P is shared under its lock."""

    def __init__(self, engine: HibariEngine, voice: VoiceInfo, threads: int) -> None:
        from hibari import Hibari

        if voice.model_path is None or not voice.model_path.is_file():
            raise FileNotFoundError(f"hibari voice {voice.id!r} has no model file inside the package")
        self._engine = engine
        # model= is a path: Hibari then never looks up (or downloads) a voice file itself.
        self._tts: Any = Hibari(voice=VOICE, model=str(voice.model_path), threads=threads, g2p=engine._g2p())
        import onnxruntime

        # As Hibari makes its own, on the model that says durations; without a CPU arena: it cost nothing per run
        # and the arena only grew with the varying shapes (engines/ortsession.py).
        options = session_options(threads, threads, arena=False)
        options.log_severity_level = 3
        model = patched_model(voice.model_path, "durations", _with_durations)  # from the disk cache after once
        self._tts.sess = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._timed = "duration" in {o.name for o in self._tts.sess.get_outputs()}
        self.sample_rate = SAMPLE_RATE

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        """One float32 array per sentence hibari finds in `text`; speed 0.5–2×."""
        speed = min(max(params.speed, SPEED_RANGE[0]), SPEED_RANGE[1])
        rng = NormalDraws(np.random.default_rng(params.seed))
        timed = params.timings and self._timed  # word timings only when the caller reads them
        with self._engine._g2p_lock:
            chunks, spans = self._phonemize(text, timed)
        for n, phonemes in enumerate(chunks):
            if not any(c.isalpha() for c in phonemes):
                continue  # punctuation only: nothing to say
            ids = self._tts.ids(phonemes)
            audio, durations = self._run(ids, speed, rng)
            if not len(audio):
                continue
            timings = None
            if durations is not None and spans is not None:  # spans only when timings are asked for
                start, end = spans[n]
                tokens = [c for c in phonemes if c in self._tts.vocab]
                edges = edges_from_durations(durations, len(audio), self.sample_rate)[1:]  # the lead pad's end on
                frame = len(audio) / max(int(np.sum(durations)), 1) / self.sample_rate
                timings = word_timings(text[start:end], tokens, edges, lead=LEAD_FRAMES * frame)
                timings = start_at_first_sound(timings, audio, self.sample_rate)
                timings = tuple(replace(t, start_char=t.start_char + start, end_char=t.end_char + start)
                                for t in timings)
            yield Piece(np.asarray(audio, np.float32), self.sample_rate, timings)

    def _run(self, ids: list[int], speed: float, rng: NormalDraws) -> tuple[np.ndarray, np.ndarray | None]:
        """hibari's from_ids, also returning the predicted frames per id when the session gives them."""
        if not self._timed:
            return self._tts.from_ids(ids, speed, rng), None
        if len(ids) < 3:
            return np.zeros(0, np.float32), None
        from hibari import dsp

        out = self._tts.sess.run(None, {"ids": np.asarray([ids], np.int64), "speed": np.asarray([speed], np.float32)})
        lh, th, ln, lr, phi, f0 = (o[0] for o in out[:6])
        return dsp.synth(lh, th, ln, lr, phi, f0, rng), np.asarray(out[6]).ravel()

    def _phonemize(self, text: str, timed: bool) -> tuple[list[str], list[tuple[int, int]] | None]:
        """hibari's phoneme strings, one per sentence, with `[[ipa]]` blocks joined into their sentence; with
        `timed`, also where each sentence is in `text` (None when a sentence cannot be placed): a block's
        place is its own `[[…]]`, whose words are the block's phoneme words."""
        if "[[" not in text:
            chunks = list(self._tts.phonemize(text))
            sentences = self._tts.split_sentences(text) if timed else []
            return chunks, _sentence_spans(text, sentences) if timed and len(sentences) == len(chunks) else None
        chunks: list[str] = []
        spans: list[tuple[int, int]] | None = [] if timed else None
        glue = False  # the last chunk may go on: a block or text without a sentence end came last
        for start, end, ipa in block_spans(text):
            piece = text[start:end]
            found = [to_misaki(piece[2:-2].strip())] if ipa else list(self._tts.phonemize(piece))
            if spans is not None:
                if ipa:
                    where: list[tuple[int, int]] | None = [(start, end)]
                else:
                    sentences = self._tts.split_sentences(piece)
                    located = _sentence_spans(piece, sentences) if len(sentences) == len(found) else None
                    where = [(a + start, b + start) for a, b in located] if located is not None else None
                if where is None:
                    spans = None  # a sentence not found: the words are estimated
                else:
                    if found and chunks and glue and where:
                        spans[-1] = (spans[-1][0], where.pop(0)[1])
                    spans += where
            if found and chunks and glue:
                chunks[-1] = f"{chunks[-1]} {found.pop(0)}"
            chunks += found
            glue = ipa or not piece.rstrip().endswith((".", "!", "?"))
        keep = [n for n, c in enumerate(chunks) if c]
        if spans is not None and len(spans) != len(chunks):
            spans = None
        return [chunks[n] for n in keep], [spans[n] for n in keep] if spans is not None else None

    def close(self) -> None:
        """Drop the session; onnxruntime frees it with the last reference."""
        self._tts = None


def _sentence_spans(text: str, sentences: list[str]) -> list[tuple[int, int]] | None:
    """Where each of hibari's sentences sits in `text` (it strips them), or None if one is not found."""
    spans, pos = [], 0
    for sentence in sentences:
        core = sentence.strip()
        at = text.find(core, pos)
        if at < 0:
            return None
        spans.append((at, at + len(core)))
        pos = at + len(core)
    return spans


class HibariEngine:
    """The hibari heart voice (American English, female); nothing else hibari-tts could download."""

    name = "hibari"

    def __init__(self) -> None:
        self._g2p_lock = threading.Lock()
        self._g2p_instance: Any = None
        self._capabilities: Capabilities | None = None

    def capabilities(self) -> Capabilities:
        """American English, a sentence at a time, 0.5–2× speed."""
        # Made once: the service asks on the event loop for every segment of every request (40–80 µs a time
        # on the loaded machine: a stat of the model file and a VoiceInfo), and the package cannot change under
        # a running process.
        if self._capabilities is None:
            self._capabilities = Capabilities(languages=("en-US",) if self.voices() else (), streaming="sentence",
                                              speed_range=SPEED_RANGE, phonemes=True,
                                              compute_per_second=COMPUTE_PER_SECOND)
        return self._capabilities

    def voices(self) -> list[VoiceInfo]:
        """The bundled heart voice, when hibari-tts is installed."""
        model = bundled_model()
        if model is None:
            return []
        return [VoiceInfo(id=VOICE_ID, name="hibari heart", engine=self.name, language="en-US",
                          sample_rate=SAMPLE_RATE, model_path=model, quality="high",
                          gender="female", engine_data={"distilled_from": "kokoro af_heart"})]

    def load(self, voice: VoiceInfo, threads: int) -> HibariLoadedVoice:
        """A session of the heart model with `threads` intra-op threads."""
        ours = voice.id == VOICE_ID or voice.base_voice == VOICE_ID  # itself, or registered on it
        if not ours or voice.model_path is None or voice.model_path != bundled_model():
            raise ValueError(f"hibari has only {VOICE_ID}, not {voice.id!r}")
        return HibariLoadedVoice(self, voice, threads)

    def _g2p(self) -> Any:
        with self._g2p_lock:
            if self._g2p_instance is None:
                from hibari.g2p import G2P

                self._g2p_instance = G2P(british=False)
            return self._g2p_instance

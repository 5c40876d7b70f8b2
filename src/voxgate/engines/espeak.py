"""espeak-ng engine (libespeak-ng and its data from the espeakng-loader wheel): every language, formant speech.

libespeak-ng keeps one global synthesizer per process (current voice, rate, pitch, the audio callback),
so every call into it holds `ESPEAK_LOCK`. Synthesis is fast (tens of times real time), so the lock is
held for a whole sentence at a time; a voice's pieces stream out sentence by sentence.

Voice ids are `espeak:<language>` (e.g. `espeak:cmn`, `espeak:en-us`), plus `+<variant>` for any of
espeak-ng's variants (`espeak:en-us+f3`), which are resolved on demand rather than listed.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from math import inf
from operator import attrgetter, itemgetter
from pathlib import Path

import numpy as np

from voxgate.core.types import Piece, Timing, Timings, estimate_words, shared_edges, voiced_end, word_spans
from voxgate.engines.base import Capabilities, EngineParams, VoiceInfo
from voxgate.engines.wordtiming import frame_sums, snap_to_sound

_LOG = logging.getLogger(__name__)
ESPEAK_LOCK = threading.Lock()  # guards every call into libespeak-ng's process-global state
PREFIX = "espeak:"
DEFAULT_WPM = 175  # espeak-ng's natural rate, words per minute
# What espeak-ng speaks itself. From 450 wpm on it speeds up with sonic, and its word events are then not
# where the words are (at 450: the third word's event after the fifth's, two past the audio's end): faster
# speeds are the core's tempo stretch on 449 wpm, which moves the timings with the audio.
WPM_RANGE = (80, 449)
SPEED_RANGE = (WPM_RANGE[0] / DEFAULT_WPM, WPM_RANGE[1] / DEFAULT_WPM)
# Where a sentence may end: at . ! ? ; before a space (not inside "3.50" or "e.g."), at a Chinese or Japanese
# full stop with or without one, and at a line break.
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])\s*|[\r\n]+")
MAX_CALL_CHARS = 400  # whole sentences up to this many characters are said in one call (a longer one alone)
# Said after each call's text so that espeak-ng ends it with its own pause for the last mark (.?! 0.3 s, ; 0.23 s
# at 175 words a minute, longer when slower), as between the sentences of one call: a text's last clause has
# none. Silence only (zeros), with no word event. A call without a closing mark (a line without one) is ended
# as a sentence (". ."): its sound is the same, as espeak-ng reads a text's end as a full stop. Where espeak-ng
# reads the last "." as an abbreviation's or an initial's ("Plan B.", "Mr."), it makes no pause, as inside a call.
_CLOSE, _CLOSE_UNMARKED = " .", ". ."
_MARKS = frozenset(".!?;:,…。！？；：，、")
_CLOSERS = "\"')]}»›”’」』）】〉》"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
# Milliseconds of audio per callback (0 = espeak-ng's 60 ms). Each callback is a ctypes call into Python and a
# numpy copy: at 60 ms a sentence took ~42 of them, ~8% of its synthesis; at 1000 ms it takes ~5 (longer buys
# nothing: espeak-ng also calls back at clause ends), the same samples and word events. 1000 is also what
# pyttsx3 initialises espeak-ng with; espeak-ng issue #752 reports clicks at 3000 that 1000 does not have.
_BUFFER_MS = 1000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EE_OK = 0

_EVENT_WORD, _EVENT_LIST_END = 1, 0
_SNAP_DB = -45.0  # a word that starts in frames this far below the loudest starts at its first sound
_END_DB = -32.0  # the sound ends after the last frame this far below the loudest (2% of the loudest sample)
_SNAP_POWER, _END_POWER = 10 ** (_SNAP_DB / 10), 10 ** (_END_DB / 10)  # as ratios of frame powers


class _EspeakEvent(ctypes.Structure):
    """espeak_EVENT: what espeak-ng reports with each block of audio (a word starts here, and where)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # characters from the start of the text, 1-based
        ("length", ctypes.c_int),  # characters of the word
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # a union of int, char* and char[8]
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(_EspeakEvent))


class _EspeakVoice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated tag)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


def _languages(voice: _EspeakVoice) -> list[str]:
    """Decode espeak_VOICE.languages: a priority byte, then a tag, repeated until a zero priority."""
    tags, pos = [], 0
    raw = ctypes.cast(voice.languages, ctypes.POINTER(ctypes.c_ubyte))
    while raw[pos] != 0 and len(tags) < 16:
        pos += 1
        start = pos
        while raw[pos] != 0:
            pos += 1
        tags.append(ctypes.string_at(ctypes.addressof(raw.contents) + start, pos - start).decode())
        pos += 1
    return tags


class _Library:
    """libespeak-ng, initialised once for synchronous synthesis into a callback; use under ESPEAK_LOCK."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = Path(espeakng_loader.get_data_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
        self.lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_EspeakVoice)]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # espeak_Initialize takes the folder that holds espeak-ng-data
        data = str(data_path.parent).encode()
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, 0)
        if self.rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path}")
        self._pieces: list[np.ndarray] = []
        self._words: list[tuple[int, int, float]] = []  # (character, length, seconds) of each word event
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int,
                 events: ctypes._Pointer[_EspeakEvent]) -> int:
        if wav and count > 0:
            self._pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / 32768.0)
        i = 0
        while events and events[i].type != _EVENT_LIST_END and i < 4096:
            if events[i].type == _EVENT_WORD:
                event = events[i]
                self._words.append((event.text_position - 1, event.length, event.audio_position / 1000.0))
            i += 1
        return 0  # 0 = go on

    def voices(self, spec: str | None = None) -> list[tuple[str, str, list[str]]]:
        """(identifier, name, languages) of every voice, or of every variant with spec "variant"."""
        arg = None
        if spec is not None:
            selector = _EspeakVoice()
            selector.languages = ctypes.cast(ctypes.create_string_buffer(spec.encode()), ctypes.c_void_p)
            arg = ctypes.pointer(selector)
        found = self.lib.espeak_ListVoices(arg)
        out, i = [], 0
        while found[i]:
            v = found[i].contents
            out.append(((v.identifier or b"").decode(), (v.name or b"").decode(), _languages(v)))
            i += 1
        return out

    def speak(self, voice: str, text: str, wpm: int) -> np.ndarray:
        """Synthesize `text` with `voice` at `wpm` words per minute into one float32 array."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        data = text.encode("utf-8")
        self._pieces, self._words = [], []
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng synthesis failed with status {status}")
        pieces, self._pieces = self._pieces, []
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def words(self) -> list[tuple[int, int, float]]:
        """The word events of the last `speak`: (character offset, length, seconds)."""
        return list(self._words)


_LIBRARY: _Library | None = None


def library() -> _Library:
    """The process's one libespeak-ng (callers hold ESPEAK_LOCK)."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _Library()
    return _LIBRARY


_ESPEAK_PRIMARY = {"cmn": "zh", "hak": "hak", "nan": "nan"}  # espeak names that have a shorter BCP-47 tag


def language_tag(espeak_language: str) -> str:
    """espeak-ng's language names as BCP-47-ish tags: `cmn` → `zh`, `en-us` → `en-US`, `yue` stays."""
    parts = espeak_language.replace("_", "-").split("-")
    parts[0] = _ESPEAK_PRIMARY.get(parts[0].lower(), parts[0].lower())
    for i, part in enumerate(parts[1:], 1):
        if len(part) == 2 and part.isalpha():
            parts[i] = part.upper()
        elif len(part) == 4 and part.isalpha():
            parts[i] = part.title()
        else:
            parts[i] = part.lower()
    return "-".join(parts)


def _has_dictionary(identifier: str, language: str) -> bool:
    """Whether the dictionary a voice file names (or its language's own) is in espeak-ng's data."""
    import espeakng_loader

    data = Path(espeakng_loader.get_data_path())
    name = language.split("-")[0]
    try:
        for line in (data / "lang" / identifier).read_text(encoding="utf-8", errors="ignore").splitlines():
            words = line.split()
            if len(words) > 1 and words[0] == "dictionary":
                name = words[1]
                break
    except OSError:
        return True  # no voice file to read: let espeak-ng decide when it speaks
    return (data / f"{name}_dict").is_file()


def word_events(text: str, events: list[tuple[int, int, float]], audio: np.ndarray, rate: int,
                base: int = 0, sound_end: float | None = None) -> Timings:
    """Timings of the words of `text` from espeak-ng's word events: each event lasts until the next one
    starts (the last until the sound ends) and is shared by the words of the text it covers by their
    length (a Chinese word of two characters); a word no event starts in ("the" run into "from the")
    shares the time of the word before it. Without any event, an estimate by length. Character offsets are
    moved by `base` (where `text` sits in a longer one). `sound_end`: where the sound ends, when known
    (else the end of the part louder than QUIET of the loudest sample, `voiced_end`)."""
    words = word_spans(text, base)
    if not events or not words:
        return estimate_words(text, audio, rate, spans=words)
    if sound_end is None:
        sound_end = voiced_end(audio, rate)
    events = sorted(events, key=itemgetter(2))  # itemgetter and attrgetter: no Python call per item
    in_order = _in_order(words, events, base, sound_end)
    return in_order if in_order is not None else _grouped(words, events, base, sound_end, text, audio, rate)


def _grouped(words: list[tuple[int, int]], events: list[tuple[int, int, float]], base: int, sound_end: float,
             text: str, audio: np.ndarray, rate: int) -> Timings:
    """`word_events` for any events (sorted by time): each takes the words its characters overlap that no
    event before it took."""
    groups: list[list[int]] = []  # words sharing one span of time
    spans: list[tuple[float, float]] = []
    taken: set[int] = set()  # words in a group
    starts, ends = [s for s, _ in words], [e for _, e in words]  # both increasing: words do not overlap
    last = len(events) - 1
    for n, (at, length, t0) in enumerate(events):  # (conditionals rather than max(): fewer calls a word)
        t1 = events[n + 1][2] if n < last else (sound_end if sound_end > t0 else t0)
        at += base
        reach = at + (length if length > 1 else 1)
        # the words the event's characters overlap (end after `at`, start before `reach`), not yet in a group
        lo, hi = bisect_right(ends, at), bisect_left(starts, reach)
        hit = [lo] if hi == lo + 1 and lo not in taken else [k for k in range(lo, hi) if k not in taken]
        if hit:
            groups.append(hit)
            taken.update(hit)
            spans.append((t0, t1 if t1 > t0 else t0))
        elif spans:
            spans[-1] = (spans[-1][0], max(t1, spans[-1][1]))
    if not groups:
        return estimate_words(text, audio, rate, spans=words)
    for k in range(len(words)) if len(taken) < len(words) else ():  # a word without an event joins the group
        if k not in taken:  # before it
            before = next((g for g in reversed(groups) if g[-1] < k), groups[0])
            before.append(k)
    out: list[Timing] = []
    for group, (t0, t1) in zip(groups, spans, strict=True):
        group.sort()
        _share(words, group, t0, t1, out)
    out.sort(key=attrgetter("start_char"))
    return tuple(out)


def _share(words: list[tuple[int, int]], group: Sequence[int], t0: float, t1: float, out: list[Timing]) -> None:
    """Append the timings of the words numbered in `group` (increasing) sharing t0..t1 by their length."""
    if len(group) == 1:  # most words: the whole span (shared_edges gives t0 and t0 + (t1 - t0) * 1.0)
        out.append(Timing(*words[group[0]], t0, t0 + (t1 - t0)))
        return
    edges = shared_edges([words[k][1] - words[k][0] for k in group], t0, t1)
    out.extend(Timing(*words[k], edges[n], edges[n + 1]) for n, k in enumerate(group))


def _in_order(words: list[tuple[int, int]], events: list[tuple[int, int, float]], base: int,
              sound_end: float) -> Timings | None:
    """`_grouped`'s timings when each event overlaps one word no other event overlaps, in the words' order
    (all of espeak-ng's sentences but a few): a word without an event ("the" run into "on the") joins the
    event before it (the first one, before any), so each event's words are consecutive and no sets, lists
    of groups or sort are needed (issue 16: espeak-ng's timings at most 5% of its synthesis). None when an
    event does not, for `_grouped`."""
    count = len(words)
    out: list[Timing] = []
    first, k = 0, 0
    before: float | None = None  # the event before: its words are first..k-1, from `before` seconds
    floor = -inf  # where the last word passed over without an event ends: an event reaching back over it takes it
    for at, length, t0 in events:
        at += base
        reach = at + (length if length > 1 else 1)
        if at < floor:
            return None
        passed = k
        while k < count and words[k][1] <= at:  # words that end before the event's first character
            k += 1
        if k > passed:
            floor = words[k - 1][1]
        # the event overlaps word k and not the one after it (nor one before: those end before `at`, or an
        # event took them)
        if k == count or words[k][0] >= reach or (k + 1 < count and words[k + 1][0] < reach):
            return None
        if before is not None:  # the event before ends where this one starts (they are sorted by time)
            if k - first == 1:  # most events: one word, the whole span (as in `_share`)
                out.append(Timing(*words[first], before, before + (t0 - before)))
            else:
                _share(words, range(first, k), before, t0, out)
            first = k  # (words before the first event's join it: `first` stays 0 for it)
        before = t0
        k += 1
    if before is None:
        return None
    end = sound_end if sound_end > before else before  # the last event lasts until the sound ends
    if count - first == 1:
        out.append(Timing(*words[first], before, before + (end - before)))
    else:
        _share(words, range(first, count), before, end, out)
    return tuple(out)


def _timings(sentence: str, events: list[tuple[int, int, float]], audio: np.ndarray, rate: int,
             base: int) -> Timings:
    """The word timings of one call's clip (`calls`: a sentence or several), from one read of its loudness
    (10 ms frames, 5 ms apart).

    A word's event comes where its phonemes begin, and espeak-ng renders a stop's closure as silence ("Call"
    sounds 85 ms after its event at speed 0.5, 40 ms at 1.0): such a start moves to the word's first sound
    (`snap_to_sound`, frames within _SNAP_DB of the loudest). The last word lasts until the middle of the last
    frame within _END_DB of the loudest, where `voiced_end` (the last sample above 2% of the loudest sample)
    read the clip twice more: 1.5% of synthesis (issue 16: timings at most 5%). Against it, over 432 sentences
    of four voices at three speeds: median +0.5 ms, p95 4.6 ms apart (s11c; of -20 to -45 dB and a frame's
    middle, three quarters or end, -32 dB and the middle came closest). The float32 sums decide the frames
    even within 1e-3 dB of a threshold (`_loud` goes back to float64 there), which moves a start by a frame
    (5 ms) in a clip in a few hundred at most."""
    sums, hop, _ = frame_sums(audio, rate)
    top = float(np.maximum.reduce(sums)) if len(sums) else 0.0  # (sums.max() without its Python wrapper)
    if not 0.0 < top < inf:  # silent, shorter than a frame, or beyond float32's squares
        return snap_to_sound(word_events(sentence, events, audio, rate, base), audio, rate)
    flags = (sums > top * _SNAP_POWER).tobytes()
    # The last frame within _END_DB is at or before the last within _SNAP_DB, a few frames back: stepped to in
    # Python rather than with another comparison over the clip's frames (the loudest frame stops it).
    last, edge = flags.rfind(1), top * _END_POWER
    while not sums[last] > edge:
        last -= 1
    end = (last + 1) * hop / rate
    return snap_to_sound(word_events(sentence, events, audio, rate, base, end), audio, rate, _SNAP_DB,
                         frames=(flags, hop))


def calls(text: str) -> Iterator[tuple[int, str]]:
    """(offset, text) of each espeak-ng call `text` is said in: whole sentences, as many as fit in MAX_CALL_CHARS
    (a longer sentence alone), never across a line break. Within a call espeak-ng reads abbreviations and
    numbers itself and pauses between sentences by its own rules; a call per sentence said "Mr." and "3." of
    "3.50" as sentences of their own and ran the sentences together (a call's last pause is dropped: `_CLOSE`)."""
    start: int | None = None  # where the call being gathered starts
    end = pos = 0  # where its last sentence ends; where the next sentence starts
    for cut in (*_SENTENCE.finditer(text), None):
        stop = cut.start() if cut is not None else len(text)
        if text[pos:stop].strip():  # a sentence
            if start is not None and stop - start > MAX_CALL_CHARS:
                yield start, text[start:end]
                start = None
            start = pos if start is None else start
            end = stop
        if start is not None and (cut is None or "\n" in cut.group() or "\r" in cut.group()):  # end or line break
            yield start, text[start:end]
            start = None
        pos = cut.end() if cut is not None else pos


class EspeakLoadedVoice:
    """An espeak-ng voice name; synthesis takes the global lock a call at a time."""

    def __init__(self, voice: VoiceInfo) -> None:
        with ESPEAK_LOCK:
            self.sample_rate = library().rate
        # By the voice file's identifier (gmw/en): some language names (en-gb, fr-fr) are not voice names.
        identifier = voice.engine_data.get("espeak_identifier")
        variant = voice.engine_data.get("espeak_variant")
        name = f"{identifier}+{variant}" if identifier and variant else identifier
        self._name = str(name or voice.engine_data.get("espeak_voice", voice.id.removeprefix(PREFIX)))

    def synthesize(self, text: str, params: EngineParams) -> Iterator[Piece]:
        """One array per call (`calls`); the rate is set in words per minute from `params.speed`."""
        wpm = round(min(max(DEFAULT_WPM * params.speed, WPM_RANGE[0]), WPM_RANGE[1]))
        for start, said in calls(text):
            close = _CLOSE if said.rstrip().rstrip(_CLOSERS)[-1:] in _MARKS else _CLOSE_UNMARKED
            with ESPEAK_LOCK:
                audio = library().speak(self._name, said + close, wpm)
                events = library().words()
            if len(audio):
                timings = _timings(said, events, audio, self.sample_rate, start) if params.timings else None
                yield Piece(audio, self.sample_rate, timings)

    def close(self) -> None:
        """Nothing to free: the library stays loaded for the process."""


class EspeakEngine:
    """Every espeak-ng language as a voice; variants (`+f3`, `+klatt`, …) resolve on demand."""

    name = "espeak"

    def __init__(self) -> None:
        self._voices: dict[str, VoiceInfo] | None = None
        self._capabilities: Capabilities | None = None
        self._variants: set[str] | None = None

    def _scan(self) -> dict[str, VoiceInfo]:
        if self._voices is None:
            with ESPEAK_LOCK:
                lib = library()
                listed, variants, rate = lib.voices(), lib.voices("variant"), lib.rate
            voices: dict[str, VoiceInfo] = {}
            for identifier, name, languages in listed:
                if not languages or identifier.startswith("mb/"):
                    continue  # mbrola voices need databases that are not shipped
                lang = languages[0]
                if not _has_dictionary(identifier, lang):
                    continue  # its dictionary is not in the wheel (fo, kaa, xex): it would say nothing
                vid = PREFIX + lang
                voices.setdefault(vid, VoiceInfo(
                    id=vid, name=f"espeak-ng {name}", engine=self.name, language=language_tag(lang),
                    sample_rate=rate, quality="low",
                    engine_data={"espeak_voice": lang, "espeak_identifier": identifier},
                ))
            self._variants = {ident.removeprefix("!v/") for ident, _, _ in variants}
            self._voices = voices
        return self._voices

    def capabilities(self) -> Capabilities:
        """Every language espeak-ng has, a sentence at a time, at 80–449 words per minute."""
        # Made once, as the scan it reads is: the service asks on the event loop for every segment of every
        # request, and sorting the ~130 voices' languages took ~10 µs a time (~0.5% of a four-sentence request).
        if self._capabilities is None:
            languages = tuple(sorted({v.language for v in self._scan().values()}))
            # (match_base: formant synthesis is too robotic to shift toward a person)
            self._capabilities = Capabilities(languages=languages, streaming="sentence", speed_range=SPEED_RANGE,
                                              match_base=False)
        return self._capabilities

    def voices(self) -> list[VoiceInfo]:
        """One voice per language (variants are not listed: see `voice_for`)."""
        return list(self._scan().values())

    def variants(self) -> list[str]:
        """espeak-ng's voice variants, usable as `espeak:<language>+<variant>`."""
        self._scan()
        return sorted(self._variants or ())

    def voice_for(self, spec: str) -> VoiceInfo | None:
        """A voice for `espeak:<language>[+<variant>]`, or None if espeak-ng has no such voice."""
        if not spec.lower().startswith(PREFIX):
            return None
        base, _, variant = spec[len(PREFIX):].partition("+")
        scanned = self._scan().values()
        by_tag = {PREFIX + v.language.lower(): v for v in scanned}  # espeak:zh as well as espeak:cmn
        voice = {**by_tag, **{v.id.lower(): v for v in scanned}}.get((PREFIX + base).lower())
        if voice is None or (variant and variant not in (self._variants or ())):
            return None
        if not variant:
            return voice
        name = f"{voice.engine_data['espeak_voice']}+{variant}"
        return VoiceInfo(id=PREFIX + name, name=f"{voice.name} ({variant})", engine=self.name,
                         language=voice.language, sample_rate=voice.sample_rate, quality="low",
                         engine_data={**voice.engine_data, "espeak_voice": name, "espeak_variant": variant})

    def load(self, voice: VoiceInfo, threads: int) -> EspeakLoadedVoice:
        """espeak-ng needs no per-voice loading; `threads` is irrelevant (it is single-threaded)."""
        return EspeakLoadedVoice(voice)

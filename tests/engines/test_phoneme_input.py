"""Phoneme input ([[ipa]] blocks) in the engines that take it: what each engine's model receives, and
that it changes the audio; the engines that cannot take phonemes say so in their capabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxgate.engines.base import EngineParams
from voxgate.engines.espeak import EspeakEngine
from voxgate.engines.hibari import VOICE_ID, HibariEngine
from voxgate.engines.kokoro import KokoroEngine
from voxgate.engines.phonemes import split_blocks, to_misaki
from voxgate.engines.pico import PicoEngine
from voxgate.engines.piper import PiperEngine

ELEPHANTS_IPA = "ˈɛləfənt ˈɛləfənt ˈɛləfənt"


def seconds(loaded, text: str) -> float:  # type: ignore[no-untyped-def]
    audio = np.concatenate([piece.samples for piece in loaded.synthesize(text, EngineParams(seed=1))])
    return len(audio) / loaded.sample_rate


def test_ipa_to_misaki_and_block_splitting() -> None:
    assert to_misaki("vˈɑksɡeɪt") == "vˈɑksɡAt"
    assert to_misaki("tʃˈoʊzən dʒˈɔɪ") == "ʧˈOzən ʤˈY"
    assert list(split_blocks("Hi [[vˈɑks]] there.")) == [("Hi ", False), ("vˈɑks", True), (" there.", False)]


def test_capabilities_say_who_takes_phonemes(tmp_path: Path) -> None:
    assert PiperEngine().capabilities().phonemes
    assert HibariEngine().capabilities().phonemes
    assert KokoroEngine(cache_dir=tmp_path).capabilities().phonemes
    assert not EspeakEngine().capabilities().phonemes  # its [[…]] takes espeak mnemonics, not IPA
    assert not PicoEngine().capabilities().phonemes  # SVOX Pico takes text only


def test_piper_reads_blocks_as_phonemes() -> None:
    engine = PiperEngine()
    voice = next(v for v in engine.voices() if v.id == "en_US-joe-medium")
    loaded = engine.load(voice, threads=1)
    try:
        phonemes = loaded._voice.phonemize("I like [[vˈɑksɡeɪt]].")
        assert "".join(phonemes[0]) == "aɪ lˈaɪk vˈɑksɡeɪt"  # one phoneme per character, as given
        plain, block, spelled = (seconds(loaded, t) for t in
                                 ("Hi cat.", f"Hi [[{ELEPHANTS_IPA}]].", "Hi elephant elephant elephant."))
        assert block > plain + 0.6 and abs(block - spelled) < 0.3 * spelled, (plain, block, spelled)
    finally:
        loaded.close()


def test_hibari_joins_blocks_into_their_sentence() -> None:
    engine = HibariEngine()
    voice = next(v for v in engine.voices() if v.id == VOICE_ID)
    loaded = engine.load(voice, threads=1)
    try:
        text = "I like [[vˈɑksɡeɪt]] a lot. Next one."
        chunks, spans = loaded._phonemize(text, True)
        assert len(chunks) == 2 and "vˈɑksɡAt" in chunks[0], chunks
        assert spans is not None and [text[a:b] for a, b in spans] == ["I like [[vˈɑksɡeɪt]] a lot.", "Next one."]
        assert loaded._phonemize(text, False) == (chunks, None)  # placed only for timings
        plain, block, spelled = (seconds(loaded, t) for t in
                                 ("Hi cat.", f"Hi [[{ELEPHANTS_IPA}]].", "Hi elephant elephant elephant."))
        assert block > plain + 0.6 and abs(block - spelled) < 0.3 * spelled, (plain, block, spelled)
    finally:
        loaded.close()


@pytest.mark.timeout(300)
def test_kokoro_reads_blocks_as_phonemes(tmp_path_factory: pytest.TempPathFactory) -> None:
    engine = KokoroEngine(cache_dir=tmp_path_factory.mktemp("kokoro"))
    voice = engine.voice_for("kokoro:jf_alpha")
    assert voice is not None
    loaded = engine.load(voice, threads=1)
    try:
        assert "vˈɑksɡAt" in loaded._phonemes("I like [[vˈɑksɡeɪt]].")
        plain, block, spelled = (seconds(loaded, t) for t in
                                 ("Hi cat.", f"Hi [[{ELEPHANTS_IPA}]].", "Hi elephant elephant elephant."))
        assert block > plain + 0.6 and abs(block - spelled) < 0.3 * spelled, (plain, block, spelled)
    finally:
        loaded.close()

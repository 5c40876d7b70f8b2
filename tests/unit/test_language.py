"""Language tags of every dialect, script spans for `auto`, and routing to voices of real engines."""

from __future__ import annotations

import random

import pytest

from voxgate.core.routing import LanguageNotSpoken, best_voice, route, speaks
from voxgate.engines.espeak import EspeakEngine
from voxgate.engines.kokoro import DEFAULT_CHINESE, KokoroEngine
from voxgate.engines.piper import PiperEngine
from voxgate.errors import VoiceNotFound
from voxgate.text.language import Mode, UnknownLanguage, detect_spans, normalize_language, parse_language, script_of
from voxgate.voices.registry import VoiceRegistry


@pytest.mark.parametrize(("tag", "expected"), [
    ("en", "en"), ("EN", "en"), ("zh", "zh"), ("ja", "ja"), ("ko", "ko"), ("yue", "yue"),
    ("all_zh", "zh"), ("all_ja", "ja"), ("all_yue", "yue"), ("all_ko", "ko"),
    ("zh-cn", "zh"), ("zh_CN", "zh"), ("ja-jp", "ja"), ("ja-JP", "ja"), ("ko-KR", "ko"),
    ("en-us", "en-US"), ("en_GB", "en-GB"), ("zh-tw", "zh-TW"), ("pt-br", "pt-BR"), ("es-419", "es-419"),
    ("cmn", "zh"), ("jp", "ja"), ("english", "en"), ("Japanese", "ja"), ("cantonese", "yue"),
    ("fr", "fr"), ("de", "de"), ("hi", "hi"), ("sr-latn", "sr-Latn"),
    ("auto", None), ("AUTO", None), ("auto_yue", None), ("", None), (None, None),
])
def test_every_dialects_codes_normalise(tag: str | None, expected: str | None) -> None:
    assert normalize_language(tag) == expected


def test_modes_and_the_han_hint() -> None:
    assert parse_language("all_zh").mode is Mode.STRICT
    assert parse_language("zh").mode is Mode.MIXED
    assert parse_language("auto").mode is Mode.AUTO
    assert parse_language("auto_yue").han == "yue" and parse_language("auto").han == "zh"
    assert parse_language("yue").han == "yue"


@pytest.mark.parametrize("tag", ["klingon!", "e", "1234", "zh cn", "en--us", "auto zh"])
def test_non_languages_are_refused_with_the_field_named(tag: str) -> None:
    with pytest.raises(UnknownLanguage) as info:
        parse_language(tag)
    assert info.value.param == "language" and tag in info.value.message


def test_spans_split_where_the_script_changes() -> None:
    assert detect_spans("你好，world! 我们走吧。") == [("你好，", "zh"), ("world! ", "en"), ("我们走吧。", "zh")]
    assert detect_spans("今日はAppleの日です。") == [("今日は", "ja"), ("Apple", "en"), ("の日です。", "ja")]
    assert detect_spans("안녕하세요 Hello") == [("안녕하세요 ", "ko"), ("Hello", "en")]
    assert detect_spans("Привет, friend") == [("Привет, ", "ru"), ("friend", "en")]
    assert detect_spans("12, 34!") == [("12, 34!", None)]
    assert detect_spans("中文。日本語です。") == [("中文。", "zh"), ("日本語です。", "ja")]  # kana: per sentence
    assert detect_spans("3 个苹果", han="yue") == [("3 个苹果", "yue")]
    assert detect_spans("Bonjour", latin="fr") == [("Bonjour", "fr")]
    text = "Mixed 中文 and English, 日本語もある。"
    assert "".join(span for span, _ in detect_spans(text)) == text  # nothing lost or reordered


def test_text_of_latin_letters_and_neutral_characters_is_one_span_as_the_scan_finds_it() -> None:
    """Such text skips the per-character scan; what it gets is what every character's script_of says."""
    rng = random.Random(13)
    alphabet = "aZ09 ,.!?'\n-“”—…€×÷éÀŸḀỹ@[`{¿ɐ\u1dff"  # Latin ranges, neutral characters and their edges
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        letters = any(script_of(c) == "latin" for c in text)
        assert detect_spans(text, latin="fr") == ([(text, "fr" if letters else None)] if text else [])
    assert detect_spans("Our library opens at nine.") == [("Our library opens at nine.", "en")]
    assert detect_spans("") == []


@pytest.fixture(scope="module")
def registry() -> VoiceRegistry:
    engines = {"piper": PiperEngine(), "kokoro": KokoroEngine(), "espeak": EspeakEngine()}
    return VoiceRegistry(engines, {"alloy": "en_US-joe-medium"}, "en_US-joe-medium")


@pytest.fixture(scope="module")
def no_kokoro() -> VoiceRegistry:
    """Without Kokoro, Chinese falls back to espeak-ng, which cannot say English words."""
    return VoiceRegistry({"piper": PiperEngine(), "espeak": EspeakEngine()}, {}, "en_US-joe-medium")


ZH = f"kokoro-zh:{DEFAULT_CHINESE}"  # Kokoro reading Mandarin: Chinese goes there ahead of espeak-ng


def test_neural_voices_come_first_and_espeak_is_the_fallback(registry: VoiceRegistry) -> None:
    assert best_voice(registry, "en").id == "en_US-joe-medium"  # the default voice speaks it
    assert best_voice(registry, "ja").engine == "kokoro"
    assert best_voice(registry, "zh").id == ZH
    assert best_voice(registry, "ko").id == "espeak:ko"
    assert best_voice(registry, "yue").id == "espeak:yue"
    assert best_voice(registry, "en-GB", registry.resolve("espeak:en-us")).id == "espeak:en-us"  # it speaks en
    with pytest.raises(LanguageNotSpoken) as info:
        best_voice(registry, "tlh")
    assert info.value.param == "language"


def test_explicit_languages_pick_a_voice_that_speaks_them(registry: VoiceRegistry, no_kokoro: VoiceRegistry) -> None:
    [span] = route(registry, None, "all_zh", "你好 world")
    assert span.voice.id == ZH and span.text == "你好 world" and span.language == "zh"
    [span] = route(no_kokoro, None, "all_zh", "你好 world")
    assert span.voice.id == "espeak:cmn" and span.text == "你好 world" and span.language == "zh"
    [span] = route(registry, "alloy", "ja-JP", "こんにちは")
    assert span.voice.engine == "kokoro"  # the requested English voice cannot speak Japanese
    [span] = route(registry, "kokoro:jm_kumo", "en", "Hello there.")
    assert span.voice.id == "kokoro:jm_kumo"  # Kokoro voices speak English too: the request is kept
    [span] = route(registry, "espeak:ko", "ko", "안녕하세요")
    assert span.voice.id == "espeak:ko"


def test_mixed_mode_sends_latin_words_to_an_english_voice(registry: VoiceRegistry, no_kokoro: VoiceRegistry) -> None:
    [span] = route(registry, None, "zh", "我喜欢Python和Rust。")  # Kokoro reads the English words itself
    assert span.voice.id == ZH and span.text == "我喜欢Python和Rust。"
    spans = route(no_kokoro, None, "zh", "我喜欢Python和Rust。")
    assert [(s.text, s.voice.id) for s in spans] == [
        ("我喜欢", "espeak:cmn"), ("Python", "en_US-joe-medium"), ("和", "espeak:cmn"),
        ("Rust。", "en_US-joe-medium"),  # script-less characters stay with the span before them
    ]
    [span] = route(registry, None, "ja", "今日はAppleの日。")  # Kokoro reads the English word itself
    assert span.voice.engine == "kokoro"


def test_auto_routes_each_script_span_to_a_voice_of_its_language(registry: VoiceRegistry) -> None:
    spans = route(registry, None, "auto", "Hello, 你好！こんにちは。안녕 friends.")
    assert [(s.text, s.language, s.voice.id) for s in spans] == [
        ("Hello, ", "en", "en_US-joe-medium"), ("你好！", "zh", ZH),
        ("こんにちは。", "ja", spans[2].voice.id), ("안녕 ", "ko", "espeak:ko"),
        ("friends.", "en", "en_US-joe-medium"),
    ]
    assert spans[2].voice.engine == "kokoro"
    assert [s.voice.id for s in route(registry, None, "auto_yue", "你好 hi")] == ["espeak:yue", "en_US-joe-medium"]
    # A requested voice keeps every span it can speak: Kokoro reads the English and the Japanese.
    [span] = route(registry, "kokoro:jf_alpha*0.7+jm_kumo*0.3", None, "Hello こんにちは")
    assert span.voice.id == "kokoro:jf_alpha*0.7+jm_kumo*0.3"
    [span] = route(registry, None, None, "123 456")
    assert span.voice.id == "en_US-joe-medium" and span.language is None


def test_routing_errors(registry: VoiceRegistry) -> None:
    with pytest.raises(VoiceNotFound):
        route(registry, "nobody", "en", "hi")
    with pytest.raises(UnknownLanguage):
        route(registry, None, "xx-!!", "hi")
    with pytest.raises(LanguageNotSpoken):
        route(registry, None, "tlh", "hi")
    assert speaks(registry.resolve("kokoro:jf_alpha"), "en-US")
    assert not speaks(registry.resolve("en_US-joe-medium"), "ja")


def _reference_voice(registry: VoiceRegistry, voice_id: str, base: str, variants: dict[str, str]) -> None:
    """A cached reference voice on `base`, with a per-language variant on each of `variants`' bases."""
    shift = {"f0_ratio": 1.2, "range_ratio": 1.0, "formant_ratio": 1.05, "eq_db": [0.0] * 48}
    features = {"base_voice": base, "shift": shift,
                "variants": {lang: {"base_voice": b, "shift": shift} for lang, b in variants.items()}}
    registry.add_transient(voice_id, voice_id, "zh", features, 24000)


def test_english_of_a_mixed_request_goes_to_the_reference_voices_english_base(registry: VoiceRegistry) -> None:
    _reference_voice(registry, "ref:kokoro", "kokoro:jm_kumo", {"en": "en_US-joe-medium"})
    english = route(registry, "ref:kokoro", "zh", "Hello there, my friend.")
    assert [(s.voice.id, s.voice.base_voice) for s in english] == [("ref:kokoro#en", "en_US-joe-medium")]
    assert english[0].voice.reference.shift["f0_ratio"] == 1.2  # moved toward the same reference
    mixed = route(registry, "ref:kokoro", "zh", "你好 world")
    # Chinese goes to the Mandarin reading of the same Kokoro style (no Chinese variant was measured)
    assert [(s.text, s.voice.id) for s in mixed] == [("你好 ", "kokoro-zh:jm_kumo"), ("world", "ref:kokoro#en")]
    [japanese] = route(registry, "ref:kokoro", "all_ja", "こんにちは hello")
    assert japanese.voice.id == "ref:kokoro"  # its own base speaks Japanese natively: every word stays with it
    [plain] = route(registry, "ref:kokoro", "en", "Hello.")
    assert plain.voice.id == "ref:kokoro#en"
    assert registry.resolve("ref:kokoro").id == "ref:kokoro" and "ref:kokoro" not in {v.id for v in registry.list()}
    # On an English base the reference voice reads English itself; installed voices are routed as before.
    _reference_voice(registry, "ref:joe", "en_US-joe-medium", {"ja": "kokoro:jf_alpha"})
    assert [s.voice.id for s in route(registry, "ref:joe", "ja", "こんにちは hello")] == ["ref:joe#ja", "ref:joe"]
    [kept] = route(registry, "kokoro:jm_kumo", "ja", "こんにちは hello")
    assert kept.voice.id == "kokoro:jm_kumo"
    registry.drop_transient("ref:kokoro")
    with pytest.raises(VoiceNotFound):
        registry.resolve("ref:kokoro")

"""Kokoro-FastAPI voice names and blends → voice specs (the lookup only; the live tests speak them)."""

from __future__ import annotations

from typing import Any

import pytest

from voxgate.dialects.openai.peers import kokoro_voice
from voxgate.errors import VoiceNotFound
from voxgate.settings import DEFAULT_KOKORO_VOICES, FEMALE_VOICE, MALE_VOICE, Settings

TABLE = {"af_bella": "kokoro:jf_alpha", "af_sky": "kokoro:jf_nezumi", "am_adam": "piper-joe",
         "af_heart": "piper-amy"}


def ctx(table: dict[str, str] | None = TABLE) -> Any:
    """The dialect's Kokoro table (OpenAIConfig.kokoro_voices): `table`, or an empty one."""
    return table if table is not None else {}


@pytest.mark.parametrize(("spec", "expected"), [
    ("af_bella", "kokoro:jf_alpha"),
    ("AF_Bella", "kokoro:jf_alpha"),
    ("af_bella+af_sky", "kokoro:jf_alpha*1+jf_nezumi*1"),
    ("af_bella(2)+af_sky(0.5)", "kokoro:jf_alpha*2+jf_nezumi*0.5"),
    (" af_bella + af_sky ", "kokoro:jf_alpha*1+jf_nezumi*1"),
    ("am_adam(3)+af_bella", "piper-joe"),  # across engines: the heaviest voice
    ("am_adam+af_heart", "piper-joe"),  # equal weights: the first
    ("af_heart-am_adam", "piper-amy"),  # subtracted voices are dropped
    ("af_bella+af_bella", "kokoro:jf_alpha"),
])
def test_names_and_blends(spec: str, expected: str) -> None:
    assert kokoro_voice(ctx(), spec) == expected


def test_mandarin_names_blend_as_mandarin_kokoro_styles() -> None:
    table = DEFAULT_KOKORO_VOICES
    assert kokoro_voice(table, "zf_xiaobei+zm_yunxi(3)") == "kokoro-zh:jf_nezumi*1+jm_kumo*3"
    assert kokoro_voice(table, "zf_xiaobei+zf_xiaoni") == "kokoro-zh:jf_nezumi"  # the same style twice
    assert kokoro_voice(table, "zf_xiaobei(2)+jm_kumo") == "kokoro-zh:jf_nezumi"  # readings differ: heaviest


@pytest.mark.parametrize("spec", ["alloy", "en_US-joe-medium", "kokoro:jf_alpha", "+af_bella", "af_bella+",
                                  "af_bella++af_sky", "af_bella(x)", "UklGRiQAAABXQVZFZm10+/=", ""])
def test_anything_else_is_not_a_kokoro_name(spec: str) -> None:
    assert kokoro_voice(ctx(), spec) is None
    assert kokoro_voice(ctx(None), "af_bella") is None


def test_a_blend_naming_an_unknown_voice_or_no_positive_weight_is_voice_not_found() -> None:
    with pytest.raises(VoiceNotFound, match="zz_nobody"):
        kokoro_voice(ctx(), "af_bella+zz_nobody")
    with pytest.raises(VoiceNotFound, match="positive weight"):
        kokoro_voice(ctx(), "af_bella(0)")


def test_default_table_and_settings() -> None:
    settings = Settings()
    assert settings.kokoro_voice_aliases == DEFAULT_KOKORO_VOICES
    assert DEFAULT_KOKORO_VOICES["af_heart"] == FEMALE_VOICE and DEFAULT_KOKORO_VOICES["bf_emma"] == FEMALE_VOICE
    assert DEFAULT_KOKORO_VOICES["am_adam"] == MALE_VOICE and DEFAULT_KOKORO_VOICES["bm_george"] == MALE_VOICE
    assert DEFAULT_KOKORO_VOICES["jf_alpha"] == "kokoro:jf_alpha"
    assert DEFAULT_KOKORO_VOICES["jm_kumo"] == "kokoro:jm_kumo"
    # Kokoro v1.0's other languages: Mandarin on the Mandarin Kokoro voices, es/fr/it on Pico, hi/pt on espeak-ng
    assert DEFAULT_KOKORO_VOICES["zf_xiaobei"] == "kokoro-zh:jf_nezumi"
    assert DEFAULT_KOKORO_VOICES["zm_yunxi"] == "kokoro-zh:jm_kumo"
    assert DEFAULT_KOKORO_VOICES["ef_dora"] == DEFAULT_KOKORO_VOICES["em_alex"] == "pico:es-ES"
    assert DEFAULT_KOKORO_VOICES["ff_siwis"] == "pico:fr-FR" and DEFAULT_KOKORO_VOICES["im_nicola"] == "pico:it-IT"
    assert DEFAULT_KOKORO_VOICES["hf_alpha"] == "espeak:hi+f3" and DEFAULT_KOKORO_VOICES["hm_psi"] == "espeak:hi"
    assert DEFAULT_KOKORO_VOICES["pf_dora"] == "espeak:pt-br+f3" and DEFAULT_KOKORO_VOICES["pm_santa"] == "espeak:pt-br"
    prefixes = {name[:2] for name in DEFAULT_KOKORO_VOICES}
    assert prefixes == {"af", "am", "bf", "bm", "jf", "jm", "zf", "zm", "ef", "em", "ff", "hf", "hm", "if", "im",
                        "pf", "pm"}  # every language of Kokoro-82M v1.0
    assert settings.flash_builtin_roles == {"female": FEMALE_VOICE, "male": MALE_VOICE}
    assert Settings(flash_builtin_roles={"male": "x"}).flash_builtin_roles == {"female": FEMALE_VOICE, "male": "x"}
    with pytest.raises(ValueError, match="female and male"):
        Settings(flash_builtin_roles={"narrator": "x"})
    assert "kokoro" in settings.openai_models and "tts-1" in settings.openai_models

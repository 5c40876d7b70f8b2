"""Kokoro reading Mandarin (misaki's Chinese G2P): voices, numbers read as Chinese, speech, routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import rms
from voxgate.core.routing import route
from voxgate.engines.base import EngineParams
from voxgate.engines.espeak import EspeakEngine
from voxgate.engines.hibari import HibariEngine
from voxgate.engines.kokoro import DEFAULT_CHINESE, KokoroEngine
from voxgate.voices.registry import VoiceRegistry

STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> KokoroEngine:
    return KokoroEngine(cache_dir=tmp_path_factory.mktemp("kokoro-cache"))


def reads(engine: KokoroEngine, text: str) -> str:
    return str(engine._zh_g2p()(text))


def test_every_style_is_offered_for_mandarin(engine: KokoroEngine) -> None:
    zh = [v for v in engine.voices() if v.language == "zh"]
    assert [v.id for v in zh] == [f"kokoro-zh:{s}" for s in STYLES]
    assert all(v.family == f"kokoro:{v.id.split(':')[1]}" and v.sample_rate == 24000 for v in zh)
    assert [v.id for v in zh if v.route_default] == [f"kokoro-zh:{DEFAULT_CHINESE}"]
    blend = engine.voice_for("kokoro-zh:jf_alpha*0.5+jm_kumo*0.5")
    assert blend is not None and blend.language == "zh" and blend.engine_data["reads"] == "zh"
    assert "zh" in engine.capabilities().languages


@pytest.mark.parametrize(("digits", "words"), [
    ("我有3个苹果。", "我有三个苹果。"),
    ("今年增长了12.5%。", "今年增长了百分之十二点五。"),
    ("这台电脑5999元。", "这台电脑五千九百九十九元。"),
    ("会议在2024年3月15日。", "会议在二零二四年三月十五日。"),
    ("我们班有42个学生。", "我们班有四十二个学生。"),
    ("现在是10:30。", "现在是十点三十分。"),
    ("日期是2024-03-15。", "日期是二零二四年三月十五日。"),
    ("2024年05月06日", "二零二四年五月六日"),
    ("共1,000,000元。", "共一百万元。"),
    ("电话13800138000。", "电话一三八零零一三八零零零。"),
    ("增长５０％。", "增长百分之五十。"),
])
def test_numbers_dates_and_percentages_are_read_as_chinese(engine: KokoroEngine, digits: str, words: str) -> None:
    assert reads(engine, digits) == reads(engine, words)
    assert not any(c.isdigit() for c in reads(engine, digits))


def test_number_forms_cn2an_misreads_are_rewritten_first() -> None:
    from voxgate.engines.zh_numbers import normalize_numbers

    assert normalize_numbers("10:05开会，23:59:30结束") == "10点零五分开会，23点59分30秒结束"
    assert normalize_numbers("１２：３０") == "12点30分"
    assert normalize_numbers("2024/3/5") == "2024年3月5日" and normalize_numbers("12:00") == "12点整"
    assert normalize_numbers("编号007，价格12.5%，圆周率3.14") == "编号零零七，价格12.5%，圆周率3.14"
    assert normalize_numbers("1,234.5元") == "1234.5元"


def test_mandarin_speech_with_a_decimal_kept_in_one_sentence(engine: KokoroEngine) -> None:
    loaded = engine.load(engine.voice_for(f"kokoro-zh:{DEFAULT_CHINESE}"), threads=2)
    try:
        pieces = [p.samples for p in loaded.synthesize("今天天气很好。价格上涨了12.5%。", EngineParams())]
        assert len(pieces) == 2  # not cut at the decimal point
        for piece in pieces:
            assert piece.dtype == np.float32 and 1.0 < len(piece) / 24000 < 6.0 and rms(piece) > 0.02
        mixed = np.concatenate([p.samples for p in loaded.synthesize("我喜欢 Apple 的电脑。", EngineParams())])
        assert 1.0 < len(mixed) / 24000 < 6.0 and rms(mixed) > 0.02
    finally:
        loaded.close()


def test_the_same_style_reads_japanese_and_mandarin_differently(engine: KokoroEngine) -> None:
    ja = engine.load(engine.voice_for("kokoro:jf_alpha"), threads=2)
    zh = engine.load(engine.voice_for("kokoro-zh:jf_alpha"), threads=2)
    try:
        assert ja._phonemes("東京大学") != zh._phonemes("東京大学")
        assert zh._phonemes("东京大学") == reads(engine, "东京大学")
    finally:
        ja.close()
        zh.close()


def test_chinese_routes_to_kokoro_ahead_of_espeak(engine: KokoroEngine) -> None:
    registry = VoiceRegistry({"hibari": HibariEngine(), "kokoro": engine, "espeak": EspeakEngine()}, {},
                             "hibari:heart")
    default = f"kokoro-zh:{DEFAULT_CHINESE}"
    for language in ("zh", "cmn", "zh-cn", "zh_CN", "all_zh", "chinese"):
        spans = route(registry, None, language, "今天天气很好。")
        assert [s.voice.id for s in spans] == [default], language
    spans = route(registry, None, "auto", "Hello there. 今天天气很好。")
    assert [(s.voice.id, s.language) for s in spans] == [("hibari:heart", "en"), (default, "zh")]
    assert route(registry, "kokoro:jm_kumo", "zh", "你好")[0].voice.id == "kokoro-zh:jm_kumo"  # same style
    assert route(registry, "kokoro-zh:jm_kumo", "ja", "こんにちは")[0].voice.id == "kokoro:jm_kumo"
    assert route(registry, "espeak:cmn", "zh", "你好")[0].voice.id == "espeak:cmn"  # asked for: kept
    only_espeak = VoiceRegistry({"hibari": HibariEngine(), "espeak": EspeakEngine()}, {}, "hibari:heart")
    assert route(only_espeak, None, "zh", "你好")[0].voice.id == "espeak:cmn"  # the fallback


def test_offline_loading_never_touches_the_network(engine: KokoroEngine, tmp_path: Path) -> None:
    """hibari and Kokoro's Mandarin G2P load and speak in a process where every socket call fails."""
    import subprocess
    import sys

    script = f"""
import socket, os
def refuse(*args, **kwargs):
    raise OSError("network used")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from pathlib import Path
import numpy as np
from voxgate.engines.base import EngineParams
from voxgate.engines.hibari import HibariEngine
from voxgate.engines.kokoro import KokoroEngine
h = HibariEngine()
v = h.load(h.voices()[0], 1)
a = np.concatenate([p.samples for p in v.synthesize("Nothing is downloaded.", EngineParams())])
assert len(a) > 12000, len(a)
k = KokoroEngine(cache_dir=Path({str(engine._cache_dir)!r}))  # the model joined from its parts
z = k.load(k.voice_for("kokoro-zh:jf_alpha"), 1)
b = np.concatenate([p.samples for p in z.synthesize("什么都不下载。", EngineParams())])
assert len(b) > 12000, len(b)
print("ok", len(a), len(b))
"""
    env = {k: v for k, v in __import__("os").environ.items() if "proxy" not in k.lower()}
    env.update({"HF_HUB_OFFLINE": "1", "HIBARI_HOME": str(tmp_path / "hibari-home"), "HOME": str(tmp_path)})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=110, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok ")
    assert not (tmp_path / "hibari-home").exists()  # hibari made no voice cache

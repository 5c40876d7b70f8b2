"""GPT-SoVITS api_v2: GET/POST /tts, /control, /set_gpt_weights, /set_sovits_weights, /set_refer_audio."""

from voxgate.dialects.gptsovits.routes import GptSovits, GptSovitsConfig

__all__ = ["GptSovits", "GptSovitsConfig"]

"""CosyVoice streaming server (CosyVoice2-Lightning `api/`): HTTP voice management and /tts, WebSocket /tts."""

from voxgate.dialects.cosyvoice.routes import CosyVoice, CosyVoiceConfig

__all__ = ["CosyVoice", "CosyVoiceConfig"]

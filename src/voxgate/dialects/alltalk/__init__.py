"""AllTalk TTS v2: /api/tts-generate, /api/tts-generate-streaming, settings, voices, /audio files (port 7851)."""

from voxgate.dialects.alltalk.routes import AllTalkConfig, AllTalkDialect

__all__ = ["AllTalkConfig", "AllTalkDialect"]

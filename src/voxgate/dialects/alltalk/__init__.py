"""AllTalk TTS v2: /api/tts-generate, /api/tts-generate-streaming, settings, voices, /audio files (port 7851)."""

from voxgate.dialects.alltalk.routes import attach

__all__ = ["attach"]

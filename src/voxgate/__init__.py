"""voxgate: one text-to-speech server that speaks the APIs of the TTS servers people already use."""

__version__ = "0.1.0"

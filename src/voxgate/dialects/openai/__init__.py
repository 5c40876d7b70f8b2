"""OpenAI audio API: POST /v1/audio/speech, GET /v1/models."""

from voxgate.dialects.openai.routes import OpenAI, OpenAIConfig

__all__ = ["OpenAI", "OpenAIConfig"]

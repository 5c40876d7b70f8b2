"""OpenAI audio API: POST /v1/audio/speech, GET /v1/models, GET /v1/audio/voices."""

from voxgate.dialects.openai.routes import attach

__all__ = ["attach"]

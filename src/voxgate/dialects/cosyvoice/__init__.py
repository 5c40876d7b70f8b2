"""CosyVoice streaming server (CosyVoice2-Lightning `api/`): HTTP voice management and /tts, WebSocket /tts."""

from fastapi import FastAPI

from voxgate.core.context import Context
from voxgate.dialects.cosyvoice.routes import attach_http
from voxgate.dialects.cosyvoice.ws import attach_ws


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount every CosyVoice route; after GPT-SoVITS, so POST /tts can be shared with it (see routes.py)."""
    attach_http(app, ctx)
    attach_ws(app, ctx)


__all__ = ["attach"]

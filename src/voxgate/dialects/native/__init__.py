"""voxgate's own endpoints: health, readiness, metrics, voice rescans."""

from voxgate.dialects.native.routes import attach

__all__ = ["attach"]

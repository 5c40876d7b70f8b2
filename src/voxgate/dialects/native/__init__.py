"""voxgate's own endpoints: health, readiness, metrics, the voice catalogue."""

from voxgate.dialects.native.routes import Native

__all__ = ["Native"]

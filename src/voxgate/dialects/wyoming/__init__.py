"""Wyoming (Home Assistant's voice protocol): text-to-speech on its own TCP port, with text streaming."""

from __future__ import annotations

from voxgate.dialects.wyoming.server import Wyoming, WyomingConfig, WyomingServer, start

__all__ = ["Wyoming", "WyomingConfig", "WyomingServer", "start"]

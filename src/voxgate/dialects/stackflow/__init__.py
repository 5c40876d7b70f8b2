"""M5Stack StackFlow (`llm-sys` TCP protocol with the `melotts`/`tts` units) on its own TCP port."""

from __future__ import annotations

from voxgate.dialects.stackflow.server import StackFlow, StackFlowConfig, StackFlowServer, start

__all__ = ["StackFlow", "StackFlowConfig", "StackFlowServer", "start"]

"""What a dialect is handed when it is attached: the services, built once in the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from voxgate.core.metrics import Metrics
from voxgate.core.service import SynthesisService
from voxgate.core.voicebank import VoiceBank
from voxgate.voices.registry import VoiceRegistry


@dataclass
class Context:
    """Services and the few settings dialects need; dialects never read the settings object itself."""

    service: SynthesisService
    voices: VoiceRegistry
    metrics: Metrics
    voicebank: VoiceBank
    api_key: str | None = None  # the one key every door asks for (None: open)
    cors_origins: tuple[str, ...] = ("*",)  # origins a browser may call from (each dialect's own settings are
    # its typed config, built in app.py)

"""Engines by name, imported lazily so a missing optional extra only matters when it is used."""

from __future__ import annotations

import importlib
from typing import Any

from voxgate.engines.base import Engine
from voxgate.errors import VoxgateError

ENGINES: dict[str, str] = {
    "piper": "voxgate.engines.piper:PiperEngine",
    "hibari": "voxgate.engines.hibari:HibariEngine",
    "pico": "voxgate.engines.pico:PicoEngine",
    "kokoro": "voxgate.engines.kokoro:KokoroEngine",
    "espeak": "voxgate.engines.espeak:EspeakEngine",
}


class EngineUnavailable(VoxgateError):
    """An engine was named that is unknown or whose dependencies are not installed."""


def create_engine(name: str, **options: Any) -> Engine:
    """Import and build the engine called `name`."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineUnavailable(f"unknown engine {name!r}; known: {', '.join(sorted(ENGINES))}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine {name!r} needs a package that is not installed ({exc.name}); "
            f"install voxgate[{name}]"
        ) from exc
    engine: Engine = getattr(module, attr)(**options)
    return engine

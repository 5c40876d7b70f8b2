"""Composition root: build every service once, mount the dialects, run the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from voxgate import __version__
from voxgate.core.context import Context
from voxgate.core.metrics import Metrics
from voxgate.core.service import Limits, SynthesisService
from voxgate.core.voicebank import VoiceBank
from voxgate.dialects import gptsovits, native, openai
from voxgate.engines.registry import create_engine
from voxgate.errors import VoiceNotFound
from voxgate.scheduling.pool import WorkerPool
from voxgate.settings import Settings
from voxgate.voices.references import ReferencePolicy
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store import VoiceStore

_LOG = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The settings cannot produce a working server (e.g. the default voice is missing)."""


def build_context(settings: Settings) -> Context:
    """Create the engines, the voice catalogue, the worker pool and the synthesis service."""
    settings.voices_path.mkdir(parents=True, exist_ok=True)
    engines = {"piper": create_engine("piper", voices_dir=settings.voices_path)}
    store = VoiceStore(settings.data_dir)
    voices = VoiceRegistry(engines, settings.openai_voice_aliases, settings.default_voice, store)
    try:
        voices.resolve(None)
    except VoiceNotFound as exc:
        raise StartupError(f"default voice: {exc.message}") from None
    for alias, target in voices.aliases().items():
        try:
            voices.resolve(target)
        except VoiceNotFound:
            _LOG.warning("alias %r points at %r, which is not installed", alias, target)
    pool = WorkerPool(engines.__getitem__, settings.workers, settings.threads, settings.solo_threads,
                      express=settings.express_workers)
    limits = Limits(max_input_chars=settings.max_input_chars, max_queue=settings.max_queue)
    service = SynthesisService(voices, pool, Metrics(), limits)
    policy = ReferencePolicy(roots=settings.reference_roots, allow_urls=settings.allow_reference_urls,
                             allow_private_urls=settings.allow_private_urls)
    voicebank = VoiceBank(voices, store, service, policy, settings.match_strength)
    return Context(service=service, voices=voices, metrics=service.metrics, voicebank=voicebank)


def close_context(ctx: Context) -> None:
    """Stop the workers and close the store."""
    ctx.service.pool.close()
    ctx.voicebank.store.close()


Attach = Callable[[FastAPI, Context], None]

# Every dialect, and the port its original server listens on (served alone there with --compat-ports).
DIALECTS: dict[str, tuple[Attach, int | None]] = {
    "native": (native.attach, None),
    "openai": (openai.attach, None),
    "gptsovits": (gptsovits.attach, 9880),
}


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app with every dialect mounted."""
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.warmup:
            await ctx.service.warm_up()
        else:
            ctx.service.ready = True
        if ctx.voices.stale():
            await ctx.voicebank.rematch()
        try:
            yield
        finally:
            close_context(ctx)

    app = FastAPI(title="voxgate", version=__version__, lifespan=lifespan)
    app.state.ctx = ctx
    for attach, _ in DIALECTS.values():
        attach(app, ctx)
    return app


def compat_apps(ctx: Context, main_port: int) -> dict[int, FastAPI]:
    """One app per dialect on its original port, sharing the main app's services (--compat-ports)."""
    apps = {}
    for name, (attach, port) in DIALECTS.items():
        if port is None or port == main_port:
            continue  # a dialect whose port is the main port is already served there
        app = FastAPI(title=f"voxgate ({name})", version=__version__)
        app.state.ctx = ctx
        attach(app, ctx)
        apps[port] = app
    return apps

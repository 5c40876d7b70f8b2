"""Composition root: build every service once, mount the dialects, run the lifespan."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from voxgate import __version__
from voxgate.core.bases import BaseVoices
from voxgate.core.context import Context
from voxgate.core.metrics import Metrics
from voxgate.core.routing import best_voice
from voxgate.core.service import Limits, SynthesisService
from voxgate.core.voicebank import VoiceBank
from voxgate.dialects import compose, native, openai, stackflow, web, wyoming
from voxgate.dialects.alltalk import AllTalkConfig, AllTalkDialect
from voxgate.dialects.auth import ApiKeyMiddleware, RedactingFilter
from voxgate.dialects.base import Dialect, TcpDialect
from voxgate.dialects.common import StreamScopeMiddleware, validation_error_handler
from voxgate.dialects.cosyvoice import CosyVoice, CosyVoiceConfig
from voxgate.dialects.flash import Flash, FlashConfig
from voxgate.dialects.flash.protocol import ENGINES as FLASH_ENGINES
from voxgate.dialects.gptsovits import GptSovits, GptSovitsConfig
from voxgate.engines.base import VoiceInfo
from voxgate.engines.registry import create_engine
from voxgate.errors import VoiceNotFound, VoxgateError
from voxgate.safefs import UnsafePath
from voxgate.scheduling.backend import UPSTREAM_ENGINE, Backend, LocalBackend, RouterBackend
from voxgate.scheduling.pool import WorkerPool
from voxgate.settings import Settings
from voxgate.text.lexicon import Lexicon
from voxgate.voices.archive import export_voices, import_voices
from voxgate.voices.embedding import SpeakerEncoder
from voxgate.voices.lexicon_store import lexicon_store
from voxgate.voices.refcache import ReferenceCache
from voxgate.voices.references import ReferencePolicy
from voxgate.voices.registry import VoiceRegistry
from voxgate.voices.store_base import StoreError, open_store
from voxgate.webapp import VoxgateAPI

_LOG = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The settings cannot produce a working server (e.g. the default voice is missing)."""


def local_fallback(voices: VoiceRegistry, enabled: Mapping[str, bool]) -> Callable[[VoiceInfo], VoiceInfo | None]:
    """--upstream-fallback (or an upstream's ?fallback=1): the local voice that speaks for a failed upstream
    voice: the best installed voice of its language, else the default voice (None when that is an upstream
    voice too, or the voice's upstream has no fallback)."""
    def choose(voice: VoiceInfo) -> VoiceInfo | None:
        if not enabled.get(str(voice.upstream), False):
            return None
        if voice.language and voice.language != "und":
            try:
                return best_voice(voices, voice.language)
            except VoxgateError:
                pass
        try:
            default = voices.resolve(None)
        except VoxgateError:
            return None
        return default if default.engine != UPSTREAM_ENGINE else None
    return choose


def with_upstreams(settings: Settings, voices: VoiceRegistry, local: Backend, metrics: Metrics) -> Backend:
    """The local backend, or (with --upstream) a router in front of it and the upstreams, whose voices the
    registry then lists and whose state /metrics shows (engines/remote/, docs/upstreams.md)."""
    configs = settings.upstream_configs
    if not configs:
        return local
    from voxgate.engines.remote.manager import ENGINE, Upstreams
    from voxgate.engines.remote.metrics import UpstreamCollector

    try:
        upstreams = Upstreams(configs, settings.upstream_refresh, on_change=voices.refresh_provided)
    except VoxgateError as exc:
        raise StartupError(str(exc)) from None
    voices.add_provider(ENGINE, upstreams)
    metrics.registry.register(UpstreamCollector(upstreams))
    enabled = {c.name: settings.upstream_fallback if c.fallback is None else c.fallback for c in configs}
    return RouterBackend(local, upstreams.backends, local_fallback(voices, enabled) if any(enabled.values()) else None,
                         describe=upstreams.health, lifecycle=upstreams)


def upstream_cloner(settings: Settings, backend: Backend) -> Any:
    """--clone-upstream, or a registration's own `upstream`: the upstreams' clone calls (engines/remote/clone.py);
    None without upstreams."""
    upstreams: Any = backend.upstreams if isinstance(backend, RouterBackend) else None
    if upstreams is None:
        return None
    from voxgate.engines.remote.clone import UpstreamCloner

    def kind(name: str) -> Any:
        found = upstreams.upstreams.get(name)
        return found.kind if found is not None else None

    return UpstreamCloner(kind, settings.clone_upstream, relist=upstreams.refresh)


def build_engines(settings: Settings) -> dict[str, Any]:
    """Every enabled engine by name (cheap: models load lazily)."""
    settings.voices_path.mkdir(parents=True, exist_ok=True)
    engines = {"piper": create_engine("piper", voices_dir=settings.voices_path, alignments=settings.word_timings)}
    engine_options = {"kokoro": {"cache_dir": settings.data_dir / "cache" / "kokoro"}}
    for name in settings.engines:
        if name not in engines:
            engines[name] = create_engine(name, **engine_options.get(name, {}))
    return engines


def build_context(settings: Settings, backend: Backend | None = None, upstreams: bool = False) -> Context:
    """Create the engines, the voice catalogue, the worker pool (unless `backend` is given: cluster mode)
    and the synthesis service (and, for the server, the upstreams)."""
    engines = build_engines(settings)
    try:
        store = open_store(settings.store, settings.data_dir)  # SQLite in the data folder, or --store's PostgreSQL
    except StoreError as exc:
        raise StartupError(str(exc)) from None
    voices = VoiceRegistry(engines, settings.openai_voice_aliases, settings.default_voice, store)
    try:
        voices.resolve(None)
    except VoiceNotFound as exc:
        raise StartupError(f"default voice: {exc.message}") from None
    for name in settings.preload:
        try:
            voices.resolve(name)
        except VoiceNotFound as exc:
            raise StartupError(f"preload: {exc.message}") from None
    for alias, target in voices.aliases().items():
        try:
            voices.resolve(target)
        except VoiceNotFound:
            _LOG.warning("alias %r points at %r, which is not installed", alias, target)
    if backend is None:
        backend = LocalBackend(WorkerPool(engines.__getitem__, settings.workers, settings.threads,
                                          settings.solo_threads, express=settings.express_workers,
                                          memory_budget_mb=settings.memory_budget_mb,
                                          idle_unload_s=settings.session_idle_unload_s))
    limits = Limits(max_input_chars=settings.max_input_chars, max_queue=settings.max_queue)
    metrics = Metrics()
    backend = with_upstreams(settings, voices, backend, metrics) if upstreams else backend
    service = SynthesisService(voices, backend, metrics, limits, Lexicon(lexicon_store(store)))
    policy = ReferencePolicy(roots=settings.reference_roots, allow_urls=settings.allow_reference_urls,
                             allow_private_urls=settings.allow_private_urls)
    encoder = SpeakerEncoder()
    bases = BaseVoices(voices, store, backend, encoder, settings.match_bases, busy=lambda: service.active > 0,
                       calibrate=functools.partial(service.gain, background=True), quiet_s=settings.match_bases_quiet)
    try:
        cache = ReferenceCache(settings.data_dir / "cache" / "references", settings.reference_cache_entries,
                               settings.reference_cache_mb * 2**20, within=settings.data_dir)
    except UnsafePath as exc:  # its start-up sweep deletes stray files: never in a folder out of the data folder
        raise StartupError(f"reference cache: {exc}; remove the link, or put the whole --data-dir on that disk") \
            from None
    voicebank = VoiceBank(voices, store, service, policy, settings.match_strength, encoder, bases, cache)
    voicebank.cloner = upstream_cloner(settings, backend)
    return Context(service=service, voices=voices, metrics=service.metrics, voicebank=voicebank,
                   cors_origins=tuple(settings.cors_origins),
                   api_key=settings.api_key.get_secret_value() if settings.api_key else None)


def close_context(ctx: Context) -> None:
    """Stop the workers and close the store."""
    ctx.service.close()
    ctx.voicebank.store.close()


def _none(settings: Settings) -> None:
    return None


def openai_config(settings: Settings) -> openai.OpenAIConfig:
    return openai.OpenAIConfig(models=tuple(settings.openai_models),
                               kokoro_voices={k.lower(): v for k, v in settings.kokoro_voice_aliases.items()},
                               flash_roles=dict(settings.flash_builtin_roles), peer_models=FLASH_ENGINES)


def stackflow_config(settings: Settings) -> stackflow.StackFlowConfig:
    return stackflow.StackFlowConfig(host=settings.host, port=settings.stackflow_port,
                                     max_tasks=settings.stackflow_max_tasks, audio_sink=settings.stackflow_audio_sink,
                                     audio_dir=settings.data_dir.resolve() / "outputs" / "stackflow")


def wyoming_config(settings: Settings) -> wyoming.WyomingConfig:
    return wyoming.WyomingConfig(host=settings.host, port=settings.wyoming_port, zeroconf=settings.wyoming_zeroconf)


def _gptsovits(settings: Settings) -> GptSovitsConfig:
    return GptSovitsConfig(allow_exit=settings.allow_remote_control)


def _alltalk(settings: Settings) -> AllTalkConfig:
    return AllTalkConfig(outputs_dir=settings.data_dir.resolve() / "outputs" / "alltalk",
                         outputs_keep=settings.alltalk_outputs_keep,
                         outputs_max_age=settings.alltalk_outputs_max_age_hours * 3600.0,  # seconds
                         max_characters=settings.alltalk_max_characters,
                         voice_aliases=dict(settings.alltalk_voice_aliases))


def _flash(settings: Settings) -> FlashConfig:
    return FlashConfig(sample_rate=settings.flash_sample_rate, builtin_roles=dict(settings.flash_builtin_roles),
                       role_dir=settings.role_dir, models=tuple(settings.openai_models))


def _cosyvoice(settings: Settings) -> CosyVoiceConfig:
    return CosyVoiceConfig(cache_dir=settings.data_dir.resolve() / "cache" / "cosyvoice",
                           export_voices=export_voices, import_voices=import_voices)  # run off the loop


# Every dialect in mounting order: its class, and how its typed slice of the settings is made from Settings.
# A new dialect is one line here. The classes alone say which ports --compat-ports binds (before anything loads).
# Paths two dialects share (POST /tts, GET /) are settled by dialects/compose.py, whatever the order.
DIALECTS: tuple[tuple[type[Dialect], Callable[[Settings], object]], ...] = (
    (native.Native, _none),
    (openai.OpenAI, openai_config),
    (GptSovits, _gptsovits),
    (AllTalkDialect, _alltalk),
    (Flash, _flash),
    (web.Web, _none),
    (CosyVoice, _cosyvoice),
    (stackflow.StackFlow, stackflow_config),  # TCP only, on its own port (a TcpDialect: the CLI binds it)
    (wyoming.Wyoming, wyoming_config),  # TCP only, on its own port
)


def build_dialects(ctx: Context, settings: Settings) -> dict[str, Dialect]:
    """Every dialect, built once from the services and its slice of the settings."""
    return {cls.name: cls(ctx, config(settings)) for cls, config in DIALECTS}  # type: ignore[call-arg]


def tcp_dialects(settings: Settings) -> dict[str, tuple[type[TcpDialect], Any]]:
    """Every TCP dialect in the table by name, with its typed config (whose `host` and `port` say where it
    listens; port 0: off): what `serve` and `tcp-front` bind before anything loads."""
    return {cls.name: (cls, config(settings)) for cls, config in DIALECTS if issubclass(cls, TcpDialect)}


def tcp_port_settings() -> list[str]:
    """The Settings field of every TCP dialect's port (cluster mode sets them to 0 on the Gateway)."""
    return [cls.port_setting for cls, _ in DIALECTS if issubclass(cls, TcpDialect)]


def create_app(settings: Settings, tcp_sockets: Mapping[str, socket.socket] | None = None,
               backend: Backend | None = None) -> FastAPI:
    """The ASGI app with every dialect mounted; each TCP dialect listens on its socket in `tcp_sockets` (by
    dialect name; bound by the CLI before anything loaded) or else on its config's port, while the app runs.
    `backend` replaces the local worker pool (cluster mode: voxgate/cluster)."""
    ctx = build_context(settings, backend, upstreams=True)
    router = ctx.service.backend if isinstance(ctx.service.backend, RouterBackend) else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            await router.start()  # the upstreams' voices listed (bounded wait), then kept fresh
        if settings.warmup:
            await ctx.service.warm_up(settings.preload)
        else:
            ctx.service.ready = True
        ctx.voicebank.bases.start()  # candidate bases measured in the background, never on a request
        settle = asyncio.get_running_loop().create_task(ctx.voicebank.after_bases_measured())
        if ctx.voices.stale():
            await ctx.voicebank.rematch()
        for dialect in dialects.values():
            await dialect.startup()
        try:
            yield
        finally:
            for dialect in reversed(dialects.values()):
                await dialect.shutdown()
            settle.cancel()
            await ctx.voicebank.bases.stop()
            if router is not None:
                await router.stop()
            close_context(ctx)

    app = _new_app(ctx, "voxgate", lifespan=lifespan)
    app.state.ctx = ctx
    app.state.dialects = dialects = build_dialects(ctx, settings)
    for name, sock in (tcp_sockets or {}).items():
        tcp = dialects[name]
        if not isinstance(tcp, TcpDialect):
            raise ValueError(f"a socket for {name!r}, which is not a TCP dialect")
        tcp.sock = sock  # bound by the CLI before anything loaded
    compose.mount(app, list(dialects.values()))
    _protect(app, ctx, list(dialects.values()))
    return app


def _new_app(ctx: Context, title: str, **kwargs: Any) -> FastAPI:
    """An empty app with CORS, offline API docs and the key's security scheme."""
    return VoxgateAPI(title=title, version=__version__, cors_origins=list(ctx.cors_origins),
                      keyed=bool(ctx.api_key), **kwargs)


def redact_logs() -> None:
    """Mask api_key query values in uvicorn's access and error logs (call after uvicorn configured them)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def _protect(app: FastAPI, ctx: Context, mounted: list[Dialect]) -> None:
    """Require the API key on every door of `app` when one is configured (the `mounted` dialects check it on
    their own routes); close every stream a request or connection opened when it ends (outermost, so it also
    covers the key check); render every 422 safely whatever input it echoes."""
    key = ctx.api_key
    if isinstance(key, str) and key:
        refused = ctx.metrics.errors.labels("auth", "unauthorized")
        app.add_middleware(ApiKeyMiddleware, key=key, on_refused=lambda path: refused.inc(),
                           guarded=compose.self_guarded(mounted))
    app.add_middleware(StreamScopeMiddleware, service=ctx.service)
    app.add_exception_handler(RequestValidationError, validation_error_handler)


def compat_ports(main_port: int) -> dict[int, str]:
    """The original servers' ports --compat-ports opens beside `main_port`, and whose each one is."""
    return {cls.port: cls.original or cls.name for cls, _ in DIALECTS
            if cls.port is not None and cls.port != main_port}


def compat_apps(ctx: Context, dialects: Mapping[str, Dialect], main_port: int) -> dict[int, FastAPI]:
    """One app per dialect on its original port, sharing the main app's services and dialect objects."""
    apps = {}
    for dialect in dialects.values():
        if dialect.port is None or dialect.port == main_port:
            continue  # a dialect whose port is the main port is already served there
        app = _new_app(ctx, f"voxgate ({dialect.name})")
        app.state.ctx = ctx
        mounted = [dialect, *(dialects[companion] for companion in dialect.companions)]
        compose.mount(app, mounted)
        _protect(app, ctx, mounted)
        apps[dialect.port] = app
    return apps

"""`voxgate serve`: bind every port first, then load, say where everything is, and serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from voxgate.settings import Settings

# Seconds an idle kept-alive HTTP connection stays open. Longer than the idle expiry of the common clients
# (httpx and so the OpenAI SDK: 5 s, Node: 5 s, aiohttp: 15 s), so the client always drops an idle connection
# first: with uvicorn's 5 s, equal to httpx's, a request sent as the server's timer fired met a closed socket
# ("Connection reset by peer"; 12 in a 60-minute soak, reproduced with requests 4.97–5.03 s apart).
KEEP_ALIVE_S = 30


class PortError(Exception):
    """A port cannot be opened; the message names the port, its protocol and the flag that changes it."""


@dataclass
class Door:
    """One listening socket and what a person needs to know about it."""

    sock: socket.socket
    what: str  # protocol and purpose, for the start-up summary
    flag: str  # the setting that moves or closes it

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Windows' SO_REUSEADDR would let two servers share a port, so a busy one would go unnoticed there.
        exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
        sock.setsockopt(socket.SOL_SOCKET, exclusive if exclusive is not None else socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: without it a response written as headers then body waits
        # for the client's delayed ACK, ~40 ms on every keep-alive request after the first (measured).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)  # clients that connect while the voices load wait in the backlog
    except BaseException:
        sock.close()
        raise
    return sock


def _open(host: str, port: int, protocol: str, flag: str, fix: str) -> socket.socket:
    try:
        return bind(host, port)
    except socket.gaierror as exc:
        raise PortError(f"cannot listen on {host!r} (--host): {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortError(f"port {port} ({protocol}, {flag}) is already in use: {fix}") from None
        if exc.errno == errno.EACCES:
            raise PortError(f"port {port} ({protocol}, {flag}) is not allowed (ports below 1024 need root): "
                            f"{fix}") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise PortError(f"cannot listen on {host} (--host): not an address of this machine") from None
        raise PortError(f"cannot listen on {host}:{port} ({protocol}, {flag}): {exc.strerror or exc}") from None


@dataclass
class Doors:
    """Every socket `serve` listens on."""

    main: Door
    compat: list[Door]
    tcp: dict[str, Door] = field(default_factory=dict)  # by dialect name: every TCP dialect whose port is open

    def all(self) -> list[Door]:
        """Every door, the main one first (then the compat ports, then the TCP dialects in table order)."""
        return [self.main, *self.compat, *self.tcp.values()]


def open_tcp_doors(settings: Settings, refuse_unauthenticated: bool = True) -> dict[str, Door]:
    """A bound socket for every TCP dialect of `app.DIALECTS` whose port is not 0, by dialect name (imports the
    app, not the voices). With an API key set, a dialect that cannot ask for it is refused unless its
    `unauthenticated_setting` allows it (when `refuse_unauthenticated`)."""
    from voxgate.app import tcp_dialects

    wanted = {name: (cls, config) for name, (cls, config) in tcp_dialects(settings).items() if config.port}
    for cls, config in wanted.values() if refuse_unauthenticated and settings.api_key else ():
        allow = cls.unauthenticated_setting
        if allow is not None and not getattr(settings, allow, False):
            allow_flag = "--" + allow.replace("_", "-")
            raise PortError(f"port {config.port} ({cls.title} TCP, {cls.flag()}) cannot ask for the API key: "
                            f"{cls.title} has no authentication. Add {allow_flag} to open it anyway, "
                            f"or {cls.flag()} 0 to keep it closed")
    doors: dict[str, Door] = {}
    try:
        for name, (cls, config) in wanted.items():
            sock = _open(config.host, config.port, f"{cls.title} TCP", cls.flag(),
                         f"pick another with {cls.flag()} (0 turns {cls.title} off)")
            doors[name] = Door(sock, cls.describe(config), cls.flag())
    except PortError:
        for door in doors.values():
            door.sock.close()
        raise
    return doors


def open_doors(settings: Settings) -> Doors:
    """Bind the main port, every --compat-ports port and every TCP dialect's port, before anything loads (the main
    port before even the app is imported)."""
    opened: list[socket.socket] = []
    try:
        main = Door(_open(settings.host, settings.port, "HTTP", "--port", "pick another with --port "
                          "(0 picks a free one)"), "HTTP and WebSocket: every API", "--port")
        opened.append(main.sock)
        from voxgate.app import compat_ports  # the dialects' ports and classes: the app, not yet the voices

        compat = []
        for port, name in compat_ports(main.port).items() if settings.compat_ports else ():
            sock = _open(settings.host, port, f"{name} HTTP", "--compat-ports",
                         "stop what uses it, or start without --compat-ports")
            opened.append(sock)
            compat.append(Door(sock, f"HTTP: {name} alone, as on its original server", "--compat-ports"))
        tcp = open_tcp_doors(settings)
    except PortError:
        for sock in opened:
            sock.close()
        raise
    return Doors(main, compat, tcp)


def summary(settings: Settings, app: Any, doors: list[Door]) -> list[str]:
    """The lines printed after "listening": where the page, the docs, the data and the voices are."""
    base = f"http://{_url_host(settings.host)}:{doors[0].port}"
    voices = app.state.ctx.voices
    engines = Counter(v.engine for v in voices.list())
    counts = ", ".join(f"{engine} {count}" for engine, count in engines.items())
    lines = [
        f"  web page     {base}/",
        f"  API docs     {base}/docs",
        f"  data folder  {settings.data_dir.resolve()} (--data-dir or VOXGATE_DATA_DIR)",
        f"  voices       {counts}; default {settings.default_voice}",
    ]
    if settings.store:  # shown only with --store: the default summary is unchanged
        lines.append(f"  voice store  {app.state.ctx.voicebank.store.describe()}")
    lines += [f"  port {door.port:<7} {door.what} ({door.flag})" for door in doors]
    lines += [f"  upstream     {c.name}: {c.kind} at {c.url} (voices {c.name}:…; --upstream)"
              for c in settings.upstream_configs]
    if settings.api_key:
        lines.append("  API key      required on every API (--api-key)")
    return lines


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM."""
    if settings.ray_address:  # cluster mode: only then is Ray imported
        from voxgate.cluster.run import serve_cluster
        return serve_cluster(settings)
    from voxgate.memtrace import start_from_env
    from voxgate.scheduling.pool import limit_malloc_arenas

    limit_malloc_arenas()  # before any worker or onnxruntime thread allocates: see its docstring
    start_from_env()  # VOXGATE_TRACEMALLOC=<seconds>: a memory-growth debugging aid (see memtrace.py)

    doors = open_doors(settings)  # before uvicorn and the voices load: a busy port is refused at once
    import uvicorn

    from voxgate.app import compat_apps, create_app, redact_logs

    main, compat = doors.main, doors.compat
    app = create_app(settings, {name: door.sock for name, door in doors.tcp.items()})
    extras = compat_apps(app.state.ctx, app.state.dialects, main.port) if compat else {}
    # The first line is what scripts (and the test fixtures) read; it comes once every port is bound.
    print(f"voxgate listening on http://{_url_host(settings.host)}:{main.port}", flush=True)
    print("\n".join(summary(settings, app, doors.all())), flush=True)
    config = uvicorn.Config(app, log_level=settings.log_level, timeout_graceful_shutdown=5,
                            timeout_keep_alive=KEEP_ALIVE_S)
    leader = uvicorn.Server(config)
    redact_logs()  # after uvicorn configured its loggers
    socks = {door.port: door.sock for door in compat}
    followers = {p: _follower(uvicorn.Config(a, log_level=settings.log_level, lifespan="off",
                                             timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S))
                 for p, a in extras.items()}
    asyncio.run(_serve_all(leader, main.sock, followers, socks))
    return 0


def _follower(config: Any) -> Any:
    """A uvicorn server that leaves signals to the main server and stops when it stops."""
    import uvicorn

    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    return server


async def _serve_all(main: Any, sock: socket.socket, followers: dict[int, Any],
                     socks: dict[int, socket.socket]) -> None:
    """Run the main server and the compat-port followers; they drain together when it is told to stop."""
    done = asyncio.Event()

    async def lead() -> None:
        try:
            await main.serve(sockets=[sock])
        finally:
            done.set()

    async def watch() -> None:
        # should_exit is a plain attribute set by uvicorn's signal handler: there is nothing to await.
        while not (main.should_exit or done.is_set()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for follower in followers.values():
            follower.should_exit = True

    await asyncio.gather(lead(), watch(), *(f.serve(sockets=[socks[p]]) for p, f in followers.items()))

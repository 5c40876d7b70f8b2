"""What a dialect is: one object per wire protocol, built once by the composition root (`app.py`).

A dialect owns its state, its routes, its error table and how it renders an error, and its start-up and
shut-down. It is built from the shared services (`Context`) and its own typed slice of the settings (a
dataclass in its folder; the composition root fills it), so it never reads the settings object.

Its HTTP routes go on `self.router` (the API key is required when one is set, and each request is counted)
or on `self.public` (doors that stay open: probes, the page). Both use a route class that renders any
`VoxgateError` a handler raises in the dialect's own shape, so a handler only raises:

    class Hello(Dialect):
        name = "hello"

        def __init__(self, ctx: Context, config: HelloConfig) -> None:
            super().__init__(ctx)
            self.router.add_api_route("/hello", self.hello, methods=["POST"])

        def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
            return JSONResponse({"error": str(exc)}, status_code=400)

A WebSocket or TCP dialect checks the key with `authorized()` / `key_matches()` itself, in its own shape.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from voxgate.core.context import Context
from voxgate.dialects.auth import MESSAGE, key_matches, presented_key
from voxgate.errors import Unauthorized, VoxgateError

Handler = Callable[[Request], Awaitable[Response]]


class Dialect:
    """A wire protocol over the core. Subclasses set `name`, add routes and implement `render_error`."""

    name: ClassVar[str]  # the metrics label and the key in app.DIALECTS, e.g. "openai"
    original: ClassVar[str | None] = None  # the original server's name, e.g. "GPT-SoVITS"
    port: ClassVar[int | None] = None  # the original server's port, served alone with --compat-ports
    companions: ClassVar[tuple[str, ...]] = ()  # dialects the original also served on its own port

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        route_class = _route_class(self)
        self.router = APIRouter(route_class=route_class, dependencies=[Depends(self._guard)])
        self.public = APIRouter(route_class=route_class)

    # -- what a subclass provides ------------------------------------------------------------------

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """`exc` in this dialect's error shape, with the status its error table maps it to (and counted)."""
        raise NotImplementedError

    def claims(self, request: Request, body: bytes) -> bool:
        """For a path two dialects share (POST /tts): whether this request is this dialect's own."""
        return True

    async def startup(self) -> None:
        """Run once when the server starts (after the services are warm), whatever apps mount it."""

    async def shutdown(self) -> None:
        """Run once when the server stops."""

    def mount(self, app: FastAPI) -> None:
        """Put this dialect's routes on `app` (the main app, or its own port's app with --compat-ports)."""
        app.include_router(self.public)
        app.include_router(self.router)

    # -- shared by every dialect -------------------------------------------------------------------

    def authorized(self, connection: HTTPConnection) -> bool:
        """True when no key is set or the request or WebSocket carries it."""
        key = self.ctx.api_key
        return not key or key_matches(presented_key(connection.scope), key)

    def unauthorized(self, request: Request) -> Response:
        """The 401 answer, in this dialect's shape (counted by render_error under this dialect)."""
        response = self.render_error(Unauthorized(MESSAGE), request)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="voxgate"'
        return response

    async def _guard(self, request: Request) -> None:
        if not self.authorized(request):
            raise _Refused()
        self.ctx.metrics.requests.labels(self.name).inc()


class _Refused(Exception):
    """Raised by the key check (a dependency), answered by the route class with the dialect's 401."""


def _route_class(dialect: Dialect) -> type[APIRoute]:
    """An APIRoute whose handler answers the key check's refusal and every VoxgateError in `dialect`'s shape."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def run(request: Request) -> Response:
                try:
                    return await handler(request)
                except _Refused:
                    return dialect.unauthorized(request)
                except VoxgateError as exc:
                    return dialect.render_error(exc, request)

            return run

    return DialectRoute


class _Listening(Protocol):
    async def close(self) -> None: ...


class TcpDialect(Dialect):
    """A dialect that speaks only on its own TCP port (StackFlow, Wyoming): no HTTP routes; its server starts
    with voxgate (when it has a port, or a socket the CLI bound before loading) and stops with it.

    The class says everything the CLI needs to bind its port before anything loads (`cli_serve.open_doors`
    binds one for every TcpDialect in `app.DIALECTS`, from its config's `host` and `port`), so a new TCP
    dialect is, like an HTTP one, its folder plus its line in `app.DIALECTS`."""

    title: ClassVar[str]  # how people call it, in messages: "StackFlow" ("StackFlow TCP", "0 turns StackFlow off")
    port_setting: ClassVar[str]  # the Settings field (and so the flag) of its port, e.g. "stackflow_port"; 0: off
    default_port: ClassVar[int]  # that setting's default (a test checks they agree), e.g. 10001
    door: ClassVar[str]  # what its port is, for the start-up summary
    # None when it checks the API key itself; else the Settings field that opens its port beside --api-key
    # anyway (without it, `serve` refuses to open the port when a key is set)
    unauthenticated_setting: ClassVar[str | None] = None

    @classmethod
    def flag(cls) -> str:
        """The CLI flag of its port: `--stackflow-port`."""
        return "--" + cls.port_setting.replace("_", "-")

    @classmethod
    def describe(cls, config: Any) -> str:
        """What its port is, for the start-up summary (`config`: its typed settings)."""
        return cls.door

    def __init__(self, ctx: Context, config: Any) -> None:
        super().__init__(ctx)
        self.config = config  # its typed settings, with `host` and `port` (0: off, unless `sock` is given)
        self.sock: socket.socket | None = None  # the port the CLI bound before loading, if it did
        self.server: Any = None  # while it listens

    def mount(self, app: FastAPI) -> None:
        """Nothing: the dialect speaks only on its TCP port."""

    async def listen(self) -> _Listening:
        """Start the dialect's server on `config` (or `sock`)."""
        raise NotImplementedError

    async def startup(self) -> None:
        if self.sock is not None or self.config.port:
            self.server = await self.listen()

    async def shutdown(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None


__all__ = ["Dialect", "TcpDialect"]

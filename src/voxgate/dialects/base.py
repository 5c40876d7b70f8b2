"""What a dialect is: one object per wire protocol, built once by the composition root (`app.py`).

A dialect owns its state, its routes, its error table and how it renders an error, and its start-up and
shut-down. It is built from the shared services (`Context`) and its own typed slice of the settings (a
dataclass in its folder; the composition root fills it), so it never reads the settings object.

Its handlers are module-level functions declared on a module-level `Routes` table, so a reader goes from a
path to its handler in one file; the class names the table, and each object puts its routes on `self.router`
(the API key is required when one is set, and each request is counted) or, with `public=True`, on
`self.public` (doors that stay open: probes, the page). Both use a route class that renders any
`VoxgateError` a handler raises in the dialect's own shape, and that hands the handler its dialect object
through one dependency (`this_dialect`), so a handler only reads its dialect and raises:

    routes = Routes()

    class Hello(Dialect):
        name = "hello"
        routes = routes

        def __init__(self, ctx: Context, config: HelloConfig) -> None:
            super().__init__(ctx)
            self.config = config

        def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
            return JSONResponse({"error": str(exc)}, status_code=400)

    HelloDep = Annotated[Hello, Depends(this_dialect)]

    @routes.post("/hello")
    async def hello(dialect: HelloDep) -> dict[str, str]:
        return {"hello": dialect.config.greeting}

A WebSocket (`@routes.websocket`, always open) or TCP dialect checks the key with `authorized()` /
`key_matches()` itself, in its own shape.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from voxgate.core.context import Context
from voxgate.dialects.auth import MESSAGE, key_matches, presented_key
from voxgate.errors import Unauthorized, VoxgateError

Handler = Callable[[Request], Awaitable[Response]]
F = TypeVar("F", bound=Callable[..., Any])

_DIALECT = "voxgate.dialect"  # the scope key under which a dialect's route leaves its dialect object


@dataclass(frozen=True)
class Door:
    """One declared route: a path, its handler, and where it goes."""

    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] | None  # None: a WebSocket
    public: bool  # on the open router (no key check, not counted); a WebSocket always is
    options: Mapping[str, Any]  # the rest of add_api_route's keywords (tags, status_code, openapi_extra, …)


class Routes:
    """A dialect's routes, declared at module level beside their handlers (`@routes.post("/tts")`); each object
    of the dialect puts them on its own routers when it is built (`Dialect.routes`)."""

    def __init__(self) -> None:
        self.doors: list[Door] = []

    def route(self, path: str, methods: list[str], *, public: bool = False, **options: Any) -> Callable[[F], F]:
        def declare(handler: F) -> F:
            self.doors.append(Door(path, handler, tuple(methods), public, options))
            return handler
        return declare

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["GET"], **options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["POST"], **options)

    def put(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["PUT"], **options)

    def delete(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["DELETE"], **options)

    def include(self, other: Routes) -> None:
        """Add `other`'s routes after these (a dialect whose handlers live in several modules)."""
        self.doors.extend(other.doors)

    def websocket(self, path: str) -> Callable[[F], F]:
        """A WebSocket route: open (its handler checks the key itself, in the session's shape)."""
        def declare(handler: F) -> F:
            self.doors.append(Door(path, handler, None, True, {}))
            return handler
        return declare


async def this_dialect(connection: HTTPConnection) -> Any:
    """The dialect object whose route this request or WebSocket reached: the dependency through which a
    module-level handler gets its dialect (`dialect: Annotated[OpenAI, Depends(this_dialect)]`). Async, so it
    runs on the loop (a plain function would cost a thread hop per request)."""
    dialect = connection.scope.get(_DIALECT)
    if dialect is None:
        raise RuntimeError(f"{connection.url.path}: this_dialect used on a route no Dialect declared")
    return dialect


class Dialect:
    """A wire protocol over the core. Subclasses set `name` and `routes` and implement `render_error`."""

    name: ClassVar[str]  # the metrics label and the key in app.DIALECTS, e.g. "openai"
    original: ClassVar[str | None] = None  # the original server's name, e.g. "GPT-SoVITS"
    port: ClassVar[int | None] = None  # the original server's port, served alone with --compat-ports
    companions: ClassVar[tuple[str, ...]] = ()  # dialects the original also served on its own port
    routes: ClassVar[Routes | None] = None  # its module's route table, put on this object's routers

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        route_class = _route_class(self)
        self.router = APIRouter(route_class=route_class, dependencies=[Depends(self._guard)])
        self.public = APIRouter(route_class=route_class)
        for door in self.routes.doors if self.routes is not None else ():
            if door.methods is None:  # a WebSocket route has no route class: a dependency hands it the dialect
                self.public.add_api_websocket_route(door.path, door.endpoint, dependencies=[Depends(self._enter)])
            else:
                on = self.public if door.public else self.router
                on.add_api_route(door.path, door.endpoint, methods=list(door.methods), **door.options)

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

    async def _enter(self, connection: HTTPConnection) -> None:
        # A route's own dependencies are solved before its handler's parameters, so this_dialect finds it.
        connection.scope[_DIALECT] = self

    async def _guard(self, request: Request) -> None:
        if not self.authorized(request):
            raise _Refused()
        self.ctx.metrics.requests.labels(self.name).inc()


class _Refused(Exception):
    """Raised by the key check (a dependency), answered by the route class with the dialect's 401."""


def _route_class(dialect: Dialect) -> type[APIRoute]:
    """An APIRoute whose handler hands the request `dialect` (for `this_dialect`), and answers the key check's
    refusal and every VoxgateError in `dialect`'s shape."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def run(request: Request) -> Response:
                request.scope[_DIALECT] = dialect
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


__all__ = ["Dialect", "Routes", "TcpDialect", "this_dialect"]

"""A dialect is its folder plus one line in app.DIALECTS: the table and the folders agree, and a new entry is all
the composition root needs to serve a new dialect (routes, key check, request count, error shape), or, for a TCP
dialect, all `serve` needs to bind its port before anything loads and the app to start and stop its server."""

from __future__ import annotations

import asyncio
import importlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from voxgate import app as composition
from voxgate.cli_serve import PortError, open_doors
from voxgate.dialects.base import Dialect, Routes, TcpDialect, this_dialect
from voxgate.dialects.common import TcpListener
from voxgate.errors import InvalidInput
from voxgate.settings import Settings

DIALECTS_DIR = Path(composition.__file__).resolve().parent / "dialects"


def test_every_dialect_folder_has_one_line_in_the_table_and_every_line_a_folder() -> None:
    folders = sorted(p.name for p in DIALECTS_DIR.iterdir() if (p / "__init__.py").is_file())
    homes = sorted(cls.__module__.split(".")[2] for cls, _ in composition.DIALECTS)
    assert homes == folders  # one table line per folder: the folder list is the list of supported APIs
    names = [cls.name for cls, _ in composition.DIALECTS]
    assert len(set(names)) == len(names)
    for folder in folders:  # each folder's package exports its Dialect (what its line in app.py names)
        package = importlib.import_module(f"voxgate.dialects.{folder}")
        assert any(isinstance(v, type) and issubclass(v, Dialect) and v is not Dialect for v in vars(package).values())


@dataclass(frozen=True)
class HelloConfig:
    greeting: str


hello_routes = Routes()  # a dialect module's `routes`


class Hello(Dialect):
    """A dialect as a newcomer would write it: its route table, and a module-level route that only raises or
    returns."""

    name = "hello"
    routes = hello_routes

    def __init__(self, ctx: Any, config: HelloConfig) -> None:
        super().__init__(ctx)
        self.config = config

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        return JSONResponse({"oops": str(exc)}, status_code=418)


HelloDep = Annotated[Hello, Depends(this_dialect)]


@hello_routes.get("/hello")
async def hello(dialect: HelloDep, fail: bool = False) -> dict[str, str]:
    if fail:
        raise InvalidInput("asked to fail", param="fail")
    return {"hello": dialect.config.greeting}


def test_a_new_dialect_is_one_more_line_in_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = (Hello, lambda settings: HelloConfig(greeting=f"from port {settings.port}"))
    monkeypatch.setattr(composition, "DIALECTS", (*composition.DIALECTS, line))
    app = composition.create_app(Settings(data_dir=tmp_path / "data", engines=["piper"], warmup=False,
                                          stackflow_port=0, wyoming_port=0, api_key="k3y"))
    try:
        client = TestClient(app)  # no lifespan: nothing loads, the routes answer
        keyed = {"Authorization": "Bearer k3y"}
        assert client.get("/hello", headers=keyed).json() == {"hello": f"from port {Settings().port}"}
        failed = client.get("/hello?fail=true", headers=keyed)
        assert failed.status_code == 418 and failed.json() == {"oops": "asked to fail"}  # its own error shape
        refused = client.get("/hello")
        assert refused.status_code == 401 and set(refused.json()) == {"oops"}  # its 401, in its own shape
        counted = app.state.ctx.metrics.registry.get_sample_value("voxgate_requests_total", {"dialect": "hello"})
        assert counted == 2  # counted by the router: the two keyed requests
    finally:
        composition.close_context(app.state.ctx)  # its worker threads and store (no lifespan ran to close them)


def test_every_tcp_dialect_names_its_port_setting_and_default() -> None:
    tcp = [cls for cls, _ in composition.DIALECTS if issubclass(cls, TcpDialect)]
    assert {cls.name for cls in tcp} == {"stackflow", "wyoming"}
    for cls in tcp:  # the class's word and the Settings field (and so the flag) agree
        assert Settings.model_fields[cls.port_setting].default == cls.default_port
        assert cls.flag() == "--" + cls.port_setting.replace("_", "-")
        assert cls.unauthenticated_setting is None or cls.unauthenticated_setting in Settings.model_fields
    assert composition.tcp_port_settings() == ["stackflow_port", "wyoming_port"]


def test_tcp_front_offers_every_tcp_dialects_settings_without_naming_one() -> None:
    """`voxgate tcp-front`'s flags are the settings marked as a TCP dialect's (cli.py imports no dialect)."""
    from voxgate.cli import FRONT_SETTINGS, TCP_SETTINGS

    tcp = [cls for cls, _ in composition.DIALECTS if issubclass(cls, TcpDialect)]
    for cls in tcp:
        assert cls.port_setting in TCP_SETTINGS and cls.port_setting in FRONT_SETTINGS
        assert cls.unauthenticated_setting is None or cls.unauthenticated_setting in TCP_SETTINGS
    assert all(any(name.startswith(f"{cls.name}_") for cls in tcp) for name in TCP_SETTINGS)
    assert {"stackflow_max_tasks", "stackflow_audio_sink", "wyoming_zeroconf"} <= set(TCP_SETTINGS)


@dataclass(frozen=True)
class EchoConfig:
    host: str
    port: int  # 0: off


class Echo(TcpDialect):
    """A TCP dialect as a newcomer would write it: it says what its port is and how to listen on it."""

    name = "echo"
    title = "Echo"
    port_setting = "echo_port"  # no such setting: its port comes from its config line alone
    default_port = 7
    door = "TCP: echo, every line back"
    unauthenticated_setting = "echo_allow_unauthenticated"

    async def listen(self) -> TcpListener:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    writer.write(line)
                    await writer.drain()
            finally:
                writer.close()

        listener = TcpListener(handle)
        await listener.listen(self.config.host, self.config.port, self.sock)
        return listener


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_new_tcp_dialect_is_one_more_line_in_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    line = (Echo, lambda settings: EchoConfig(host=settings.host, port=port))
    monkeypatch.setattr(composition, "DIALECTS", (*composition.DIALECTS, line))
    settings = Settings(data_dir=tmp_path / "data", engines=["piper"], warmup=False, host="127.0.0.1", port=0,
                        stackflow_port=0, wyoming_port=0, match_bases=[])
    with pytest.raises(PortError, match=r"^port \d+ \(Echo TCP, --echo-port\) cannot ask for the API key: Echo "
                       r"has no authentication\. Add --echo-allow-unauthenticated"):
        open_doors(settings.model_copy(update={"api_key": "k3y"}))
    doors = open_doors(settings)  # bound by `serve` before anything loads, like StackFlow's and Wyoming's
    try:
        assert list(doors.tcp) == ["echo"] and doors.all()[-1] is doors.tcp["echo"]
        door = doors.tcp["echo"]
        assert (door.port, door.what, door.flag) == (port, Echo.door, "--echo-port")
        app = composition.create_app(settings, {name: d.sock for name, d in doors.tcp.items()})
        echo = app.state.dialects["echo"]
        assert isinstance(echo, Echo) and echo.server is None
        with TestClient(app):  # the lifespan starts it on the handed socket and stops it
            assert echo.server is not None and echo.server.port == port
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(b"hello\n")
                assert conn.makefile("rb").readline() == b"hello\n"
        assert echo.server is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        for opened in doors.all():
            opened.sock.close()

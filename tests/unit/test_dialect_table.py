"""A dialect is its folder plus one line in app.DIALECTS: the table and the folders agree, and a new entry is all
the composition root needs to serve a new dialect (routes, key check, request count, error shape)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from voxgate import app as composition
from voxgate.dialects.base import Dialect
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


class Hello(Dialect):
    """A dialect as a newcomer would write it: a route that only raises or returns."""

    name = "hello"

    def __init__(self, ctx: Any, config: HelloConfig) -> None:
        super().__init__(ctx)
        self.config = config
        self.router.add_api_route("/hello", self.hello, methods=["GET"])

    async def hello(self, fail: bool = False) -> dict[str, str]:
        if fail:
            raise InvalidInput("asked to fail", param="fail")
        return {"hello": self.config.greeting}

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        return JSONResponse({"oops": str(exc)}, status_code=418)


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

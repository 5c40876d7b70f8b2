"""dialects/compose.py: a path two dialects serve goes to the one that claims the request; the key check."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from starlette.staticfiles import StaticFiles

from voxgate.core.metrics import Metrics
from voxgate.dialects import compose
from voxgate.dialects.auth import ApiKeyMiddleware
from voxgate.dialects.base import Dialect

KEY = "compose-Key_1"


class _Echo(Dialect):
    """Answers POST /shared and GET /page with its own name and the body it got."""

    def __init__(self, ctx: Any, config: object = None) -> None:
        super().__init__(ctx)
        self.router.add_api_route("/shared", self.shared, methods=["POST"])
        self.public.add_api_route("/page", self.shared, methods=["GET"])

    async def shared(self, request: Request) -> Response:
        return JSONResponse({"dialect": self.name, "body": (await request.body()).decode()})

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        return JSONResponse({"refused_by": self.name}, status_code=400)


class Takes(_Echo):
    name = "takes"  # keeps the default claims(): whatever the others leave


class Picky(_Echo):
    name = "picky"

    def claims(self, request: Request, body: bytes) -> bool:
        return b"picky" in body or request.headers.get("accept") == "picky"


def _app(*classes: type[_Echo], key: str | None = None) -> FastAPI:
    ctx = SimpleNamespace(api_key=key, metrics=Metrics())
    dialects = [cls(ctx) for cls in classes]
    app = FastAPI()
    compose.mount(app, dialects)
    if key:
        app.add_middleware(ApiKeyMiddleware, key=key, guarded=compose.self_guarded(dialects))
    return app


def test_the_dialect_that_claims_gets_the_request_with_its_body_whatever_the_table_order() -> None:
    for order in ((Takes, Picky), (Picky, Takes)):
        client = TestClient(_app(*order))
        mine = client.post("/shared", content=b'{"x": "picky"}')
        assert mine.json() == {"dialect": "picky", "body": '{"x": "picky"}'}, order  # the body was replayed
        rest = client.post("/shared", content=b"plain")
        assert rest.json() == {"dialect": "takes", "body": "plain"}, order
        page = client.get("/page", headers={"accept": "picky"})
        assert page.json()["dialect"] == "picky" and client.get("/page").json()["dialect"] == "takes"


def test_a_path_one_dialect_serves_gets_no_chooser() -> None:
    app = _app(Picky)
    client = TestClient(app)
    assert client.post("/shared", content=b"plain").json()["dialect"] == "picky"  # its claims() is not asked
    assert not any(isinstance(getattr(r, "app", None), compose.Chooser) for r in app.router.routes)


def test_without_the_key_the_body_is_not_read_and_the_dialect_refuses_in_its_shape() -> None:
    client = TestClient(_app(Takes, Picky, key=KEY))
    refused = client.post("/shared", content=b"picky")  # unread, so the claim is made on an empty body
    assert refused.status_code == 401 and refused.json() == {"refused_by": "takes"}
    assert refused.headers["www-authenticate"].startswith("Bearer")
    allowed = client.post("/shared", content=b"picky", headers={"Authorization": f"Bearer {KEY}"})
    assert allowed.json() == {"dialect": "picky", "body": "picky"}
    assert client.get("/page").status_code == 200  # a dialect's public route stays open
    unknown = client.get("/no/such/route")  # no dialect's route: the central check answers
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_api_key"


class Assets(_Echo):
    """Also serves files under /files on its open router, mounted as the web dialect mounts its assets."""

    name = "assets"

    def __init__(self, ctx: Any, config: object = None) -> None:
        super().__init__(ctx)
        self.public.mount("/files", StaticFiles(directory=Path(__file__).parent))

    def mount(self, app: FastAPI) -> None:
        app.router.routes.extend(self.public.routes)
        app.include_router(self.router)


def test_the_central_key_check_knows_no_dialect_path() -> None:
    """A dialect's open doors (routes and mounted files) are open because they are on its public router; the
    central check opens only the app's own API docs, so a probe path no mounted dialect serves is refused."""
    client = TestClient(_app(Assets, key=KEY))
    assert client.get(f"/files/{Path(__file__).name}").status_code == 200
    assert client.get("/page").status_code == 200
    assert client.post("/shared", content=b"x").json() == {"refused_by": "assets"}
    for path in ("/health", "/ready", "/", "/favicon.ico", "/web/app.js", "/static/x"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key", path
    assert client.get("/openapi.json").status_code == 200


def test_flash_claims_its_shape_of_the_openai_speech_path() -> None:
    """POST /v1/audio/speech is OpenAI's and Flash-TTS's: Flash takes a Flash engine as `model`, a field only
    its request has, or reference audio as `voice`; every other body stays OpenAI's, whose model has no Flash
    field left."""
    import json

    from voxgate.dialects.flash.routes import Flash
    from voxgate.dialects.openai.protocol import SpeechRequest

    def claimed(body: object, path: str = "/v1/audio/speech") -> bool:
        scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Flash.claims(None, Request(scope), raw)  # type: ignore[arg-type]

    base = {"model": "tts-1", "input": "Hello.", "voice": "alloy"}
    assert not claimed(base) and not claimed({**base, "normalize": False, "speed": 1.5})
    assert not claimed({**base, "response_format": "pcm", "stream_format": "sse", "instructions": "calm"})
    for flash in ({"model": "Spark"}, {"model": "mega"}, {"pitch": 1.2}, {"stream": False}, {"temperature": 0.5},
                  {"top_k": 3}, {"voice": "https://example.com/v.wav"}, {"voice": "A" * 300}):
        assert claimed({**base, **flash}), flash
    assert not claimed(b"{not json") and not claimed(b"") and not claimed([base])  # OpenAI's own 400s
    assert not claimed({**base, "model": "spark"}, path="/speak")  # only that path is shared
    assert not claimed({**base, "pitch": 1.2, "stream_format": "sse", "timestamps": True})  # the web page's read-along
    assert "stream" not in SpeechRequest.model_fields

"""/docs and /redoc work offline (every asset from the server), and the OpenAPI document describes every body."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server

KEY = "docs-Key_3"

# Routes that take no body: their parameters are in the query or the path.
BODYLESS = {("POST", "/v1/audio/voices/reload"), ("POST", "/api/reload"), ("POST", "/api/enginereload"),
            ("POST", "/api/deepspeed"), ("POST", "/api/lowvramsetting"), ("PUT", "/api/stop-generation")}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("docs"), "--api-key", KEY, "--engines", "piper",
                       "--no-warmup")  # documents only: nothing spoken, nothing timed
    yield srv
    stop_server(srv)


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_pages_load_every_asset_from_the_server(server: Server) -> None:
    for page, needed in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = httpx.get(server.url + page, timeout=10)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text, re.IGNORECASE), page  # no host
        assets = _assets(html.text)
        assert any(a.endswith(needed) for a in assets), assets
        for asset in assets:
            assert asset.startswith("/docs/assets/"), asset
            loaded = httpx.get(server.url + asset, timeout=10)
            assert loaded.status_code == 200 and len(loaded.content) > 1000, asset
    swagger = httpx.get(f"{server.url}/docs/assets/swagger-ui-bundle.js", timeout=10)
    assert "SwaggerUIBundle" in swagger.text and "javascript" in swagger.headers["content-type"]


def test_every_body_route_has_a_request_body_schema(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schemas = spec["components"]["schemas"]
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put") or (method.upper(), path) in BODYLESS:
                continue
            body = operation.get("requestBody")
            assert body, f"{method.upper()} {path} has no requestBody"
            for media, content in body["content"].items():
                schema = _resolve(content["schema"], schemas)
                assert schema.get("properties") or schema.get("anyOf"), (path, media)
            checked += 1
    assert checked >= 15
    speech = _resolve(spec["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]["application/json"]
                      ["schema"], schemas)
    assert {"model", "input", "voice"} <= set(speech["required"]) and "response_format" in speech["properties"]
    assert "VoiceId" in schemas  # the nested model of `voice`, hoisted from the hand-written body
    generate = spec["paths"]["/api/tts-generate"]["post"]["requestBody"]["content"]
    assert set(generate) == {"application/x-www-form-urlencoded", "multipart/form-data"}
    assert "text_input" in generate["application/x-www-form-urlencoded"]["schema"]["required"]
    clone = spec["paths"]["/clone_voice"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert clone["properties"]["reference_audio_file"] == {"type": "string", "format": "binary"}
    query = {p["name"] for p in spec["paths"]["/tts"]["get"]["parameters"]}  # GPT-SoVITS reads it by hand
    assert {"text", "text_lang", "ref_audio_path", "prompt_lang", "streaming_mode", "media_type"} <= query
    text = str(spec)
    for ref in re.findall(r"'\$ref': '#/components/schemas/([^']+)'", text):
        assert ref in schemas, ref  # every nested model was moved where the references point


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[1]] if ref else schema


def test_the_document_offers_the_api_key(server: Server, keyed: Server) -> None:
    open_spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schemes = open_spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["api_key"]["in"] == "query" and schemes["api_key"]["name"] == "api_key"
    assert {} in open_spec["security"]  # no key configured: optional
    # With a key the docs stay open (their Authorize button is how a person gives it), and it is required.
    assert httpx.get(f"{keyed.url}/docs", timeout=10).status_code == 200
    assert httpx.get(f"{keyed.url}/docs/assets/swagger-ui.css", timeout=10).status_code == 200
    keyed_spec = httpx.get(f"{keyed.url}/openapi.json", timeout=10).json()
    assert keyed_spec["security"] == [{"bearer": []}, {"api_key": []}]
    assert httpx.get(f"{keyed.url}/v1/models", timeout=10).status_code == 401
    tried = httpx.get(f"{keyed.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert tried.status_code == 200  # what "Try it out" sends once authorized

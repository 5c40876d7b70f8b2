"""The FastAPI shell every HTTP port serves: CORS around everything, API docs from the package, the key in OpenAPI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

# Swagger UI and ReDoc, as the fastapi-offline package ships them (their licences travel with that package).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs/assets"

# Response headers a browser page may read: the file name of a download, when to retry a busy server, why a
# request was refused. Content-Type and Content-Length are readable without being listed.
EXPOSED_HEADERS = ("Content-Disposition", "Retry-After", "WWW-Authenticate", "X-Accel-Buffering")

BEARER = "bearer"
QUERY_KEY = "api_key"


class VoxgateAPI(FastAPI):
    """A FastAPI app whose CORS layer wraps even Starlette's 500 handler, with offline /docs and /redoc."""

    def __init__(self, *, cors_origins: Sequence[str] = ("*",), keyed: bool = False, **kwargs: Any) -> None:
        super().__init__(docs_url=None, redoc_url=None, **kwargs)
        self._cors_origins = list(cors_origins)
        self._keyed = keyed
        _mount_docs(self)

    def build_middleware_stack(self) -> ASGIApp:
        # Outside ServerErrorMiddleware, so an unhandled error's 500 carries the CORS headers too (the browser
        # would otherwise report a CORS failure instead of the error); preflights never reach the key check.
        return CORSMiddleware(
            super().build_middleware_stack(),
            allow_origins=self._cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],  # mirrors what the preflight asks for: authorization, content-type, ...
            expose_headers=EXPOSED_HEADERS,
            allow_private_network=True,  # a page on a public site may call a server on this machine or LAN
        )

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            _hoist_defs(schema)
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                BEARER: {"type": "http", "scheme": "bearer",
                         "description": "The server's --api-key, sent as Authorization: Bearer <key>."},
                QUERY_KEY: {"type": "apiKey", "in": "query", "name": "api_key",
                            "description": "The server's --api-key as a query parameter (where headers are out "
                                           "of reach)."},
            }
            # Either scheme satisfies a request; with no key configured both are optional.
            schema["security"] = [{BEARER: []}, {QUERY_KEY: []}] + ([] if self._keyed else [{}])
            self.openapi_schema = schema
        return self.openapi_schema


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, every asset served from this process."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API docs", oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - API reference",
                              redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png", with_google_fonts=False)


def _hoist_defs(schema: dict[str, Any]) -> None:
    """Move the `$defs` of hand-written request bodies (openapi_extra) into components.schemas."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            for media in content.values():
                body = media.get("schema", {})
                for name, definition in body.pop("$defs", {}).items():
                    schemas.setdefault(name, definition)

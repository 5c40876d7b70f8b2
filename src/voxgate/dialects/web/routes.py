"""Serve the page at `/` and its assets under `/web/`; the page itself talks to the other dialects' routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from voxgate.core.context import Context
from voxgate.dialects.base import Dialect, Routes
from voxgate.dialects.common import envelope_response

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = "/web"  # the page's files; with an API key set they stay public, like `/` (they hold no data)
# Revalidate every time: the page and its modules change together when voxgate is upgraded.
_NO_CACHE = {"Cache-Control": "no-cache"}


class _Assets(StaticFiles):
    """StaticFiles that always asks the browser to revalidate (ETag), so an upgrade never mixes versions."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.update(_NO_CACHE)
        return response


routes = Routes()


class Web(Dialect):
    """`/` (the page), `/favicon.ico` and the static assets, all open: the page asks for the key itself and
    reaches the server only through the other dialects' HTTP APIs."""

    name = "web"
    routes = routes

    def __init__(self, ctx: Context, config: object = None) -> None:
        super().__init__(ctx)
        # On the open router, so the central key check steps aside for the assets as for the page (compose.py)
        self.public.mount(ASSETS, _Assets(directory=STATIC), name="web")

    def render_error(self, exc: BaseException, request: Request | None = None) -> Response:
        """The envelope of voxgate's own routes (serving files raises no domain error)."""
        return envelope_response(self.ctx.metrics, self.name, exc, {})

    def mount(self, app: FastAPI) -> None:
        # The page's routes go into the app's own route list (include_router would nest them), where a dialect
        # that also answers GET / finds the page and lets browsers keep it (CosyVoice's "Hello.").
        app.router.routes.extend(self.public.routes)  # the assets' mount with them


@routes.get("/", public=True, include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_NO_CACHE)


@routes.get("/favicon.ico", public=True, include_in_schema=False)
async def favicon() -> RedirectResponse:
    return RedirectResponse(f"{ASSETS}/icon.svg", status_code=308)

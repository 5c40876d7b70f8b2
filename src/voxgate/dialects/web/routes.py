"""Serve the page at `/` and its assets under `/web/`; the page itself talks to the other dialects' routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from voxgate.core.context import Context

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


def attach(app: FastAPI, ctx: Context) -> None:
    """Mount `/` (the page), `/favicon.ico` and the static assets."""
    del ctx  # the page reaches the server only through its HTTP APIs

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_NO_CACHE)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> RedirectResponse:
        return RedirectResponse(f"{ASSETS}/icon.svg", status_code=308)

    app.mount(ASSETS, _Assets(directory=STATIC), name="web")

"""`GET/PUT/DELETE /v1/lexicon`: the pronunciation lexicon every dialect and engine shares (docs/lexicon.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from voxgate.core.lexicon import MAX_ENTRIES, Entry
from voxgate.dialects.base import Dialect, Routes, this_dialect
from voxgate.dialects.common import JSON, fields_schema, json_object, request_body
from voxgate.errors import InvalidInput, VoxgateError

MAX_BATCH = 5000  # entries in one PUT


class EntryNotFound(VoxgateError):
    """DELETE named an entry the lexicon does not have."""


def _listing(entries: list[Entry]) -> dict[str, Any]:
    return {"object": "list", "data": [e.to_dict() for e in entries]}


async def _entries(request: Request, *, delete: bool) -> list[dict[str, Any]]:
    body = await json_object(request, invalid="the request body is not valid JSON",
                             not_object='the request body must be a JSON object: {"entries": [...]}')
    entries = body.get("entries")
    if not isinstance(entries, list) or (not entries and not delete):
        raise InvalidInput("'entries' must be a non-empty list of entries", param="entries")
    if len(entries) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} entries per request", param="entries")
    if not all(isinstance(e, dict) for e in entries):
        raise InvalidInput("each entry must be an object", param="entries")
    return entries


# On the native dialect's keyed router (which checks the key, counts the request and renders errors in the
# native envelope): native/routes.py includes this table in its own.
routes = Routes()
NativeDep = Annotated[Dialect, Depends(this_dialect)]  # the native dialect (its module imports this one)


@routes.get("/v1/lexicon", tags=["native"])
async def list_entries(dialect: NativeDep, language: str | None = None, voice: str | None = None) -> dict[str, Any]:
    lexicon = dialect.ctx.service.lexicon
    return _listing(lexicon.list(language=language, voice=voice))


@routes.put("/v1/lexicon", tags=["native"], openapi_extra=request_body(
    fields_schema(("entries",), (), "LexiconEntries"), JSON))
async def put_entries(request: Request, dialect: NativeDep) -> Response:
    lexicon = dialect.ctx.service.lexicon
    raw = await _entries(request, delete=False)
    parsed = []
    for i, item in enumerate(raw):
        try:
            parsed.append(Entry.parse(item))
        except InvalidInput as exc:
            raise InvalidInput(f"entries[{i}]: {exc.message}", param=exc.param) from None
    stored = await asyncio.to_thread(lexicon.put, parsed)  # one SQLite transaction, fsynced
    return JSONResponse({**_listing(stored), "total": len(lexicon.list()), "limit": MAX_ENTRIES})


@routes.delete("/v1/lexicon", tags=["native"])
async def delete_entries(request: Request, dialect: NativeDep, word: str | None = None,
                         language: str | None = None, voice: str | None = None, all: bool = False) -> Response:
    lexicon = dialect.ctx.service.lexicon
    if all:
        deleted = await asyncio.to_thread(lexicon.clear)
        return JSONResponse({"object": "lexicon.deleted", "deleted": deleted})
    if word is not None:
        targets = [{"word": word, "language": language, "voice": voice}]
    else:
        targets = await _entries(request, delete=True)
    for i, target in enumerate(targets):  # all are checked before any is deleted
        name = target.get("word")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"entries[{i}]: 'word' is required", param="word")
        if not lexicon.has(name, target.get("language"), target.get("voice"), target.get("regex") is True):
            where = "".join(f", {k} {target[k]!r}" for k in ("language", "voice") if target.get(k))
            raise EntryNotFound(f"no lexicon entry for {name!r}{where}", param="word")
    deleted = 0
    for target in targets:
        deleted += await asyncio.to_thread(lexicon.delete, target["word"], target.get("language"),
                                           target.get("voice"), False, target.get("regex") is True)
    return JSONResponse({"object": "lexicon.deleted", "deleted": deleted})


__all__ = ["EntryNotFound", "routes"]

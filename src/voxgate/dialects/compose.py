"""Several dialects on one app: mount them in order, and settle every path more than one of them serves.

Two dialects may serve the same method and path on one app (on the main port `POST /tts` is GPT-SoVITS's
and CosyVoice's, `GET /` the web page's and CosyVoice's, `POST /v1/audio/speech` OpenAI's and Flash-TTS's).
No dialect knows about another: here, one chooser
route is put in front of such a path, and it asks each dialect that serves it whether the request is its own
(`Dialect.claims(request, body)`). A dialect that overrides `claims` says which requests are its own, so it is
asked first; one that keeps the default claims whatever is left. Among equals the table order of `app.py`
decides. The chosen dialect's route then runs exactly as if the router had matched it (the body is read
once and replayed). Both routes stay in the route list (the API docs have one operation per path and method).

The central key check (dialects/auth.py) steps aside for a request that reaches a dialect's own routes:
the dialect checks the key itself, in its own shape (`self_guarded`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from voxgate.dialects.base import Dialect

__all__ = ["mount", "self_guarded"]


def mount(app: FastAPI, dialects: Sequence[Dialect]) -> None:
    """Mount `dialects` on `app` in order, then put a chooser in front of every path two of them serve."""
    shared: dict[tuple[str, str], list[tuple[Route, Dialect]]] = {}
    for dialect in dialects:
        before = {id(route) for route in app.router.routes}
        dialect.mount(app)
        added = [r for r in app.router.routes if id(r) not in before and isinstance(r, Route)]  # attach()ed
        for route in (*dialect.public.routes, *dialect.router.routes, *added):
            if isinstance(route, Route) and route.methods:
                for method in route.methods - {"HEAD"}:
                    shared.setdefault((route.path, method), []).append((route, dialect))
    for (path, method), candidates in shared.items():
        if len({id(dialect) for _, dialect in candidates}) > 1:
            methods = [method, "HEAD"] if method == "GET" else [method]
            chooser = Route(path, Chooser(_asked_in_order(candidates)), methods=methods, include_in_schema=False)
            app.router.routes.insert(0, chooser)  # matches only this path and method: nothing else is shadowed


def _asked_in_order(candidates: list[tuple[Route, Dialect]]) -> list[tuple[Route, Dialect]]:
    """Dialects that say which requests are their own first, then those that take the rest (table order kept)."""
    narrow = [c for c in candidates if type(c[1]).claims is not Dialect.claims]
    return narrow + [c for c in candidates if c not in narrow]


class Chooser:
    """One path of several dialects: the first that claims the request handles it (the last if none does).

    The body is read only from a request that carries the key (or when no key is set), so a client without it
    cannot make the server buffer a body; its request goes to the dialect that claims it without one, which
    then refuses it in its own shape.
    """

    def __init__(self, candidates: list[tuple[Route, Dialect]]) -> None:
        self._candidates = candidates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        body = b""
        if self._candidates[0][1].authorized(request):
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            receive = _replay(body, receive)
        route = next((r for r, d in self._candidates if d.claims(request, body)), self._candidates[-1][0])
        _, child = route.matches(scope)
        await route.handle({**scope, **child}, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body once, then waits on the real one (for the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def self_guarded(dialects: Sequence[Dialect]) -> Callable[[Scope], bool]:
    """Whether a request or WebSocket reaches a route of one of `dialects` (they check the key themselves)."""
    routes = [route for dialect in dialects for route in (*dialect.router.routes, *dialect.public.routes)]

    def guarded(scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return guarded

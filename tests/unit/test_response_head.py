"""ClosingStreamingResponse sends the status, headers and first body piece from the request's own task, before
Starlette's disconnect watch (a task group and a task switch); the rest of the response is Starlette's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voxgate.dialects.common import ClosingStreamingResponse

SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "POST", "path": "/"}


async def _serve(body: AsyncIterator[bytes]) -> tuple[list[tuple[dict[str, Any], bool]], int]:
    """Run the response; (every message sent with whether it came from the calling task, closes)."""
    sent: list[tuple[dict[str, Any], bool]] = []
    closed = 0
    caller = asyncio.current_task()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()  # the client stays until the response ends
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append((message, asyncio.current_task() is caller))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            gone.set()

    async def close() -> None:
        nonlocal closed
        closed += 1

    response = ClosingStreamingResponse(body, close, media_type="audio/pcm")
    async with asyncio.timeout(5):  # in this task (wait_for would make another)
        await response(SCOPE, receive, send)
    return sent, closed


async def test_first_piece_leaves_from_the_request_task_then_the_rest_in_order() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        yield b"second"
        yield b"third"

    sent, closed = await _serve(body())
    kinds = [(m["type"], m.get("body"), m.get("more_body")) for m, _ in sent]
    assert kinds == [("http.response.start", None, None), ("http.response.body", b"first", True),
                     ("http.response.body", b"second", True), ("http.response.body", b"third", True),
                     ("http.response.body", b"", False)]
    assert sent[0][0]["status"] == 200
    assert (b"content-type", b"audio/pcm") in sent[0][0]["headers"]
    assert [own for _, own in sent[:2]] == [True, True]  # before Starlette's task group
    assert closed == 1


async def test_empty_body_and_a_failing_first_piece() -> None:
    async def empty() -> AsyncIterator[bytes]:
        return
        yield b""

    sent, closed = await _serve(empty())
    assert [(m["type"], m.get("body", None)) for m, _ in sent] == [("http.response.start", None),
                                                                    ("http.response.body", b"")]
    assert closed == 1

    async def broken() -> AsyncIterator[bytes]:
        raise RuntimeError("engine gone")
        yield b""

    with pytest.raises(RuntimeError, match="engine gone"):  # after the start, as Starlette would: not a status
        await _serve(broken())


async def test_a_client_that_leaves_stops_the_body_and_the_response_ends_cleanly() -> None:
    """The disconnect watch (ASGI 2.3): the body is stopped where it waits, its cleanup runs to its end (Starlette's
    anyio group cancelled every await of the cleanup again: encode_stream's wait for a codec thread then skipped
    closing the encoder), the response returns without an error, and the stream is closed once."""
    leave = asyncio.Event()
    cleaned = asyncio.Event()
    sent: list[dict[str, Any]] = []
    closed = 0

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            yield b"second"
            await asyncio.Event().wait()  # the next piece never comes
            yield b"never"
        finally:
            await asyncio.sleep(0)  # cleanup that awaits still runs to its end
            cleaned.set()

    async def receive() -> dict[str, Any]:
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body") == b"second":
            leave.set()

    async def close() -> None:
        nonlocal closed
        closed += 1

    response = ClosingStreamingResponse(body(), close, media_type="audio/pcm")
    async with asyncio.timeout(5):
        await response(SCOPE, receive, send)
    assert [m.get("body") for m in sent] == [None, b"first", b"second"]
    assert cleaned.is_set()
    assert closed == 1


def _parts(body: AsyncIterator[bytes], receive: Any) -> tuple[ClosingStreamingResponse, list[Any], list[int]]:
    """A response over `body` whose sends and closes are recorded."""
    sent: list[Any] = []
    closed = [0]

    async def close() -> None:
        closed[0] += 1

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body"))
        await asyncio.sleep(0)

    response = ClosingStreamingResponse(body, close, media_type="audio/pcm")
    response.send = send  # type: ignore[attr-defined]
    return response, sent, closed


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


async def test_a_body_error_mid_stream_is_raised_after_one_close() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        raise RuntimeError("mid-body")

    response, sent, closed = _parts(body(), _never)
    with pytest.raises(RuntimeError, match="mid-body"):
        async with asyncio.timeout(5):
            await response(SCOPE, _never, response.send)  # type: ignore[attr-defined]
    assert sent == [None, b"a", b"b"] and closed == [1]
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_request_cancelled_twice_still_waits_for_the_body_to_end() -> None:
    """Server shutdown cancels the request's task, maybe more than once: the body is stopped, its cleanup runs to
    its end before the stream is closed (once), the cancel is raised, and no task is left behind (an anyio task
    group waits for its children the same way)."""
    order: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            await asyncio.sleep(0.05)
            order.append("body cleaned up")

    response, sent, closed = _parts(body(), _never)
    task = asyncio.ensure_future(response(SCOPE, _never, response.send))  # type: ignore[attr-defined]
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # again, while the body's cleanup still runs
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    order.append("request ended")
    assert order == ["body cleaned up", "request ended"] and closed == [1] and sent == [None, b"a"]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_body_that_fails_while_the_request_is_cancelled_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup failed")

    response, _, closed = _parts(body(), _never)
    task = asyncio.ensure_future(response(SCOPE, _never, response.send))  # type: ignore[attr-defined]
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [1]
    assert any("cleanup failed" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")

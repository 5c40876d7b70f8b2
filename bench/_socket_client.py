"""A minimal HTTP/1.1 client on a blocking socket, for timing a server's first response byte.

httpx (the benchmarks' usual client) spends ~1–2 ms of its own per request building the request, running
its connection pool and h11's state machine, and parsing the response head before the first body byte is
handed over: a cost of that client, not of the server. This one sends a request prepared in advance on a
kept-alive connection and stamps the moment the first byte of the body arrives on the socket, as a lean
client (curl, a browser's player) sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

READ = 65536  # bytes per recv


def post_bytes(host: str, port: int, path: str, payload: dict[str, object]) -> bytes:
    """An HTTP/1.1 POST of `payload` as JSON, as bytes."""
    body = json.dumps(payload).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


@dataclass
class Answer:
    """One response: status, seconds from the request's first byte written to the first body byte (None if
    empty) and to the end, and the body."""

    status: int
    first_s: float | None
    end_s: float
    body: bytes


class Connection:
    """One kept-alive HTTP/1.1 connection to `url` (http://host:port)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, path: str, payload: dict[str, object]) -> bytes:
        """The bytes of a POST of `payload` as JSON (built once, sent as often as wanted)."""
        return post_bytes(self.host, self.port, path, payload)

    def request(self, raw: bytes) -> Answer:
        """Send a prepared request and read the whole response (chunked or with a Content-Length)."""
        start = time.perf_counter()
        self.sock.sendall(raw)
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        first: float | None = None
        body = bytearray()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")  # no trailers are sent
                    break
                if first is None:
                    self._fill(1)
                    first = time.perf_counter() - start
                body += self._take(size)
                self._until(b"\r\n")
        else:
            length = int(headers.get("content-length", "0"))
            if length:
                self._fill(1)
                first = time.perf_counter() - start
                body += self._take(length)
        return Answer(status, first, time.perf_counter() - start, bytes(body))

    def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            data = self.sock.recv(READ)
            if not data:
                raise ConnectionError("the server closed the connection")
            self._buf += data

    def _take(self, n: int) -> bytes:
        self._fill(n)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _until(self, mark: bytes) -> bytes:
        while (at := self._buf.find(mark)) < 0:
            data = self.sock.recv(READ)
            if not data:
                raise ConnectionError("the server closed the connection")
            self._buf += data
        out, self._buf = self._buf[:at], self._buf[at + len(mark):]
        return out


@dataclass
class Streamed:
    """One response read by AsyncConnection: status, seconds from sending to the first body byte (None if
    empty) and to the end, body bytes received, the worst lateness of a body chunk for a real-time player
    started at the first byte (at `bytes_per_second`), and the body's first bytes when the status is not 200."""

    status: int
    first_s: float | None
    end_s: float
    received: int
    worst_late_s: float
    error: bytes = b""


class AsyncConnection:
    """One kept-alive HTTP/1.1 connection on asyncio streams, for load runs with many clients in one process.

    httpx's per-request and per-chunk work (connection pool, h11, response wrappers) took ~5% of a 2-core
    machine at 8 clients (bench_server's `client CPU` column): CPU the server's workers then did not get,
    while the raw engine it is compared with has no client at all. This reads the same chunked responses
    with a few stream calls and keeps only a byte count, not the body.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
        self.reader, self.writer, self.host, self.port = reader, writer, host, port

    @classmethod
    async def open(cls, url: str) -> AsyncConnection:
        """Connect to `url` (http://host:port)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port, limit=READ * 4)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, host, port)

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def prepare(self, path: str, payload: dict[str, object]) -> bytes:
        """The bytes of a POST of `payload` as JSON."""
        return post_bytes(self.host, self.port, path, payload)

    async def request(self, raw: bytes, bytes_per_second: float) -> Streamed:
        """Send a prepared request and read its response to the end (chunked or with a Content-Length)."""
        start = time.perf_counter()
        self.writer.write(raw)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        first: float | None = None
        received, worst = 0, 0.0
        error = b""

        def got(data: bytes) -> None:
            nonlocal first, received, worst, error
            now = time.perf_counter() - start
            if first is None:
                first = now
            worst = max(worst, now - (first + received / bytes_per_second))
            received += len(data)
            if status != 200 and len(error) < 300:
                error += data[:300]

        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                while size:  # a large chunk is taken as it arrives, as a player would
                    data = await self.reader.read(min(size, READ))
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    got(data)
                    size -= len(data)
                await self.reader.readexactly(2)
            await self.reader.readuntil(b"\r\n")  # no trailers are sent
        else:
            left = int(headers.get("content-length", "0"))
            while left:
                data = await self.reader.read(min(left, READ))
                if not data:
                    raise ConnectionError("the server closed the connection")
                got(data)
                left -= len(data)
        return Streamed(status, first, time.perf_counter() - start, received, worst, error)

"""A minimal HTTP/1.1 client on a blocking socket, for timing a server's first response byte.

httpx (the benchmarks' usual client) spends ~1–2 ms of its own per request building the request, running
its connection pool and h11's state machine, and parsing the response head before the first body byte is
handed over: a cost of that client, not of the server. This one sends a request prepared in advance on a
kept-alive connection and stamps the moment the first byte of the body arrives on the socket, as a lean
client (curl, a browser's player) sees it.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

READ = 65536  # bytes per recv


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
        body = json.dumps(payload).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

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

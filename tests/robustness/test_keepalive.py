"""Kept-alive HTTP connections outlive the common clients' idle expiry, so a reused connection is never reset."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from tests.conftest import Server

REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
IDLE_S = 6.5  # past httpx's (and the OpenAI SDK's) 5 s keep-alive expiry, which uvicorn's default equalled


def _response(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        assert time.monotonic() < deadline
    return data


def test_an_idle_connection_is_still_open_after_the_clients_expiry(server: Server) -> None:
    where = urlsplit(server.url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(IDLE_S)
        sock.sendall(REQUEST)  # with a 5 s server timeout the socket is closed by now: b"" or a reset
        second = _response(sock)
        assert second.startswith(b"HTTP/1.1 200"), second[:200]
        assert second.endswith(b'{"status":"ok"}')

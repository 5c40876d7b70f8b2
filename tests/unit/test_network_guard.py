"""The suite's network guard (tests/conftest.py): the test process reaches only this machine, and the
processes the tests start get the offline switches of the packages the engines load."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests import conftest
from tests.conftest import OFFLINE_ENV, NetworkUsed


def test_connections_beyond_this_machine_are_refused_at_once() -> None:
    for address in (("192.0.2.1", 80), ("example.com", 443)):  # TEST-NET-1 (never routed), a host name
        with socket.socket() as sock, pytest.raises(NetworkUsed, match="only to this machine"):
            sock.connect(address)
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(NetworkUsed):
        sock.connect(("2001:db8::1", 80, 0, 0))
    with pytest.raises(NetworkUsed):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket() as sock:
        with pytest.raises(NetworkUsed):
            sock.connect_ex(("192.0.2.1", 80))


def test_loopback_unix_and_datagram_sockets_still_work() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, port), timeout=5):
                pass
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = str(Path(folder) / "s")
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(path)
            listener.listen()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 80))  # sets the default peer only: sends nothing


def test_offline_switches_are_in_the_environment_of_started_servers(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    for name, value in OFFLINE_ENV.items():
        assert os.environ[name] == value, name  # inherited by every process a test starts
    seen: dict[str, Any] = {}

    class NoServer:
        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            seen.update(kwargs["env"])
            self.stdout = io.StringIO("not a server\n")

        def kill(self) -> None:
            self.killed = True

        def poll(self) -> int | None:  # start_server stops a server that did not start (killed: exited)
            return -9 if getattr(self, "killed", False) else None

        def wait(self, timeout: float | None = None) -> int:
            return -9

    monkeypatch.setattr(subprocess, "Popen", NoServer)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even a developer's own setting does not reach the server
    with pytest.raises(pytest.fail.Exception, match="did not start"):
        conftest.start_server(tmp_path)
    assert {name: seen[name] for name in OFFLINE_ENV} == OFFLINE_ENV
    assert "HF_HUB_OFFLINE" in OFFLINE_ENV and seen["HF_HUB_OFFLINE"] == "1"

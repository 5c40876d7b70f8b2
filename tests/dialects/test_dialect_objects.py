"""Dialects as objects (issue 14): the base checks the key and counts each request once, in the dialect's own
shape; the TCP dialects listen only while the server runs, on the socket they are handed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from voxgate.app import create_app, stackflow_config
from voxgate.dialects.common import TcpListener
from voxgate.dialects.stackflow import StackFlow
from voxgate.dialects.wyoming import Wyoming
from voxgate.settings import Settings

KEY = "objects-key-5c1d"
MESSAGE = "Unauthorized: a valid API key is required (Authorization: Bearer <key>)"
VOICE = "en_US-joe-medium"


def _settings(data: Path, **extra: object) -> Settings:
    return Settings(data_dir=data, engines=["piper"], default_voice=VOICE, warmup=False, stackflow_port=0,
                    wyoming_port=0, **extra)  # type: ignore[arg-type]


def _samples(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(_settings(tmp_path_factory.mktemp("objects") / "data", api_key=KEY))
    with TestClient(app) as client:
        yield client


def test_a_request_is_counted_once_and_refused_in_its_own_shape(keyed: TestClient) -> None:
    requests, refused = 'voxgate_requests_total{dialect="openai"}', \
        'voxgate_errors_total{dialect="openai",kind="invalid_api_key"}'
    invalid = 'voxgate_errors_total{dialect="openai",kind="invalid_value"}'
    before = _samples(keyed)
    denied = keyed.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")
    assert denied.json() == {"error": {"message": MESSAGE, "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}}
    after_denied = _samples(keyed)
    assert after_denied.get(requests, 0.0) == before.get(requests, 0.0)  # a refused request is no request
    assert after_denied[refused] == before.get(refused, 0.0) + 1
    bad = keyed.post("/v1/audio/speech", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"
    listed = keyed.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert listed.status_code == 200 and any(m["id"] == VOICE for m in listed.json()["data"])
    after = _samples(keyed)
    assert after[requests] == after_denied.get(requests, 0.0) + 2  # once each, not once per layer
    assert after[invalid] == before.get(invalid, 0.0) + 1


def test_native_refuses_in_the_envelope_and_its_probes_stay_open(keyed: TestClient) -> None:
    denied = keyed.delete("/v1/audio/voices/nobody")
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    missing = keyed.delete("/v1/audio/voices/nobody", headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "voice_not_found"
    assert keyed.get("/health").json() == {"status": "ok"}
    assert keyed.get("/ready").json() == {"status": "ready"}  # nothing more without the key
    assert keyed.get("/ready", headers={"Authorization": f"Bearer {KEY}"}).json()["default_voice"] == VOICE
    assert keyed.get("/no/such/route").status_code == 401  # unknown paths reveal nothing


def test_tcp_dialects_listen_on_the_handed_sockets_only_while_the_server_runs(tmp_path: Path) -> None:
    bound = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        bound.append(sock)
    ports = [s.getsockname()[1] for s in bound]
    app = create_app(_settings(tmp_path / "data"), {"stackflow": bound[0], "wyoming": bound[1]})
    dialects = app.state.dialects
    assert isinstance(dialects["stackflow"], StackFlow) and isinstance(dialects["wyoming"], Wyoming)
    with TestClient(app):
        assert dialects["stackflow"].server.port == ports[0] and dialects["wyoming"].server.port == ports[1]
        for port in ports:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert dialects["stackflow"].server is None and dialects["wyoming"].server is None
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_tcp_dialects_are_off_at_port_zero(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path / "data"))
    with TestClient(app):
        assert app.state.dialects["stackflow"].server is None and app.state.dialects["wyoming"].server is None


def test_stackflow_reads_its_folder_from_the_settings() -> None:
    config = stackflow_config(_settings(Path("relative-data"), stackflow_max_tasks=7, stackflow_audio_sink="none"))
    assert config.audio_dir == (Path("relative-data").resolve() / "outputs" / "stackflow")
    assert config.audio_dir.is_absolute() and config.max_tasks == 7 and config.audio_sink == "none"


def test_tcp_listener_ends_every_connection_when_closed() -> None:
    async def scenario() -> tuple[bytes, bool]:
        ended = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi\n")
            await writer.drain()
            await reader.read()  # until the listener aborts the connection
            ended.set()

        listener = TcpListener(handle)
        await listener.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        greeting = await asyncio.wait_for(reader.readline(), 5)
        await asyncio.wait_for(listener.close(), 15)
        closed = ended.is_set() and await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        return greeting, closed

    greeting, closed = asyncio.run(scenario())
    assert greeting == b"hi\n" and closed

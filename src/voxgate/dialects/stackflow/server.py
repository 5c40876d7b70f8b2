"""The StackFlow dialect: its TCP server (connections, the optional API-key step, dispatch, the `sys` unit),
started and stopped with the server."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from voxgate.core.context import Context
from voxgate.dialects.base import TcpDialect
from voxgate.dialects.common import TcpListener
from voxgate.dialects.stackflow.framing import Frame, FrameParser, Malformed, Oversized, Reset
from voxgate.dialects.stackflow.models import descriptors
from voxgate.dialects.stackflow.protocol import (
    ACTION_MATCH,
    AUTH_FAILED,
    AUTH_REQUIRED,
    JSON_ERROR,
    NOT_AVAILABLE,
    REBOOTING,
    RESET,
    RESET_OVER,
    RESTARTING,
    UNIT_CALL,
    VERSION_FALSE,
    ProtocolError,
    Request,
    notice,
    parse_request,
    reply,
    reset_message,
)
from voxgate.dialects.stackflow.sinks import make_sink
from voxgate.dialects.stackflow.units import TTS_UNITS, Registry, TtsUnits

_LOG = logging.getLogger(__name__)
VERSION = "v1.6"  # the llm-sys version clients check to pick model names (melotts-zh-cn etc. need ≥ 1.6)
PACKAGES = ("llm_sys", "llm_melotts", "llm_tts")  # what `version2` lists: the units voxgate plays
MAX_AUTH_FAILURES = 3  # wrong keys before the connection is closed
# Seconds between reset's answer and its "reset over" notice. M5Module-LLM's ApiSys::reset takes the answer,
# clears every message already received, then waits for request_id "0": a notice in the same read as the
# answer would be thrown away (on the module a restart takes seconds, so the two never arrive together).
RESET_NOTICE_DELAY = 0.5
# sys actions of llm-sys that voxgate answers -10 "Not available at the moment.", each for a reason
# (docs/stackflow.md): lstask is -10 in llm-sys itself; the rest would run a shell, touch the device's
# serial port, files or packages, or call a unit's internal RPC, none of which a network client may do here.
UNAVAILABLE = {"lstask", "bashexec", "uartsetup", "push", "pull", "rmmode", "unit_call"}


class Connection:
    """One client: its writer (one message at a time, with backpressure) and its state."""

    def __init__(self, writer: asyncio.StreamWriter, authenticated: bool) -> None:
        self.writer = writer
        self.authenticated = authenticated
        self.auth_failures = 0
        self.owned: set[str] = set()  # work_ids this connection set up; released when it goes
        self.closed = False
        self.hangup = False  # close once the current reply is out (too many wrong API keys)
        self._lock = asyncio.Lock()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def send(self, message: bytes) -> None:
        """Write one message and wait until the socket takes it; a gone client is noted, not raised."""
        if self.closed:
            return
        async with self._lock:
            try:
                self.writer.write(message)
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.closed = True


def _hwinfo() -> dict[str, Any]:
    """Real load, memory, temperature and interfaces (blocking ~0.5 s for the CPU sample)."""
    temperature = 0
    with contextlib.suppress(AttributeError, OSError):
        sensors = psutil.sensors_temperatures()
        readings = [t.current for entries in sensors.values() for t in entries if t.current]
        if readings:
            temperature = int(max(readings) * 1000)  # milli-°C, as the original reads thermal_zone0
    stats = psutil.net_if_stats()
    eth = []
    for name, addresses in psutil.net_if_addrs().items():
        ips = [a.address for a in addresses if a.family == socket.AF_INET]
        speed = stats[name].speed if name in stats else 0
        eth.append({"name": name, "ip": ips[0] if ips else "", "speed": str(speed) if speed > 0 else ""})
    return {"temperature": temperature, "cpu_loadavg": int(psutil.cpu_percent(interval=0.5)),
            "mem": int(psutil.virtual_memory().percent), "eth_info": eth}


def _cmminfo() -> dict[str, int]:
    """The host's memory in KiB, in cmminfo's fields (voxgate has no NPU CMM pool; its models live in RAM)."""
    memory = psutil.virtual_memory()
    return {"total": memory.total // 1024, "used": (memory.total - memory.available) // 1024,
            "remain": memory.available // 1024}


@dataclass(frozen=True)
class StackFlowConfig:
    """The settings this dialect reads (filled by the composition root)."""

    host: str  # the address it listens on (host)
    port: int  # its TCP port; 0 turns StackFlow off (stackflow_port)
    max_tasks: int  # TTS tasks set up at once over every client (stackflow_max_tasks)
    audio_sink: str  # where sys.* formats play: auto, device, file, none (stackflow_audio_sink)
    audio_dir: Path  # the WAVs of the file sink (DATA_DIR/outputs/stackflow, absolute)


class StackFlowServer:
    """The listening socket and every connection; `close()` stops all of it."""

    def __init__(self, ctx: Context, config: StackFlowConfig) -> None:
        self.ctx = ctx
        self.registry = Registry(config.max_tasks)
        self.units = TtsUnits(ctx, self.registry, make_sink(config.audio_sink, config.audio_dir))
        key = ctx.api_key
        self._key = key.encode("utf-8") if isinstance(key, str) and key else None
        self._listener = TcpListener(self._accept)
        self._connections: set[Connection] = set()

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return self._listener.port

    async def listen(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Bind (or take the already bound `sock`) and start accepting."""
        await self._listener.listen(host, port, sock)

    async def close(self) -> None:
        """Stop listening, drop every connection and task."""
        await self._listener.close()  # each handler's read sees the end and releases its client's tasks
        for task in list(self.registry.tasks.values()):
            await self.registry.remove(task)

    # -- connections ------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(writer, authenticated=self._key is None)
        self._connections.add(conn)
        _LOG.info("stackflow: client %s connected", conn.peer)
        parser = FrameParser()
        try:
            while not (conn.closed or conn.hangup) and (data := await reader.read(65536)):
                for event in parser.feed(data):
                    await self._on_event(conn, event)
                    if conn.closed or conn.hangup:
                        break
        except (ConnectionError, OSError):
            pass
        finally:
            await self._release(conn)
            self._connections.discard(conn)

    async def _release(self, conn: Connection) -> None:
        """A client went: its tasks stop and their queued work is dropped."""
        conn.closed = True
        released = [task for work_id in conn.owned if (task := self.registry.get(work_id)) is not None]
        for task in released:
            await self.registry.remove(task)
        conn.writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await conn.writer.wait_closed()
        _LOG.info("stackflow: client %s disconnected (%d tasks released)", conn.peer, len(released))

    async def _on_event(self, conn: Connection, event: Frame | Reset | Malformed | Oversized) -> None:
        if isinstance(event, Reset):
            await conn.send(reset_message())
        elif isinstance(event, Oversized):
            _LOG.warning("stackflow: %s sent an object over %d bytes; skipped", conn.peer, event.size)
            await conn.send(reply("0", "sys", code=RESET))
        elif isinstance(event, Malformed):
            await conn.send(reply("0", "sys", code=JSON_ERROR))
        else:
            await self._dispatch(conn, event)

    async def _dispatch(self, conn: Connection, frame: Frame) -> None:
        request_id, work_id = "0", "sys"
        try:
            request = parse_request(frame.body, frame.raw)
            request_id, work_id = request.request_id, request.work_id
            if not conn.authenticated and not self._authenticate(conn, request):
                code = AUTH_FAILED if "api_key" in request.fields else AUTH_REQUIRED
                return await conn.send(reply(request_id, work_id, code=code))
            if request.action == "inference":
                await self.units.inference(request)  # no reply on success
                return None
            if request.unit == "sys":
                return await conn.send(await self._sys(conn, request))
            if request.unit in TTS_UNITS:
                return await conn.send(await self.units.action(request, conn.send, conn.owned))
            raise ProtocolError(UNIT_CALL)
        except ProtocolError as error:
            notes = getattr(error, "__notes__", [])
            if notes:
                _LOG.info("stackflow: %s %s: %s", work_id, error.code.message, "; ".join(notes))
            await conn.send(reply(error.request_id or request_id, error.work_id or work_id, code=error.code))
        except Exception:  # a bug must not end the connection: answer like a failed unit call, keep serving
            _LOG.exception("stackflow: request %r to %s failed", request_id, work_id)
            await conn.send(reply(request_id, work_id, code=UNIT_CALL))
        return None

    # -- API key ----------------------------------------------------------------------------------

    def _matches(self, key: object) -> bool:
        assert self._key is not None
        return isinstance(key, str) and hmac.compare_digest(key.encode("utf-8"), self._key)

    def _authenticate(self, conn: Connection, request: Request) -> bool:
        """An `api_key` field on any message authenticates the connection (the `auth` action is in _sys);
        a wrong one counts toward MAX_AUTH_FAILURES like a wrong `auth`, so keys cannot be guessed for free."""
        if "api_key" in request.fields:
            if self._matches(request.fields["api_key"]):
                conn.authenticated = True
            else:
                self._failed(conn)
                return False
        return conn.authenticated or (request.unit == "sys" and request.action == "auth")

    def _failed(self, conn: Connection) -> None:
        conn.auth_failures += 1
        _LOG.warning("stackflow: %s gave a wrong API key (%d)", conn.peer, conn.auth_failures)
        conn.hangup = conn.auth_failures >= MAX_AUTH_FAILURES  # after this reply

    def _auth(self, conn: Connection, request: Request) -> bytes:
        if self._key is None or self._matches(request.data):
            conn.authenticated = True
            return reply(request.request_id, request.work_id)
        self._failed(conn)
        return reply(request.request_id, request.work_id, code=AUTH_FAILED)

    # -- sys --------------------------------------------------------------------------------------

    async def _sys(self, conn: Connection, request: Request) -> bytes:
        action, request_id, work_id = request.action, request.request_id, request.work_id
        if action == "ping":
            return reply(request_id, work_id)
        if action == "auth":
            return self._auth(conn, request)
        if action == "lsmode":
            return reply(request_id, work_id, "sys.lsmode", descriptors(self.ctx))
        if action == "hwinfo":
            return reply(request_id, "sys", "sys.hwinfo", await asyncio.to_thread(_hwinfo))
        if action == "version":
            return reply(request_id, work_id, "sys.utf-8", VERSION)
        if action == "version2":
            return reply(request_id, work_id, "sys.utf-8.stream", [f"{p}-{VERSION[1:]}" for p in PACKAGES])
        if action == "cmminfo":
            return reply(request_id, "sys", "sys.cmminfo", _cmminfo())
        if action == "update":
            return reply(request_id, work_id, "sys.utf-8", "")  # the list of update packages found: none
        if action == "upgrade":
            raise ProtocolError(VERSION_FALSE if not isinstance(request.data, str) else NOT_AVAILABLE)
        if action == "reset":
            await conn.send(reply(request_id, work_id, code=RESTARTING))
            ended = await self.end_all_tasks()
            _LOG.info("stackflow: %s reset the units (%d tasks ended)", conn.peer, ended)
            await asyncio.sleep(RESET_NOTICE_DELAY)
            return notice(RESET_OVER)
        if action == "reboot":
            ended = await self.end_all_tasks()  # what a client sees after a reboot: nothing set up
            _LOG.info("stackflow: %s asked for a reboot; tasks ended (%d), the machine is not rebooted",
                      conn.peer, ended)
            return reply(request_id, work_id, code=REBOOTING)
        raise ProtocolError(NOT_AVAILABLE if action in UNAVAILABLE else ACTION_MATCH)

    async def end_all_tasks(self) -> int:
        """Every client's tasks end at once (queued text and audio dropped), as llm-sys's reset restarts the
        units; returns how many there were."""
        tasks = list(self.registry.tasks.values())
        for conn in self._connections:
            conn.owned.clear()
        for task in tasks:
            await self.registry.remove(task)
        return len(tasks)


async def start(ctx: Context, config: StackFlowConfig, sock: socket.socket | None = None) -> StackFlowServer:
    """Listen for StackFlow clients on config.host:config.port (0 binds a free port; read it from `.port`), or
    on the already bound `sock`."""
    server = StackFlowServer(ctx, config)
    await server.listen(config.host, config.port, sock)
    _LOG.info("stackflow listening on %s:%d", config.host, server.port)
    return server


class StackFlow(TcpDialect):
    """M5Stack StackFlow on its own TCP port (no HTTP routes): the server starts and stops with voxgate's."""

    name = "stackflow"
    title = "StackFlow"
    port_setting = "stackflow_port"
    default_port = 10001
    door = "TCP: M5Stack StackFlow (llm-sys, melotts/tts units)"

    config: StackFlowConfig
    server: StackFlowServer | None

    async def listen(self) -> StackFlowServer:
        return await start(self.ctx, self.config, self.sock)

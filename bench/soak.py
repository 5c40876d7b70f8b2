"""Soak test: N clients mixing every dialect against one server for a given time.

    .venv/bin/python bench/soak.py [--clients 4] [--minutes 10] [--seed 1] [--url URL --stackflow-port P]
                                   [--wyoming-port P] [--json PATH] [--log PATH] [--dialects openai,...]
                                   [server flags...]
    .venv/bin/python bench/soak.py --report PATH   # the growth figures of a run saved with --json

Without --url it starts `python -m voxgate serve` on free loopback ports (data in a temporary folder)
and always stops it. Each client loops over a seeded random mix of OpenAI (streamed pcm), GPT-SoVITS
(GET /tts, streamed), AllTalk (/api/tts-generate, then the file), Flash-TTS (/speak), CosyVoice (POST /tts
and a WebSocket session), StackFlow (TCP setup, streamed inference, exit) and Wyoming (one-shot `synthesize`
read to `audio-stop`, and a streamed `synthesize-start`/word chunks/`synthesize-stop` read to
`synthesize-stopped`). Every minute it prints the
errors so far, the p50/p95 time to first audio in that minute, the server's RSS, and what /ready says is
loaded (engine sessions, base voices measured for matching). --log keeps the server's log; errors print its
error lines either way. --dialects runs a subset of the mix (one dialect, to isolate its memory). At the end: total
requests and errors, RSS growth after warm-up (the first 10% of the run, at least its first sample: the time
every engine and session the mix touches takes to load and its arenas to settle) and
whether the targets hold: 0 errors, < 5% RSS growth after warm-up, judged median to median over a tenth
of the run's minute readings at each end (window_growth: one reading is one instant of a swinging figure);
then, after --settle seconds with no clients,
the RSS once idle against the run's peak, so "grew and stayed" is told from "grew under a burst and came back" (the
target applies there too). Exit status 0 either way (it is a
measurement); the machine should be otherwise idle for the latency figures to mean anything.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import drain, stop, wait_ready

VOICE = "en_US-joe-medium"
TEXTS = ["The weather today is mild and sunny, with a light breeze from the west.",
         "Hello there. How are you doing today?",
         "A short one.",
         "Reading aloud helps, she said, because every sound is heard, and nothing is rushed."]


@dataclass
class Tally:
    """What every client adds to, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    first_audio: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)

    def ok(self, started: float, first: float | None) -> None:
        with self.lock:
            self.requests += 1
            if first is not None:
                self.first_audio.append((time.monotonic(), first - started))

    def fail(self, what: str) -> None:
        with self.lock:
            self.requests += 1
            self.errors.append(what)


def _stream(client: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[float | None, int]:
    """Send, read the whole body; (when the first body byte came, bytes)."""
    first, size = None, 0
    with client.stream(method, path, **kwargs) as answer:  # type: ignore[arg-type]
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path} -> {answer.status_code}: {answer.read()[:200]!r}")
        for chunk in answer.iter_bytes():
            if chunk and first is None:
                first = time.monotonic()
            size += len(chunk)
    return first, size


def openai(client: httpx.Client, text: str, _: dict[str, object]) -> float | None:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    return _stream(client, "POST", "/v1/audio/speech", json=body)[0]


def gptsovits(client: httpx.Client, text: str, _: dict[str, object]) -> float | None:
    params = {"text": text, "text_lang": "en", "ref_audio_path": VOICE, "prompt_lang": "en",
              "streaming_mode": "1", "media_type": "raw"}
    return _stream(client, "GET", "/tts", params=params)[0]


def alltalk(client: httpx.Client, text: str, _: dict[str, object]) -> float | None:
    answer = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": "female_01.wav",
                                                    "language": "en", "output_file_name": "soak"})
    if answer.status_code != 200 or answer.json().get("status") != "generate-success":
        raise RuntimeError(f"alltalk -> {answer.status_code}: {answer.text[:200]}")
    first, size = _stream(client, "GET", answer.json()["output_file_url"])
    if size < 44 + 2000:
        raise RuntimeError(f"alltalk file of {size} bytes")
    return first


def flash(client: httpx.Client, text: str, _: dict[str, object]) -> float | None:
    return _stream(client, "POST", "/speak", json={"text": text, "name": VOICE, "response_format": "wav"})[0]


def cosyvoice(client: httpx.Client, text: str, _: dict[str, object]) -> float | None:
    answer = client.post("/tts", json={"text": text, "prompt_id": VOICE, "audio_format": "wav"})
    if answer.status_code != 200 or len(base64.b64decode(answer.json()["audio"])) < 2000:
        raise RuntimeError(f"cosyvoice -> {answer.status_code}: {answer.text[:200]}")
    return time.monotonic()


def cosyvoice_ws(client: httpx.Client, text: str, where: dict[str, object]) -> float | None:
    url = str(client.base_url).replace("http://", "ws://").rstrip("/") + "/tts"
    first = None
    with connect(url, open_timeout=30, max_size=None) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": VOICE, "audio_format": "pcm", "sample_rate": 16000}}))
        for word in text.split():
            ws.send(json.dumps({"text": word + " ", "done": False}))
        ws.send(json.dumps({"text": "", "done": True}))
        while True:
            message = json.loads(ws.recv(timeout=120))
            if message["error"]:
                raise RuntimeError(f"cosyvoice ws: {message}")
            if message["is_end"]:
                break
            if first is None:
                first = time.monotonic()
    return first


def stackflow(client: httpx.Client, text: str, where: dict[str, object]) -> float | None:
    port = where.get("stackflow_port")
    if not port:
        return None
    first = None
    with socket.create_connection(("127.0.0.1", int(port)), timeout=120) as sock:  # type: ignore[call-overload]
        buffer = b""

        def recv() -> dict[str, object]:
            nonlocal buffer
            while b"\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("stackflow closed the connection")
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            return json.loads(line)

        def send(message: dict[str, object]) -> None:
            sock.sendall(json.dumps(message).encode())

        send({"request_id": "s", "work_id": "melotts", "action": "setup", "object": "melotts.setup",
              "data": {"model": "melotts-en-us", "response_format": "pcm.stream.base64",
                       "input": "tts.utf-8.stream", "enoutput": True}})
        reply = recv()
        if reply["error"] != {"code": 0, "message": ""}:
            raise RuntimeError(f"stackflow setup: {reply}")
        work_id = reply["work_id"]
        send({"request_id": "i", "work_id": work_id, "action": "inference", "object": "tts.utf-8.stream",
              "data": {"delta": text, "index": 0, "finish": True}})
        while True:
            message = recv()
            if message["error"] != {"code": 0, "message": ""}:
                raise RuntimeError(f"stackflow inference: {message}")
            if first is None:
                first = time.monotonic()
            if message["data"]["finish"]:  # type: ignore[index]
                break
        send({"request_id": "e", "work_id": work_id, "action": "exit"})
        recv()
    return first


class _Wyoming:
    """A raw Wyoming connection: JSON header lines, then `data_length` bytes of data and `payload_length` bytes
    of payload (what Home Assistant's client does, without the package, so every byte is read as sent)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.file = self.sock.makefile("rb")

    def send(self, kind: str, data: dict[str, object] | None = None) -> None:
        self.sock.sendall((json.dumps({"type": kind, "data": data or {}}) + "\n").encode())

    def read(self, until: str) -> float | None:
        """Events up to `until`; when the first audio-chunk came. An error event raises."""
        first = None
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError(f"wyoming closed the connection before {until}")
            header = json.loads(line)
            data = header.get("data") or {}
            if header.get("data_length"):
                data = {**data, **json.loads(self.file.read(header["data_length"]))}
            payload = self.file.read(header["payload_length"]) if header.get("payload_length") else b""
            if header["type"] == "error":
                raise RuntimeError(f"wyoming: {data}")
            if header["type"] == "audio-chunk" and payload and first is None:
                first = time.monotonic()
            if header["type"] == until:
                return first

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wyoming(client: httpx.Client, text: str, where: dict[str, object]) -> float | None:
    port = where.get("wyoming_port")
    if not port:
        return None
    conn = _Wyoming(int(port))  # type: ignore[call-overload]
    try:
        conn.send("synthesize", {"text": text, "voice": {"name": VOICE}})
        return conn.read("audio-stop")
    finally:
        conn.close()


def wyoming_stream(client: httpx.Client, text: str, where: dict[str, object]) -> float | None:
    port = where.get("wyoming_port")
    if not port:
        return None
    conn = _Wyoming(int(port))  # type: ignore[call-overload]
    try:
        conn.send("synthesize-start", {"voice": {"name": VOICE}})
        for word in text.split():
            conn.send("synthesize-chunk", {"text": word + " "})
        conn.send("synthesize", {"text": text, "voice": {"name": VOICE}})  # the copy Home Assistant also sends
        conn.send("synthesize-stop")
        return conn.read("synthesize-stopped")
    finally:
        conn.close()


CALLS: dict[str, Callable[[httpx.Client, str, dict[str, object]], float | None]] = {
    "openai": openai, "gptsovits": gptsovits, "alltalk": alltalk, "flash": flash, "cosyvoice": cosyvoice,
    "cosyvoice_ws": cosyvoice_ws, "stackflow": stackflow, "wyoming": wyoming, "wyoming_stream": wyoming_stream,
}


def client_loop(url: str, seed: int, until: float, tally: Tally, where: dict[str, object],
                dialects: list[str] | None = None) -> None:
    rng = random.Random(seed)
    names = dialects or list(CALLS)
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            name = rng.choice(names)
            text = rng.choice(TEXTS)
            started = time.monotonic()
            try:
                tally.ok(started, CALLS[name](client, text, where))
            except Exception as exc:
                tally.fail(f"{name}: {exc!r}"[:300])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready(url: str) -> dict[str, object]:
    """What /ready says is loaded: engine sessions (voice:threads) and base voices measured for matching, the
    two things that legitimately add memory during a run (so RSS growth can be told from a leak)."""
    try:
        body = httpx.get(f"{url}/ready", timeout=10).json()
        sessions = body.get("sessions", [])
        bases = body.get("match_bases", {})
        return {"sessions": len(sessions), "session_ids": [f"{s['voice']}:{s['threads']}" for s in sessions],
                "bases": f"{bases.get('measured', '?')}/{bases.get('total', '?')}"}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return {"sessions": "?", "session_ids": [], "bases": "?"}


def settle_bases(url: str, wanted: int, limit: float = 600.0) -> None:
    """Wait, at most `limit` seconds, until /ready says `wanted` base voices are measured (or all there are). An
    idle server measures them in the background; the first measurement loads the speaker encoder and Praat,
    which stay (~100 MB in the 2026-12-04 soak, where clients left no pause for it until minute 45). That load
    is part of the warm-up, not growth; a measurement that the clients' pauses allow later unloads what it
    loaded for itself."""
    if wanted <= 0:
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            bases = httpx.get(f"{url}/ready", timeout=10).json().get("match_bases", {})
            if bases.get("measured", 0) >= min(wanted, bases.get("total", 0)):
                print(f"soak: {bases.get('measured')}/{bases.get('total')} base voices measured before the clients "
                      "start", flush=True)
                return
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        time.sleep(2)
    print(f"soak: base voices still unmeasured after {limit:.0f} s; starting anyway", flush=True)


def _rss_parts(pid: int) -> dict[str, float]:
    """The server's RSS in MB by kind of mapping, from /proc/PID/smaps (Linux; empty elsewhere): `file` (code and
    mapped model files), `brk` (the main malloc heap), `anon_big` (anonymous mappings of 8 MB or more: malloc's
    other arenas and large chunks mmapped on their own, such as onnxruntime's arena regions) and `anon` (the
    rest). Which kind grows tells a native arena from a Python or malloc-heap leak."""
    parts = {"file": 0, "brk": 0, "anon_big": 0, "anon": 0}
    kind = "anon"
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                if line.startswith("Rss:"):
                    parts[kind] += int(line.split()[1])
                elif "-" in line.split(" ", 1)[0] and not line[0].isupper():
                    fields = line.split()
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    name = fields[5] if len(fields) > 5 else ""
                    kind = ("brk" if name == "[heap]" else "file" if name.startswith("/") else
                            "anon_big" if end - start >= 8 << 20 else "anon")
    except (OSError, ValueError, IndexError):
        return {}
    return {k: v / 1024 for k, v in parts.items()}


def settle_rss(server: psutil.Process, url: str, seconds: float) -> dict[str, object] | None:
    """With the clients stopped, RSS every 5 s for `seconds`; the lowest reading of the second half (the pool
    trims once idle, at most every 30 s; an idle server may start measuring a base voice, which loads its model
    for a while), with what /ready says is loaded at the end. None if `seconds` is 0."""
    if seconds <= 0:
        return None
    readings: list[tuple[float, float]] = []
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        try:
            readings.append((elapsed, server.memory_info().rss / 2**20))
        except psutil.Error:
            return None
        time.sleep(min(5.0, max(0.0, seconds - elapsed)))
    late = [mb for when, mb in readings if when >= seconds / 2] or [mb for _, mb in readings]
    return {"seconds": seconds, "rss_mb": min(late), "readings_mb": [round(mb) for _, mb in readings], **_ready(url)}


def _print_log_errors(log: Path, keep: bool) -> None:
    """The server log's error and traceback lines (the temporary log goes with the run's folder)."""
    lines = log.read_text(errors="replace").splitlines()
    picked, inside = [], False
    for line in lines:
        if line.startswith(("ERROR", "Traceback", "WARNING")) or "Exception" in line[:40]:
            inside = True
        elif line and not line[0].isspace() and not line.startswith(("During", "The above")):
            inside = inside and ":" in line[:80] and not line.startswith("INFO")
        if inside:
            picked.append(line)
    print(f"server log ({log}{'' if keep else ', deleted at exit'}): {len(picked)} error lines; the last 80:")
    for line in picked[-80:]:
        print("  |", line)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else (values[0] if values else 0.0)


def _growth_line(run: dict, figures: dict[str, float]) -> str:
    width = max(1, round(len(run["rows"]) * 0.1))
    met = "met" if max(figures.values()) < 5 else "MISSED"
    return (f"RSS growth, median of the {width} minute readings after the warm-up against the last {width}: "
            f"{figures['median']:+.1f}%, of the minutes' peaks {figures['peaks']:+.1f}%; < 5% (both) {met}")


def window_growth(rows: list[dict], minutes: float) -> dict[str, float]:
    """RSS growth between two windows of minute readings, each a tenth of the run: the first after the warm-up
    (the run's first 10%) and the last. A reading is one instant, and a server's RSS swings by ±10% within a
    minute as glibc trims its heap and runs start and end (a 60-minute run read 663–877 MB after its warm-up with
    no trend), so one reading against another measures the swing; the medians of ten readings, and of the
    minutes' peaks, measure the trend. Returns both, in percent."""
    if not rows:
        return {"median": 0.0, "peaks": 0.0}
    width = max(1, round(len(rows) * 0.1))
    first = next((i for i, r in enumerate(rows) if r["minute"] >= minutes * 0.1 - 1e-6), 0)
    early, late = rows[first:first + width], rows[-width:]

    def grew(key: str) -> float:
        before = statistics.median(r[key] for r in early)
        return (statistics.median(r[key] for r in late) - before) / before * 100

    return {"median": grew("rss_mb"), "peaks": grew("rss_peak_mb")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="an already running server (its RSS is read by its listening PID)")
    parser.add_argument("--stackflow-port", type=int, default=0)
    parser.add_argument("--wyoming-port", type=int, default=0, help="with --url: its Wyoming port (0: none)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--dialects", help=f"comma-separated subset of the mix, to isolate one: {','.join(CALLS)}")
    parser.add_argument("--settle-bases", type=int, default=1, metavar="N",
                        help="before the clients start, wait (at most 10 min) until the server has measured N base "
                             "voices for voice matching, the first of which loads the speaker encoder and Praat for "
                             "good (~100 MB); later ones load and unload their sessions (default 1; 0: do not wait)")
    parser.add_argument("--settle", type=float, default=60.0, metavar="SECONDS",
                        help="after the clients stop, leave the server idle this long and report its RSS then (the "
                             "lowest reading of the last half, and the sessions loaded), so the report tells RSS "
                             "that grew and stayed from RSS that grew under a burst and came back (default 60; "
                             "0: none)")
    parser.add_argument("--log", type=Path,
                        help="keep the started server's log (stderr) in this file (without it the log goes with the "
                             "run's temporary folder; its error lines are printed either way)")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="print the growth figures of a run saved with --json, and exit (runs nothing)")
    args, server_flags = parser.parse_known_args()
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        figures = window_growth(saved["rows"], saved["minutes"])
        print(_growth_line(saved, figures))
        return 0
    dialects = args.dialects.split(",") if args.dialects else None
    if dialects and not set(dialects) <= set(CALLS):
        parser.error(f"--dialects: unknown {sorted(set(dialects) - set(CALLS))}; known: {', '.join(CALLS)}")

    process, log = None, None
    tmp = tempfile.TemporaryDirectory(prefix="voxgate-soak-")
    where: dict[str, object] = {"stackflow_port": args.stackflow_port, "wyoming_port": args.wyoming_port}
    if args.url is None:
        port, wyoming_port = free_port(), free_port()
        where.update(stackflow_port=port, wyoming_port=wyoming_port)
        log = args.log or Path(tmp.name) / "server.log"
        cmd = [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(Path(tmp.name) / "data"), "--stackflow-port", str(port),
               "--stackflow-audio-sink", "none", "--wyoming-port", str(wyoming_port), *server_flags]
        with log.open("w") as err:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        first_line: queue.Queue[str] = queue.Queue()
        threading.Thread(target=drain, args=(process, first_line), daemon=True).start()
        url = wait_ready(process, first_line, log)
        server = psutil.Process(process.pid)
    else:
        url = args.url
        server_port = int(url.rsplit(":", 1)[1].split("/")[0])
        pids = [c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == server_port
                and c.status == psutil.CONN_LISTEN and c.pid]
        server = psutil.Process(pids[0])
    try:
        settle_bases(url, args.settle_bases)
        tally = Tally()
        started = time.monotonic()
        until = started + args.minutes * 60
        threads = [threading.Thread(target=client_loop, args=(url, args.seed + i, until, tally, where, dialects),
                                    daemon=True) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        print(f"soak: {args.clients} clients, {args.minutes:g} min, {url}, seed {args.seed}, "
              f"mix {','.join(dialects or CALLS)}", flush=True)
        print("| minute | requests | errors | first audio p50 (s) | p95 (s) | RSS (MB) | minute's peak RSS | "
              "RSS by kind (MB) | sessions | bases measured |", flush=True)
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        rows = []
        step = min(60.0, args.minutes * 60)
        peaks: list[tuple[float, float]] = []  # (when, RSS MB) every 5 s: a sample at the minute mark alone is
        # one instant, and RSS that goes up and down with the runs in flight makes it noisy

        def watch() -> None:
            while time.monotonic() < until + 1:
                try:
                    peaks.append((time.monotonic(), server.memory_info().rss / 2**20))
                except psutil.Error:
                    return
                time.sleep(5)

        threading.Thread(target=watch, daemon=True).start()

        def sample(mark: float) -> None:
            now = time.monotonic()
            with tally.lock:
                recent = [s for when, s in tally.first_audio if now - step <= when <= now]
                row = {"minute": round(mark / 60, 2), "requests": tally.requests, "errors": len(tally.errors),
                       "p50": statistics.median(recent) if recent else 0.0, "p95": percentile(recent, 95),
                       "rss_mb": server.memory_info().rss / 2**20}
            window = [mb for when, mb in peaks if now - step < when <= now]
            row["rss_peak_mb"] = max([*window, row["rss_mb"]])
            row.update(_ready(url))
            parts = _rss_parts(server.pid)
            row["rss_parts_mb"] = parts
            rows.append(row)
            shown = " ".join(f"{k} {v:.0f}" for k, v in parts.items()) or "-"
            print(f"| {row['minute']:g} | {row['requests']} | {row['errors']} | {row['p50']:.3f} | "
                  f"{row['p95']:.3f} | {row['rss_mb']:.0f} | {row['rss_peak_mb']:.0f} | {shown} | {row['sessions']} | "
                  f"{row['bases']} |",
                  flush=True)

        mark = step
        while mark <= args.minutes * 60 + 1e-6:
            time.sleep(max(0.0, started + mark - time.monotonic()))
            sample(mark)
            mark += step
        for thread in threads:
            thread.join(timeout=150)  # requests under way at the end finish (and count)
        # Warm-up: the first 10% of the run (at least the first sample). In the 10-minute runs RSS rose over the
        # first three minutes (sessions of each voice the mix touches loading, their arenas growing on first
        # runs) and was flat after; a leak keeps growing over the rest of a long run, which this measures.
        warm = next((r for r in rows if r["minute"] >= args.minutes * 0.1 - 1e-6), rows[0]) if rows else {"rss_mb": 0,
                                                                                                "rss_peak_mb": 0}
        growth = (rows[-1]["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"] * 100 if rows else 0.0
        peak_growth = ((rows[-1]["rss_peak_mb"] - warm["rss_peak_mb"]) / warm["rss_peak_mb"] * 100 if rows
                       else 0.0)
        print(f"\nrequests {tally.requests}, errors {len(tally.errors)}, RSS after warm-up "
              f"(minute {warm.get('minute', 0):g}) {warm['rss_mb']:.0f} MB → "
              f"{rows[-1]['rss_mb']:.0f} MB ({growth:+.1f}%), the minutes' peaks {warm.get('rss_peak_mb', 0):.0f} → "
              f"{rows[-1]['rss_peak_mb'] if rows else 0:.0f} MB ({peak_growth:+.1f}%: single readings, for "
              f"information); target 0 errors {'met' if not tally.errors else 'MISSED'}")
        figures = window_growth(rows, args.minutes)
        print(_growth_line({"minutes": args.minutes, "rows": rows}, figures))
        settled = settle_rss(server, url, args.settle)
        if settled is not None and rows:
            peak = max(r["rss_peak_mb"] for r in rows)
            settled_growth = (settled["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"] * 100
            verdict = ("grew and stayed" if settled_growth >= 5 else
                       "grew under load and came back" if max(figures.values()) >= 5 else "flat")
            peak_pct = (peak - warm["rss_mb"]) / warm["rss_mb"] * 100
            print(f"after {args.settle:g} s idle: RSS {settled['rss_mb']:.0f} MB ({settled_growth:+.1f}% from the "
                  f"warm-up mark; the run's peak {peak:.0f} MB, {peak_pct:+.1f}%), "
                  f"sessions {settled['sessions']} {settled['session_ids']}; < 5% once idle "
                  f"{'met' if settled_growth < 5 else 'MISSED'} ({verdict})")
            new = sorted(set(settled["session_ids"]) - set(rows[-1]["session_ids"]))  # type: ignore[arg-type]
            if new:
                print(f"  loaded during the settle, not under load: {new} (an idle server measures base voices in "
                      "the background; run with --settle-bases N for all N to keep that out of the reading)")
        half = rows[len(rows) // 2]
        late = (rows[-1]["rss_mb"] - half["rss_mb"]) / half["rss_mb"] * 100 if rows else 0.0
        print(f"RSS over the second half: {half['rss_mb']:.0f} MB → {rows[-1]['rss_mb']:.0f} MB ({late:+.1f}%; "
              "a leak keeps growing here, arenas settling do not)")
        for error in tally.errors[:10]:
            print("  error:", error)
        if tally.errors and log is not None:
            _print_log_errors(log, keep=args.log is not None)
        if args.json:
            args.json.write_text(json.dumps({"clients": args.clients, "minutes": args.minutes, "rows": rows,
                                             "requests": tally.requests, "errors": tally.errors,
                                             "rss_growth_pct": growth, "rss_peak_growth_pct": peak_growth,
                                             "rss_growth_second_half_pct": late, "settled": settled,
                                             "rss_window_growth_pct": figures},
                                            indent=1))
    finally:
        if process is not None:
            stop(process)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

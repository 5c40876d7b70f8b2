#!/usr/bin/env python3
"""Where a request's first audio goes beyond the engine's own time: spans inside a live server.

    .venv/bin/python bench/request_spans.py [--voice hibari:heart] [--rounds 30] [--warmups 5]
                                            [--compare OTHER_CHECKOUT] [--client socket|httpx] [server flags...]

Starts the server in a subprocess with time stamps added around its request path (an ASGI wrapper, the
pool's `submit`, the engine's `synthesize`, the worker's hand-off back to the loop and the loop taking the
audio; nothing in the server's code changes) and sends one OpenAI `pcm` request at a time. Each round
also times raw hibari in this process (a 2-thread `Hibari` session: the first chunk of the server's first
segment, as bench_server's baseline), in a rotating order with the requests, so raw and server figures come
from the same minutes of a shared machine and can be paired. Spans (median and p90):

    receive → submit            HTTP body, parsing, voice and routing, text split, admission, queueing
    submit → engine call        a worker waking up and taking the job (and its session)
    engine call → first chunk   the engine (phonemes + model) on the first segment
    first chunk → posted        post-processing on the worker and the hand-off to the loop
    posted → taken              the event loop waking up and taking the piece
    taken → first body sent     levelling, timings, the dialect's response and encoder, the ASGI send
    client: sent → first byte   everything, as the client sees it (includes HTTP in and out)

plus the event loop's CPU time before the job is queued and between taking the piece and sending it (CPU
time hardly moves with the machine's load, wall time does). `--compare DIR` starts a second server from
another checkout's `src/` (e.g. a worktree of main) and alternates requests between the two, for a
before/after in one run. `--client socket` (default) times the first body byte on a bare socket
(bench/_socket_client.py); `--client httpx` uses httpx as bench_server did.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SENTENCE = "The weather today is mild and sunny, with a light breeze coming in from the west."
SPANS_ENV = "VOXGATE_SPANS_FILE"
NAMES = ["receive", "submit", "engine_call", "engine_first", "posted", "taken", "first_body"]
LABELS = ["receive → submit", "submit → engine call", "engine call → first chunk", "first chunk → posted",
          "posted → taken", "taken → first body sent"]
LOOP_MARKS = ("receive", "submit", "taken", "first_body")  # stamped on the event loop: their CPU time is kept


# ---------------------------------------------------------------- inside the server process


def _serve_with_spans(argv: list[str]) -> int:
    """Run `voxgate serve` with time stamps around the request path, one JSON line per request."""
    import voxgate.app
    from voxgate.cli import main
    from voxgate.engines import hibari, piper
    from voxgate.scheduling import backend, pool

    out = Path(os.environ[SPANS_ENV])
    records: list[dict[str, Any]] = []  # requests are sent one at a time: the last record is the current one
    lock = threading.Lock()

    def mark(name: str) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        with lock:
            if records and name not in records[-1]:
                records[-1][name] = now
                if name in LOOP_MARKS:
                    records[-1]["cpu_" + name] = cpu

    class Spans:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/v1/audio/speech":
                await self.app(scope, receive, send)
                return
            with lock:
                records.append({})
            mark("receive")

            async def timed(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.body" and message.get("body"):
                    mark("first_body")
                await send(message)

            await self.app(scope, receive, timed)
            mark("end")
            save()  # a few hundred bytes after the response ended: outside every span

    def save() -> None:
        with lock, out.open("a") as file:
            file.write(json.dumps(records[-1]) + "\n")

    create_app = voxgate.app.create_app

    def create_app_with_spans(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(Spans)
        return app

    voxgate.app.create_app = create_app_with_spans  # type: ignore[assignment]

    submit = pool.WorkerPool.submit

    def timed_submit(self: Any, job: Any) -> Any:
        if not job.background:
            mark("submit")
        return submit(self, job)

    pool.WorkerPool.submit = timed_submit  # type: ignore[method-assign]

    post = pool.Job._post

    def timed_post(self: Any, item: object) -> None:
        if hasattr(item, "samples") or hasattr(item, "shape"):  # a Piece (an array in older trees)
            mark("posted")
        post(self, item)

    pool.Job._post = timed_post  # type: ignore[method-assign]

    take = backend._Run.__anext__

    async def timed_take(self: Any) -> Any:
        item = await take(self)
        if not self._job.background:
            mark("taken")
        return item

    backend._Run.__anext__ = timed_take  # type: ignore[method-assign]

    for loaded in (hibari.HibariLoadedVoice, piper.PiperLoadedVoice):
        synthesize = loaded.synthesize

        def timed_synthesize(self: Any, text: str, params: Any, _inner: Any = synthesize) -> Any:
            mark("engine_call")
            for n, audio in enumerate(_inner(self, text, params)):
                if n == 0:
                    mark("engine_first")
                yield audio

        loaded.synthesize = timed_synthesize  # type: ignore[method-assign]
    return main(["serve", *argv])


# ---------------------------------------------------------------- the client


class RawHibari:
    """Raw hibari's first chunk of `text` on a 2-thread session (bench_server's baseline)."""

    def __init__(self, text: str) -> None:
        from hibari import Hibari

        from voxgate.engines.hibari import bundled_model

        self.text = text
        self.tts = Hibari(model=str(bundled_model()), threads=2)

    def first_ms(self) -> float:
        start = time.perf_counter()
        next(iter(self.tts.stream(self.text)))
        return (time.perf_counter() - start) * 1000


class SpannedServer:
    """A server started with the span wrapper, from `src` (None: the installed voxgate)."""

    def __init__(self, name: str, voice: str, flags: list[str], src: Path | None, tmp: Path) -> None:
        from _server import drain, wait_ready

        self.name, self.spans, self.log = name, tmp / f"spans-{name}.jsonl", tmp / f"server-{name}.log"
        env = {**os.environ, SPANS_ENV: str(self.spans), "VOXGATE_MATCH_BASES": json.dumps([voice])}
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(src / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        cmd = [sys.executable, __file__, "--serve", "--host", "127.0.0.1", "--port", "0", "--data-dir",
               str(tmp / f"data-{name}"), "--stackflow-port", "0", "--wyoming-port", "0",
               "--default-voice", voice, *flags]
        with self.log.open("w") as err:
            self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        first: queue.Queue[str] = queue.Queue()
        threading.Thread(target=drain, args=(self.process, first), daemon=True).start()
        self.url = wait_ready(self.process, first, self.log)
        self.client_ms: list[float] = []

    def stop(self) -> None:
        from _server import stop

        stop(self.process)

    def rows(self, warmups: int) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.spans.read_text().splitlines()][warmups:]


def _socket_first(url: str, body: dict[str, Any]) -> Any:
    """A function timing one request's first body byte on a kept-alive bare socket."""
    from _socket_client import Connection

    connection = Connection(url)
    raw = connection.prepare("/v1/audio/speech", body)

    def once() -> float | None:
        answer = connection.request(raw)
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {answer.body[:300]!r}")
        return None if answer.first_s is None else answer.first_s * 1000

    return once


def _httpx_first(url: str, body: dict[str, Any]) -> Any:
    import httpx

    client = httpx.Client(base_url=url, timeout=60)

    def once() -> float | None:
        start = time.perf_counter()
        got = None
        with client.stream("POST", "/v1/audio/speech", json=body) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_raw():
                if chunk and got is None:
                    got = time.perf_counter()
        return None if got is None else (got - start) * 1000

    return once


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[int(q * (len(values) - 1))]


def _row(label: str, columns: list[list[float]]) -> str:
    cells = [f"{statistics.median(v):.2f} / {_pct(v, 0.9):.2f} ms" if v else "–" for v in columns]
    return f"| {label} | " + " | ".join(cells) + " |"


def report(servers: list[SpannedServer], raw_ms: list[float], warmups: int, clause: str, command: str) -> str:
    """The markdown tables: spans per server, then first audio against raw, paired by round."""
    rows = {s.name: s.rows(warmups) for s in servers}
    head = "| span (median / p90) | " + " | ".join(s.name for s in servers) + " |"
    lines = [f"`{command}` ({len(raw_ms)} rounds; first segment {clause!r}; load average before "
             f"{os.getloadavg()[0]:.1f})", "", head, "|---|" + "---:|" * len(servers)]
    for (a, b), label in zip(itertools.pairwise(NAMES), LABELS, strict=True):
        lines.append(_row(label, [[(r[b] - r[a]) * 1000 for r in rows[s.name] if a in r and b in r]
                                  for s in servers]))
    lines.append(_row("server: receive → first body sent", [[(r["first_body"] - r["receive"]) * 1000
                                                             for r in rows[s.name] if "first_body" in r]
                                                            for s in servers]))
    for a, b, label in (("receive", "submit", "loop CPU: receive → submit"),
                        ("taken", "first_body", "loop CPU: taken → first body sent")):
        lines.append(_row(label, [[(r["cpu_" + b] - r["cpu_" + a]) * 1000 for r in rows[s.name]
                                   if "cpu_" + a in r and "cpu_" + b in r] for s in servers]))
    lines.append(_row("client: sent → first byte", [s.client_ms for s in servers]))
    lines.append(_row("raw hibari 2 threads, first chunk (this process, same rounds)", [raw_ms] * len(servers)))
    lines.append(_row("client first byte − raw, paired by round", [[c - r for c, r in zip(s.client_ms, raw_ms,
                                                                                           strict=True)]
                                                                    for s in servers]))
    if len(servers) == 2:
        a, b = servers
        diff = [y - x for x, y in zip(a.client_ms, b.client_ms, strict=True)]
        lines += ["", f"{b.name} − {a.name}, client first byte paired by round: median "
                  f"{statistics.median(diff):+.2f} ms (p10 {_pct(diff, 0.1):+.2f}, p90 {_pct(diff, 0.9):+.2f})"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voice", default="hibari:heart")
    parser.add_argument("--rounds", "--requests", type=int, default=30, help="timed rounds (a request per server)")
    parser.add_argument("--warmups", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="a second checkout whose src/ the other server runs")
    parser.add_argument("--client", choices=("socket", "httpx"), default="socket")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args, server_flags = parser.parse_known_args()
    if args.serve:
        return _serve_with_spans(server_flags)
    if not args.voice.startswith("hibari:"):
        parser.error("--voice: only hibari voices have a raw baseline here")

    from voxgate.text import normalize, split_text

    clause = split_text(normalize(SENTENCE))[0]
    raw = RawHibari(clause)
    body = {"model": "tts-1", "voice": args.voice, "input": SENTENCE, "response_format": "pcm"}
    client = _socket_first if args.client == "socket" else _httpx_first
    tmp = tempfile.TemporaryDirectory(prefix="voxgate-spans-")
    servers: list[SpannedServer] = []
    raw_ms: list[float] = []
    try:
        here = Path(__file__).resolve().parents[1]
        sources = [("this", None)] + ([(args.compare.name, args.compare.resolve())] if args.compare else [])
        if args.compare and args.compare.resolve() == here:
            parser.error("--compare: that is this checkout")
        for name, src in sources:
            servers.append(SpannedServer(name, args.voice, server_flags, src, Path(tmp.name)))
        sends = {s.name: client(s.url, body) for s in servers}
        steps: list[Any] = [("raw", None), *((s.name, s) for s in servers)]
        for n in range(args.warmups + args.rounds):
            order = steps[n % len(steps):] + steps[:n % len(steps)]  # rotate: nobody always goes first
            for name, server in order:
                if server is None:
                    ms = raw.first_ms()
                    if n >= args.warmups:
                        raw_ms.append(ms)
                else:
                    got = sends[name]()
                    if n >= args.warmups and got is not None:
                        server.client_ms.append(got)
                time.sleep(0.02)
        time.sleep(0.5)
        command = " ".join(["python", "bench/request_spans.py", *sys.argv[1:]])
        print(report(servers, raw_ms, args.warmups, clause, command))
    finally:
        for server in servers:
            server.stop()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

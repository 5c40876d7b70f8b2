#!/usr/bin/env python3
"""Where a request's first audio goes beyond the engine's own time: spans inside a live server.

    .venv/bin/python bench/request_spans.py [--voice hibari:heart] [--requests 30] [--warmups 5] [server flags...]

Measures the raw engine's first chunk of the server's first segment in this process (hibari: a 2-thread
`Hibari` session, as bench_server's baseline; Piper voices are not supported here), then starts the server
in a subprocess with time stamps added around its request path (an ASGI wrapper, the pool's `submit`, the
engine's `synthesize` and the worker's hand-off back to the loop; nothing in the server's code changes),
sends one OpenAI `pcm` request at a time and prints the median of each span:

    receive → submit            HTTP body, parsing, voice and routing, text split, admission, queueing
    submit → engine call        a worker waking up and taking the job (and its session)
    engine call → first chunk   the engine (phonemes + model) on the first segment
    first chunk → posted        post-processing (level, limiter, shift) and the hand-off to the loop
    posted → first body sent    the loop picking it up, encoding, the dialect's response writer
    client: sent → first byte   everything, as the client sees it (includes HTTP in and out)

The machine should be idle: on a shared one each span includes waiting for a core.
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


# ---------------------------------------------------------------- inside the server process


def _serve_with_spans(argv: list[str]) -> int:
    """Run `voxgate serve` with time stamps around the request path, one JSON line per request."""
    import voxgate.app
    from voxgate.cli import main
    from voxgate.engines import hibari, piper
    from voxgate.scheduling import pool

    out = Path(os.environ[SPANS_ENV])
    records: list[dict[str, Any]] = []  # requests are sent one at a time: the last record is the current one
    lock = threading.Lock()

    def mark(name: str) -> None:
        with lock:
            if records and name not in records[-1]:
                records[-1][name] = time.perf_counter()

    class Spans:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/v1/audio/speech":
                await self.app(scope, receive, send)
                return
            with lock:
                records.append({"receive": time.perf_counter()})

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
        if hasattr(item, "shape"):
            mark("posted")
        post(self, item)

    pool.Job._post = timed_post  # type: ignore[method-assign]

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


def _raw_hibari_first_ms(text: str, reps: int) -> float:
    from hibari import Hibari

    from voxgate.engines.hibari import bundled_model

    tts = Hibari(model=str(bundled_model()), threads=2)
    for _ in range(3):
        next(iter(tts.stream(text)))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        next(iter(tts.stream(text)))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voice", default="hibari:heart")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmups", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args, server_flags = parser.parse_known_args()
    if args.serve:
        return _serve_with_spans(server_flags)
    if not args.voice.startswith("hibari:"):
        parser.error("--voice: only hibari voices have a raw baseline here")

    import httpx

    from _server import drain, stop, wait_ready
    from voxgate.text import normalize, split_text

    clause = split_text(normalize(SENTENCE))[0]
    raw_ms = _raw_hibari_first_ms(clause, max(9, args.requests // 2))
    tmp = tempfile.TemporaryDirectory(prefix="voxgate-spans-")
    spans = Path(tmp.name) / "spans.jsonl"
    log = Path(tmp.name) / "server.log"
    env = {**os.environ, SPANS_ENV: str(spans), "VOXGATE_MATCH_BASES": json.dumps([args.voice])}
    cmd = [sys.executable, __file__, "--serve", "--host", "127.0.0.1", "--port", "0", "--data-dir",
           str(Path(tmp.name) / "data"), "--stackflow-port", "0", "--wyoming-port", "0",
           "--default-voice", args.voice, *server_flags]
    with log.open("w") as err:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        first: queue.Queue[str] = queue.Queue()
        threading.Thread(target=drain, args=(process, first), daemon=True).start()
        url = wait_ready(process, first, log)
        body = {"model": "tts-1", "voice": args.voice, "input": SENTENCE, "response_format": "pcm"}
        client_ms = []
        with httpx.Client(base_url=url, timeout=60) as client:
            for n in range(args.warmups + args.requests):
                start = time.perf_counter()
                got = None
                with client.stream("POST", "/v1/audio/speech", json=body) as answer:
                    answer.raise_for_status()
                    for chunk in answer.iter_bytes():
                        if chunk and got is None:
                            got = time.perf_counter()
                if n >= args.warmups and got is not None:
                    client_ms.append((got - start) * 1000)
                time.sleep(0.05)
        time.sleep(0.5)
        rows = [json.loads(line) for line in spans.read_text().splitlines()][args.warmups:]
    finally:
        stop(process)
        tmp.cleanup()
    names = ["receive", "submit", "engine_call", "engine_first", "posted", "first_body"]
    labels = ["receive → submit", "submit → engine call", "engine call → first chunk", "first chunk → posted",
              "posted → first body sent"]
    print(f"`python bench/request_spans.py --voice {args.voice}` ({len(rows)} requests; first segment {clause!r})")
    print()
    print("| span | median | p90 |\n|---|---:|---:|")
    for (a, b), label in zip(itertools.pairwise(names), labels, strict=True):
        values = sorted((r[b] - r[a]) * 1000 for r in rows if a in r and b in r)
        if values:
            print(f"| {label} | {statistics.median(values):.2f} ms | {values[int(0.9 * (len(values) - 1))]:.2f} ms |")
    inside = sorted((r["first_body"] - r["receive"]) * 1000 for r in rows if "first_body" in r)
    print(f"| server: receive → first body sent | {statistics.median(inside):.2f} ms | "
          f"{inside[int(0.9 * (len(inside) - 1))]:.2f} ms |")
    client_ms.sort()
    print(f"| client: sent → first byte | {statistics.median(client_ms):.2f} ms | "
          f"{client_ms[int(0.9 * (len(client_ms) - 1))]:.2f} ms |")
    print(f"| raw hibari, 2 threads, first chunk of the same segment (this process) | {raw_ms:.2f} ms | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

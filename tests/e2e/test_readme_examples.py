"""Every ```sh example in README.md, run as a reader would paste it, against a live server.

How the examples are run (tests/unit/test_readme.py checks the README's other promises):

- README.md's ```sh blocks are cut into commands: lines are joined until bash parses them as one complete
  command; comment lines go with the command after them. The commands of a block run in order, each in its
  own `bash -c`, all in one shared folder, in README order, against one shared server.
- `127.0.0.1:8000` becomes the test server's address and `127.0.0.1 10001` its StackFlow port (a command
  that still names port 8000 or 10001 afterwards fails the test, so nothing ever reaches a real server).
  `.venv/` is this interpreter's venv; `voxgate` on PATH is its console script; the CLI gets a data folder
  of its own (VOXGATE_DATA_DIR), so nothing lands in the user's data folder.
- The files examples read (reference.wav, speaker.wav, …, and refs/speaker.wav in the server's data folder,
  where relative `ref_audio_path`s resolve) are made first by the server's own Piper voice, each a few
  seconds long (speaker.wav is longer than the 128 KiB a shell argument can hold once in base64).
- `curl` is the real curl with `--fail-with-body`: an HTTP error answer is a non-zero exit. `nc` is the
  installed netcat, or where there is none a small stand-in for the `nc -q N host port` the README uses.
- There is no sound card: players (aplay, ffplay, mpv, paplay, …) are replaced by a program that writes
  what it is given to a file, and that file is decoded (raw PCM by the player's own format flags).
- Every command must exit 0. Every file it writes must decode as audio with sound in it, or parse as JSON;
  stdout that is JSON, JSON lines or server-sent events must parse, and the base64 audio inside
  (CosyVoice's `{"audio"}`, OpenAI's SSE deltas, StackFlow's deltas) must decode with sound in it.
- Blocks that use `$KEY` run against a second server started with `--api-key`, with KEY set.
- A block right after the line `<!-- not run by tests/e2e/test_readme_examples.py: REASON -->` is skipped
  with that reason. Only blocks that install voxgate, start a server on a fixed port or run the test
  suite or benchmark may carry the marker (checked below), so a failing example cannot hide behind it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode, pcm16, rms, seed_bases, start_server, stop_server

pytestmark = pytest.mark.timeout(300)  # a block with voice registrations on a busy 2-core machine

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"^<!-- not run by tests/e2e/test_readme_examples\.py: (.+) -->$")
# What a skipped block must do for the skip to be allowed: install, start a server on a fixed port, or run
# the test suite / benchmark (`voxgate serve --help` only prints).
SKIPPABLE = re.compile(r"pip install|voxgate serve(?! --help)|-m pytest|bench/bench_")
PLAYERS = ("aplay", "paplay", "pacat", "pw-play", "ffplay", "mpv", "play", "afplay", "cvlc")
COMMAND_TIMEOUT = 120.0  # seconds for one command (a registration on a loaded machine is the slowest)
API_KEY = "readme-example-key"
NO_WARMUP = ("--no-warmup",)  # no example is timed: the servers need not warm a voice before they are ready
MIN_SECONDS = 0.3  # every audio output is at least this long …
MIN_RMS = 0.01  # … and this loud (silence, or a decodable file of zeros, fails)
# The files examples read, made by the server itself (name → what the voice says in it).
INPUTS = {
    "reference.wav": "This is my reference recording. I read it slowly, in a quiet room, for the new voice.",
    "alice.wav": "What Alice says. She reads a few sentences, so that her voice can be measured well.",
    "someone.wav": "Someone else is speaking here, for a voice that is used once and then forgotten.",
    "speaker.wav": "What the reference says. It goes on for a while, longer than a shell argument can hold "
                   "once it is written out in base sixty four, which is about two seconds of audio.",
}
SERVER_INPUTS = {"refs/speaker.wav": INPUTS["speaker.wav"]}  # relative ref_audio_path: the data folder


@dataclass
class Block:
    """One ```sh block of the README: its commands, and why it is skipped (if it is)."""

    line: int  # 1-based line of the opening fence
    commands: list[str]
    skip: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.commands)

    @property
    def keyed(self) -> bool:
        return "$KEY" in self.text


def _complete(lines: list[str]) -> bool:
    """Does bash parse these lines as complete commands (no open quote, brace or continuation)?"""
    if lines[-1].rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n"], input="\n".join(lines) + "\n", capture_output=True,
                          text=True).returncode == 0


def _comment_only(lines: list[str]) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in lines)


def read_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        end = lines.index("```", i + 1)
        marker = SKIP.match(lines[i - 1].strip()) if i else None
        body = lines[i + 1:end]
        commands = _split(body)
        blocks.append(Block(i + 1, commands, marker.group(1) if marker else None))
        i = end + 1
    return blocks


def _split(body: list[str]) -> list[str]:
    commands: list[str] = []
    pending: list[str] = []
    for line in body:
        pending.append(line)
        if _comment_only(pending) or not _complete(pending):
            continue
        commands.append("\n".join(pending).strip("\n"))
        pending = []
    assert _comment_only(pending), f"README.md: a command never ends: {pending}"
    return commands


BLOCKS = read_blocks()


def test_every_shell_block_is_run_or_skipped_for_an_allowed_reason() -> None:
    assert len(BLOCKS) >= 10
    assert BLOCKS[0].skip, "the README's first block installs and starts a server: it must carry the marker"
    for block in BLOCKS:
        assert block.commands, f"README.md line {block.line}: an empty ```sh block"
        if block.skip:
            assert SKIPPABLE.search(block.text), (
                f"README.md line {block.line} is marked 'not run' ({block.skip}) but neither installs, starts a "
                f"server on a fixed port nor runs the suite: run it instead")
        else:
            assert not SKIPPABLE.search(block.text), (
                f"README.md line {block.line} installs or starts a server: give it its own block with the marker")
    # Every ```sh fence was seen (a fence written differently would escape the test silently).
    fences = [n for n, line in enumerate(README.read_text().splitlines(), 1) if line.startswith("```sh")]
    assert fences == [b.line for b in BLOCKS]


def test_commands_are_cut_where_bash_says_they_end() -> None:
    body = ["# a comment", "curl -s x \\", "  -d '{\"a\":", "  1}' -o a.json", "", "{ echo 1",
            "  echo 2; } | cat   # grouped", "echo 'done'"]
    assert _split(body) == ["# a comment\ncurl -s x \\\n  -d '{\"a\":\n  1}' -o a.json",
                            "{ echo 1\n  echo 2; } | cat   # grouped", "echo 'done'"]


# ---- the live run --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """The folder the examples run in, with the tools they meet on PATH."""

    cwd: Path
    bin: Path
    captures: Path
    env: dict[str, str]
    server: Server
    stackflow_port: int
    ran: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


PLAYER = """#!{python}
# Stands in for an audio player (no sound card here): what it would play goes to a numbered file.
import os, sys
from pathlib import Path
captures = Path(os.environ["README_CAPTURES"])
n = len(list(captures.glob("*.args")))
args = sys.argv
files = [a for a in args[1:] if not a.startswith("-") and Path(a).is_file()]
data = Path(files[-1]).read_bytes() if files else sys.stdin.buffer.read()
(captures / f"{{n}}.audio").write_bytes(data)
(captures / f"{{n}}.args").write_text("\\n".join([Path(args[0]).name, *args[1:]]))
"""


# Only where no netcat is installed (Debian: netcat-openbsd): `nc [-q SECONDS] HOST PORT` as the StackFlow
# example uses it: stdin to the socket, the socket to stdout, quit SECONDS after stdin ends.
NETCAT = """#!{python}
import socket, sys, threading, time
args = sys.argv[1:]
quit_after = float(args[args.index("-q") + 1]) if "-q" in args else 0.0
host, port = [a for i, a in enumerate(args) if a != "-q" and (i == 0 or args[i - 1] != "-q")][-2:]
conn = socket.create_connection((host, int(port)))
def copy_out():
    while data := conn.recv(65536):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
reader = threading.Thread(target=copy_out, daemon=True)
reader.start()
for line in sys.stdin.buffer:
    conn.sendall(line)
time.sleep(quit_after)
conn.close()
"""


def _speak_wav(server: Server, text: str, path: Path) -> None:
    """A WAV of real speech (Piper's joe) made by the server."""
    body = {"model": "tts-1", "voice": "en_US-joe-medium", "input": text, "response_format": "pcm"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=COMMAND_TIMEOUT)
    assert response.status_code == 200, response.text
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(response.content[: len(response.content) // 2 * 2])


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    port = _free_port()
    server = start_server(tmp_path_factory.mktemp("readme-server"), "--stackflow-port", str(port),
                          "--stackflow-audio-sink", "none", *NO_WARMUP)
    try:
        cwd = tmp_path_factory.mktemp("readme-cwd")
        tools = tmp_path_factory.mktemp("readme-bin")
        captures = tmp_path_factory.mktemp("readme-captures")
        venv = Path(sys.executable).parent.parent
        assert (venv / "bin" / "voxgate").exists(), "the voxgate console script is not installed in this venv"
        (cwd / ".venv").symlink_to(venv)
        real_curl = shutil.which("curl")
        assert real_curl, "curl is needed to run the README's examples"
        _script(tools / "curl", f'#!/bin/sh\nexec {real_curl} --fail-with-body "$@"\n')
        (tools / "voxgate").symlink_to(venv / "bin" / "voxgate")
        for player in PLAYERS:
            _script(tools / player, PLAYER.format(python=sys.executable))
        if not shutil.which("nc"):
            _script(tools / "nc", NETCAT.format(python=sys.executable))
        for name, text in INPUTS.items():
            _speak_wav(server, text, cwd / name)
        for name, text in SERVER_INPUTS.items():
            _speak_wav(server, text, server.data_dir / name)
        # The CLI's data folder starts with the base-voice measurements the session's servers made, so
        # `voxgate voices add` measures only the base voices no server or earlier command measured (joe by the
        # servers, hibari:heart by tests/e2e/test_cli.py's `voices add`).
        seed_bases(cwd.parent / "readme-cli-data")
        env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "README_CAPTURES": str(captures),
               "VOXGATE_DATA_DIR": str(cwd.parent / "readme-cli-data"), "PYTHONUNBUFFERED": "1"}
        env.pop("VOXGATE_API_KEY", None)
        yield Stage(cwd, tools, captures, env, server, port)
    finally:
        stop_server(server)


def localize(command: str, url: str, stackflow_port: int) -> str:
    """The command as it would be typed against this test's servers."""
    host = url.removeprefix("http://")
    text = command.replace("127.0.0.1:8000", host).replace("127.0.0.1 10001", f"127.0.0.1 {stackflow_port}")
    assert ":8000" not in text and "10001" not in text, f"a port the test cannot redirect: {command}"
    return text


def _files(folder: Path) -> dict[Path, tuple[int, int]]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and ".venv" not in path.relative_to(folder).parts:
            info = path.stat()
            found[path] = (info.st_mtime_ns, info.st_size)
    return found


def _wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV, including streamed WAVs whose header sizes are 0 or a placeholder."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:16]
    at, rate, bits = 12, 0, 0
    while at + 8 <= len(data):
        tag, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        if tag == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[at + 8:at + 24])
            assert channels == 1 and bits == 16, (channels, bits)
        if tag == b"data":
            body = data[at + 8:]
            if 0 < size < len(body):
                body = body[:size]
            return pcm16(body), rate
        at += 8 + size + size % 2
    raise AssertionError("a WAV without a data chunk")


def check_audio(data: bytes, what: str, kind: str, rate: int = 16000) -> float:
    """Decode `data` as `kind` (an extension; raw PCM at `rate`; "auto" to sniff); assert sound; return seconds."""
    if kind == "auto":  # mp3 begins with an ID3 tag or a frame sync, raw PCM with anything
        kind = "mp3" if data[:3] == b"ID3" or data[:2] in (b"\xff\xf3", b"\xff\xfb", b"\xff\xf2") else "pcm"
    if data[:4] == b"RIFF":
        samples, rate = _wav_samples(data)
    elif kind in ("pcm", "raw"):
        samples = pcm16(data)
    else:
        samples, rate = decode(data, {"opus": "ogg", "mp3": "mp3", "aac": "aac", "flac": "flac"}.get(kind))
    seconds = len(samples) / rate
    assert seconds >= MIN_SECONDS, f"{what}: only {seconds:.2f} s of audio"
    assert rms(samples) >= MIN_RMS, f"{what}: silent (rms {rms(samples):.4f})"
    return seconds


AUDIO = {"mp3", "wav", "opus", "ogg", "aac", "flac", "pcm", "raw"}


def check_file(path: Path) -> str:
    kind = path.suffix.lstrip(".").lower()
    data = path.read_bytes()
    if kind in AUDIO:
        return f"{path.name}: {check_audio(data, path.name, kind, 24000):.1f} s of audio"
    if kind == "json":
        json.loads(data)
        return f"{path.name}: JSON"
    raise AssertionError(f"{path.name}: an output the test does not know how to check")


def _json_values(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _json_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_values(item)


def check_stdout(text: str, what: str) -> str:
    """JSON, JSON lines and server-sent events must parse; the base64 audio they carry must have sound."""
    stripped = text.strip()
    events = [line[5:].strip() for line in stripped.splitlines() if line.startswith("data:")]
    if events:
        payloads = [json.loads(e) for e in events]
        deltas = b"".join(base64.b64decode(p["audio"]) for p in payloads if p.get("type") == "speech.audio.delta")
        assert payloads[-1]["type"] == "speech.audio.done", payloads[-1]
        check_audio(deltas, f"{what}: SSE audio", "auto", 24000)
        return f"{len(payloads)} events"
    if not stripped or stripped[0] not in "{[":
        return f"{len(stripped)} characters of text"
    try:
        documents = [json.loads(stripped)]
    except json.JSONDecodeError:
        documents = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    audio = [v for doc in documents for k, v in _json_values(doc) if k == "audio" and isinstance(v, str)]
    for item in audio:
        check_audio(base64.b64decode(item), f"{what}: base64 audio", "auto", 24000)
    deltas = b"".join(base64.b64decode(doc["data"]["delta"]) for doc in documents if isinstance(doc, dict)
                      and "base64" in str(doc.get("object")) and isinstance(doc.get("data"), dict))
    if deltas:
        check_audio(deltas, f"{what}: streamed base64 PCM", "pcm", 16000)
    return f"{len(documents)} JSON document(s)"


def check_captures(stage: Stage) -> list[str]:
    """What the stand-in players were given: decode it by their own format flags."""
    seen = []
    for args_file in sorted(stage.captures.glob("*.args")):
        args = args_file.read_text().split("\n")
        data = args_file.with_suffix(".audio").read_bytes()
        rate = int(args[args.index("-r") + 1]) if "-r" in args else 8000
        if data[:4] != b"RIFF":
            assert "-f" in args and args[args.index("-f") + 1] == "S16_LE", f"{args}: raw audio of unknown format"
        seconds = check_audio(data, f"piped into {args[0]}", "pcm", rate)
        seen.append(f"{args[0]} got {seconds:.1f} s")
        args_file.unlink()
        args_file.with_suffix(".audio").unlink()
    return seen


def run_command(stage: Stage, command: str, url: str, env: dict[str, str]) -> str:
    """Run one command as pasted; check its exit status, what it wrote and what it printed."""
    text = localize(command, url, stage.stackflow_port)
    before = _files(stage.cwd)
    # Its own session, so a command that outlives its time is stopped with every process it started.
    process = subprocess.Popen(["bash", "-c", text], cwd=stage.cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"still running after {COMMAND_TIMEOUT:.0f} s:\n{command}")
    out = stdout.decode("utf-8", "replace")
    err = stderr.decode("utf-8", "replace")
    after = _files(stage.cwd)
    written = [p for p, info in sorted(after.items()) if before.get(p) != info]
    if process.returncode != 0:
        bodies = "".join(f"\n--- {p.name}\n{p.read_bytes()[:1000]!r}" for p in written)
        pytest.fail(f"exit {process.returncode}:\n{command}\n--- stdout\n{out[:2000]}\n--- stderr\n{err[:2000]}"
                    f"{bodies}")
    if "KEY" in env:
        assert "Unauthorized" not in out + err, f"the key was refused:\n{command}\n{out}{err}"
    notes = [check_file(p) for p in written]
    played = check_captures(stage)
    piped = re.findall(r"\|\s*(" + "|".join(PLAYERS) + r")\b", text)
    assert len(played) == len(piped), f"{command}: {len(piped)} players in the command, {len(played)} ran"
    notes += played
    notes.append(check_stdout(out, command.splitlines()[-1]))
    return "; ".join(notes)


@pytest.mark.parametrize("block", [
    pytest.param(b, id=f"line{b.line}",
                 marks=[pytest.mark.skip(reason=f"README.md line {b.line}: {b.skip}")] if b.skip else [])
    for b in BLOCKS])
def test_readme_block(block: Block, stage: Stage, tmp_path: Path) -> None:
    server, env = stage.server, stage.env
    keyed: Server | None = None
    if block.keyed:
        keyed = start_server(tmp_path, "--api-key", API_KEY, *NO_WARMUP)
        server, env = keyed, {**env, "KEY": API_KEY}
    try:
        for command in block.commands:
            note = run_command(stage, command, server.url, env)
            stage.ran.append(f"line {block.line}: {command.splitlines()[-1][:60]} → {note}")
    finally:
        if keyed:
            stop_server(keyed)
    if keyed:
        assert API_KEY not in keyed.log.read_text()

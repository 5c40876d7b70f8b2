"""First contact: busy ports, bad flags and missing files each get one clear line and exit 2; start-up says
where everything is; the data folder is the user's, wherever a command runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
import pytest

from tests.conftest import Server, decode, rms
from tests.e2e.many import run_many
from voxgate.settings import Settings

VOICE = "en_US-joe-medium"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxgate", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (and that it was refused, not crashed)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("voxgate: ")
    return lines[0]


@contextmanager
def occupied(port: int = 0) -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        yield other.getsockname()[1]


def test_a_busy_main_port_is_one_line_before_anything_loads(tmp_path: Path) -> None:
    with occupied() as port:
        started = time.monotonic()
        result = run("serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path),
                     "--stackflow-port", "0", "--wyoming-port", "0")
        took = time.monotonic() - started
    line = one_line_error(result)
    assert line == f"voxgate: port {port} (HTTP, --port) is already in use: pick another with --port " \
                   "(0 picks a free one)"
    assert result.stdout == ""  # never "listening"
    assert took < 30  # refused before any voice loads


def test_a_busy_stackflow_port_is_one_line_and_nothing_listens(tmp_path: Path) -> None:
    with occupied() as port:
        result = run("serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path),
                     "--stackflow-port", str(port), "--wyoming-port", "0")
    line = one_line_error(result)
    assert f"port {port} (StackFlow TCP, --stackflow-port) is already in use" in line
    assert "--stackflow-port (0 turns StackFlow off)" in line
    assert "listening" not in result.stdout


def test_a_busy_compat_port_is_one_line(tmp_path: Path) -> None:
    try:
        holder = occupied(12244)
        holder.__enter__()
    except OSError:
        pytest.skip("port 12244 is taken by another program")
    try:
        result = run("serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path),
                     "--stackflow-port", "0", "--wyoming-port", "0", "--compat-ports")
    finally:
        holder.__exit__(None, None, None)
    line = one_line_error(result)
    assert line == "voxgate: port 12244 (CosyVoice HTTP, --compat-ports) is already in use: stop what uses it, " \
                   "or start without --compat-ports"


def test_start_up_prints_where_everything_is(server: Server) -> None:
    deadline = time.monotonic() + 10
    while len(server.output) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    text = "".join(server.output)
    assert f"  web page     {server.url}/\n" in text
    assert f"  API docs     {server.url}/docs\n" in text
    assert f"  data folder  {server.data_dir.resolve()} (--data-dir or VOXGATE_DATA_DIR)\n" in text
    voices = next(line for line in server.output if line.startswith("  voices "))
    counts = dict(part.split() for part in voices.split(maxsplit=1)[1].split(";")[0].split(", "))
    assert set(counts) == {"piper", "hibari", "kokoro", "pico", "espeak"} and int(counts["espeak"]) > 100
    port = server.url.rsplit(":", 1)[1]
    assert f"  port {port:<7} HTTP and WebSocket: every API (--port)\n" in text
    assert "StackFlow" not in text  # --stackflow-port 0: no TCP port, none listed


BAD_SETTINGS = [
    (("serve", "--port", "70000"), "voxgate: --port: must be ≤ 65535 (got 70000)"),
    (("serve", "--workers", "0"), "voxgate: --workers: must be ≥ 1 (got 0)"),
    (("serve", "--stackflow-audio-sink", "speaker"),
     "voxgate: --stackflow-audio-sink: must be one of auto, device, file, none (got 'speaker')"),
    (("serve", "--openai-voice-aliases", "{alloy: joe}"),
     "voxgate: --openai-voice-aliases: not valid JSON (Expecting property name enclosed in double quotes at "
     "character 1); give an object such as '{\"alloy\": \"en_US-joe-medium\"}' (see voxgate serve --help)"),
    (("say", "hi", "-o", "x.wav", "--openai-voice-aliases", "[1]"),
     "voxgate: --openai-voice-aliases: must be a JSON object such as '{\"alloy\": \"en_US-joe-medium\"}' "
     "(see voxgate say --help)"),
]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> list[subprocess.CompletedProcess[str]]:
    """Every BAD_SETTINGS command, run in one process (tests/e2e/many.py): each is refused before it loads."""
    tmp = tmp_path_factory.mktemp("bad-settings")
    return run_many(tmp, *([*args, "--data-dir", str(tmp)] for args, _ in BAD_SETTINGS))


@pytest.mark.parametrize(("index", "expected"), [(i, expected) for i, (_, expected) in enumerate(BAD_SETTINGS)],
                         ids=[" ".join(args[:2]) for args, _ in BAD_SETTINGS])
def test_bad_settings_are_one_line_naming_the_flag(refused: list[subprocess.CompletedProcess[str]], index: int,
                                                   expected: str) -> None:
    assert one_line_error(refused[index]) == expected


def test_bad_environment_values_name_the_variable_and_the_flag(tmp_path: Path) -> None:
    line = one_line_error(run("voices", "--data-dir", str(tmp_path), env={"VOXGATE_PORT": "99999"}))
    assert line == "voxgate: VOXGATE_PORT (--port): must be ≤ 65535 (got '99999')"
    line = one_line_error(run("voices", "--data-dir", str(tmp_path), env={"VOXGATE_OPENAI_VOICE_ALIASES": "{x"}))
    assert line == "voxgate: VOXGATE_OPENAI_VOICE_ALIASES (--openai-voice-aliases): not valid JSON " \
                   "(a JSON list or object)"


def test_missing_and_unwritable_files_are_one_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    commands = [["voices", "add", "Someone", str(tmp_path / "nope.wav"), *data],
                ["voices", "import", str(tmp_path / "nope.zip"), *data],
                ["say", "Hello.", "-o", str(tmp_path / "no" / "x.wav"), *data],
                ["voices", "--data-dir", str(blocker / "data")]]
    locked = tmp_path / "locked"
    if os.geteuid() != 0:  # root may write anywhere
        locked.mkdir(mode=0o500)
        commands.append(["voices", "--data-dir", str(locked)])
    results = run_many(tmp_path, *commands)  # one process (tests/e2e/many.py): each is refused before it loads
    assert one_line_error(results[0]) == f"voxgate: voices add: no such file: {tmp_path / 'nope.wav'}"
    assert one_line_error(results[1]) == f"voxgate: voices import: no such archive: {tmp_path / 'nope.zip'}"
    assert one_line_error(results[2]) == f"voxgate: -o: folder {tmp_path / 'no'} does not exist"
    assert one_line_error(results[3]) == \
        f"voxgate: --data-dir: {blocker / 'data'} is not a folder (a file is in the way)"
    if os.geteuid() != 0:
        assert one_line_error(results[4]).startswith(
            f"voxgate: --data-dir: cannot write to {locked}: Permission denied")


def test_say_and_voices_help_show_only_their_own_flags() -> None:
    for command, own in (("say", ("--output", "--voice", "--format")), ("voices", ("list", "add", "export"))):
        result = run(command, "--help")
        assert result.returncode == 0
        for flag in (*own, "--data-dir", "--voices-dir", "--engines", "--default-voice", "--log-level"):
            assert flag in result.stdout, (command, flag)
        for server_only in ("--port", "--workers", "--api-key", "--cors-origins", "--stackflow-port", "--warmup"):
            assert server_only not in result.stdout, (command, server_only)


def test_say_prints_no_server_log_lines(tmp_path: Path) -> None:
    out = tmp_path / "quiet.wav"
    result = run("say", "Quietly.", "-o", str(out), "--voice", VOICE, "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0 and result.stderr == "" and result.stdout == ""
    samples, rate = decode(out.read_bytes())
    assert rate == 22050 and rms(samples) > 0.02
    loud = run("say", "Loudly.", "-o", str(out), "--voice", VOICE, "--data-dir", str(tmp_path / "d"),
               "--log-level", "debug")
    assert loud.returncode == 0 and " DEBUG " in loud.stderr


def test_the_data_folder_is_the_users_wherever_a_command_runs(tmp_path: Path) -> None:
    xdg, elsewhere = tmp_path / "xdg", tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean = {k: v for k, v in os.environ.items() if k != "VOXGATE_DATA_DIR"}
    result = subprocess.run([sys.executable, "-m", "voxgate", "voices"], capture_output=True, text=True,
                            timeout=120, cwd=elsewhere, env={**clean, "XDG_DATA_HOME": str(xdg)})
    assert result.returncode == 0, result.stderr
    assert (xdg / "voxgate" / "voices").is_dir() and (xdg / "voxgate" / "registry.sqlite").exists()
    assert not (elsewhere / "data").exists()  # not ./data relative to where the command ran


def test_the_default_data_folder_is_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOXGATE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert Settings().data_dir == Path(platformdirs.user_data_dir("voxgate", appauthor=False))
    assert Settings().data_dir == tmp_path / "voxgate"
    assert Settings().voices_path == tmp_path / "voxgate" / "voices"

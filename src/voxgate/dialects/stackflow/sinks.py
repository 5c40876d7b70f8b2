"""Where `sys.*` response formats play: the original plays them on the device speaker; voxgate on a sink.

A sink opens one playback per utterance and takes int16 mono PCM as it is synthesized. Sinks:
`FileSink` writes each utterance as a WAV file in a folder of the data directory (tests, recording);
`CommandSink` pipes raw PCM into `aplay` (ALSA) when the machine has a sound card; `NullSink` drops it.
`make_sink("auto")` picks the device when there is one and otherwise says so once in the log.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import shutil
import time
import wave
from pathlib import Path
from typing import Protocol

from voxgate.safefs import atomic_file

_LOG = logging.getLogger(__name__)
SINK_KINDS = ("auto", "device", "file", "none")


class Playback(Protocol):
    """One utterance being played."""

    async def write(self, pcm: bytes) -> None:
        """Play int16 little-endian mono samples."""

    async def close(self) -> None:
        """The utterance is complete (or abandoned)."""


class AudioSink(Protocol):
    """The server's audio output."""

    name: str

    def open(self, work_id: str, rate: int) -> Playback:
        """Start playing one utterance at `rate` Hertz."""


class _NullPlayback:
    async def write(self, pcm: bytes) -> None:
        return None

    async def close(self) -> None:
        return None


class NullSink:
    """No audio output: the audio is dropped."""

    name = "none"

    def open(self, work_id: str, rate: int) -> Playback:
        return _NullPlayback()


class _FilePlayback:
    def __init__(self, path: Path, rate: int, root: Path) -> None:
        # A random O_EXCL temporary in the folder, renamed to `path` in close(): complete files only (a reader
        # never sees a half-written WAV), and nothing planted at a predictable name is written through.
        self._target = atomic_file(path, root, sync=False)
        file = wave.open(self._target.__enter__(), "wb")  # closed in close()
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        self._file: wave.Wave_write | None = file

    async def write(self, pcm: bytes) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.writeframes, pcm)

    async def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        await asyncio.to_thread(file.close)
        await asyncio.to_thread(self._target.__exit__, None, None, None)


class FileSink:
    """Each utterance becomes `<folder>/<work_id>-<n>.wav` (folder inside the data directory); only the
    newest `keep` files stay, so a long-running unit cannot fill the disk."""

    name = "file"

    def __init__(self, folder: Path, keep: int = 200) -> None:
        self.folder = folder
        self.keep = max(1, keep)
        self._count = itertools.count(1)
        # Oldest first: what an earlier run left (scanned once, at start), then what this sink writes.
        old = sorted(folder.glob("*.wav"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []
        self._files: collections.deque[Path] = collections.deque(old)

    def open(self, work_id: str, rate: int) -> Playback:
        self.folder.mkdir(parents=True, exist_ok=True)
        while len(self._files) >= self.keep:  # room for the one being opened
            self._files.popleft().unlink(missing_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.folder / f"{work_id}-{stamp}-{next(self._count):04d}.wav"
        self._files.append(path)
        return _FilePlayback(path, rate, self.folder)


class _CommandPlayback:
    def __init__(self, command: list[str]) -> None:
        self._command = command
        self._process: asyncio.subprocess.Process | None = None
        self._failed = False

    async def write(self, pcm: bytes) -> None:
        if self._failed:
            return
        try:
            if self._process is None:
                self._process = await asyncio.create_subprocess_exec(
                    *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL)
            assert self._process.stdin is not None
            self._process.stdin.write(pcm)
            await self._process.stdin.drain()
        except (OSError, ConnectionError) as exc:
            self._failed = True
            _LOG.warning("stackflow: audio playback failed (%s); the rest of this utterance is not played", exc)

    async def close(self) -> None:
        if self._process is None or self._process.stdin is None:
            return
        try:
            self._process.stdin.close()
            await self._process.wait()
        except (OSError, ConnectionError):
            pass


class CommandSink:
    """Plays through ALSA's `aplay`, one process per utterance."""

    name = "device"

    def __init__(self, program: str) -> None:
        self.program = program

    def open(self, work_id: str, rate: int) -> Playback:
        return _CommandPlayback([self.program, "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", str(rate)])


def _sound_card() -> bool:
    cards = Path("/proc/asound/cards")
    try:
        return cards.exists() and "no soundcards" not in cards.read_text() and bool(cards.read_text().strip())
    except OSError:
        return False


def make_sink(kind: str, folder: Path) -> AudioSink:
    """The sink a setting names: auto (device if present, else none), device, file (WAVs in `folder`), none."""
    if kind == "file":
        _LOG.info("stackflow: sys.* audio is written as WAV files to %s", folder)
        return FileSink(folder)
    if kind == "none":
        _LOG.info("stackflow: sys.* audio output is off (--stackflow-audio-sink none)")
        return NullSink()
    program = shutil.which("aplay")
    if program is not None and _sound_card():
        _LOG.info("stackflow: sys.* audio plays on this machine's sound card through %s", program)
        return CommandSink(program)
    _LOG.warning("stackflow: this machine has no audio output device (%s); sys.* response formats are not "
                 "played (use --stackflow-audio-sink file to record them)",
                 "no sound card" if program else "no aplay")
    return NullSink()

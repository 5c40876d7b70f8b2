"""Export registered voices to one zip file and import them back (CosyVoice's /cache/save and /cache/load)."""

from __future__ import annotations

import io
import json
import re
import wave
import zipfile
from collections.abc import Iterable
from pathlib import Path

from voxgate.errors import InvalidInput
from voxgate.safefs import atomic_file
from voxgate.voices.store import StoredVoice, VoiceStore, audio_sha256, make_id, read_wav

FORMAT = "voxgate-voices"
VERSION = 1
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a 30 s reference at 48 kHz is ~3 MB; anything near this is not ours
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MEMBER = re.compile(r"references/[0-9a-f]{64}\.wav")


class BadArchive(InvalidInput):
    """The file is not a voxgate voice archive, or it is damaged."""


def export_voices(store: VoiceStore, dest: Path, ids: Iterable[str] | None = None,
                  root: Path | None = None) -> list[str]:
    """Write the chosen voices (default: all) and their audio into a zip at `dest` (whose real folder must
    be inside `root`, if given); returns their ids."""
    wanted = set(ids) if ids is not None else None
    voices = [v for v in store.list() if wanted is None or v.id in wanted]
    missing = (wanted or set()) - {v.id for v in voices}
    if missing:
        raise InvalidInput(f"no registered voice named {', '.join(sorted(missing))}")
    # A random O_EXCL temporary beside `dest`, renamed over it: a symlink planted at `dest` or at any
    # predictable temporary name is replaced or never met, not written through.
    with atomic_file(dest, root) as out, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        manifest = {"format": FORMAT, "version": VERSION, "voices": [v.to_dict() for v in voices]}
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
        for sha in sorted({v.audio_sha256 for v in voices}):
            archive.write(store.audio_path(sha), f"references/{sha}.wav")
    return [v.id for v in voices]


def _read(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise BadArchive(f"archive lacks {name}") from None
    if info.file_size > limit:
        raise BadArchive(f"{name} is too large ({info.file_size} bytes)")
    return archive.read(info)


def _manifest(archive: zipfile.ZipFile) -> list[dict[str, object]]:
    try:
        manifest = json.loads(_read(archive, "manifest.json", MAX_MANIFEST_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadArchive("manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadArchive("not a voxgate voice archive")
    if manifest.get("version") != VERSION:
        raise BadArchive(f"archive version {manifest.get('version')} is not supported (expected {VERSION})")
    voices = manifest.get("voices")
    if not isinstance(voices, list) or not all(isinstance(v, dict) for v in voices):
        raise BadArchive("manifest.json has no voice list")
    return voices


def _voice(entry: dict[str, object]) -> StoredVoice:
    try:
        voice = StoredVoice(**entry)  # type: ignore[arg-type]
    except TypeError as exc:
        raise BadArchive(f"a voice entry is malformed: {exc}") from None
    if make_id(voice.id) != voice.id:
        raise BadArchive(f"voice id {voice.id!r} is not valid")
    return voice


def import_voices(store: VoiceStore, src: Path, *, replace: bool = False) -> list[tuple[StoredVoice, bool]]:
    """Add every voice of an archive; returns (voice, already existed) pairs. Nothing is added if any part is bad."""
    try:
        archive = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadArchive(f"cannot open voice archive: {exc}") from None
    with archive:
        loaded = []
        for entry in _manifest(archive):
            voice = _voice(entry)
            member = f"references/{voice.audio_sha256}.wav"
            if not _MEMBER.fullmatch(member):
                raise BadArchive(f"voice {voice.id!r} has a malformed audio hash")
            data = _read(archive, member, MAX_MEMBER_BYTES)
            try:
                samples, rate = read_wav(io.BytesIO(data))
            except (wave.Error, EOFError) as exc:
                raise BadArchive(f"audio of {voice.id!r} is unreadable: {exc}") from None
            if audio_sha256(samples, rate) != voice.audio_sha256:
                raise BadArchive(f"audio of {voice.id!r} does not match its hash")
            loaded.append((voice, samples))
    return [store.add(voice, samples, replace=replace) for voice, samples in loaded]

"""Flash-TTS roles as voices of the shared registry: lookup, temporary clone voices, role-folder import."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from voxgate.core.context import Context
from voxgate.dialects.flash.clones import TEMPORARY_PREFIX
from voxgate.errors import InvalidInput, VoiceNotFound, VoxgateError

_LOG = logging.getLogger(__name__)
ORIGIN = "flash"  # meta origin of roles added through /add_speaker
ROLE_DIR_ORIGIN = "flash-role-dir"  # meta origin of roles imported from --role-dir
LISTED_ROLES = 50  # roles named in an error message before "…"
BUILTIN_ROLES = ("female", "male")  # Spark-TTS's fixed voices: always there, listed first, never removed


class UnknownRole(InvalidInput):
    """A role name that is no voice of the registry (a 400 in Flash-TTS terms, naming the roles)."""


def role_id(name: str) -> str:
    """The voice id a role name is stored under (mirrors the store's make_id: NFC, inner spaces → '-')."""
    return "-".join(unicodedata.normalize("NFC", name).strip().split())


def builtin_role(ctx: Context, name: str | None) -> str | None:
    """The built-in role `name` is (female/male, any case), or None."""
    folded = (name or "").strip().lower()
    return folded if folded in BUILTIN_ROLES else None


def builtin_voice(ctx: Context, role: str, builtin: Mapping[str, str]) -> str:
    """The installed voice a built-in role speaks with (`builtin`: the setting flash_builtin_roles), or
    VoiceNotFound naming the setting."""
    target = builtin.get(role)
    try:
        return ctx.voices.resolve(str(target)).id if target else ctx.voices.resolve(None).id
    except VoiceNotFound:
        raise VoiceNotFound(f'built-in role "{role}" is mapped to "{target}", which is not installed '
                            f"(setting flash_builtin_roles)", param="name") from None


def roles(ctx: Context) -> list[str]:
    """Every role a Flash-TTS client may name: the built-in female and male first (as on a fresh Flash-TTS
    server), then installed and registered voices, without temporary clones."""
    others = [v.id for v in ctx.voices.list()
              if not v.id.startswith(TEMPORARY_PREFIX) and v.id.lower() not in BUILTIN_ROLES]
    return [*BUILTIN_ROLES, *others]


def role_list(ctx: Context) -> str:
    """The roles, for an error message."""
    names = roles(ctx)
    shown = ", ".join(names[:LISTED_ROLES])
    return shown + (", …" if len(names) > LISTED_ROLES else "")


def resolve_role(ctx: Context, name: str | None, builtin: Mapping[str, str]) -> str:
    """The voice id of a role, or UnknownRole naming it and listing the roles (`builtin`: the built-in roles'
    voices)."""
    if name is None or not name.strip():
        raise UnknownRole(f'"name" is required; existing roles: {role_list(ctx)}', param="name")
    role = builtin_role(ctx, name)
    if role is not None:
        return builtin_voice(ctx, role, builtin)
    if not name.startswith(TEMPORARY_PREFIX):
        for candidate in (name, role_id(name)):
            try:
                return ctx.voices.resolve(candidate).id
            except VoiceNotFound:
                continue
    raise UnknownRole(f'"{name}" is not in the list of existing roles: {role_list(ctx)}', param="name")


def _role_files(folder: Path) -> tuple[Path | None, str | None]:
    """The role's audio (first .wav by name) and its transcript (reference_text.txt), read blocking."""
    wavs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    text_file = folder / "reference_text.txt"
    transcript = text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else None
    return (wavs[0] if wavs else None), (transcript or None)


def _role_folders(root: Path) -> list[Path] | None:
    """The role folders under `root` by name, or None if it is no folder (blocking)."""
    if not root.is_dir():
        return None
    return sorted(p for p in root.iterdir() if p.is_dir())


async def import_role_dir(ctx: Context, root: Path) -> list[str]:
    """Register every `<name>/<*.wav>` (+ reference_text.txt) role; unchanged roles are left alone.

    A role whose audio or transcript changed on disk replaces the one imported before; a voice of the same
    name that came from elsewhere is kept (and the role skipped), so nothing stored is overwritten silently.
    Returns the ids registered or replaced now.
    """
    folders = await asyncio.to_thread(_role_folders, root)
    if folders is None:
        _LOG.warning("role folder %s does not exist; no roles imported", root)
        return []
    done = []
    for folder in folders:
        try:
            if await _import_role(ctx, folder):
                done.append(role_id(folder.name))
        except (VoxgateError, OSError, UnicodeDecodeError) as exc:
            _LOG.warning("role %s not imported: %s", folder.name, getattr(exc, "message", exc))
    _LOG.info("role folder %s: %d role(s) imported or updated", root, len(done))
    return done


async def _import_role(ctx: Context, folder: Path) -> bool:
    if builtin_role(ctx, folder.name) is not None:
        _LOG.warning("role %s has the name of a built-in role; skipped (the setting flash_builtin_roles chooses "
                     "its voice)", folder.name)
        return False
    wav, transcript = await asyncio.to_thread(_role_files, folder)
    if wav is None:
        _LOG.warning("role %s has no .wav file; skipped", folder.name)
        return False
    reference = await ctx.voicebank.load_reference(await asyncio.to_thread(wav.read_bytes))
    voice_id = role_id(folder.name)
    if ctx.voices.is_installed(voice_id):
        _LOG.warning("role %s has the name of an installed voice; skipped", folder.name)
        return False
    stored = ctx.voicebank.store.get(voice_id)
    if stored is not None:
        if stored.meta.get("origin") != ROLE_DIR_ORIGIN:
            _LOG.warning("role %s: a voice %r from %s already exists and is kept", folder.name, voice_id,
                         stored.meta.get("origin", "elsewhere"))
            return False
        same_audio = stored.audio_sha256 == await asyncio.to_thread(reference.sha256)
        if same_audio and stored.transcript == transcript:
            return False
    await ctx.voicebank.register(folder.name, reference, transcript=transcript,
                                 meta={"origin": ROLE_DIR_ORIGIN, "file": wav.name}, replace=stored is not None)
    return True

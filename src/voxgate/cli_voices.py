"""`voxgate voices list|add|rm|export|import|check`: managing the voice catalogue from the shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from voxgate.settings import Settings


def add_parsers(voices: argparse.ArgumentParser, settings_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """The voices sub-subcommands (each takes the settings flags too); with none, `voices` lists."""
    sub = voices.add_subparsers(dest="action")
    _add_actions(sub)
    for parser in sub.choices.values():
        settings_flags(parser)


def _add_actions(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("list", help="list every voice (the default)")
    add = sub.add_parser("add", help="register a voice from a reference audio file")
    add.add_argument("name", help="name of the new voice (its id)")
    add.add_argument("audio", type=Path, help="reference audio file (1–30 s of clean speech, any format)")
    add.add_argument("--transcript", help="what the reference says")
    add.add_argument("--language", help="language of the reference, e.g. en")
    add.add_argument("--replace", action="store_true", help="replace a registered voice of that name")
    rm = sub.add_parser("rm", help="delete registered voices")
    rm.add_argument("ids", nargs="+")
    export = sub.add_parser("export", help="write registered voices to a zip archive")
    export.add_argument("archive", type=Path)
    export.add_argument("ids", nargs="*", help="voices to export (default: all)")
    imp = sub.add_parser("import", help="add the voices of an archive")
    imp.add_argument("archive", type=Path)
    imp.add_argument("--replace", action="store_true", help="replace registered voices of the same ids")
    sub.add_parser("check", help="report missing or damaged voice files (exit 1 if any)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one voices action."""
    problem = _check_files(args)
    if problem:
        print(f"voxgate: voices {args.action}: {problem}", file=sys.stderr)
        return 2
    from voxgate.app import build_context, close_context  # after the checks: a wrong path costs no imports

    ctx = build_context(settings.model_copy(update={"warmup": False}))
    try:
        return asyncio.run(_act(ctx, args))
    finally:
        close_context(ctx)


def _check_files(args: argparse.Namespace) -> str | None:
    """Why the files an action names cannot be used, before any voice loads; None when they can."""
    action = args.action
    if action == "add" and not args.audio.is_file():
        return f"no such file: {args.audio}" if not args.audio.exists() else f"not a file: {args.audio}"
    if action == "import" and not args.archive.is_file():
        return f"no such archive: {args.archive}"
    if action == "export" and not args.archive.parent.is_dir():
        return f"folder {args.archive.parent} does not exist"
    return None


async def _act(ctx, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from voxgate.voices.archive import export_voices, import_voices

    bank, action = ctx.voicebank, args.action or "list"
    if action == "list":
        for voice in ctx.voices.list():
            info = bank.describe(voice)
            extra = f"base {info['base_voice']}" if info["kind"] == "registered" else ", ".join(info["aliases"])
            print(f"{voice.id}\t{info['kind']}\t{voice.engine}\t{voice.language}\t{voice.sample_rate} Hz\t{extra}")
        for voice_id, why in ctx.voices.stale().items():
            print(f"{voice_id}\tunavailable\t{why}")
    elif action == "add":
        reference = await bank.load_reference(await asyncio.to_thread(args.audio.read_bytes))
        voice, existed = await bank.register(args.name, reference, transcript=args.transcript,
                                             language=args.language, meta={"origin": "cli"}, replace=args.replace)
        if existed and not args.replace:
            print(f"voxgate: a voice named {voice.id!r} already exists (use --replace)", file=sys.stderr)
            return 1
        print(f"{voice.id}\tbase {voice.base_voice}")
    elif action == "rm":
        missing = [vid for vid in args.ids if not await bank.remove(vid)]
        for vid in missing:
            print(f"voxgate: no registered voice {vid!r}", file=sys.stderr)
        return 1 if missing else 0
    elif action == "export":
        ids = await asyncio.to_thread(export_voices, bank.store, args.archive, args.ids or None)
        print(f"exported {len(ids)} voices to {args.archive}")
    elif action == "import":
        results = await asyncio.to_thread(import_voices, bank.store, args.archive, replace=args.replace)
        await asyncio.to_thread(ctx.voices.refresh_registered)
        for voice, existed in results:
            print(f"{voice.id}\t{'kept existing' if existed and not args.replace else 'imported'}")
    else:
        problems = bank.store.check() + [f"{vid}: {why}" for vid, why in ctx.voices.stale().items()]
        for problem in problems:
            print(problem)
        print(f"{len(bank.store.list())} registered voices, {len(problems)} problems")
        return 1 if problems else 0
    return 0

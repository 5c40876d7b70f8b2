"""Command line: `voxgate serve|say|voices …`; the settings flags are generated from Settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from voxgate import __version__, cli_lexicon, cli_voices
from voxgate.settings import TCP_DIALECT, Settings

# The settings `say` and `voices` take as flags (every other setting still comes from its VOXGATE_* variable).
LOCAL_SETTINGS = ("data_dir", "store", "voices_dir", "engines", "default_voice", "openai_voice_aliases",
                  "log_level")
VOICES_SETTINGS = (*LOCAL_SETTINGS, "match_strength")
LEXICON_SETTINGS = ("data_dir", "store", "log_level")
# `tcp-front` (cluster mode's TCP dialects, docs/cluster.md): the voices', and every setting a TCP dialect reads
# (marked in Settings, so this names no dialect and imports none: start-up stays cheap).
TCP_SETTINGS = tuple(name for name, field in Settings.model_fields.items()
                     if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(TCP_DIALECT))
FRONT_SETTINGS = (*LOCAL_SETTINGS, "host", "api_key", "workers", "max_queue", "warmup", *TCP_SETTINGS)
JSON_EXAMPLE = '{"alloy": "en_US-joe-medium"}'


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2, as argparse's own)."""

    def error(self, message: str) -> typing.NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        self.exit(2, f"voxgate: {message} (see {self.prog} --help)\n")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at character {exc.pos}); "
                                         f"give an object such as '{JSON_EXAMPLE}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{JSON_EXAMPLE}'")
    return value


def _flag_kind(annotation: Any) -> tuple[Any, str | None]:
    """The argparse type and nargs of a settings field."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType | typing._UnionGenericAlias) and args:  # type: ignore[attr-defined]
        annotation = args[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if origin is dict or annotation is dict:
        return _json_object, None
    if origin is list:
        return typing.get_args(annotation)[0], "+"
    return (annotation if annotation in (int, float, str, Path) else str), None


def add_settings_flags(parser: argparse.ArgumentParser, nested: bool = False,
                       only: tuple[str, ...] | None = None) -> None:
    """One flag per Settings field (or per field in `only`); each is also the env var VOXGATE_<FIELD>.

    On nested subcommands the flags default to SUPPRESS, so they cannot overwrite a value the
    enclosing command already parsed.
    """
    default = argparse.SUPPRESS if nested else None
    for name, field in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        flag = _flag(name)
        help_text = f"{field.description} (env VOXGATE_{name.upper()})"
        if flag != "--" + name.replace("_", "-"):  # a list given one item per flag (--upstream A --upstream B)
            parser.add_argument(flag, dest=name, action="append", default=default, help=help_text)
        elif field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            kind, nargs = _flag_kind(field.annotation)
            parser.add_argument(flag, dest=name, type=kind, nargs=nargs, default=default, help=help_text)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags."""
    return {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None}


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the flags that were given; env vars and defaults fill the rest."""
    return Settings(**given_settings(args))


def _flag(field: str) -> str:
    """The flag of a setting: --field-name, or the one its json_schema_extra names (e.g. --upstream)."""
    extra = Settings.model_fields[field].json_schema_extra if field in Settings.model_fields else None
    named = extra.get("flag") if isinstance(extra, dict) else None
    return str(named) if named else "--" + field.replace("_", "-")


def _where(field: str, flags: set[str]) -> str:
    flag = _flag(field)
    return flag if field in flags else f"VOXGATE_{field.upper()} ({flag})"


def _reason(error: Any) -> str:
    kind, ctx, msg = error["type"], error.get("ctx") or {}, str(error["msg"])
    bounds = {"less_than_equal": ("≤", "le"), "less_than": ("<", "lt"),
              "greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt")}
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx[key]}"
    if kind == "string_pattern_mismatch":
        choices = re.fullmatch(r"\^\(([\w|]+)\)\$", str(ctx.get("pattern", "")))
        return f"must be one of {', '.join(choices[1].split('|'))}" if choices else f"must match {ctx['pattern']}"
    if kind == "value_error":
        return str(ctx.get("error") or msg.removeprefix("Value error, "))
    return msg[:1].lower() + msg[1:]


def explain(exc: ValidationError, flags: set[str]) -> list[str]:
    """One line per problem, naming the flag (or the environment variable) it came from."""
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        where = _where(field, flags) if field in Settings.model_fields else field or "settings"
        value = error.get("input")
        shown = f" (got {value!r})" if isinstance(value, int | float | str) and field != "api_key" else ""
        lines.append(f"voxgate: {where}: {_reason(error)}{shown}")
    return lines


def _usable_folder(path: Path, flag: str, write: bool) -> str | None:
    """None when `path` is a folder (created if missing) voxgate can keep files in if `write`, else why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if write:
            with tempfile.TemporaryFile(dir=path):
                pass
    except (FileExistsError, NotADirectoryError):
        return f"voxgate: {flag}: {path} is not a folder (a file is in the way)"
    except OSError as exc:
        return f"voxgate: {flag}: cannot write to {path}: {exc.strerror or exc}"
    return None


async def _say(settings: Settings, text: str, voice: str | None, fmt: str, out: Path,
               captions: tuple[Path, str] | None = None) -> None:
    from voxgate.app import build_context, close_context
    from voxgate.audio.encoders import encode_all
    from voxgate.core import captions as timed_words
    from voxgate.core.types import SynthesisRequest

    ctx = build_context(settings.model_copy(update={"word_timings": True}) if captions else settings)
    try:
        request = SynthesisRequest(text=text, voice=voice or settings.default_voice, timings=captions is not None)
        if captions is None:
            pcm = await ctx.service.synthesize(request)
        else:
            pcm, words = await timed_words.synthesize(ctx.service, request)
        data = encode_all(pcm.samples, pcm.rate, fmt)
        await asyncio.to_thread(out.write_bytes, data)
        if captions is not None:
            path, kind = captions
            await asyncio.to_thread(path.write_text, timed_words.caption_file(text, words, kind), "utf-8")
            if not words:
                print(f"voxgate: the voice {request.voice} gave no word timings; {path} has no cues", file=sys.stderr)
    finally:
        close_context(ctx)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = Parser(prog="voxgate", description="Text-to-speech server speaking many APIs.")
    parser.add_argument("--version", action="version", version=f"voxgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_settings_flags(sub.add_parser("serve", help="run the server"))
    say = sub.add_parser("say", help="synthesize TEXT into a file",
                         description="Synthesize TEXT into a file, without a server. Other settings come from "
                         "their VOXGATE_* environment variables (see `voxgate serve --help`).")
    say.add_argument("text", help="text to speak ('-' reads standard input)")
    say.add_argument("-o", "--output", type=Path, required=True, help="output file")
    say.add_argument("--voice", help="voice id or alias (default: the default voice)")
    say.add_argument("--format", help="wav, mp3, opus, aac, flac, ogg, m4a or pcm (default: from -o)")
    say.add_argument("--captions", type=Path, metavar="FILE",
                     help="also write when each word is spoken as captions: WebVTT (.vtt) or SubRip (.srt)")
    say.add_argument("--captions-format", choices=("vtt", "srt"), help="caption format (default: from --captions)")
    add_settings_flags(say, only=LOCAL_SETTINGS)
    voices = sub.add_parser("voices", help="list, add, remove, export, import or check voices",
                            description="Manage the voices in the data folder, without a server.")
    add_settings_flags(voices, only=VOICES_SETTINGS)
    cli_voices.add_parsers(voices, lambda p: add_settings_flags(p, nested=True, only=VOICES_SETTINGS))
    lexicon = sub.add_parser("lexicon", help="add, remove, list, import or export pronunciations",
                             description="Manage the pronunciation lexicon in the data folder (docs/lexicon.md).")
    add_settings_flags(lexicon, only=LEXICON_SETTINGS)
    cli_lexicon.add_parsers(lexicon, lambda p: add_settings_flags(p, nested=True, only=LEXICON_SETTINGS))
    front = sub.add_parser("tcp-front", help="serve StackFlow and Wyoming over a voxgate cluster's HTTP endpoint",
                           description="Serve the TCP dialects (StackFlow, Wyoming) over a voxgate cluster's HTTP "
                           "endpoint, with no Ray driver in this process (docs/cluster.md).")
    front.add_argument("--cluster-url", required=True, help="the cluster's HTTP endpoint, e.g. http://head:8000")
    add_settings_flags(front, only=FRONT_SETTINGS)
    return parser


def _log_level(args: argparse.Namespace, settings: Settings) -> str:
    """The server logs at its level; `say` and `voices` only warn unless --log-level is given."""
    if args.command in ("serve", "tcp-front") or getattr(args, "log_level", None):
        return settings.log_level
    return "warning"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voxgate` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print("\n".join(explain(exc, set(given_settings(args)))), file=sys.stderr)
        return 2
    except SettingsError as exc:  # an environment variable that is not the JSON its setting needs
        field = re.search(r'field "(\w+)"', str(exc))
        name = field[1] if field else "?"
        print(f"voxgate: {_where(name, set())}: not valid JSON (a JSON list or object)", file=sys.stderr)
        return 2
    logging.basicConfig(level=_log_level(args, settings).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # The voices folder is only read: it may be a read-only collection of Piper voices.
        for folder, flag, write in ((settings.data_dir, "--data-dir", True),
                                    (settings.voices_path, "--voices-dir", False)):
            problem = _usable_folder(folder, flag, write)
            if problem:
                print(problem, file=sys.stderr)
                return 2
        if args.command == "serve":
            from voxgate.cli_serve import serve

            return serve(settings)
        if args.command == "tcp-front":
            from voxgate.cluster.front import run_front
            return run_front(settings, args.cluster_url)
        if args.command == "voices":
            return cli_voices.run(settings, args)
        if args.command == "lexicon":
            return cli_lexicon.run(settings, args)
        return _say_command(settings, args)
    except Exception as exc:
        if _refused(exc):
            print(f"voxgate: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # a file the command was given cannot be read or written
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"voxgate: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        raise


def _refused(exc: Exception) -> bool:
    """Is `exc` a refusal to show as one line: a busy port, a failed start-up, any VoxgateError? The classes are
    looked up in the modules already imported, as a command that never imported the app (~0.7 CPU-s: a usage
    error, a missing file, a busy port) cannot have raised its errors and need not import it to say so."""
    from voxgate.errors import VoxgateError

    kinds: list[type[Exception]] = [VoxgateError]
    for module, name in (("voxgate.app", "StartupError"), ("voxgate.cli_serve", "PortError")):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return isinstance(exc, tuple(kinds))


def _say_command(settings: Settings, args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.is_dir():
        print(f"voxgate: -o: {out} is a folder; give a file name", file=sys.stderr)
        return 2
    if not out.parent.is_dir():
        print(f"voxgate: -o: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    text = sys.stdin.read() if args.text == "-" else args.text
    fmt = args.format or out.suffix.lstrip(".") or "wav"
    captions = None
    if args.captions is not None:
        kind = args.captions_format or args.captions.suffix.lstrip(".").lower()
        if kind not in ("vtt", "srt"):
            print(f"voxgate: --captions: {args.captions} is neither .vtt nor .srt; name one or give "
                  "--captions-format vtt|srt", file=sys.stderr)
            return 2
        if args.captions.is_dir() or not args.captions.parent.is_dir():
            print(f"voxgate: --captions: cannot write {args.captions} (a folder, or its folder is missing)",
                  file=sys.stderr)
            return 2
        captions = (args.captions, kind)
    asyncio.run(_say(settings.model_copy(update={"warmup": False}), text, args.voice, fmt, out, captions))
    return 0

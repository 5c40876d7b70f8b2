"""Command line: `voxgate serve|say|voices …`; the settings flags are generated from Settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from voxgate import __version__, cli_voices
from voxgate.settings import Settings


def _flag_kind(annotation: Any) -> tuple[Any, str | None]:
    """The argparse type and nargs of a settings field."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType | typing._UnionGenericAlias) and args:  # type: ignore[attr-defined]
        annotation = args[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if origin is dict or annotation is dict:
        return json.loads, None
    if origin is list:
        return typing.get_args(annotation)[0], "+"
    return (annotation if annotation in (int, float, str, Path) else str), None


def add_settings_flags(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    """One flag per Settings field; each is also the env var VOXGATE_<FIELD>.

    On nested subcommands the flags default to SUPPRESS, so they cannot overwrite a value the
    enclosing command already parsed.
    """
    default = argparse.SUPPRESS if nested else None
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (env VOXGATE_{name.upper()})"
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            kind, nargs = _flag_kind(field.annotation)
            parser.add_argument(flag, dest=name, type=kind, nargs=nargs, default=default, help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the flags that were given; env vars and defaults fill the rest."""
    given = {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None}
    return Settings(**given)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it a response written as headers then body waits
    # for the client's delayed ACK, ~40 ms on every keep-alive request after the first (measured).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def _serve(settings: Settings) -> int:
    import uvicorn

    from voxgate.app import compat_apps, create_app, redact_logs

    app = create_app(settings)
    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    extras = compat_apps(app.state.ctx, port) if settings.compat_ports else {}
    extra_socks = {p: _bind(settings.host, p) for p in extras}
    print(f"voxgate listening on http://{settings.host}:{port}", flush=True)
    for extra in extra_socks:
        print(f"voxgate compat port http://{settings.host}:{extra}", flush=True)
    main = uvicorn.Server(uvicorn.Config(app, log_level=settings.log_level, timeout_graceful_shutdown=5))
    redact_logs()  # after uvicorn configured its loggers
    followers = {p: _Follower(uvicorn.Config(a, log_level=settings.log_level, lifespan="off",
                                             timeout_graceful_shutdown=5)) for p, a in extras.items()}
    asyncio.run(_serve_all(main, sock, followers, extra_socks))
    return 0


class _Follower:
    """A uvicorn server that leaves signals to the main server and stops when it stops."""

    def __new__(cls, config: Any) -> Any:
        import contextlib

        import uvicorn

        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        return server


async def _serve_all(main: Any, sock: socket.socket, followers: dict[int, Any],
                     socks: dict[int, socket.socket]) -> None:
    """Run the main server and the compat-port followers; they drain together when it is told to stop."""
    done = asyncio.Event()

    async def lead() -> None:
        try:
            await main.serve(sockets=[sock])
        finally:
            done.set()

    async def watch() -> None:
        # should_exit is a plain attribute set by uvicorn's signal handler: there is nothing to await.
        while not (main.should_exit or done.is_set()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for follower in followers.values():
            follower.should_exit = True

    await asyncio.gather(lead(), watch(), *(f.serve(sockets=[socks[p]]) for p, f in followers.items()))


async def _say(settings: Settings, text: str, voice: str | None, fmt: str, out: Path) -> None:
    from voxgate.app import build_context, close_context
    from voxgate.audio.encoders import encode_all
    from voxgate.core.types import SynthesisRequest

    ctx = build_context(settings)
    try:
        pcm = await ctx.service.synthesize(SynthesisRequest(text=text, voice=voice or settings.default_voice))
        data = encode_all(pcm.samples, pcm.rate, fmt)
        await asyncio.to_thread(out.write_bytes, data)
    finally:
        close_context(ctx)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="voxgate", description="Text-to-speech server speaking many APIs.")
    parser.add_argument("--version", action="version", version=f"voxgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_settings_flags(sub.add_parser("serve", help="run the server"))
    say = sub.add_parser("say", help="synthesize TEXT into a file")
    add_settings_flags(say)
    say.add_argument("text", help="text to speak ('-' reads standard input)")
    say.add_argument("-o", "--output", type=Path, required=True, help="output file")
    say.add_argument("--voice", help="voice id or alias (default: the default voice)")
    say.add_argument("--format", help="wav, mp3, opus, aac, flac, ogg, m4a or pcm (default: from -o)")
    voices = sub.add_parser("voices", help="list, add, remove, export, import or check voices")
    add_settings_flags(voices)
    cli_voices.add_parsers(voices, lambda p: add_settings_flags(p, nested=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voxgate` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"voxgate: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from voxgate.app import StartupError
    from voxgate.errors import VoxgateError

    try:
        if args.command == "serve":
            return _serve(settings)
        if args.command == "voices":
            return cli_voices.run(settings, args)
        text = sys.stdin.read() if args.text == "-" else args.text
        fmt = args.format or args.output.suffix.lstrip(".") or "wav"
        settings = settings.model_copy(update={"warmup": False})
        asyncio.run(_say(settings, text, args.voice, fmt, args.output))
        return 0
    except (StartupError, VoxgateError) as exc:
        print(f"voxgate: {exc}", file=sys.stderr)
        return 2

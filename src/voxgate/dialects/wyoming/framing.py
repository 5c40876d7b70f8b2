"""Reading Wyoming events with every length bounded.

An event is one JSON header line (`type`, optional `data`, `data_length`, `payload_length`, `version`),
then `data_length` bytes of JSON merged into `data`, then `payload_length` bytes of payload. The `wyoming`
package's reader trusts both lengths; here a header longer than MAX_HEADER, data longer than MAX_DATA or a
payload longer than MAX_PAYLOAD is refused before it is read, so a client cannot make the server allocate
what it likes. Header and data go through the dialects' one JSON guard (common.parse_json): nesting past
its depth, NaN/Infinity, lone surrogates and invalid UTF-8 are a BadEvent like any other junk. Writing
uses the package's own writer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event

from voxgate.dialects.common import UnsafeJson, parse_json

MAX_HEADER = 64 * 1024  # bytes of one header line (also the StreamReader's limit)
MAX_DATA = 256 * 1024  # bytes of a data block: a synthesize text is at most max_input_chars characters
MAX_PAYLOAD = 1024 * 1024  # bytes of a payload (a TTS client sends none; an audio chunk would be far less)


class BadEvent(Exception):
    """The client sent something that is not a Wyoming event; the connection cannot be trusted to resync."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadEvent(f"{key} must be a non-negative integer", "InvalidEvent")
    if value > limit:
        raise BadEvent(f"{key} {value} is over the limit of {limit} bytes", "EventTooLarge")
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event; None at the end of the connection; BadEvent for anything else."""
    try:
        line = await reader.readline()
    except ValueError:  # the StreamReader's limit: no newline within MAX_HEADER bytes
        raise BadEvent(f"event header is longer than {MAX_HEADER} bytes", "EventTooLarge") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # the connection ended inside a header
    try:
        header = parse_json(line)
    except UnsafeJson as exc:  # well-formed but refused: too deep, NaN/Infinity, a lone surrogate
        raise BadEvent(f"event header refused: {exc.msg}", "InvalidEvent") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadEvent("event header is not a JSON object", "InvalidEvent") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str) or not header["type"]:
        raise BadEvent("event header must be a JSON object with a string type", "InvalidEvent")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise BadEvent("event data must be a JSON object", "InvalidEvent")
    data_length = _length(header, "data_length", MAX_DATA)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD)
    try:
        if data_length:
            try:
                extra = parse_json(await reader.readexactly(data_length))
            except UnsafeJson as exc:
                raise BadEvent(f"event data refused: {exc.msg}", "InvalidEvent") from None
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise BadEvent("event data is not a JSON object", "InvalidEvent") from None
            if not isinstance(extra, dict):
                raise BadEvent("event data must be a JSON object", "InvalidEvent")
            data = {**data, **extra}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None  # the connection ended inside an event
    return Event(type=header["type"], data=data, payload=payload)


__all__ = ["MAX_DATA", "MAX_HEADER", "MAX_PAYLOAD", "BadEvent", "read_event"]

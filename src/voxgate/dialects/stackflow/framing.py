"""Inbound framing of the StackFlow TCP port: JSON objects cut out of a byte stream by counting braces.

StackFlow clients send bare JSON objects, with or without newlines, split across packets or several to
a packet. The original `llm-sys` counts `{` and `}` byte by byte and dispatches the buffer whenever the
depth returns to zero; a stray `}` (depth below zero) resets the state machine and answers the `-1
"reace reset"` message. Bytes outside an object are dropped.

Deviations (docs/stackflow.md): braces inside JSON strings are not counted, so text such as `"a } b"`
does not break framing; a raw newline inside a string ends the object as malformed (JSON forbids it,
and it stops one unterminated quote from swallowing every later message); an object larger than the
size limit is skipped to its end and reported once instead of growing memory without bound.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 1 << 20  # one inbound object, or one RAW payload
_RAW_HEADER = re.compile(rb'^\{"RAW":\s*(\d+)')
# The bytes that can change the state machine; everything between them is copied (or dropped) in bulk.
_SIGNIFICANT = re.compile(rb'[{}"]')
_SIGNIFICANT_IN_STRING = re.compile(rb'["\\\n]')


@dataclass(frozen=True)
class Frame:
    """One complete object as sent (bytes), plus the base64 of a RAW payload that followed it."""

    body: bytes
    raw: str | None = None  # base64 of the announced raw bytes, injected as the object's "data"


@dataclass(frozen=True)
class Reset:
    """The framing state machine was reset: a stray `}`."""


@dataclass(frozen=True)
class Malformed:
    """An object that cannot be JSON (a raw newline inside a string); it was dropped."""


@dataclass(frozen=True)
class Oversized:
    """An object (or RAW payload) passed the size limit; it was skipped to its end."""

    size: int  # bytes seen before giving up


Event = Frame | Reset | Malformed | Oversized


class FrameParser:
    """Feed bytes as they arrive; get back the events they complete, in order."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._skipping = False  # inside an oversized object: count braces, keep nothing
        self._raw_left = 0  # bytes of a RAW payload still to read
        self._raw_header = b""
        self._raw = bytearray()
        self._skipped = 0  # bytes of the oversized object seen so far
        self._discard = 0  # bytes of an oversized RAW payload still to drop

    def feed(self, data: bytes) -> list[Event]:
        """Consume `data`; returns every event it completes."""
        events: list[Event] = []
        pos, end = 0, len(data)
        while pos < end:
            if self._discard:
                step = min(self._discard, end - pos)
                self._discard -= step
                pos += step
                continue
            if self._raw_left:
                take = data[pos : pos + self._raw_left]
                self._raw += take
                self._raw_left -= len(take)
                pos += len(take)
                if not self._raw_left:
                    events.append(Frame(self._raw_header, base64.b64encode(bytes(self._raw)).decode("ascii")))
                    self._raw = bytearray()
                continue
            if not self._escaped:
                found = (_SIGNIFICANT_IN_STRING if self._in_string else _SIGNIFICANT).search(data, pos)
                stop = found.start() if found else end
                if stop > pos:
                    if self._depth:
                        self._bulk(data[pos:stop])
                    pos = stop
                    continue
            byte = data[pos]
            pos += 1
            event = self._step(byte)
            if event is not None:
                events.append(event)
        return events

    def _bulk(self, chunk: bytes) -> None:
        """Bytes inside an object that change no state."""
        if self._skipping:
            self._skipped += len(chunk)
            return
        self._buf += chunk
        if len(self._buf) > self.max_bytes:
            self._skipping = True
            self._skipped = len(self._buf)
            self._buf = bytearray()

    def _step(self, byte: int) -> Event | None:
        if self._depth == 0:
            if byte == 0x7B:  # {
                self._depth = 1
                self._buf = bytearray(b"{")
            elif byte == 0x7D:  # }
                return Reset()
            return None  # whitespace or garbage between objects
        if not self._skipping:
            self._buf.append(byte)
            if len(self._buf) > self.max_bytes:
                self._skipping = True
                self._skipped = len(self._buf)
                self._buf = bytearray()
        else:
            self._skipped += 1
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif byte == 0x5C:  # backslash
                self._escaped = True
            elif byte == 0x22:  # "
                self._in_string = False
            elif byte == 0x0A:
                return self._abandon(Malformed())
            return None
        if byte == 0x22:
            self._in_string = True
        elif byte == 0x7B:
            self._depth += 1
        elif byte == 0x7D:
            self._depth -= 1
            if self._depth == 0:
                return self._complete()
        return None

    def _abandon(self, event: Event) -> Event:
        skipping = self._skipping
        self._reset()
        return Oversized(self._skipped) if skipping else event

    def _complete(self) -> Event | None:
        if self._skipping:
            return self._abandon(Malformed())
        body = bytes(self._buf)
        self._reset()
        header = _RAW_HEADER.match(body)
        if header is None:
            return Frame(body)
        size = int(header.group(1))
        if size > self.max_bytes:
            self._discard = size
            return Oversized(size)
        if size == 0:
            return Frame(body, "")
        self._raw_left, self._raw_header = size, body
        return None

    def _reset(self) -> None:
        self._buf = bytearray()
        self._depth = 0
        self._in_string = self._escaped = self._skipping = False

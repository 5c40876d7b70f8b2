"""StackFlow inbound framing: objects cut out of a byte stream by brace counting, byte by byte."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from voxgate.dialects.stackflow.framing import Frame, FrameParser, Malformed, Oversized, Reset
from voxgate.dialects.stackflow.sinks import FileSink

PING = b'{"request_id":"1","work_id":"sys","action":"ping"}'


def bodies(events: list) -> list[bytes]:
    assert all(isinstance(e, Frame) for e in events), events
    return [e.body for e in events]


def test_object_split_at_every_byte_comes_out_once_whole() -> None:
    parser = FrameParser()
    events = []
    for i in range(len(PING)):
        events += parser.feed(PING[i : i + 1])
        if i < len(PING) - 1:
            assert events == []
    assert bodies(events) == [PING]


def test_several_objects_in_one_packet_with_whitespace_and_garbage_between() -> None:
    second = b'{"request_id":"2","work_id":"sys","action":"version","data":{"a":{"b":1}}}'
    events = FrameParser().feed(PING + b"\r\n  garbage text ]] " + second + b"\n" + PING)
    assert bodies(events) == [PING, second, PING]


def test_braces_inside_strings_do_not_break_framing() -> None:
    text = 'curly } and { braces, a \\" quote and a backslash \\\\ } {{'
    message = json.dumps({"request_id": "7", "work_id": "melotts.1000", "action": "inference",
                          "object": "tts.utf-8", "data": text}).encode()
    parser = FrameParser()
    events = parser.feed(message[:40]) + parser.feed(message[40:] + PING)
    assert bodies(events) == [message, PING]
    assert json.loads(events[0].body)["data"] == text


def test_stray_closing_brace_resets_and_parsing_goes_on() -> None:
    events = FrameParser().feed(b"}" + PING + b"}}")
    assert [type(e) for e in events] == [Reset, Frame, Reset, Reset]


def test_raw_newline_inside_a_string_drops_the_object_as_malformed() -> None:
    events = FrameParser().feed(b'{"request_id":"1","data":"never closed\n' + PING)
    assert [type(e) for e in events] == [Malformed, Frame]
    assert events[1].body == PING


def test_oversized_object_is_skipped_to_its_end_and_reported_once() -> None:
    parser = FrameParser(max_bytes=1000)
    big = b'{"request_id":"1","work_id":"sys","action":"ping","data":"' + b"x{" * 2000 + b'"}'
    events = []
    for start in range(0, len(big), 333):
        events += parser.feed(big[start : start + 333])
    events += parser.feed(PING)
    assert [type(e) for e in events] == [Oversized, Frame]
    assert events[0].size > 1000
    assert events[1].body == PING
    assert len(parser._buf) == 0  # nothing of the big object was kept


def test_raw_header_takes_the_announced_bytes_as_base64_data() -> None:
    payload = b"Raw bytes with } and { and \n newlines."
    header = b'{"RAW":%d,"request_id":"9","work_id":"melotts.1000","action":"inference"}' % len(payload)
    parser = FrameParser()
    events = parser.feed(header + payload[:10]) + parser.feed(payload[10:] + PING)
    assert [type(e) for e in events] == [Frame, Frame]
    assert events[0].body == header
    assert base64.b64decode(events[0].raw) == payload
    assert events[1].body == PING and events[1].raw is None


def test_raw_payload_over_the_limit_is_dropped_without_resets() -> None:
    parser = FrameParser(max_bytes=100)
    events = parser.feed(b'{"RAW":500,"request_id":"1"}' + b"}" * 500 + PING)
    assert [type(e) for e in events] == [Oversized, Frame]


def test_file_sink_keeps_only_the_newest_files(tmp_path: Path) -> None:
    (tmp_path / "old-from-an-earlier-run.wav").write_bytes(b"RIFF")
    sink = FileSink(tmp_path, keep=3)

    async def utterances() -> list[str]:
        names = []
        for _ in range(5):
            playback = sink.open("melotts.1000", 16000)
            await playback.write(b"\x00\x01" * 160)
            await playback.close()
            names.append(sink._files[-1].name)
        return names

    written = asyncio.run(utterances())
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == sorted(written[-3:])  # the earlier run's went first

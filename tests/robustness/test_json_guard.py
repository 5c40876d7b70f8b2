"""Issue 12: the one JSON guard (dialects/common.py) and the 422 renderer that cannot fail."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError

from voxgate.dialects import common
from voxgate.dialects.common import MAX_JSON_DEPTH, UnsafeJson, parse_json, validation_error_handler


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("body", [
    nested(MAX_JSON_DEPTH + 1), nested(1000), nested(100_000), b'{"a":' * 1500 + b"1" + b"}" * 1500,
    b'{"speed": NaN}', b"-Infinity", b"[Infinity]", b"1e400", b"-1e999", b"9" * 500,
    b'"\\ud800"', b'{"\\udc00": 1}', b'["ok", {"deep": "\\udfffx"}]',
])
def test_refused_with_a_json_decode_error(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as info:  # every caller's "not valid JSON" answer covers it
        parse_json(body)
    assert isinstance(info.value, UnsafeJson)


def test_invalid_utf8_is_a_unicode_error_and_valid_json_passes() -> None:
    with pytest.raises(UnicodeDecodeError):
        parse_json(b'{"text": "\xff"}')
    assert parse_json(nested(MAX_JSON_DEPTH)) is not None
    assert parse_json('{"text": "Hello, こんにちは 😀", "speed": 1.5, "n": -0.0, "big": 1e308}') == {
        "text": "Hello, こんにちは 😀", "speed": 1.5, "n": -0.0, "big": 1e308}
    assert parse_json(b'"\\ud83d\\ude00"') == "😀"  # a surrogate *pair* is fine


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "MAX_JSON_BYTES", 100)
    with pytest.raises(UnsafeJson, match="over 100 bytes"):
        parse_json(b'"' + b"a" * 200 + b'"')


def test_the_422_renderer_survives_what_it_echoes() -> None:
    errors: list[dict[str, Any]] = [
        {"type": "float_type", "loc": ("body", "speed"), "msg": "bad", "input": float("nan")},
        {"type": "x", "loc": ("body", "a"), "msg": "bad", "input": [float("-inf"), "a\ud800b", b"\xff\xfe"]},
        {"type": "value_error", "loc": ("body",), "msg": "bad", "input": {"k\udc00": 1e308},
         "ctx": {"error": ValueError("boom")}},
    ]
    response = asyncio.run(validation_error_handler(None, RequestValidationError(errors)))  # type: ignore[arg-type]
    assert response.status_code == 422
    detail = json.loads(response.body)["detail"]
    assert detail[0]["input"] == "nan" and detail[0]["loc"] == ["body", "speed"]
    assert detail[1]["input"] == ["-inf", "a\\ud800b", "\\xff\\xfe"]
    assert detail[2]["input"] == {"k\\udc00": 1e308} and detail[2]["ctx"] == {"error": {}}  # as FastAPI

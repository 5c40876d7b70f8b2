"""StackFlow wire shapes: requests, the reply envelope, the error-code table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from voxgate.dialects.common import parse_json


@dataclass(frozen=True)
class Code:
    """One row of the StackFlow error table: `error.code` and its exact `error.message`."""

    code: int
    message: str


OK = Code(0, "")
RESTARTING = Code(0, "llm server restarting ...")  # sys.reset's answer
RESET_OVER = Code(0, "reset over")  # the notice (request_id "0") once a reset is done
REBOOTING = Code(0, "rebooting ...")  # sys.reboot's answer
RESET = Code(-1, "reace reset")  # framing state machine reset (the original's spelling)
JSON_ERROR = Code(-2, "json format error")  # sys: not JSON, or ids that are not strings
VERSION_FALSE = Code(-2, "json sys.version get false.")  # sys.upgrade whose data is not a string
UNIT_JSON_ERROR = Code(-2, "json format error.")  # a unit: setup or inference data of the wrong shape
ACTION_MATCH = Code(-3, "action match false")  # unknown sys action
PUSH_FALSE = Code(-4, "inference data push false")  # inference to a work_id that is not set up
LOAD_FAILED = Code(-5, "Model loading failed.")  # setup failed: missing fields, unknown model
NO_UNIT = Code(-6, "Unit Does Not Exist")  # link/unlink/pause/work/exit/taskinfo on an unknown work_id
ALLOCATION = Code(-8, "Unit Resource Allocation Failed")  # the synthesis queue is full (busy)
UNIT_CALL = Code(-9, "unit call false")  # a unit voxgate does not host (llm, asr, kws, ...)
NOT_AVAILABLE = Code(-10, "Not available at the moment.")  # sys actions that make no sense here
RUN_FAILED = Code(-11, "Model run failed.")  # synthesis failed
ALREADY_WORKING = Code(-13, "Module already working.")  # `work` on a task that is not paused
NOT_WORKING = Code(-14, "Module is not working.")  # `pause` on a task already paused
NO_ACTION = Code(-18, "not have unit action!")  # an action the unit does not implement
LINK_FALSE = Code(-20, "link false")  # link target is not an llm/vlm/kws unit voxgate hosts
TASK_FULL = Code(-21, "task full")  # more tasks than --stackflow-max-tasks
BASE64_ERROR = Code(-23, "Base64 decoding error.")  # a base64 inference object whose data is not base64
AUTH_REQUIRED = Code(-30, "authentication required")  # voxgate: an API key is set and not yet given
AUTH_FAILED = Code(-31, "invalid api key")  # voxgate: the key given does not match


class ProtocolError(Exception):
    """Answer the current request with this code (work_id overrides the request's own)."""

    def __init__(self, code: Code, work_id: str | None = None, request_id: str | None = None) -> None:
        super().__init__(code.message)
        self.code = code
        self.work_id = work_id
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    """One dispatched message: the three routing strings plus object and data as sent."""

    request_id: str
    work_id: str
    action: str
    object: str
    data: Any
    fields: dict[str, Any]  # the whole message (for api_key)

    @property
    def unit(self) -> str:
        """The unit the work_id names (`melotts` of `melotts.1003`)."""
        return self.work_id.split(".", 1)[0]


def parse_request(body: bytes, raw: str | None) -> Request:
    """Validate one framed object; ProtocolError(-2) when it is not JSON or its ids are not strings."""
    try:
        message = parse_json(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(JSON_ERROR, "sys") from None
    if not isinstance(message, dict):
        raise ProtocolError(JSON_ERROR, "sys")
    ids = [message.get(key) for key in ("request_id", "work_id", "action")]
    if not all(isinstance(value, str) for value in ids):
        request_id = message.get("request_id")
        raise ProtocolError(JSON_ERROR, "sys", request_id if isinstance(request_id, str) else None)
    request_id, work_id, action = ids
    obj = message.get("object")
    data = raw if raw is not None else message.get("data")
    return Request(request_id, work_id or "sys", action, obj if isinstance(obj, str) else "", data, message)


def reply(request_id: str, work_id: str, obj: str = "None", data: Any = "None", code: Code = OK) -> bytes:
    """One outbound message: compact JSON, keys sorted (as nlohmann/json writes them), then a newline."""
    body = {"created": int(time.time()), "data": data, "error": {"code": code.code, "message": code.message},
            "object": obj, "request_id": request_id, "work_id": work_id}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"


def notice(code: Code) -> bytes:
    """A notice llm-sys writes by hand (request_id "0", no object or data), byte for byte, plus a newline."""
    return (f'{{"request_id": "0","work_id": "sys","created": {int(time.time())},'
            f'"error":{{"code":{code.code}, "message":"{code.message}"}}}}\n').encode("ascii")


def reset_message() -> bytes:
    """The framing-reset notice (`-1 reace reset`)."""
    return notice(RESET)

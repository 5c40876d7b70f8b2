"""Domain exceptions raised by the core; each dialect translates them through its own error table."""

from __future__ import annotations


class VoxgateError(Exception):
    """Base class of every error the core raises on purpose."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # name of the offending input field, when there is one


class InvalidInput(VoxgateError):
    """The request is malformed or out of range."""


class InputTooLong(InvalidInput):
    """The text is longer than the dialect or the server allows."""


class VoiceExists(InvalidInput):
    """A voice with that id is already registered (or installed)."""


class VoiceNotFound(VoxgateError):
    """No voice, alias or model of that name is installed."""


class Overloaded(VoxgateError):
    """The admission queue is full; the client should retry later."""

    def __init__(self, message: str = "server busy, retry later", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds


class Cancelled(VoxgateError):
    """The work was cancelled (client gone, stop requested)."""


class EngineFailure(VoxgateError):
    """The engine failed while synthesizing."""


class Unauthorized(VoxgateError):
    """The request lacks a valid API key."""


class InvalidReference(InvalidInput):
    """Reference audio is unusable: bad base64, empty, corrupt, silent, too short or too long."""


class ForbiddenReference(InvalidInput):
    """A reference path or URL the server will not read."""

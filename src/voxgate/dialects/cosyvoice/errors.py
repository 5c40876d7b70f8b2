"""The CosyVoice dialect's error table and bodies, and the one voice lookup its HTTP and WebSocket routes share."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from voxgate.core.context import Context
from voxgate.dialects.common import STATUS_ERRORS, ErrorSpec, failure
from voxgate.dialects.cosyvoice.protocol import NO_SUCH_SPEAKER
from voxgate.errors import (
    ForbiddenReference,
    InvalidInput,
    VoiceNotFound,
)

DIALECT = "cosyvoice"

# The original answers every failure with 500 and the message as a JSON string; the status says more here.
ERRORS: dict[type[BaseException], ErrorSpec] = {
    **STATUS_ERRORS,
    InvalidInput: ErrorSpec(400, code="invalid_input"),
    ForbiddenReference: ErrorSpec(403, code="forbidden_path"),
}


def error_response(ctx: Context, exc: BaseException) -> JSONResponse:
    """The original's error body: the message as a bare JSON string."""
    found = failure(ctx.metrics, DIALECT, exc, ERRORS, ErrorSpec(500, code="internal_error"))
    return JSONResponse(found.message, status_code=found.spec.status, headers=found.headers)


def speaker(ctx: Context, prompt_id: str) -> str:
    """The voice id a prompt_id names, or VoiceNotFound("No such speaker.") (never the default voice)."""
    if not prompt_id.strip():
        raise VoiceNotFound(NO_SUCH_SPEAKER, param="prompt_id")
    try:
        return ctx.voices.resolve(prompt_id).id
    except VoiceNotFound:
        raise VoiceNotFound(NO_SUCH_SPEAKER, param="prompt_id") from None

"""Exceptions → HTTP status + the control API's error object."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    InvalidArgument,
    LocalError,
    NetworkError,
    NotFound,
    RemoteError,
    StateError,
    SwarmlinkError,
)

__all__ = ["INTERNAL_ERROR_TYPE", "error_body", "error_object", "error_status"]

log = logging.getLogger("swarmlink.daemon")

#: The ``type`` sent for exceptions that are not swarmlink errors (bugs).
INTERNAL_ERROR_TYPE = "InternalError"


def error_status(exc: BaseException) -> int:
    """The HTTP status for an exception raised while serving a request."""
    if isinstance(exc, InvalidArgument):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, StateError):
        return 409
    if isinstance(exc, LocalError):
        return 400
    if isinstance(exc, RemoteError):
        return 502
    if isinstance(exc, NetworkError):
        return 504
    return 500


def error_object(exc: BaseException, *, where: str = "") -> dict[str, Any]:
    """``{"type", "message", "code"}`` for ``exc``; logs a traceback for internal errors."""
    if isinstance(exc, RemoteError):
        return {"type": type(exc).__name__, "message": exc.reason, "code": exc.code.name.lower()}
    if isinstance(exc, SwarmlinkError):
        return {"type": type(exc).__name__, "message": str(exc), "code": None}
    log.error("internal error while serving %s", where or "a control request", exc_info=exc)
    return {
        "type": INTERNAL_ERROR_TYPE,
        "message": f"internal error in the swarmlink daemon ({type(exc).__name__}: {exc}); "
        "see swarmlink.log in the node home",
        "code": None,
    }


def error_body(exc: BaseException, *, where: str = "") -> dict[str, Any]:
    """The full JSON body of an error response."""
    return {"error": error_object(exc, where=where)}

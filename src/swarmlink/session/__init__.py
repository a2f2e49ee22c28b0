"""swarmlink.session: the sans-I/O session core (HELLO, stream multiplexer, flow control).

See :class:`Session` for the API and :mod:`swarmlink.session._session` for the wire rules.
"""

from __future__ import annotations

from ._session import Session, SessionState
from .config import BASE_STREAM_WINDOW, MAX_REASON_BYTES, MAX_WINDOW, SessionConfig
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeCompleted,
    PingAcknowledged,
    SessionEvent,
    StreamAccepted,
    StreamClosed,
    StreamOpened,
    StreamReset,
    StreamWritable,
)

__all__ = [
    "BASE_STREAM_WINDOW",
    "MAX_REASON_BYTES",
    "MAX_WINDOW",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "HandshakeCompleted",
    "PingAcknowledged",
    "Session",
    "SessionConfig",
    "SessionEvent",
    "SessionState",
    "StreamAccepted",
    "StreamClosed",
    "StreamOpened",
    "StreamReset",
    "StreamWritable",
]

"""Events a :class:`~swarmlink.session.Session` reports through ``next_event()``.

Every event is an immutable dataclass deriving from :class:`SessionEvent`; :data:`Event`
is the union of them all, for exhaustive matching. After :class:`ConnectionTerminated`
a session reports nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ..errors import ErrorCode

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "HandshakeCompleted",
    "PingAcknowledged",
    "SessionEvent",
    "StreamAccepted",
    "StreamClosed",
    "StreamOpened",
    "StreamReset",
    "StreamWritable",
]


class SessionEvent:
    """Base class of every session event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HandshakeCompleted(SessionEvent):
    """The peer's HELLO arrived and a protocol version was agreed; the session is OPEN."""

    #: The protocol version both sides run (the highest they share).
    version: int
    #: Optional features both sides advertised.
    features: frozenset[str]
    #: The peer's user agent, from its HELLO.
    user_agent: str


@dataclass(frozen=True, slots=True)
class StreamOpened(SessionEvent):
    """The peer opened a stream. Answer with ``accept_stream`` or ``reset_stream``.

    The opener may send data optimistically, so :class:`DataReceived` for this stream
    can follow before the application has accepted it.
    """

    #: The new stream (even if the peer is the server, odd if it is the client).
    stream_id: int
    #: The protocol name the peer asked for (1..``max_protocol_name`` printable ASCII).
    protocol: str


@dataclass(frozen=True, slots=True)
class StreamAccepted(SessionEvent):
    """The peer accepted a stream we opened."""

    #: The stream we opened.
    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived(SessionEvent):
    """Bytes arrived on a stream. Call ``acknowledge_received`` once they are consumed."""

    #: The stream they arrived on.
    stream_id: int
    #: The bytes, in order; ``b""`` only when ``end_stream`` is set.
    data: bytes
    #: The peer finished sending on this stream (half-close): nothing more will follow.
    end_stream: bool


@dataclass(frozen=True, slots=True)
class StreamReset(SessionEvent):
    """A stream was aborted; its state is gone and no more events concern it.

    ``by_peer`` is True when the peer sent RESET (a refusal if we had opened the stream
    and it was never accepted) or when the session ended from the peer's side (GOAWAY,
    connection lost); False when this side ended the session (``close`` or a protocol
    violation by the peer). A local ``reset_stream`` reports no event.
    """

    #: The aborted stream.
    stream_id: int
    #: Why (from the RESET frame, or the code the session ended with).
    code: ErrorCode
    #: Human-readable explanation (may be empty).
    reason: str
    #: Whether the peer caused it (see the class docstring).
    by_peer: bool


@dataclass(frozen=True, slots=True)
class StreamClosed(SessionEvent):
    """Both directions of a stream ended cleanly (FIN sent and received); state freed."""

    #: The finished stream.
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamWritable(SessionEvent):
    """A WINDOW frame from the peer let data (or the FIN) buffered on this stream go out.

    Reported once per WINDOW frame that moved buffered bytes; ``buffered_amount`` tells
    how much is still waiting, so an application can apply any watermark it likes.
    """

    #: The stream whose send buffer shrank.
    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged(SessionEvent):
    """The peer echoed a PING sent with ``send_ping``."""

    #: The ID ``send_ping`` returned.
    ping_id: int
    #: Round-trip time in seconds (the ``now`` of the echo minus that of ``send_ping``).
    rtt: float


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(SessionEvent):
    """The session ended; it is CLOSED and will report nothing more.

    Streams still open were reported with :class:`StreamReset` just before.
    """

    #: Why: the GOAWAY code (either direction), the violation we detected,
    #: ``IDLE_TIMEOUT`` for a dead peer or a handshake that never completed,
    #: ``NO_ERROR`` for a graceful close or a transport lost without GOAWAY.
    code: ErrorCode
    #: Human-readable explanation (``"connection lost"`` when the transport went away).
    reason: str
    #: True when the peer ended it (its GOAWAY, or the transport was lost); False when
    #: this side did (``close``, a timeout, or a protocol violation by the peer).
    by_peer: bool


#: Any event a session reports.
Event: TypeAlias = (
    HandshakeCompleted
    | StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamReset
    | StreamClosed
    | StreamWritable
    | PingAcknowledged
    | ConnectionTerminated
)

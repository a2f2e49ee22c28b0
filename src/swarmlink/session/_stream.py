"""Per-stream state of the multiplexer (plain slots object: it sits on the hot path)."""

from __future__ import annotations

from collections import deque

__all__ = ["StreamState"]


class StreamState:
    """Book-keeping for one open stream.

    Receive side invariant (checked by the tests)::

        recv_credit + recv_unconsumed + recv_unannounced == granted

    where ``granted`` is BASE_STREAM_WINDOW until the acceptor's extra grant, then
    ``SessionConfig.initial_window``: the peer can never have more than that in flight.
    """

    __slots__ = (
        "accepted",
        "buffered",
        "fin_pending",
        "fin_received",
        "fin_sent",
        "local",
        "protocol",
        "recv_credit",
        "recv_unannounced",
        "recv_unconsumed",
        "send_queue",
        "send_window",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: int,
        protocol: str,
        *,
        local: bool,
        send_window: int,
        recv_credit: int,
    ) -> None:
        #: The stream ID.
        self.stream_id = stream_id
        #: The protocol named in its OPEN.
        self.protocol = protocol
        #: True if this side opened it.
        self.local = local
        #: True once accepted (by the peer for local streams, by the app otherwise).
        self.accepted = False
        #: Bytes we may still send before the peer grants more.
        self.send_window = send_window
        #: Application bytes waiting for window, oldest first.
        self.send_queue: deque[bytes | memoryview] = deque()
        #: Total length of ``send_queue``.
        self.buffered = 0
        #: The application ended its side (FIN goes out after ``send_queue``).
        self.fin_pending = False
        #: The FIN has been queued for the peer.
        self.fin_sent = False
        #: Bytes the peer may still send (what we granted minus what arrived).
        self.recv_credit = recv_credit
        #: Bytes delivered to the application and not yet acknowledged by it.
        self.recv_unconsumed = 0
        #: Bytes acknowledged by the application and not yet announced in a WINDOW.
        self.recv_unannounced = 0
        #: The peer's FIN arrived.
        self.fin_received = False

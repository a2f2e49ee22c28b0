"""In-memory plumbing for session tests: pairs of sans-I/O sessions wired back to back.

``transfer`` shuttles ``data_to_send()`` between two sessions until both are quiet;
``transfer_chopped`` does the same but delivers in tiny pieces (byte by byte by default),
which must not change anything a session does. ``Peer`` records what an application
on top of a session saw, and can auto-accept and auto-acknowledge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmlink.errors import ErrorCode
from swarmlink.session import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeCompleted,
    Session,
    SessionConfig,
    StreamClosed,
    StreamOpened,
    StreamReset,
)
from swarmlink.session._payloads import decode_close
from swarmlink.wire.framing import Frame, FrameDecoder, FrameType

__all__ = [
    "Peer",
    "drain",
    "exchange",
    "frames_of",
    "goaway_of",
    "make_pair",
    "run_clock",
    "transfer",
    "transfer_chopped",
]

#: Safety net: a transfer that needs more rounds than this is a livelock.
MAX_ROUNDS = 1_000_000


def drain(session: Session) -> list[Event]:
    """Every event the session has queued."""
    events: list[Event] = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


def transfer(a: Session, b: Session, now: float = 0.0) -> int:
    """Move bytes both ways until neither side has anything to send; total bytes moved."""
    moved = 0
    for _ in range(MAX_ROUNDS):
        data_a = a.data_to_send()
        if data_a:
            b.receive_data(data_a, now)
        data_b = b.data_to_send()
        if data_b:
            a.receive_data(data_b, now)
        if not data_a and not data_b:
            return moved
        moved += len(data_a) + len(data_b)
    raise AssertionError("transfer did not settle")


def transfer_chopped(a: Session, b: Session, now: float = 0.0, chunk: int = 1) -> int:
    """Like :func:`transfer`, delivering in pieces of ``chunk`` bytes."""
    moved = 0
    for _ in range(MAX_ROUNDS):
        data_a = a.data_to_send()
        for i in range(0, len(data_a), chunk):
            b.receive_data(data_a[i : i + chunk], now)
        data_b = b.data_to_send()
        for i in range(0, len(data_b), chunk):
            a.receive_data(data_b[i : i + chunk], now)
        if not data_a and not data_b:
            return moved
        moved += len(data_a) + len(data_b)
    raise AssertionError("transfer did not settle")


def make_pair(
    *,
    now: float = 0.0,
    client: SessionConfig | None = None,
    server: SessionConfig | None = None,
    handshake: bool = True,
) -> tuple[Session, Session]:
    """A client and a server session; by default handshaken, with events drained."""
    c = Session(is_client=True, config=client, now=now)
    s = Session(is_client=False, config=server, now=now)
    if handshake:
        transfer(c, s, now)
        for session in (c, s):
            events = drain(session)
            assert len(events) == 1 and isinstance(events[0], HandshakeCompleted), events
    return c, s


def frames_of(data: bytes) -> list[Frame]:
    """Decode a session's output (no limits beyond the header's)."""
    return FrameDecoder(max_payload=2**32 - 1, max_control_payload=2**32 - 1).feed(data)


def goaway_of(data: bytes) -> tuple[ErrorCode, str]:
    """Code and reason of the (last) GOAWAY in ``data``."""
    goaways = [f for f in frames_of(data) if f.type is FrameType.GOAWAY]
    assert goaways, "no GOAWAY was sent"
    return decode_close(goaways[-1].payload, "GOAWAY")


def run_clock(sessions: list[Session], until: float, start: float = 0.0) -> float:
    """Advance virtual time timer by timer until ``until``, shuttling bytes between a pair.

    With two sessions they are connected; with one, its output is discarded (a peer that
    never answers). Returns the time reached.
    """
    now = start
    for _ in range(MAX_ROUNDS):
        timers = [t for s in sessions if (t := s.get_timer()) is not None]
        if not timers or min(timers) > until:
            return until
        now = max(now, min(timers))
        for s in sessions:
            s.handle_timer(now)
        if len(sessions) == 2:
            transfer(sessions[0], sessions[1], now)
        else:
            sessions[0].data_to_send()
    raise AssertionError("clock did not settle")


@dataclass
class Peer:
    """What the application on one session observed (fed by :meth:`pump`)."""

    session: Session
    auto_accept: bool = True
    auto_ack: bool = True
    received: dict[int, bytearray] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    reset: dict[int, StreamReset] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    opened: dict[int, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    terminated: ConnectionTerminated | None = None

    def pump(self) -> list[Event]:
        """Consume queued events, checking the event-order rules as it goes."""
        new = drain(self.session)
        for event in new:
            assert self.terminated is None, f"event after ConnectionTerminated: {event}"
            self.events.append(event)
            if isinstance(event, StreamOpened):
                assert event.stream_id not in self.opened
                self.opened[event.stream_id] = event.protocol
                self.received.setdefault(event.stream_id, bytearray())
                if self.auto_accept:
                    self.session.accept_stream(event.stream_id)
            elif isinstance(event, DataReceived):
                sid = event.stream_id
                assert sid not in self.finished, "data after end_stream"
                assert event.data or event.end_stream
                self.received.setdefault(sid, bytearray()).extend(event.data)
                if event.end_stream:
                    self.finished.add(sid)
                if self.auto_ack and event.data:
                    self.session.acknowledge_received(sid, len(event.data))
            elif isinstance(event, StreamReset):
                assert event.stream_id not in self.reset and event.stream_id not in self.closed
                self.reset[event.stream_id] = event
            elif isinstance(event, StreamClosed):
                assert event.stream_id not in self.reset and event.stream_id not in self.closed
                self.closed.add(event.stream_id)
            elif isinstance(event, ConnectionTerminated):
                self.terminated = event
        return new


def exchange(a: Peer, b: Peer, now: float = 0.0, *, chop: int = 0) -> None:
    """Transfer and let both applications react, until nothing moves."""
    for _ in range(MAX_ROUNDS):
        moved = (
            transfer_chopped(a.session, b.session, now, chop)
            if chop
            else transfer(a.session, b.session, now)
        )
        reacted = a.pump() + b.pump()
        if not moved and not reacted:
            return
    raise AssertionError("exchange did not settle")

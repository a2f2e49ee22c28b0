"""Hole-punch coordination (sans-I/O), in the style of libp2p's DCUtR.

Two nodes that already share a relayed session agree on a moment to open a direct path
at the same time, each from its listening port, so that both NATs see outbound traffic
and let the other side's packets in:

.. code-block:: text

    initiator                                   responder
      CONNECT {a: [addresses]}      ──────────▶   (remembers them)
      (measures the RTT)            ◀──────────   CONNECT {a: [addresses]}
      SYNC {}                       ──────────▶   punches at once
      punches after RTT / 2                       (both packets cross in the middle)

Each side then dials every address of the other, repeatedly (every
:data:`PUNCH_RETRY` seconds) until one connects or :data:`PUNCH_WINDOW` ends. This module
only decides: messages to send, addresses to dial and when, success or failure with a
reason. Untrusted input is bounded: at most :data:`MAX_PUNCH_ADDRESSES` addresses, each a
literal IP and port; the peer's claims only make us *try* a connection, and TLS still
proves the peer's identity on whatever connects.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation
from ..wire.address import format_hostport, parse_hostport

__all__ = [
    "MAX_PUNCH_ADDRESSES",
    "PUNCH_REPLY_TIMEOUT",
    "PUNCH_RETRY",
    "PUNCH_WINDOW",
    "Dial",
    "PunchCoordinator",
    "PunchState",
    "parse_punch_addresses",
]

#: Addresses taken from the peer's CONNECT (the rest are ignored).
MAX_PUNCH_ADDRESSES = 8
#: Seconds to wait for the peer's CONNECT (or SYNC) before giving up.
PUNCH_REPLY_TIMEOUT = 5.0
#: Seconds during which both sides keep dialing.
PUNCH_WINDOW = 3.0
#: Seconds between two dials of the same address.
PUNCH_RETRY = 0.2


class PunchState(enum.StrEnum):
    IDLE = "idle"
    WAIT_CONNECT = "wait-connect"  # initiator sent CONNECT
    WAIT_SYNC = "wait-sync"  # responder answered CONNECT
    SCHEDULED = "scheduled"  # initiator sent SYNC, punches at `start`
    PUNCHING = "punching"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Dial:
    """Dial ``address`` from the listening port now."""

    address: str


def parse_punch_addresses(value: object, *, allow_loopback: bool = False) -> tuple[str, ...]:
    """The peer's addresses: literal, non-multicast IPs with a port; duplicates dropped,
    capped at :data:`MAX_PUNCH_ADDRESSES`. ProtocolViolation if nothing usable.
    Loopback addresses only with ``allow_loopback`` (a node that itself listens on
    loopback, as in tests); otherwise a peer could point our dials at our own host."""
    if not isinstance(value, list):
        raise ProtocolViolation("punch addresses must be a list", ErrorCode.MALFORMED)
    out: list[str] = []
    for item in value[: MAX_PUNCH_ADDRESSES * 2]:
        if not isinstance(item, str) or len(item) > 64:
            continue
        try:
            host, port = parse_hostport(item)
            ip = ipaddress.ip_address(host)
        except (InvalidArgument, ValueError):
            continue
        if (
            port == 0
            or ip.is_multicast
            or ip.is_unspecified
            or (ip.is_loopback and not allow_loopback)
        ):
            continue
        text = format_hostport(str(ip), port)
        if text not in out:
            out.append(text)
    if not out:
        raise ProtocolViolation("no usable punch address", ErrorCode.MALFORMED)
    return tuple(out[:MAX_PUNCH_ADDRESSES])


@dataclass
class PunchCoordinator:
    """One punch attempt between us and one peer, over an existing (relayed) session."""

    initiator: bool
    own_addresses: tuple[str, ...]
    allow_loopback: bool = False
    state: PunchState = PunchState.IDLE
    peer_addresses: tuple[str, ...] = ()
    rtt: float | None = None
    start: float | None = None
    reason: str = ""
    _sent_at: float = 0.0
    _deadline: float | None = None
    _next_dial: float | None = None
    _outbox: list[dict[str, object]] = field(default_factory=list)

    # ---- outputs ----------------------------------------------------------------------

    def messages_to_send(self) -> list[dict[str, object]]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        times = [t for t in (self._deadline, self._next_dial) if t is not None]
        return min(times) if times else None

    @property
    def done(self) -> bool:
        return self.state in (PunchState.SUCCEEDED, PunchState.FAILED)

    # ---- inputs -----------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """Initiator: send CONNECT with our addresses."""
        if not self.initiator or self.state != PunchState.IDLE:
            raise InvalidArgument("only an idle initiator begins a punch")
        self._outbox.append({"t": "connect", "a": list(self.own_addresses)})
        self._sent_at = now
        self._deadline = now + PUNCH_REPLY_TIMEOUT
        self.state = PunchState.WAIT_CONNECT

    def receive(self, message: object, now: float) -> list[Dial]:
        """A message from the peer; returns dials to make now (if punching starts)."""
        if self.done:
            return []
        if not isinstance(message, dict) or message.get("t") not in ("connect", "sync"):
            self._fail("malformed punch message")
            raise ProtocolViolation("malformed punch message", ErrorCode.MALFORMED)
        kind = message["t"]
        if kind == "connect" and self.initiator and self.state == PunchState.WAIT_CONNECT:
            self.peer_addresses = self._addresses(message)
            self.rtt = max(0.0, now - self._sent_at)
            self._outbox.append({"t": "sync"})
            self.start = now + self.rtt / 2
            self.state = PunchState.SCHEDULED
            self._deadline = self.start + PUNCH_WINDOW
            self._next_dial = self.start
            return self.handle_timer(now)
        if kind == "connect" and not self.initiator and self.state == PunchState.IDLE:
            self.peer_addresses = self._addresses(message)
            self._outbox.append({"t": "connect", "a": list(self.own_addresses)})
            self.state = PunchState.WAIT_SYNC
            self._deadline = now + PUNCH_REPLY_TIMEOUT
            return []
        if kind == "sync" and not self.initiator and self.state == PunchState.WAIT_SYNC:
            self.start = now
            self.state = PunchState.PUNCHING
            self._deadline = now + PUNCH_WINDOW
            self._next_dial = now
            return self.handle_timer(now)
        self._fail(f"unexpected {kind} in state {self.state}")
        raise ProtocolViolation(f"unexpected punch message {kind}", ErrorCode.PROTOCOL_ERROR)

    def _addresses(self, message: dict[str, object]) -> tuple[str, ...]:
        try:
            return parse_punch_addresses(message.get("a"), allow_loopback=self.allow_loopback)
        except ProtocolViolation as exc:
            self._fail(exc.reason)
            raise

    def handle_timer(self, now: float) -> list[Dial]:
        """Dials due now; fails the attempt when its deadline passed."""
        if self.done:
            return []
        if self._deadline is not None and now >= self._deadline:
            waiting = self.state in (PunchState.WAIT_CONNECT, PunchState.WAIT_SYNC)
            self._fail("the peer never answered" if waiting else "no direct path opened")
            return []
        if self.state == PunchState.SCHEDULED and self.start is not None and now >= self.start:
            self.state = PunchState.PUNCHING
        if self.state != PunchState.PUNCHING or self._next_dial is None or now < self._next_dial:
            return []
        self._next_dial = now + PUNCH_RETRY
        return [Dial(a) for a in self.peer_addresses]

    def connected(self) -> None:
        """A direct connection to the peer came up (and TLS verified it)."""
        if not self.done:
            self.state = PunchState.SUCCEEDED
            self._deadline = self._next_dial = None

    def _fail(self, reason: str) -> None:
        self.state = PunchState.FAILED
        self.reason = reason
        self._deadline = self._next_dial = None

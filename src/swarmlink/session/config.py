"""Session configuration and the protocol constants of the stream multiplexer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InvalidArgument
from ..wire.framing import MAX_CONTROL_PAYLOAD, MAX_FRAME_PAYLOAD
from ..wire.version import FEATURES, PROTOCOL_VERSIONS, Hello

__all__ = [
    "BASE_STREAM_WINDOW",
    "MAX_REASON_BYTES",
    "MAX_WINDOW",
    "SessionConfig",
]

#: Flow-control credit every stream starts with, in each direction, before any WINDOW
#: frame: what an opener may send optimistically before the peer accepts. A side that
#: grants more (:attr:`SessionConfig.initial_window`) announces the difference with a
#: WINDOW frame right after its OPEN or ACCEPT. Fixed by the protocol (bytes).
BASE_STREAM_WINDOW = 256 * 1024

#: Largest send window a peer may grant on one stream (bytes); more is ``FLOW_CONTROL``.
MAX_WINDOW = 2**31 - 1

#: Longest reason carried by RESET and GOAWAY, in UTF-8 bytes: longer local reasons are
#: truncated (at a character boundary), longer received ones are ``MALFORMED``.
MAX_REASON_BYTES = 1024


def _positive_finite(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgument(f"SessionConfig.{name} must be a positive number, not {value!r}")


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise InvalidArgument(f"SessionConfig.{name} must be an integer in {low}..{high}")


@dataclass(frozen=True)
class SessionConfig:
    """Tunables of one :class:`~swarmlink.session.Session` (all limits are per session)."""

    #: Largest DATA payload this side sends; bigger writes are split (bytes).
    max_send_frame: int = 64 * 1024
    #: Receive window granted to the peer on every stream: the most it may have in flight
    #: (sent but not yet consumed by our application) per stream (bytes).
    initial_window: int = 1024 * 1024
    #: Most streams opened by the peer that may be open at once; beyond that an OPEN is
    #: refused with RESET ``STREAM_LIMIT``.
    max_inbound_streams: int = 1024
    #: Longest protocol name an OPEN frame may carry (bytes of printable ASCII).
    max_protocol_name: int = 128
    #: Send a keepalive PING once nothing has been received for this long (seconds).
    keepalive_interval: float = 15.0
    #: End the session (``IDLE_TIMEOUT``) once nothing has been received for this long.
    dead_peer_timeout: float = 45.0
    #: Close gracefully (``NO_ERROR``, ``"idle"``) after this long without any open
    #: stream (seconds); ``None`` keeps idle sessions open.
    idle_timeout: float | None = None
    #: End the session (``IDLE_TIMEOUT``) if the peer's HELLO has not arrived by then.
    handshake_timeout: float = 10.0
    #: Our user agent, sent in HELLO (printable ASCII).
    user_agent: str = "swarmlink/0.1.0"
    #: Protocol versions offered in HELLO.
    versions: tuple[int, ...] = PROTOCOL_VERSIONS
    #: Optional features offered in HELLO.
    features: frozenset[str] = field(default=FEATURES)

    def __post_init__(self) -> None:
        _int_in("max_send_frame", self.max_send_frame, 1, MAX_FRAME_PAYLOAD)
        _int_in("initial_window", self.initial_window, BASE_STREAM_WINDOW, MAX_WINDOW)
        _int_in("max_inbound_streams", self.max_inbound_streams, 0, 2**31)
        _int_in("max_protocol_name", self.max_protocol_name, 1, MAX_CONTROL_PAYLOAD)
        _positive_finite("keepalive_interval", self.keepalive_interval)
        _positive_finite("dead_peer_timeout", self.dead_peer_timeout)
        _positive_finite("handshake_timeout", self.handshake_timeout)
        if self.idle_timeout is not None:
            _positive_finite("idle_timeout", self.idle_timeout)
        if self.dead_peer_timeout < self.keepalive_interval:
            raise InvalidArgument(
                "SessionConfig.dead_peer_timeout must not be shorter than keepalive_interval"
            )
        if isinstance(self.versions, str | bytes) or not isinstance(self.versions, tuple | list):
            raise InvalidArgument("SessionConfig.versions must be a tuple of integers")
        if not isinstance(self.features, frozenset | set | tuple | list) or not all(
            isinstance(f, str) for f in self.features
        ):
            raise InvalidArgument("SessionConfig.features must be a set of strings")
        object.__setattr__(self, "versions", tuple(self.versions))
        object.__setattr__(self, "features", frozenset(self.features))
        if len(self.hello().encode()) > MAX_CONTROL_PAYLOAD:  # also validates the fields
            raise InvalidArgument("SessionConfig: the HELLO would exceed MAX_CONTROL_PAYLOAD")

    def hello(self) -> Hello:
        """The HELLO a session with this configuration sends."""
        return Hello.local(
            user_agent=self.user_agent, versions=self.versions, features=self.features
        )

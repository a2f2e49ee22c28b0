"""Exceptions raised by swarmlink.

Every exception derives from :class:`SwarmlinkError`. They are split by *fault*:

.. code-block:: text

    SwarmlinkError
    ├── LocalError               the caller or local configuration is at fault
    │   ├── InvalidArgument      a bad agent ID, address, port, path, option ...
    │   ├── StateError           an operation that the current state does not allow
    │   ├── NodeNotRunning       no daemon answers on the control socket
    │   └── NotFound             an unknown peer, stream, exposure, message ...
    ├── RemoteError              the peer misbehaved or refused; carries a wire ``code``
    │   ├── ProtocolViolation    malformed, oversized or out-of-order input
    │   ├── VersionMismatch      no protocol version in common
    │   ├── VerificationFailed   a certificate, signature or agent ID did not verify
    │   │   └── CertificateExpired
    │   ├── StreamRefused        the peer refused a stream (not trusted, unknown protocol)
    │   ├── StreamReset          the peer (or the session) aborted a stream
    │   └── ConnectionClosed     the session ended (GOAWAY, idle, transport loss)
    └── NetworkError             the network failed us: refused, unreachable, timed out

Wire error codes (:class:`ErrorCode`) travel in RESET and GOAWAY frames, so the
remote side learns *why* it was cut off, and its :class:`RemoteError` carries the code.
"""

from __future__ import annotations

import enum

__all__ = [
    "CertificateExpired",
    "ConnectionClosed",
    "ErrorCode",
    "InvalidArgument",
    "LocalError",
    "NetworkError",
    "NodeNotRunning",
    "NotFound",
    "ProtocolViolation",
    "RemoteError",
    "StateError",
    "StreamRefused",
    "StreamReset",
    "SwarmlinkError",
    "VerificationFailed",
    "VersionMismatch",
]


class ErrorCode(enum.IntEnum):
    """Reason codes carried on the wire (RESET, GOAWAY) and by :class:`RemoteError`."""

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    FRAME_TOO_LARGE = 2
    MALFORMED = 3
    VERSION_MISMATCH = 4
    AUTH_FAILED = 5
    AGENT_MISMATCH = 6
    CERT_EXPIRED = 7
    NOT_TRUSTED = 8
    UNKNOWN_PROTOCOL = 9
    FLOW_CONTROL = 10
    STREAM_LIMIT = 11
    IDLE_TIMEOUT = 12
    SHUTDOWN = 13
    REFUSED = 14
    INTERNAL = 15
    DUPLICATE_CONNECTION = 16
    CANCEL = 17
    REVOKED = 18
    RATE_LIMITED = 19
    STALE = 20
    REPLAY = 21

    @classmethod
    def parse(cls, value: int) -> ErrorCode:
        """Map a code received from the wire; unknown codes become PROTOCOL_ERROR."""
        try:
            return cls(value)
        except ValueError:
            return cls.PROTOCOL_ERROR


class SwarmlinkError(Exception):
    """Root of every exception swarmlink raises on purpose."""


class LocalError(SwarmlinkError):
    """The caller, its arguments or the local configuration are at fault."""


class InvalidArgument(LocalError, ValueError):
    """An argument failed validation (agent ID, address, port, path, ...)."""


class StateError(LocalError):
    """The operation is not allowed in the current state (closed stream, stopped node...)."""


class NodeNotRunning(LocalError):
    """No swarmlink daemon answers on the control socket of this home."""


class NotFound(LocalError, KeyError):
    """The named peer, stream, exposure, forward or message does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0]) if self.args else "not found"


class RemoteError(SwarmlinkError):
    """The remote side misbehaved or refused. ``code`` says why, as sent on the wire."""

    default_code: ErrorCode = ErrorCode.PROTOCOL_ERROR

    def __init__(self, reason: str, code: ErrorCode | None = None) -> None:
        self.code: ErrorCode = code if code is not None else self.default_code
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.reason} [{self.code.name.lower()}]"


class ProtocolViolation(RemoteError):
    """Malformed, oversized or out-of-order input from the peer."""

    default_code = ErrorCode.PROTOCOL_ERROR


class VersionMismatch(RemoteError):
    """The two sides share no protocol version."""

    default_code = ErrorCode.VERSION_MISMATCH


class VerificationFailed(RemoteError):
    """A certificate, signature or agent ID failed verification."""

    default_code = ErrorCode.AUTH_FAILED


class CertificateExpired(VerificationFailed):
    """An operational key certificate is outside its validity period."""

    default_code = ErrorCode.CERT_EXPIRED


class StreamRefused(RemoteError):
    """The peer refused to open a stream (untrusted, unknown protocol, limits)."""

    default_code = ErrorCode.REFUSED


class StreamReset(RemoteError):
    """The stream was aborted by the peer or because its session ended."""

    default_code = ErrorCode.CANCEL


class ConnectionClosed(RemoteError):
    """The session ended; ``code`` says why (NO_ERROR for a graceful close)."""

    default_code = ErrorCode.NO_ERROR


class NetworkError(SwarmlinkError):
    """The network failed: connection refused, unreachable host, timeout."""

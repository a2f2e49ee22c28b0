"""Encoding and strict decoding of the small control payloads (OPEN, RESET, GOAWAY)."""

from __future__ import annotations

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation
from ..wire import cbor
from .config import MAX_REASON_BYTES

__all__ = [
    "decode_close",
    "decode_protocol_name",
    "encode_close",
    "encode_protocol_name",
    "truncate_reason",
]

# A RESET / GOAWAY map is flat; unknown (future) keys may nest a little, never much.
_CLOSE_MAX_DEPTH = 4

# Bytes allowed in a protocol name: printable ASCII without space.
_NAME_BYTES = bytes(range(0x21, 0x7F))


def truncate_reason(reason: str) -> str:
    """``reason`` cut to at most :data:`MAX_REASON_BYTES` UTF-8 bytes (whole characters).

    Lone surrogates, which UTF-8 cannot carry, become ``?``.
    """
    raw = reason.encode("utf-8", "replace")
    return raw[:MAX_REASON_BYTES].decode("utf-8", "ignore")


def _printable(text: str) -> str:
    """Replace control and other non-printable characters (terminal safety)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def encode_close(code: ErrorCode, reason: str) -> bytes:
    """RESET / GOAWAY payload: CBOR ``{"c": code, "r": reason}`` (reason truncated)."""
    if not isinstance(code, ErrorCode):
        raise InvalidArgument(f"error code must be an ErrorCode, not {code!r}")
    if not isinstance(reason, str):
        raise InvalidArgument(f"reason must be a string, not {type(reason).__name__}")
    return cbor.encode({"c": int(code), "r": truncate_reason(reason)})


def decode_close(payload: bytes, what: str) -> tuple[ErrorCode, str]:
    """Parse a received RESET / GOAWAY payload; ``MALFORMED`` unless well formed.

    Unknown map keys are ignored (room for extensions); unknown codes become
    ``PROTOCOL_ERROR`` (:meth:`ErrorCode.parse`); non-printable characters of the reason
    are replaced with U+FFFD so it is safe to show.
    """
    value = cbor.decode(payload, max_depth=_CLOSE_MAX_DEPTH)
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{what} payload is not a CBOR map", ErrorCode.MALFORMED)
    code = value.get("c")
    reason = value.get("r")
    if type(code) is not int or not 0 <= code <= 0xFFFF_FFFF:
        raise ProtocolViolation(
            f"{what} code must be an integer in 0..2**32-1", ErrorCode.MALFORMED
        )
    if not isinstance(reason, str):
        raise ProtocolViolation(f"{what} reason must be a text string", ErrorCode.MALFORMED)
    if len(reason) > MAX_REASON_BYTES or len(reason.encode("utf-8")) > MAX_REASON_BYTES:
        raise ProtocolViolation(
            f"{what} reason exceeds {MAX_REASON_BYTES} bytes", ErrorCode.MALFORMED
        )
    return ErrorCode.parse(code), _printable(reason)


def encode_protocol_name(protocol: str, max_length: int) -> bytes:
    """OPEN payload for ``protocol``; :class:`InvalidArgument` if the peer would refuse it."""
    if not isinstance(protocol, str):
        raise InvalidArgument(f"protocol must be a string, not {type(protocol).__name__}")
    raw = protocol.encode("utf-8")
    if not 0 < len(raw) <= max_length or raw.translate(None, _NAME_BYTES):
        raise InvalidArgument(
            f"protocol name {protocol!r:.80} must be 1..{max_length} printable ASCII "
            "characters without spaces"
        )
    return raw


def decode_protocol_name(payload: bytes, max_length: int) -> str:
    """The protocol name of a received OPEN; ``MALFORMED`` unless 1..max printable ASCII."""
    if not 0 < len(payload) <= max_length:
        raise ProtocolViolation(
            f"OPEN protocol name of {len(payload)} bytes is not within 1..{max_length}",
            ErrorCode.MALFORMED,
        )
    if payload.translate(None, _NAME_BYTES):
        raise ProtocolViolation(
            "OPEN protocol name is not printable ASCII without spaces", ErrorCode.MALFORMED
        )
    return payload.decode("ascii")

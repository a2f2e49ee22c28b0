"""The frame layer: every byte a session exchanges travels in a frame.

.. code-block:: text

    +----------------+--------+--------+----------------+----------------------+
    | length (u32)   | type   | flags  | stream_id (u32)| payload (length B)   |
    +----------------+--------+--------+----------------+----------------------+
      4 bytes          1 byte   1 byte   4 bytes          network byte order

Frame types and the flags each one may carry:

=========  =====  ======  ====================================================
type       value  flags   payload
=========  =====  ======  ====================================================
DATA       0      FIN     stream bytes, at most :data:`MAX_FRAME_PAYLOAD`
OPEN       1      —       protocol name (printable ASCII)
ACCEPT     2      —       empty
RESET      3      —       CBOR ``{"c": code, "r": reason}``
WINDOW     4      —       u32 window increment
PING       5      ACK     8 opaque bytes, echoed with ACK
GOAWAY     6      —       CBOR ``{"c": code, "r": reason}``
HELLO      7      —       CBOR HELLO (:mod:`swarmlink.wire.version`)
=========  =====  ======  ====================================================

Every type other than DATA is a *control* frame limited to :data:`MAX_CONTROL_PAYLOAD`.
:class:`FrameDecoder` enforces the limits from the header alone, before it buffers a
single byte of the body, and rejects unknown types and flags a type may not carry. What
the payloads mean (and which stream IDs are valid) is the session's business.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation

__all__ = [
    "ALLOWED_FLAGS",
    "HEADER",
    "HEADER_SIZE",
    "MAX_CONTROL_PAYLOAD",
    "MAX_FRAME_PAYLOAD",
    "MAX_STREAM_ID",
    "Flag",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "RawFrame",
    "encode_frame",
]

#: The frame header: payload length (u32), type (u8), flags (u8), stream ID (u32).
HEADER = struct.Struct("!IBBI")

#: Size of :data:`HEADER` in bytes (10).
HEADER_SIZE = HEADER.size

#: Largest DATA payload a decoder accepts by default (bytes; untrusted input).
MAX_FRAME_PAYLOAD = 256 * 1024

#: Largest payload of every other frame type (bytes; untrusted input).
MAX_CONTROL_PAYLOAD = 4096

#: Largest stream ID the header can carry.
MAX_STREAM_ID = 0xFFFF_FFFF


class FrameType(IntEnum):
    """The type byte of a frame."""

    DATA = 0
    OPEN = 1
    ACCEPT = 2
    RESET = 3
    WINDOW = 4
    PING = 5
    GOAWAY = 6
    HELLO = 7


class Flag(IntFlag):
    """The flags byte of a frame."""

    #: DATA: the sender will send nothing more on this stream (half-close).
    FIN = 1
    #: PING: this is the echo of a PING the receiver sent.
    ACK = 2


#: Flags each frame type may carry; any other bit set is ``MALFORMED``.
ALLOWED_FLAGS: dict[FrameType, Flag] = {
    FrameType.DATA: Flag.FIN,
    FrameType.OPEN: Flag(0),
    FrameType.ACCEPT: Flag(0),
    FrameType.RESET: Flag(0),
    FrameType.WINDOW: Flag(0),
    FrameType.PING: Flag.ACK,
    FrameType.GOAWAY: Flag(0),
    FrameType.HELLO: Flag(0),
}

# Hot-path lookups indexed by the type byte.
_TYPES: tuple[FrameType, ...] = tuple(FrameType)
_ALLOWED: tuple[int, ...] = tuple(int(ALLOWED_FLAGS[t]) for t in _TYPES)
_NTYPES = len(_TYPES)
_unpack_from = HEADER.unpack_from
_pack = HEADER.pack

#: A decoded frame as a plain tuple ``(type, flags, stream_id, payload)`` (fast path).
RawFrame = tuple[int, int, int, bytes]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame."""

    #: What the frame is.
    type: FrameType
    #: Bits of :class:`Flag` (only those :data:`ALLOWED_FLAGS` permits for the type).
    flags: int
    #: The stream it belongs to (0 for HELLO, PING and GOAWAY).
    stream_id: int
    #: The payload bytes.
    payload: bytes

    def encode(self) -> bytes:
        """The frame on the wire (see :func:`encode_frame`)."""
        return encode_frame(self.type, self.flags, self.stream_id, self.payload)


def encode_frame(type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """Header plus payload; :class:`InvalidArgument` for a frame no decoder would accept."""
    if type not in _TYPE_VALUES:
        raise InvalidArgument(f"unknown frame type {type!r}")
    ftype = _TYPES[type]
    if flags < 0 or flags & ~_ALLOWED[ftype]:
        raise InvalidArgument(f"flags {flags:#x} are not allowed on {ftype.name} frames")
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise InvalidArgument(f"stream ID {stream_id} is out of range 0..{MAX_STREAM_ID}")
    limit = MAX_FRAME_PAYLOAD if ftype is FrameType.DATA else MAX_CONTROL_PAYLOAD
    if len(payload) > limit:
        raise InvalidArgument(
            f"{ftype.name} payload of {len(payload)} bytes exceeds the limit of {limit}"
        )
    return _pack(len(payload), ftype, flags, stream_id) + bytes(payload)


_TYPE_VALUES = frozenset(int(t) for t in FrameType)


class FrameDecoder:
    """Split a byte stream into frames, validating each header as soon as it is complete.

    Feed it bytes in chunks of any size; the frames come out identical however the
    stream was split. After the first invalid header the decoder is spent: every later
    call reports the same :class:`ProtocolViolation`.
    """

    __slots__ = ("_buf", "_error", "_have", "_max_control", "_max_payload")

    def __init__(
        self,
        max_payload: int = MAX_FRAME_PAYLOAD,
        max_control_payload: int = MAX_CONTROL_PAYLOAD,
    ) -> None:
        for name, value in (
            ("max_payload", max_payload),
            ("max_control_payload", max_control_payload),
        ):
            if type(value) is not int or not 0 <= value <= 0xFFFF_FFFF:
                raise InvalidArgument(f"{name} must be an integer in 0..2**32-1, not {value!r}")
        self._max_payload = max_payload
        self._max_control = max_control_payload
        self._buf = bytearray()  # storage of the pending (incomplete) frame
        self._have = 0  # ... and how much of it is filled
        self._error: ProtocolViolation | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """The frames completed by ``data``; raises :class:`ProtocolViolation` on bad input.

        ``FRAME_TOO_LARGE`` for a payload length above the limit of its type, ``MALFORMED``
        for an unknown type or a flag the type may not carry. On error, frames completed
        earlier in the same call are discarded; :meth:`feed_raw` returns them instead.
        """
        frames, error = self.feed_raw(data)
        if error is not None:
            raise error
        types = _TYPES
        return [Frame(types[t], f, s, p) for t, f, s, p in frames]

    def feed_raw(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[RawFrame], ProtocolViolation | None]:
        """Fast path of :meth:`feed`: ``(frames, error)`` without raising.

        ``frames`` holds every frame completed before the first invalid header (as
        ``(type, flags, stream_id, payload)`` tuples with ``type`` a plain ``int``);
        ``error`` is that header's :class:`ProtocolViolation`, or ``None``.
        """
        if self._error is not None:
            return [], self._error
        frames: list[RawFrame] = []
        append = frames.append
        # bytes are sliced directly; any other buffer (a reused read buffer) is only
        # viewed, and each payload copied out of it once: nothing here keeps the view.
        copy = type(data) is not bytes
        src: Any = memoryview(data).cast("B") if copy else data
        end = len(src)
        pos = 0
        have = self._have
        if have:
            # Complete the pending frame with as few bytes of ``src`` as it needs, so the
            # rest of ``src`` is sliced directly.
            if have < HEADER_SIZE:
                pos = min(HEADER_SIZE - have, end)
                have = self._stash(src[:pos])
                if have < HEADER_SIZE:
                    return frames, None
            length, ftype, flags, sid = _unpack_from(self._buf, 0)
            error = self._check(length, ftype, flags)
            if error is not None:
                return frames, self._fail(error)
            need = HEADER_SIZE + length - have
            take = min(need, end - pos)
            if take < need:
                self._stash(src[pos : pos + take])
                return frames, None
            # One copy of the payload: the buffered part and the rest joined.
            with memoryview(self._buf) as held:
                payload = b"".join((held[HEADER_SIZE:have], src[pos : pos + take]))
            self._have = 0
            pos += take
            append((ftype, flags, sid, payload))
        max_data = self._max_payload
        while end - pos >= HEADER_SIZE:
            length, ftype, flags, sid = _unpack_from(src, pos)
            if ftype or flags > 1 or length > max_data:  # anything but a valid DATA header
                error = self._check(length, ftype, flags)
                if error is not None:
                    return frames, self._fail(error)
            start = pos + HEADER_SIZE
            stop = start + length
            if stop > end:
                break
            append((ftype, flags, sid, bytes(src[start:stop]) if copy else src[start:stop]))
            pos = stop
        if pos < end:
            self._stash(src[pos:])
        return frames, None

    def _stash(self, chunk: Any) -> int:
        """Append ``chunk`` to the pending frame; the new pending length.

        The storage is kept from frame to frame and grows by doubling (up to a whole
        frame), so a connection carrying bulk data stops allocating for it: freeing and
        reallocating a few hundred KiB per frame made glibc hand pages back and fault
        them in again (page faults were most of the receiving daemon's kernel time).
        """
        have = self._have
        n = have + len(chunk)
        buf = self._buf
        if n > len(buf):
            grown = bytearray(max(n, min(2 * len(buf), HEADER_SIZE + self._max_payload)))
            grown[:have] = buf[:have]
            self._buf = buf = grown
        with memoryview(buf) as view:  # (a bytearray slice assignment from a view
            view[have:n] = chunk  # would first copy the view into a new bytearray)
        self._have = n
        return n

    def _check(self, length: int, ftype: int, flags: int) -> ProtocolViolation | None:
        if ftype >= _NTYPES:
            return ProtocolViolation(f"unknown frame type {ftype}", ErrorCode.MALFORMED)
        limit = self._max_payload if ftype == 0 else self._max_control
        if length > limit:
            return ProtocolViolation(
                f"{_TYPES[ftype].name} frame of {length} bytes exceeds the limit of {limit}",
                ErrorCode.FRAME_TOO_LARGE,
            )
        if flags & ~_ALLOWED[ftype]:
            return ProtocolViolation(
                f"flags {flags:#04x} are not allowed on {_TYPES[ftype].name} frames",
                ErrorCode.MALFORMED,
            )
        return None

    def _fail(self, error: ProtocolViolation) -> ProtocolViolation:
        self._error = error
        self._have = 0
        self._buf = bytearray()
        return error

"""Length-prefixed CBOR records, the message format of service streams.

A record is a 4-byte big-endian unsigned length followed by that many bytes of
deterministic CBOR (:mod:`swarmlink.wire.cbor`):

.. code-block:: text

    +-----------------+---------------------------+
    | length (u32 BE) | CBOR value (length bytes) |
    +-----------------+---------------------------+

:class:`RecordDecoder` is sans-I/O: feed it whatever bytes arrived, get back every
record they complete. An oversized length prefix is refused as soon as its four bytes
are in, before any of the body is buffered.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import ErrorCode, InvalidArgument, ProtocolViolation
from . import cbor

__all__ = ["MAX_RECORD_SIZE", "RECORD_HEADER_SIZE", "RecordDecoder", "encode_record"]

#: Largest CBOR body of one record, in bytes (the 4-byte prefix not included). A peer
#: announcing more is cut off with ``FRAME_TOO_LARGE``. Untrusted input.
MAX_RECORD_SIZE = 64 * 1024

#: Size of the length prefix.
RECORD_HEADER_SIZE = 4

_LENGTH = struct.Struct(">I")
_MAX_LIMIT = 0xFFFFFFFF


def encode_record(value: cbor.CborValue) -> bytes:
    """Encode ``value`` as one record: u32 big-endian length + deterministic CBOR.

    Raises :class:`~swarmlink.errors.InvalidArgument` if ``value`` is not encodable or
    its encoding is larger than :data:`MAX_RECORD_SIZE`.
    """
    body = cbor.encode(value)
    if len(body) > MAX_RECORD_SIZE:
        raise InvalidArgument(
            f"record of {len(body)} bytes exceeds the limit of {MAX_RECORD_SIZE} bytes"
        )
    return _LENGTH.pack(len(body)) + body


class RecordDecoder:
    """Incremental decoder of a stream of records.

    After it raised once, the decoder is dead: every later :meth:`feed` raises the same
    error again (the stream carrying the records should be reset).
    """

    __slots__ = ("_buffer", "_error", "_max", "_need")

    def __init__(self, max_record_size: int = MAX_RECORD_SIZE) -> None:
        if not 0 <= max_record_size <= _MAX_LIMIT:
            raise InvalidArgument(
                f"max_record_size must be in 0..{_MAX_LIMIT}, not {max_record_size}"
            )
        self._max = max_record_size
        self._buffer = bytearray()
        # Bytes that must be buffered before anything can be decoded: the prefix, or
        # the prefix plus the body once the prefix is known. Keeps feeding a big record
        # in small pieces linear (no re-parsing of the buffer on every call).
        self._need = RECORD_HEADER_SIZE
        self._error: ProtocolViolation | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a record."""
        return len(self._buffer)

    @property
    def has_partial(self) -> bool:
        """Whether part of a record (prefix or body) has been received but not completed."""
        return bool(self._buffer)

    def _fail(self, reason: str, code: ErrorCode) -> ProtocolViolation:
        self._error = ProtocolViolation(reason, code)
        self._buffer = bytearray()
        self._need = RECORD_HEADER_SIZE
        return self._error

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; return every record they complete, decoded, in order.

        Raises :class:`~swarmlink.errors.ProtocolViolation` with ``FRAME_TOO_LARGE`` when
        a length prefix exceeds the limit and ``MALFORMED`` when a body is not valid
        deterministic CBOR. Records completed earlier in the same call are discarded then.
        """
        if self._error is not None:
            raise ProtocolViolation(self._error.reason, self._error.code)
        buffer = self._buffer
        buffer += data
        if len(buffer) < self._need:
            return []
        records: list[Any] = []
        end = len(buffer)
        pos = 0
        with memoryview(buffer) as view:
            while end - pos >= RECORD_HEADER_SIZE:
                (size,) = _LENGTH.unpack_from(view, pos)
                if size > self._max:
                    raise self._fail(
                        f"record of {size} bytes exceeds the limit of {self._max} bytes",
                        ErrorCode.FRAME_TOO_LARGE,
                    )
                start = pos + RECORD_HEADER_SIZE
                if end - start < size:
                    break
                try:
                    records.append(cbor.decode(view[start : start + size].tobytes()))
                except ProtocolViolation as exc:
                    raise self._fail(f"bad record: {exc.reason}", ErrorCode.MALFORMED) from None
                pos = start + size
        if pos:
            del buffer[:pos]
        remaining = end - pos
        if remaining >= RECORD_HEADER_SIZE:
            self._need = RECORD_HEADER_SIZE + _LENGTH.unpack_from(buffer, 0)[0]
        else:
            self._need = RECORD_HEADER_SIZE
        return records

"""Stream: the asyncio face of one multiplexed stream (read / write / drain / eof / reset)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import TYPE_CHECKING

from ..errors import (
    ErrorCode,
    ProtocolViolation,
    RemoteError,
    StateError,
    StreamRefused,
    StreamReset,
)
from ..wire import cbor
from ..wire.records import MAX_RECORD_SIZE, encode_record

if TYPE_CHECKING:
    from ._connection import PeerConnection

__all__ = ["MAX_STREAM_RECORD", "Stream"]

#: Largest CBOR record :meth:`Stream.read_record` accepts by default (bytes).
MAX_STREAM_RECORD = MAX_RECORD_SIZE

_REFUSAL_CODES = frozenset(
    {
        ErrorCode.NOT_TRUSTED,
        ErrorCode.UNKNOWN_PROTOCOL,
        ErrorCode.REFUSED,
        ErrorCode.STREAM_LIMIT,
    }
)


class Stream:
    """A bidirectional byte stream to one peer, opened with a protocol name.

    Reads apply backpressure to the peer (its flow-control window only reopens as
    data is consumed); :meth:`drain` waits while too much is queued towards the peer.
    """

    __slots__ = (
        "_accepted",
        "_buffer",
        "_conn",
        "_eof",
        "_error",
        "_head_pos",
        "_local_eof",
        "_read_waiter",
        "_unread",
        "_write_waiter",
        "outbound",
        "peer",
        "protocol",
        "stream_id",
    )

    def __init__(
        self,
        conn: PeerConnection,
        stream_id: int,
        protocol: str,
        peer: str,
        *,
        outbound: bool,
    ) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.protocol = protocol
        self.peer = peer
        self.outbound = outbound
        # Received chunks, oldest first (kept as delivered: a read of a whole chunk
        # hands it on without a copy); ``_unread`` is their total length.
        self._buffer: deque[bytes] = deque()
        self._unread = 0
        self._head_pos = 0  # bytes of the oldest chunk already read
        self._eof = False
        self._local_eof = False
        self._error: RemoteError | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._accepted = not outbound

    @property
    def connection(self) -> PeerConnection:
        """The session this stream runs on."""
        return self._conn

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} {self.protocol} peer={self.peer[:12]}>"

    # ---- events from the connection -------------------------------------------------

    def _on_accepted(self) -> None:
        self._accepted = True

    def _on_data(self, data: bytes, end_stream: bool) -> None:
        if data:
            self._buffer.append(data)
            self._unread += len(data)
        if end_stream:
            self._eof = True
        self._wake_reader()

    def _on_reset(self, code: ErrorCode, reason: str, by_peer: bool) -> None:
        if self._error is not None:
            return
        what = f"stream {self.protocol} to {self.peer[:12]}"
        if by_peer and not self._accepted and code in _REFUSAL_CODES:
            self._error = StreamRefused(f"{what} refused: {reason or code.name.lower()}", code)
        else:
            who = "peer" if by_peer else "session"
            self._error = StreamReset(f"{what} reset by {who}: {reason or code.name}", code)
        self._wake_reader()
        self._wake_writer()

    def _on_writable(self) -> None:
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- reading --------------------------------------------------------------------

    @property
    def unread(self) -> int:
        """Bytes received and not read yet."""
        return self._unread

    def discard_unread(self) -> None:
        """Drop received data nobody read (the session is shedding memory)."""
        self._buffer.clear()
        self._unread = self._head_pos = 0

    def _take(self, n: int) -> bytes:
        """Remove and return the first ``n`` buffered bytes (``0 < n <= unread``)."""
        buffer = self._buffer
        self._unread -= n
        pos = self._head_pos
        head = buffer[0]
        left = len(head) - pos
        if n < left:  # a part of the oldest chunk (remember where the rest starts)
            self._head_pos = pos + n
            return head[pos : pos + n]
        buffer.popleft()
        self._head_pos = 0
        first = head[pos:] if pos else head  # no copy when whole chunks are read
        if n == left:
            return first
        parts = [first]
        n -= left
        while n:
            head = buffer[0]
            if len(head) <= n:
                parts.append(buffer.popleft())
                n -= len(head)
            else:
                parts.append(head[:n])
                self._head_pos = n
                n = 0
        return b"".join(parts)

    @property
    def error(self) -> RemoteError | None:
        return self._error

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def _wait_readable(self) -> None:
        while not self._buffer and not self._eof and self._error is None:
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None

    async def at_end(self) -> bool:
        """Wait for data or end of stream; True at a clean end (raises if reset)."""
        await self._wait_readable()
        if self._buffer:
            return False
        if self._error is not None:
            raise self._error
        return self._eof

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered when ``n < 0``); ``b""`` at end of stream."""
        await self._wait_readable()
        if self._buffer:
            data = self._take(self._unread if n < 0 or n >= self._unread else n)
            self._conn.acknowledge(self.stream_id, len(data))
            return data
        if self._error is not None:
            raise self._error
        return b""

    async def read_chunks(self) -> list[bytes]:
        """Everything buffered, as the chunks it arrived in (no copy to join them);
        ``[]`` at end of stream. For relaying bulk data (:func:`~._pipe.pipe`)."""
        await self._wait_readable()
        if self._buffer:
            chunks = list(self._buffer)
            self._buffer.clear()
            if self._head_pos:
                chunks[0] = chunks[0][self._head_pos :]
                self._head_pos = 0
            n, self._unread = self._unread, 0
            self._conn.acknowledge(self.stream_id, n)
            return chunks
        if self._error is not None:
            raise self._error
        return []

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`ProtocolViolation` if the stream ends first."""
        while self._unread < n:
            if self._error is not None:
                raise self._error
            if self._eof:
                raise ProtocolViolation(
                    f"stream {self.protocol} ended after {self._unread} of {n} bytes",
                    ErrorCode.MALFORMED,
                )
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if not n:
            return b""
        data = self._take(n)
        self._conn.acknowledge(self.stream_id, n)
        return data

    async def read_record(self, *, max_size: int = MAX_STREAM_RECORD) -> object:
        """One length-prefixed CBOR record (see :mod:`swarmlink.wire.records`)."""
        return cbor.decode(await self.read_frame(max_size=max_size))

    async def read_frame(self, *, max_size: int = MAX_STREAM_RECORD) -> bytes:
        """The body of one length-prefixed record (u32 length, then that many bytes),
        undecoded; :class:`ProtocolViolation` if the length is over ``max_size``."""
        size = _frame_size(await self.readexactly(4), max_size)
        return await self.readexactly(size)

    def read_frame_nowait(self, *, max_size: int = MAX_STREAM_RECORD) -> bytes | None:
        """Like :meth:`read_frame` for a record already wholly received; ``None`` (and
        nothing consumed) when it has not fully arrived yet. Lets a reader handle every
        buffered record in one go instead of waking once per record."""
        if self._unread < 4:
            return None
        buffer = self._buffer
        head = buffer[0]
        pos = self._head_pos
        if len(head) - pos >= 4:
            header = head[pos : pos + 4]
        else:  # the length straddles chunks: peek without consuming
            got = head[pos:]
            for chunk in itertools.islice(buffer, 1, None):
                got += chunk[: 4 - len(got)]
                if len(got) == 4:
                    break
            header = got
        size = _frame_size(header, max_size)
        if self._unread < 4 + size:
            return None
        data = self._take(4 + size)[4:]
        self._conn.acknowledge(self.stream_id, 4 + size)
        return data

    # ---- writing --------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._local_eof:
            raise StateError(f"stream {self.protocol}: write after write_eof()")

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the peer (call :meth:`drain` to respect backpressure)."""
        self._check_writable()
        if data:
            self._conn.send_data(self.stream_id, data, False)

    def write_record(self, value: cbor.CborValue) -> None:
        """Write one length-prefixed CBOR record (:func:`swarmlink.wire.records.encode_record`)."""
        self.write(encode_record(value))

    @property
    def congested(self) -> bool:
        """True while more than the connection's high-water mark is queued on this
        stream (a writer should :meth:`drain` before writing more)."""
        return self._error is None and self._conn.is_congested(self.stream_id)

    async def drain(self) -> None:
        """Wait until the data queued on this stream has gone out to the peer."""
        while True:
            self._check_writable_or_eof()
            if not self.congested:
                return
            self._write_waiter = asyncio.get_running_loop().create_future()
            self._conn.add_drain_waiter(self._write_waiter)
            try:
                await self._write_waiter
            finally:
                self._write_waiter = None

    def _check_writable_or_eof(self) -> None:
        if self._error is not None:
            raise self._error

    def write_eof(self) -> None:
        """Half-close: the peer reads end-of-stream after the data already written."""
        if self._local_eof or self._error is not None:
            return
        self._local_eof = True
        self._conn.send_data(self.stream_id, b"", True)

    def reset(self, code: ErrorCode = ErrorCode.CANCEL, reason: str = "") -> None:
        """Abort the stream in both directions."""
        if self._error is None:
            self._conn.reset_stream(self.stream_id, code, reason)
            self._on_reset(code, reason or "reset locally", False)

    async def close(self) -> None:
        """Half-close and flush (the peer may still send until it closes its side)."""
        self.write_eof()
        if self._error is None:
            await self.drain()


def _frame_size(header: bytes, max_size: int) -> int:
    size = int.from_bytes(header, "big")
    if size > max_size:
        raise ProtocolViolation(
            f"record of {size} bytes exceeds the limit of {max_size}",
            ErrorCode.FRAME_TOO_LARGE,
        )
    return size

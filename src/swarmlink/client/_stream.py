"""ClientStream: a peer stream carried by an upgraded control connection."""

from __future__ import annotations

import asyncio
import contextlib
import select

from ..errors import ErrorCode, ProtocolViolation, StateError, StreamReset

__all__ = ["STREAM_CLOSE_TIMEOUT", "STREAM_READ_CHUNK", "ClientStream"]

#: Largest read from the socket when ``read()`` is called without a size (bytes).
STREAM_READ_CHUNK = 256 * 1024
#: Seconds :meth:`ClientStream.aclose` waits for the peer to finish its side.
STREAM_CLOSE_TIMEOUT = 10.0


def _closed_both_ways(writer: asyncio.StreamWriter) -> bool:
    """True if the daemon dropped the socket (not just half-closed it): a reset."""
    sock = writer.get_extra_info("socket")
    if sock is None or writer.transport.is_closing():
        return True
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return any(mask & (select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))
    except (OSError, ValueError):
        return True


class ClientStream:
    """A byte stream to a peer, through the daemon (``Client.open_stream`` / ``handle``).

    The same surface as :class:`swarmlink.runtime.Stream`: ``read`` / ``readexactly`` /
    ``write`` / ``drain`` / ``write_eof`` / ``close`` / ``reset``. End-of-stream travels as
    a socket half-close; a reset (by the peer, the session, or the daemon stopping)
    surfaces as :class:`StreamReset` (the reason is in the daemon log).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initial: bytes = b"",
        *,
        peer: str,
        protocol: str,
    ) -> None:
        self.peer = peer
        self.protocol = protocol
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray(initial)
        self._eof = False
        self._local_eof = False
        self._error: StreamReset | None = None

    def __repr__(self) -> str:
        return f"<ClientStream {self.protocol} peer={self.peer[:12]}>"

    def _what(self) -> str:
        return f"stream {self.protocol} to {self.peer[:12]}"

    def _fail(self, why: str) -> StreamReset:
        if self._error is None:
            self._error = StreamReset(f"{self._what()} {why}", ErrorCode.CANCEL)
        self._writer.transport.abort()
        return self._error

    @property
    def error(self) -> StreamReset | None:
        return self._error

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    # ---- reading ---------------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (what is available when ``n < 0``); ``b""`` at end of stream."""
        if self._buffer:
            if n < 0 or n >= len(self._buffer):
                data = bytes(self._buffer)
                self._buffer.clear()
            else:
                data = bytes(self._buffer[:n])
                del self._buffer[:n]
            return data
        if self._error is not None:
            raise self._error
        if self._eof or n == 0:
            return b""
        try:
            data = await self._reader.read(n if n > 0 else STREAM_READ_CHUNK)
        except (ConnectionError, OSError):
            raise self._fail("was reset") from None
        if data:
            return data
        self._eof = True
        if not self._local_eof and _closed_both_ways(self._writer):
            raise self._fail("was reset (see the daemon log for why)")
        self._release_if_done()
        return b""

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`ProtocolViolation` if the stream ends first."""
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise ProtocolViolation(
                    f"{self._what()} ended after {len(out)} of {n} bytes", ErrorCode.MALFORMED
                )
            out += chunk
        return bytes(out)

    # ---- writing ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the peer (call :meth:`drain` to respect backpressure)."""
        if self._error is not None:
            raise self._error
        if self._local_eof:
            raise StateError(f"{self._what()}: write after write_eof()")
        if self._writer.transport.is_closing():
            raise self._fail("was reset")
        if data:
            self._writer.write(data)

    async def drain(self) -> None:
        """Wait until the socket accepted what was written."""
        if self._error is not None:
            raise self._error
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise self._fail("was reset") from None

    def write_eof(self) -> None:
        """Half-close: the peer reads end-of-stream after the data already written."""
        if self._local_eof or self._error is not None:
            return
        self._local_eof = True
        if not self._writer.transport.is_closing():
            with contextlib.suppress(OSError):
                self._writer.write_eof()
        self._release_if_done()

    def reset(self) -> None:
        """Abort the stream in both directions."""
        self._fail("was reset locally")

    async def close(self) -> None:
        """Half-close and flush (the peer may still send until it closes its side)."""
        self.write_eof()
        if self._error is None:
            with contextlib.suppress(StreamReset):
                await self.drain()

    async def aclose(self, grace: float = STREAM_CLOSE_TIMEOUT) -> None:
        """Half-close, give the peer ``grace`` seconds to end its side (discarding what
        it still sends), then release the connection (a reset if the peer did not end)."""
        await self.close()
        try:
            async with asyncio.timeout(grace):
                while await self.read():
                    pass
        except (TimeoutError, StreamReset):
            pass
        if not self.at_eof():
            self.reset()
        self._release()

    async def __aenter__(self) -> ClientStream:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.reset()
        else:
            await self.aclose()

    # ---- the connection ------------------------------------------------------------

    def _release_if_done(self) -> None:
        if self._eof and self._local_eof:
            self._release()

    def _release(self) -> None:
        if not self._writer.transport.is_closing():
            self._writer.close()

"""The tunnel data path: copy bytes both ways between a stream and a TCP connection.

The TCP side runs as a plain :class:`asyncio.Protocol` taken over from the
``StreamReader``/``StreamWriter`` pair the caller opened: each chunk the socket delivers
goes straight into the stream (no reader buffer: two copies fewer per byte, and no
pause/resume of the socket after every read), and backpressure is the transport's own
``pause_reading``/``resume_reading`` while the stream is congested. Half-close is
honoured both ways; an error on either side aborts both.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ..errors import RemoteError, StateError
from ._stream import Stream

__all__ = ["pipe"]


class _TcpSide(asyncio.Protocol):
    """The TCP connection's protocol while piped (it replaces the StreamReaderProtocol)."""

    def __init__(self, stream: Stream, transport: asyncio.Transport) -> None:
        self._stream = stream
        self._transport = transport
        loop = asyncio.get_running_loop()
        #: Set once nothing more goes from TCP to the stream (EOF, error, loss).
        self.inbound_done: asyncio.Future[None] = loop.create_future()
        #: Set when the TCP connection is gone.
        self.lost: asyncio.Future[None] = loop.create_future()
        self._writable: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drainer: asyncio.Task[None] | None = None
        #: The stream -> TCP direction ended (EOF written to TCP, or given up).
        self.outbound_done = False

    # ---- TCP -> stream ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.inbound_done.done():
            return
        stream = self._stream
        try:
            stream.write(data)
        except (RemoteError, StateError):
            self._end_inbound(reset=True)
            self._transport.pause_reading()
            return
        if self._drainer is None and stream.congested:
            self._transport.pause_reading()
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self._stream.drain()
        except RemoteError:
            self._end_inbound(reset=True)
            return
        finally:
            self._drainer = None
        if not self.inbound_done.done() and not self._transport.is_closing():
            self._transport.resume_reading()

    def eof_received(self) -> bool:
        self._end_inbound(reset=False)
        return True  # keep the transport open: the stream may still send to TCP

    def _end_inbound(self, *, reset: bool) -> None:
        if self.inbound_done.done():
            return
        self.inbound_done.set_result(None)
        if reset:
            self._stream.reset()
        else:
            try:
                self._stream.write_eof()
            except RemoteError:
                self._stream.reset()

    def connection_lost(self, exc: Exception | None) -> None:
        # Lost before EOF either way (a reset, or our abort): the stream cannot end cleanly.
        self._end_inbound(reset=True)
        if not self.outbound_done:
            self._stream.reset()  # wakes the copy loop with the error
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_writer()

    # ---- stream -> TCP flow control -----------------------------------------------------

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def writable(self) -> None:
        """Wait while the TCP transport's write buffer is over its high-water mark."""
        while self._write_paused and not self.lost.done():
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None


def _take_over(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[asyncio.Transport, bytes] | None:
    """Detach the transport from asyncio's stream pair: (transport, bytes the reader
    had buffered), or None when that is not possible (then the streams are used)."""
    # A stream transport we can re-point at our protocol (uvloop's transports have these
    # methods but do not subclass asyncio.Transport, so duck typing, not isinstance).
    transport = cast(asyncio.Transport, writer.transport)
    state: Any = reader
    buffered = getattr(state, "_buffer", None)
    if (
        not all(hasattr(transport, m) for m in ("set_protocol", "pause_reading", "write_eof"))
        or transport.is_closing()
        or not isinstance(buffered, bytearray)
        or getattr(state, "_eof", True)  # EOF already seen by the reader
        or reader.exception() is not None
    ):
        return None
    early = bytes(buffered)
    buffered.clear()
    return transport, early


async def pipe(stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes both ways between a stream and a TCP connection, honouring half-close."""
    taken = _take_over(reader, writer)
    if taken is None:
        await _pipe_streams(stream, reader, writer)
        return
    transport, early = taken
    tcp = _TcpSide(stream, transport)
    transport.set_protocol(tcp)
    if early:
        tcp.data_received(early)
    if tcp._drainer is None and not tcp.inbound_done.done():
        transport.resume_reading()  # the StreamReader may have paused it
    try:
        while True:
            chunks = await stream.read_chunks()
            if tcp.lost.done():
                break
            if not chunks:
                tcp.outbound_done = True
                if transport.can_write_eof():
                    transport.write_eof()
                break
            for chunk in chunks:  # one send each: no join copy
                transport.write(chunk)
            if tcp._write_paused:
                await tcp.writable()
        await tcp.inbound_done
    except (RemoteError, OSError):
        tcp.outbound_done = True
        transport.abort()
    finally:
        tcp.outbound_done = True
        if tcp._drainer is not None:
            tcp._drainer.cancel()
        transport.close()
        if not tcp.inbound_done.done():
            stream.reset()


async def _pipe_streams(
    stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The same with asyncio's streams (a transport that cannot be taken over)."""

    async def tcp_to_stream() -> None:
        try:
            while data := await reader.read(256 * 1024):
                stream.write(data)
                await stream.drain()
            stream.write_eof()
        except (RemoteError, OSError):
            stream.reset()

    async def stream_to_tcp() -> None:
        try:
            while data := await stream.read():
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (RemoteError, OSError):
            writer.transport.abort()

    try:
        await asyncio.gather(tcp_to_stream(), stream_to_tcp())
    finally:
        writer.close()

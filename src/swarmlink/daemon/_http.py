"""One control connection, server side: h11 over asyncio streams, with every limit enforced.

A :class:`HttpConnection` reads requests (bounded header size, body size and read time),
and writes JSON responses, NDJSON streams (chunked) or a ``101 Switching Protocols``
after which the socket carries raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11

from ..errors import InvalidArgument

__all__ = [
    "CLOSE_TIMEOUT",
    "LINGER_MAX_BYTES",
    "LINGER_TIMEOUT",
    "MAX_HEADER_SIZE",
    "MAX_REQUEST_BODY",
    "READ_CHUNK",
    "REQUEST_READ_TIMEOUT",
    "HttpConnection",
    "Rejection",
    "Request",
    "json_bytes",
    "serve_ndjson",
]

#: Largest request body accepted (bytes); larger requests get ``413``.
MAX_REQUEST_BODY = 1024 * 1024
#: Largest request line + headers accepted (bytes; h11 ``max_incomplete_event_size``);
#: larger heads get ``431``.
MAX_HEADER_SIZE = 16 * 1024
#: Seconds a client has to send one complete request (head and body) once the
#: connection is open or the previous response was sent; then ``408`` and close.
REQUEST_READ_TIMEOUT = 30.0
#: Seconds allowed to flush the last response when closing; then the socket is dropped.
CLOSE_TIMEOUT = 5.0
#: Bytes read from the socket at a time.
READ_CHUNK = 64 * 1024
#: When closing after an error, seconds spent discarding what the client still sends
#: (so it reads our error instead of a connection reset) ...
LINGER_TIMEOUT = 1.0
#: ... and at most this many bytes discarded.
LINGER_MAX_BYTES = 4 * 1024 * 1024

_SERVER_HEADER = ("Server", "swarmlink-daemon")


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Request:
    """A complete request: head and body (at most :data:`MAX_REQUEST_BODY` bytes)."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def header_tokens(self, name: str) -> set[str]:
        """The comma-separated, lower-cased tokens of one header."""
        return {t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()}

    def upgrade_to(self, protocol: str) -> bool:
        """True if the client asked to switch to ``protocol`` (Connection + Upgrade)."""
        return "upgrade" in self.header_tokens("connection") and protocol in self.header_tokens(
            "upgrade"
        )


@dataclass(frozen=True)
class Rejection:
    """A request that failed at the HTTP level; answered with ``status`` then closed."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = field(default=())
    error_type: str = InvalidArgument.__name__


class HttpConnection:
    """Server side of one control connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        read_timeout: float = REQUEST_READ_TIMEOUT,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.read_timeout = read_timeout
        self.keep_alive = True
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_SIZE)
        self._received_bytes = False

    # ---- reading --------------------------------------------------------------------

    async def next_request(self) -> Request | Rejection | None:
        """The next request; None when the client closed (or idled out) between requests."""
        self._received_bytes = False
        try:
            async with asyncio.timeout(self.read_timeout):
                return await self._read_request()
        except TimeoutError:
            if not self._received_bytes and self._conn.their_state is h11.IDLE:
                return None
            return Rejection(408, f"request not received within {self.read_timeout:g} seconds")
        except (ConnectionError, OSError):
            return None

    async def _read_request(self) -> Request | Rejection | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 431:
                    return Rejection(431, f"request head exceeds {MAX_HEADER_SIZE} bytes")
                return Rejection(status, f"malformed HTTP request: {exc}")
            if event is h11.NEED_DATA:
                data = await self.reader.read(READ_CHUNK)
                if data:
                    self._received_bytes = True
                self._conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
                rejection = self._check_head(event)
                if rejection is not None:
                    return rejection
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BODY:
                    return Rejection(413, f"request body exceeds {MAX_REQUEST_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return self._make_request(head, bytes(body))
            else:  # ConnectionClosed (or PAUSED, which cannot happen mid-request)
                if head is None:
                    return None
                return Rejection(400, "connection closed in the middle of the request")

    def _check_head(self, event: h11.Request) -> Rejection | None:
        # h11 bounds only *incomplete* heads; a complete one read in a single chunk
        # could be larger, so measure it too.
        size = len(event.method) + len(event.target) + 12
        size += sum(len(name) + len(value) + 4 for name, value in event.headers)
        if size > MAX_HEADER_SIZE:
            return Rejection(431, f"request head exceeds {MAX_HEADER_SIZE} bytes")
        for name, value in event.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return Rejection(400, "bad Content-Length")
                if length > MAX_REQUEST_BODY:
                    return Rejection(413, f"request body exceeds {MAX_REQUEST_BODY} bytes")
        if self._conn.they_are_waiting_for_100_continue:
            self._write(
                h11.InformationalResponse(
                    status_code=100, headers=[_SERVER_HEADER], reason=_reason(100)
                )
            )
        return None

    @staticmethod
    def _make_request(head: h11.Request, body: bytes) -> Request | Rejection:
        try:
            target = head.target.decode("ascii")
            method = head.method.decode("ascii")
        except UnicodeDecodeError:
            return Rejection(400, "request target is not ASCII")
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        path, _, query = target.partition("?")
        return Request(method, target, path, query, headers, body)

    # ---- writing ---------------------------------------------------------------------

    def _write(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            self.writer.write(data)

    @property
    def can_respond(self) -> bool:
        """True while no response has been started on the current request."""
        return self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    async def respond_json(
        self, status: int, value: Any, *, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        body = json_bytes(value) + b"\n"
        head = [
            _SERVER_HEADER,
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ]
        if not self.keep_alive:
            head.append(("Connection", "close"))
        out = self._conn.send(
            h11.Response(status_code=status, headers=head, reason=_reason(status))
        )
        out = (out or b"") + (self._conn.send(h11.Data(data=body)) or b"")
        out += self._conn.send(h11.EndOfMessage()) or b""
        self.writer.write(out)  # one write: head and body travel together
        await self.writer.drain()

    async def reject(self, rejection: Rejection) -> None:
        """Answer an HTTP-level failure (if still possible) and mark the connection closing."""
        self.keep_alive = False
        if not self.can_respond:
            return
        error = {"type": rejection.error_type, "message": rejection.message, "code": None}
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError, OSError):
            await self.respond_json(rejection.status, {"error": error}, headers=rejection.headers)

    async def start_ndjson(self) -> None:
        """Start a ``200`` chunked ``application/x-ndjson`` response and flush its head."""
        self.begin_ndjson()
        await self.writer.drain()

    def begin_ndjson(self) -> None:
        """Queue the head of a ``200`` chunked ``application/x-ndjson`` response."""
        self.keep_alive = False
        self._write(
            h11.Response(
                status_code=200,
                reason=_reason(200),
                headers=[
                    _SERVER_HEADER,
                    ("Content-Type", "application/x-ndjson"),
                    ("Transfer-Encoding", "chunked"),
                    ("Cache-Control", "no-store"),
                    ("Connection", "close"),
                ],
            )
        )

    def write_line(self, value: Any) -> None:
        """Queue one NDJSON line (call :meth:`flush` to apply backpressure)."""
        self._write(h11.Data(data=json_bytes(value) + b"\n"))

    async def flush(self) -> None:
        await self.writer.drain()

    async def end_ndjson(self) -> None:
        self._write(h11.EndOfMessage())
        await self.writer.drain()

    async def switch_protocols(self, protocol: str) -> tuple[bytes, bool]:
        """Send ``101`` and hand over the socket; returns bytes the client already sent
        past the request, and whether it had already closed its sending side."""
        self.keep_alive = False
        self._write(
            h11.InformationalResponse(
                status_code=101,
                reason=_reason(101),
                headers=[_SERVER_HEADER, ("Connection", "Upgrade"), ("Upgrade", protocol)],
            )
        )
        await self.writer.drain()
        return self._conn.trailing_data

    def next_cycle(self) -> bool:
        """Prepare for another request on this connection; False if it must close."""
        if (
            self.keep_alive
            and self._conn.our_state is h11.DONE
            and self._conn.their_state is h11.DONE
        ):
            self._conn.start_next_cycle()
            return True
        return False

    # ---- the end ---------------------------------------------------------------------

    async def wait_disconnect(self) -> None:
        """Return once the client closed its side (what it sends meanwhile is discarded)."""
        with contextlib.suppress(ConnectionError, OSError):
            while await self.reader.read(READ_CHUNK):
                pass

    async def close(self, *, linger: bool = False) -> None:
        """Flush and close the socket; with ``linger``, first half-close and discard what
        the client still sends, so it reads our (error) response instead of a reset."""
        writer = self.writer
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if linger and not writer.is_closing():
                    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                        async with asyncio.timeout(LINGER_TIMEOUT):
                            await self._linger()
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except BaseException:
            writer.transport.abort()
            raise

    async def _linger(self) -> None:
        writer = self.writer
        writer.transport.set_write_buffer_limits(0)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        discarded = 0
        while discarded < LINGER_MAX_BYTES:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                break
            discarded += len(data)


async def serve_ndjson(http: HttpConnection, items: AsyncIterator[Any], what: str) -> None:
    """Send each item of ``items`` (its ``to_json()``) as one NDJSON line, until the
    iterator ends (a clean end of the stream: the node closed) or the client hangs up."""

    async def pump() -> None:
        async for item in items:
            http.write_line(item.to_json())
            await http.flush()

    await http.start_ndjson()
    pumping = asyncio.create_task(pump())
    watcher = asyncio.create_task(http.wait_disconnect())
    try:
        await asyncio.wait({pumping, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watcher):
            task.cancel()
        await asyncio.gather(pumping, watcher, return_exceptions=True)
    if not pumping.cancelled():
        exc = pumping.exception()
        if exc is None:
            await http.end_ndjson()
        elif not isinstance(exc, ConnectionError | OSError):
            logging.getLogger("swarmlink.daemon").error("%s stream failed", what, exc_info=exc)

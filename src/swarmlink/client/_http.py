"""Client side of one control connection: h11 over an asyncio Unix socket connection."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import h11

from .. import __version__
from .. import errors as _errors
from ..errors import (
    ErrorCode,
    InvalidArgument,
    LocalError,
    NodeNotRunning,
    RemoteError,
    SwarmlinkError,
)

__all__ = [
    "MAX_NDJSON_LINE",
    "MAX_RESPONSE_BODY",
    "MAX_RESPONSE_HEAD",
    "MAX_SOCKET_PATH",
    "READ_CHUNK",
    "UPGRADE_PROTOCOL",
    "Exchange",
    "bad_response",
    "error_from_json",
    "not_running",
    "open_control_connection",
    "read_raw_line",
]

#: Largest JSON response body accepted from the daemon (bytes).
MAX_RESPONSE_BODY = 64 * 1024 * 1024
#: Longest NDJSON line accepted from the daemon (bytes).
MAX_NDJSON_LINE = 1024 * 1024
#: Largest response head accepted from the daemon (bytes).
MAX_RESPONSE_HEAD = 64 * 1024
#: Longest Unix socket path the kernel accepts (bytes).
MAX_SOCKET_PATH = 107
#: Bytes read from the socket at a time.
READ_CHUNK = 64 * 1024
#: ``Upgrade`` token of stream, handler and attach requests.
UPGRADE_PROTOCOL = "swarmlink-stream"

_ERROR_CLASSES: dict[str, type[SwarmlinkError]] = {
    name: cls
    for name in _errors.__all__
    if isinstance(cls := getattr(_errors, name), type) and issubclass(cls, SwarmlinkError)
}


def error_from_json(error: Any) -> SwarmlinkError:
    """Rebuild the exception the daemon reported (``{"type", "message", "code"}``)."""
    if not isinstance(error, dict):
        return SwarmlinkError(f"the daemon reported a malformed error: {str(error)[:200]}")
    type_name = str(error.get("type") or "SwarmlinkError")
    message = str(error.get("message") or type_name)
    cls = _ERROR_CLASSES.get(type_name)
    if cls is None:
        return SwarmlinkError(message)
    if issubclass(cls, RemoteError):
        code = None
        code_name = error.get("code")
        if isinstance(code_name, str) and code_name.upper() in ErrorCode.__members__:
            code = ErrorCode[code_name.upper()]
        return cls(message, code)
    return cls(message)


def bad_response(what: str) -> SwarmlinkError:
    return SwarmlinkError(f"bad response from the swarmlink daemon: {what}")


def not_running(home: Path) -> NodeNotRunning:
    return NodeNotRunning(
        f"no swarmlink daemon is running in {home} (start one with: swarmlink up --home {home})"
    )


async def open_control_connection(
    socket_path: Path, home: Path
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the control socket; :class:`NodeNotRunning` if nobody answers."""
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise InvalidArgument(
            f"control socket path {str(socket_path)!r} is longer than {MAX_SOCKET_PATH} "
            "bytes, the Unix socket limit; use a shorter node home"
        )
    try:
        return await asyncio.open_unix_connection(str(socket_path), limit=READ_CHUNK)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        raise not_running(home) from None
    except PermissionError:
        raise LocalError(f"cannot use {socket_path}: permission denied") from None
    except OSError as exc:
        raise LocalError(f"cannot connect to {socket_path}: {exc}") from None


class Exchange:
    """One request and its response on a fresh connection (closed by :meth:`close`)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, home: Path
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.home = home
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)

    async def send(
        self, method: str, target: str, body: Any = None, *, upgrade: bool = False
    ) -> None:
        headers = [("Host", "localhost"), ("User-Agent", f"swarmlink-client/{__version__}")]
        data = b""
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers.append(("Content-Type", "application/json"))
        headers.append(("Content-Length", str(len(data))))
        if upgrade:
            headers += [("Connection", "Upgrade"), ("Upgrade", UPGRADE_PROTOCOL)]
        out = self._conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if data:
            out += self._conn.send(h11.Data(data=data)) or b""
        out += self._conn.send(h11.EndOfMessage()) or b""
        try:
            self.writer.write(out)
            await self.writer.drain()
        except (ConnectionError, OSError):
            raise self._closed_early() from None

    def _closed_early(self) -> NodeNotRunning:
        return NodeNotRunning(
            f"the swarmlink daemon in {self.home} closed the connection (is it stopping?)"
        )

    async def next_event(self) -> h11.Event:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if "closed" in str(exc):  # EOF in the middle of the response
                    raise self._closed_early() from None
                raise bad_response(str(exc)) from None
            if event is h11.NEED_DATA:
                try:
                    data = await self.reader.read(READ_CHUNK)
                except (ConnectionError, OSError):
                    raise self._closed_early() from None
                self._conn.receive_data(data)
                continue
            if event is h11.PAUSED:
                raise bad_response("unexpected data after the response")
            assert isinstance(event, h11.Event)
            if isinstance(event, h11.ConnectionClosed):
                raise self._closed_early()
            return event

    async def head(self) -> h11.Response | h11.InformationalResponse:
        """The response head (skipping ``100 Continue``)."""
        while True:
            event = await self.next_event()
            if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
                continue
            if isinstance(event, h11.Response | h11.InformationalResponse):
                return event
            raise bad_response(f"expected a response head, got {type(event).__name__}")

    async def body(self) -> bytes:
        data = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                data += event.data
                if len(data) > MAX_RESPONSE_BODY:
                    raise bad_response(f"body larger than {MAX_RESPONSE_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(data)

    async def json_body(self) -> Any:
        data = await self.body()
        try:
            return json.loads(data)
        except ValueError:
            raise bad_response(f"not JSON: {data[:200]!r}") from None

    async def raise_error(self, status: int) -> None:
        """Read an error body and raise the exception it describes."""
        data = await self.body()
        try:
            value = json.loads(data)
        except ValueError:
            raise SwarmlinkError(f"the daemon answered {status}: {data[:200]!r}") from None
        if isinstance(value, dict) and "error" in value:
            raise error_from_json(value["error"])
        raise SwarmlinkError(f"the daemon answered {status}: {str(value)[:200]}")

    async def lines(self) -> AsyncGenerator[Any, None]:
        """The JSON values of an NDJSON body, one per line."""
        buffer = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.EndOfMessage):
                if buffer.strip():
                    yield _parse_line(bytes(buffer))
                return
            if not isinstance(event, h11.Data):
                continue
            buffer += event.data
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if line.strip():
                    yield _parse_line(line)
            if len(buffer) > MAX_NDJSON_LINE:
                raise bad_response(f"NDJSON line longer than {MAX_NDJSON_LINE} bytes")

    def trailing_data(self) -> bytes:
        """Bytes received after a ``101`` head (they belong to the raw stream)."""
        data, _closed = self._conn.trailing_data
        return data

    def close(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()


def _parse_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise bad_response(f"bad NDJSON line {line[:200]!r}") from None


async def read_raw_line(
    reader: asyncio.StreamReader, buffer: bytearray, *, limit: int = MAX_NDJSON_LINE
) -> bytes | None:
    """One ``\\n``-terminated line from a raw (upgraded) connection; None at EOF."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            return line
        if len(buffer) > limit:
            raise bad_response(f"line longer than {limit} bytes")
        try:
            data = await reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            return None
        if not data:
            return None
        buffer += data

"""Upgraded control connections: raw stream bridging, handler registrations, attachment.

After ``101 Switching Protocols`` a control connection carries one peer stream's raw
bytes both ways. End-of-stream maps to a half-close of the socket and back; a reset
maps to dropping the socket (the other side tells a drop from a half-close by
``POLLHUP``: the peer closed both directions while ours is still open).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import select
from dataclasses import dataclass, field

from ..errors import InvalidArgument, NotFound, StateError, SwarmlinkError
from ._http import HttpConnection, json_bytes
from ._nodeapi import NodeAPI, StreamAPI

__all__ = [
    "BRIDGE_CHUNK",
    "INCOMING_ATTACH_TIMEOUT",
    "MAX_PENDING_INCOMING",
    "MAX_PROTOCOL_NAME",
    "MAX_TOKEN_LENGTH",
    "RESERVED_PROTOCOL_PREFIX",
    "UPGRADE_PROTOCOL",
    "StreamHub",
    "bridge",
    "check_protocol",
    "peer_closed_both_ways",
]

log = logging.getLogger("swarmlink.daemon")

#: The ``Upgrade`` token of stream, handler and attach requests.
UPGRADE_PROTOCOL = "swarmlink-stream"
#: Bytes moved per read when bridging a stream and its socket.
BRIDGE_CHUNK = 64 * 1024
#: Seconds an incoming stream waits for a client to attach before it is reset.
INCOMING_ATTACH_TIMEOUT = 30.0
#: Incoming streams waiting to be attached, per handler registration; more are reset.
MAX_PENDING_INCOMING = 64
#: Longest protocol name accepted (characters).
MAX_PROTOCOL_NAME = 128
#: Longest incoming-stream token accepted in an attach request (characters).
MAX_TOKEN_LENGTH = 64
#: Protocol names under this prefix belong to the node's own services (trust, messages,
#: files, tunnels, bench): control clients cannot register handlers for them.
RESERVED_PROTOCOL_PREFIX = "/swarmlink/"
_TOKEN_BYTES = 18


def check_protocol(protocol: str, *, registering: bool = False) -> str:
    """Validate a protocol name from a control request."""
    if not protocol or len(protocol) > MAX_PROTOCOL_NAME or not protocol.isprintable():
        raise InvalidArgument(
            f"bad protocol name {protocol[:MAX_PROTOCOL_NAME]!r}: "
            f"expected 1-{MAX_PROTOCOL_NAME} printable characters"
        )
    if registering and protocol.startswith(RESERVED_PROTOCOL_PREFIX):
        raise InvalidArgument(
            f"protocol names starting with {RESERVED_PROTOCOL_PREFIX} are reserved "
            "for the node's own services"
        )
    return protocol


def peer_closed_both_ways(writer: asyncio.StreamWriter) -> bool:
    """True if the other end closed its socket (not just its sending side)."""
    sock = writer.get_extra_info("socket")
    if sock is None or writer.transport.is_closing():
        return True
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return any(mask & (select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))
    except (OSError, ValueError):
        return True


class _Outcome(enum.Enum):
    DONE = "done"
    CLIENT_GONE = "client_gone"
    STREAM_FAILED = "stream_failed"


@dataclass
class _BridgeState:
    to_client_done: bool = False
    error: str = ""


async def bridge(
    stream: StreamAPI,
    http: HttpConnection,
    initial: bytes,
    client_eof: bool,
) -> None:
    """Move bytes between ``stream`` and the upgraded socket until both directions end."""
    reader, writer = http.reader, http.writer
    state = _BridgeState()

    async def to_stream() -> _Outcome:
        try:
            if initial:
                stream.write(initial)
                await stream.drain()
            while not client_eof:
                try:
                    data = await reader.read(BRIDGE_CHUNK)
                except (ConnectionError, OSError):
                    return _Outcome.CLIENT_GONE
                if not data:
                    break
                stream.write(data)
                await stream.drain()
            if not state.to_client_done and peer_closed_both_ways(writer):
                return _Outcome.CLIENT_GONE
            stream.write_eof()
            return _Outcome.DONE
        except SwarmlinkError as exc:
            state.error = str(exc)
            return _Outcome.STREAM_FAILED

    async def to_client() -> _Outcome:
        while True:
            try:
                data = await stream.read(BRIDGE_CHUNK)
            except SwarmlinkError as exc:
                state.error = str(exc)
                return _Outcome.STREAM_FAILED
            try:
                if not data:
                    state.to_client_done = True
                    if writer.can_write_eof():
                        writer.write_eof()
                    return _Outcome.DONE
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return _Outcome.CLIENT_GONE

    tasks = {asyncio.create_task(to_stream()), asyncio.create_task(to_client())}
    outcome = _Outcome.DONE
    completed = False
    try:
        pending = set(tasks)
        while pending and outcome is _Outcome.DONE:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.result() is not _Outcome.DONE:
                    outcome = task.result()
        completed = True
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not completed:  # cancelled: the daemon is stopping
            outcome = _Outcome.CLIENT_GONE
            state.error = "control server stopping"
        if outcome is _Outcome.DONE:
            writer.close()
        else:
            writer.transport.abort()
            stream.reset()
            log.info(
                "bridged stream ended abnormally",
                extra={
                    "protocol": stream.protocol,
                    "peer": stream.peer,
                    "outcome": outcome.value,
                    "error": state.error,
                },
            )


@dataclass
class _Registration:
    protocol: str
    http: HttpConnection
    pending: dict[str, _Incoming] = field(default_factory=dict)
    closed: bool = False


@dataclass
class _Incoming:
    token: str
    stream: StreamAPI
    registration: _Registration
    attached: asyncio.Future[bool]


class StreamHub:
    """Handler registrations and incoming streams waiting for a client to attach."""

    def __init__(self, node: NodeAPI, *, attach_timeout: float = INCOMING_ATTACH_TIMEOUT) -> None:
        self._node = node
        self.attach_timeout = attach_timeout
        self._registrations: dict[str, _Registration] = {}
        self._incoming: dict[str, _Incoming] = {}

    @property
    def registered(self) -> list[str]:
        return sorted(self._registrations)

    async def open(self, http: HttpConnection, agent_id: str, protocol: str) -> None:
        """``POST /v1/streams``: open a stream to a peer and bridge it."""
        stream = await self._node.open_stream(agent_id, check_protocol(protocol))
        try:
            initial, closed = await http.switch_protocols(UPGRADE_PROTOCOL)
        except BaseException:
            stream.reset()
            raise
        log.debug("control stream opened", extra={"peer": agent_id, "protocol": protocol})
        await bridge(stream, http, initial, closed)

    async def register(self, http: HttpConnection, protocol: str) -> None:
        """``POST /v1/handlers``: announce incoming streams until the client hangs up."""
        check_protocol(protocol, registering=True)
        if protocol in self._registrations:
            raise StateError(
                f"another control client already handles protocol {protocol!r}; stop it first"
            )
        reg = _Registration(protocol, http)

        async def handler(stream: StreamAPI) -> None:
            await self._on_incoming(reg, stream)

        self._node.set_handler(protocol, handler)
        self._registrations[protocol] = reg
        log.info("stream handler registered", extra={"protocol": protocol})
        try:
            await http.switch_protocols(UPGRADE_PROTOCOL)
            await http.wait_disconnect()
        finally:
            reg.closed = True
            if self._registrations.get(protocol) is reg:
                del self._registrations[protocol]
                with contextlib.suppress(SwarmlinkError):
                    self._node.set_handler(protocol, None)
            for incoming in list(reg.pending.values()):
                if not incoming.attached.done():
                    incoming.attached.set_result(False)
            log.info("stream handler unregistered", extra={"protocol": protocol})

    async def _on_incoming(self, reg: _Registration, stream: StreamAPI) -> None:
        if reg.closed or reg.http.writer.is_closing() or len(reg.pending) >= MAX_PENDING_INCOMING:
            log.info(
                "incoming stream reset: handler gone or too many waiting",
                extra={"protocol": reg.protocol, "peer": stream.peer},
            )
            stream.reset()
            return
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        incoming = _Incoming(token, stream, reg, asyncio.get_running_loop().create_future())
        reg.pending[token] = incoming
        self._incoming[token] = incoming
        line = {
            "event": "incoming",
            "stream": token,
            "agent_id": stream.peer,
            "protocol": stream.protocol,
        }
        attached = False
        try:
            reg.http.writer.write(json_bytes(line) + b"\n")
            async with asyncio.timeout(self.attach_timeout):
                attached = await incoming.attached
        except TimeoutError:
            log.info(
                "incoming stream reset: no client attached in time",
                extra={"protocol": stream.protocol, "peer": stream.peer},
            )
        finally:
            reg.pending.pop(token, None)
            self._incoming.pop(token, None)
            if not attached:
                stream.reset()

    async def attach(self, http: HttpConnection, token: str) -> None:
        """``POST /v1/streams/attach``: take over an announced incoming stream."""
        incoming = self._incoming.pop(token, None)
        if incoming is None or incoming.attached.done():
            raise NotFound(
                f"no incoming stream {token!r} is waiting: unknown, "
                f"already attached, or reset after {self.attach_timeout:g}s unattached"
            )
        incoming.registration.pending.pop(token, None)
        incoming.attached.set_result(True)
        try:
            initial, closed = await http.switch_protocols(UPGRADE_PROTOCOL)
        except BaseException:
            incoming.stream.reset()
            raise
        await bridge(incoming.stream, http, initial, closed)

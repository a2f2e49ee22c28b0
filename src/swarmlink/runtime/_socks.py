"""SOCKS5 proxy into the overlay (asyncio glue; :mod:`swarmlink.tunnel` decides).

Any SOCKS5 client (``curl --socks5-hostname``, browsers, ``ssh -o ProxyCommand='nc -X 5
-x …'``, gRPC with ``grpc_proxy``) reaches an agent's exposed service as

- ``AGENT_ID.swarm:PORT`` or ``NAME.AGENT_ID.swarm`` (a service exposed under NAME; the
  port is then ignored),
- ``NAME.swarm:PORT``: an agent found in the DHT by the capability tag NAME,
- ``[VIRTUAL_IPV6]:PORT``: an agent we know, by its virtual address.

The connection is a ``/swarmlink/tunnel/1`` stream over the node's best session with the
agent (direct or relayed; each client connection takes the current best path). Errors
become the SOCKS5 reply codes a client understands: unknown names and unreachable agents
``HOST_UNREACHABLE``, refusals ``NOT_ALLOWED`` or ``CONNECTION_REFUSED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import TYPE_CHECKING

from ..errors import (
    InvalidArgument,
    NetworkError,
    NotFound,
    ProtocolViolation,
    StreamRefused,
    SwarmlinkError,
)
from ..identity import virtual_address
from ..tunnel import (
    CONNECTION_REFUSED,
    GENERAL_FAILURE,
    HOST_UNREACHABLE,
    MAX_CONNECT_HEAD,
    NOT_ALLOWED,
    TTL_EXPIRED,
    ConnectRequested,
    ProtocolError,
    Socks5Server,
    connect_reply,
    parse_connect,
    resolve_overlay_name,
)
from ..wire.address import format_hostport
from ._info import known_agents
from ._pipe import pipe

if TYPE_CHECKING:
    from ._stream import Stream
    from .node import Node

__all__ = ["SOCKS_HANDSHAKE_TIMEOUT", "Socks5Proxy", "TunnelRefused"]

log = logging.getLogger("swarmlink.socks")

#: Seconds a client has to finish the SOCKS5 handshake (greeting + CONNECT).
SOCKS_HANDSHAKE_TIMEOUT = 10.0
#: Seconds to reach the agent and get its answer before replying TTL_EXPIRED.
SOCKS_CONNECT_TIMEOUT = 30.0


class TunnelRefused(StreamRefused):
    """The agent refused the tunnel; ``reason`` says which way (see ``Services``)."""


def _reply_for(exc: BaseException) -> int:
    if isinstance(exc, TimeoutError):
        return TTL_EXPIRED
    if isinstance(exc, TunnelRefused):
        return NOT_ALLOWED if exc.code.name.lower() == "not_trusted" else CONNECTION_REFUSED
    if isinstance(exc, StreamRefused):
        return NOT_ALLOWED  # e.g. the agent does not trust us
    if isinstance(exc, NotFound | NetworkError | InvalidArgument):
        return HOST_UNREACHABLE
    return GENERAL_FAILURE


class Socks5Proxy:
    """One listening SOCKS5 endpoint of a node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, host: str, port: int) -> str:
        try:
            self._server = await asyncio.start_server(
                lambda r, w: self.node.spawn(self._client(r, w), name="socks5"),
                host,
                port,
                reuse_address=True,
            )
        except OSError as exc:
            raise NetworkError(
                f"cannot listen for SOCKS5 on {format_hostport(host, port)}: {exc.strerror or exc}"
            ) from None
        bound = self._server.sockets[0].getsockname()
        self.address = format_hostport(str(bound[0]), int(bound[1]))
        log.info("SOCKS5 proxy listening", extra={"address": self.address})
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _agent_at(self, address: ipaddress.IPv6Address) -> str | None:
        """The known agent whose virtual address this is."""
        for agent in known_agents(self.node):
            if virtual_address(agent) == address:
                return agent
        return None

    async def _target(self, host: str, port: int) -> tuple[str, int | str]:
        """(agent ID, port or service name) for a SOCKS target."""
        target = resolve_overlay_name(host, port, by_address=self._agent_at)
        if target.kind == "name":
            assert target.name is not None
            records = await self.node.dht.find(target.name)
            if not records:
                raise NotFound(f"no agent advertises {target.name!r}")
            return records[0].agent_id, port
        if target.agent_id is None:
            raise NotFound(f"no known agent has the virtual address {host}")
        return target.agent_id, target.name or port

    async def _open(self, host: str, port: int) -> Stream:
        """The tunnel stream for a proxy target (SOCKS5 or HTTP CONNECT alike)."""
        async with asyncio.timeout(SOCKS_CONNECT_TIMEOUT):
            agent, service = await self._target(host, port)
            return await self.node.services.open_tunnel(agent, service)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        socks = Socks5Server()
        try:
            async with asyncio.timeout(SOCKS_HANDSHAKE_TIMEOUT):
                first = await reader.read(4096)
                if first[:1] not in (b"\x05", b""):  # not SOCKS5: an HTTP CONNECT?
                    target = await self._http_head(first, reader, writer)
                else:
                    request = await self._handshake(socks, first, reader, writer)
        except (TimeoutError, OSError):
            writer.close()
            return
        if first[:1] not in (b"\x05", b""):
            if target is not None:
                await self._http_connect(*target, writer=writer, reader=reader)
            return
        if request is None:
            writer.close()
            return
        try:
            stream = await self._open(request.host, request.port)
        except (SwarmlinkError, TimeoutError) as exc:
            log.info(
                "SOCKS5 connect refused",
                extra={"target": f"{request.host}:{request.port}", "error": str(exc)},
            )
            socks.refuse(_reply_for(exc), str(exc))
            with contextlib.suppress(OSError):
                writer.write(socks.data_to_send())
                await writer.drain()
            writer.close()
            return
        socks.accept()
        writer.write(socks.data_to_send())
        early = socks.take_payload()
        if early:
            stream.write(early)
        await pipe(stream, reader, writer)

    @staticmethod
    async def _http_head(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, int, bytes] | None:
        """Read and check an HTTP CONNECT head: (host, port, early bytes), or None after
        answering 400/405 (the proxy also serves HTTP-proxy clients such as gRPC)."""
        while b"\r\n\r\n" not in head and len(head) <= MAX_CONNECT_HEAD:
            more = await reader.read(4096)
            if not more:
                writer.close()
                return None
            head += more
        end = head.find(b"\r\n\r\n") + 4
        head, early = (head[:end], head[end:]) if end >= 4 else (head, b"")
        try:
            host, port = parse_connect(head)
        except ProtocolViolation as exc:
            status = 405 if "only CONNECT" in exc.reason else 400
            writer.write(connect_reply(status, exc.reason))
            writer.close()
            return None
        return host, port, early

    async def _http_connect(
        self,
        host: str,
        port: int,
        early: bytes,
        *,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Open the tunnel for a CONNECT request and pipe (or answer 403/404/502/504)."""
        try:
            stream = await self._open(host, port)
        except (SwarmlinkError, TimeoutError) as exc:
            reply = _reply_for(exc)
            status = {NOT_ALLOWED: 403, HOST_UNREACHABLE: 404, TTL_EXPIRED: 504}.get(reply, 502)
            writer.write(connect_reply(status, str(exc)))
            writer.close()
            return
        writer.write(connect_reply(200))
        if early:
            stream.write(early)
        await pipe(stream, reader, writer)

    @staticmethod
    async def _handshake(
        socks: Socks5Server,
        first: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> ConnectRequested | None:
        data = first
        while True:
            if not data:
                return None
            socks.receive_data(data)
            out = socks.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
            while (event := socks.next_event()) is not None:
                if isinstance(event, ProtocolError):
                    return None
                if isinstance(event, ConnectRequested):
                    return event
            data = await reader.read(4096)

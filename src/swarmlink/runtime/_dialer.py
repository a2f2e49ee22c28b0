"""Outbound TCP + TLS: dial a peer (from the listening port when possible) and run the
TLS handshake on an already connected socket in either role."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from typing import TYPE_CHECKING

from ..errors import ErrorCode, NetworkError
from ..wire.address import format_hostport
from ._connection import PeerConnection
from ._sockets import connect_tcp

if TYPE_CHECKING:
    from .node import Node

__all__ = ["MAX_PEER_ADDRESSES", "dial", "dial_from", "known_addresses", "remember_peer", "secure"]

#: Addresses remembered per peer.
MAX_PEER_ADDRESSES = 8


def remember_peer(node: Node, conn: PeerConnection, dialed: str | None = None) -> None:
    """Record a verified peer (its highest certificate serial; ``dialed`` first among
    the addresses to try next time)."""
    assert conn.identity is not None
    now = time.time()
    row = node.db.query_one(
        "SELECT addresses, max_cert_serial FROM peers WHERE agent_id = ?", (conn.agent_id,)
    )
    addresses: list[str] = json.loads(row[0]) if row is not None else []
    if dialed:
        addresses = [dialed] + [a for a in addresses if a != dialed]
    serial = max(conn.identity.certificate.serial, int(row[1]) if row is not None else 0)
    node.db.execute(
        "INSERT INTO peers (agent_id, identity_key, addresses, first_seen, last_seen, "
        "max_cert_serial) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(agent_id) DO UPDATE SET "
        "addresses = excluded.addresses, last_seen = excluded.last_seen, "
        "max_cert_serial = excluded.max_cert_serial",
        (
            conn.agent_id,
            conn.identity.identity_key,
            json.dumps(addresses[:MAX_PEER_ADDRESSES]),
            now,
            now,
            serial,
        ),
    )


def known_addresses(node: Node, agent_id: str) -> list[str]:
    """Addresses a peer was reached at before, best first."""
    row = node.db.query_one("SELECT addresses FROM peers WHERE agent_id = ?", (agent_id,))
    return list(json.loads(row[0])) if row is not None else []


class TlsFailed(NetworkError):
    """The TLS handshake failed (not a timeout)."""


def dial_from(node: Node) -> tuple[str, int] | None:
    """The listening address dials leave from (see :mod:`._sockets`)."""
    for server in node._servers:
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            return str(host), int(port)
    return None


async def secure(
    node: Node, sock: socket.socket, agent_id: str, *, client: bool, what: str
) -> PeerConnection:
    """TLS (as client or server) + swarmlink handshake on a connected socket; the
    session that won (a simultaneous dial may have produced another one)."""
    loop = asyncio.get_running_loop()
    timeout = node.config.connect_timeout
    try:
        async with asyncio.timeout(timeout):
            if client:
                _, conn = await loop.create_connection(
                    lambda: node._new_connection(outbound=True, expected=agent_id),
                    sock=sock,
                    ssl=node._client_ctx,
                    server_hostname="swarmlink",
                    ssl_handshake_timeout=timeout,
                )
            else:
                _, conn = await loop.connect_accepted_socket(
                    lambda: node._new_connection(outbound=False, expected=agent_id),
                    sock=sock,
                    ssl=node._server_ctx,
                    ssl_handshake_timeout=timeout,
                )
    except TimeoutError:
        sock.close()
        raise NetworkError(f"TLS handshake with {what} timed out") from None
    except ssl.SSLError as exc:
        sock.close()
        raise TlsFailed(
            f"TLS handshake with {what} failed ({exc.reason or exc}); "
            "is a swarmlink node listening there?"
        ) from None
    except OSError as exc:
        sock.close()
        raise NetworkError(f"connection to {what} failed: {exc.strerror or exc}") from None
    try:
        return await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
    except TimeoutError:
        conn.close(ErrorCode.IDLE_TIMEOUT, "handshake timed out")
        raise NetworkError(f"handshake with {what} timed out") from None


async def dial(node: Node, agent_id: str, host: str, port: int) -> PeerConnection:
    """A verified session with ``agent_id`` at ``host:port`` (TLS client)."""
    what = format_hostport(host, port)
    local = dial_from(node)
    for attempt in range(2):
        try:
            sock = await connect_tcp(host, port, local=local, timeout=node.config.connect_timeout)
        except TimeoutError:
            raise NetworkError(f"timed out connecting to {what}") from None
        except OSError as exc:
            raise NetworkError(f"cannot connect to {what}: {exc.strerror or exc}") from None
        shared = local is not None and sock.getsockname()[1] == local[1]
        try:
            winner = await secure(node, sock, agent_id, client=True, what=what)
            break
        except TlsFailed:
            # Two nodes dialing each other from their listening ports at the same moment
            # get ONE connection (TCP simultaneous open) with two TLS clients on it:
            # once, dial again from an ephemeral port.
            if not shared or attempt:
                raise
            local = None
    node._remember_peer(winner, dialed=what)
    return winner

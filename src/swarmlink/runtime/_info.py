"""Status and peer listings of a node (read-only views over its state)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import InvalidArgument
from ..identity import virtual_address
from ..nat import classify_filtering
from ._punchsvc import path_name
from .model import NodeStatus, PeerInfo, PingResult

if TYPE_CHECKING:
    from .node import Node

__all__ = ["identity_info", "known_agents", "node_status", "peer_info", "peers", "ping"]


def node_status(node: Node) -> NodeStatus:
    nat = node.nat.report()
    row = node.db.query_one("SELECT COUNT(*) FROM inbox")
    cert = node.operational.certificate
    return NodeStatus(
        agent_id=node.agent_id,
        virtual_address=str(node.identity.virtual_address),
        listen=node.listen_addresses,
        home=str(node.home),
        pid=os.getpid(),
        version=__version__,
        uptime=time.time() - node._started,
        peers_connected=len(node._conns),
        trusted_peers=len(node.trust.trusted()),
        pending_trust=sum(1 for p in node.trust.pending() if p.direction == "in"),
        inbox_unread=int(row[0]) if row is not None else 0,
        operational_key_serial=cert.serial,
        operational_key_expires=float(cert.not_after),
        dht_contacts=len(node.dht.core.table),
        dht_records=len(node.dht.store),
        dht_joined=node.dht.joined,
        mdns=node._mdns is not None,
        reflexive_addresses=nat.reflexive,
        nat_mapping=str(nat.mapping),
        nat_filtering=str(classify_filtering(str(nat.mapping), node.nat.state)),
        reachability=str(node.nat.state),
        relays=tuple(node.relay.reservations),
        tun=node.tun.name if node.tun is not None else None,
        tun_mtu=node.tun.config.mtu if node.tun is not None else 0,
        tun_counters=dataclasses.asdict(node.tun.counters) if node.tun is not None else None,
    )


def known_agents(node: Node) -> set[str]:
    """Agents this node knows: connected, trusted, or remembered in the peer table (whose
    virtual addresses it can map back to them)."""
    known = set(node._conns) | {p.agent_id for p in node.trust.trusted()}
    known |= {r[0] for r in node.db.query("SELECT agent_id FROM peers")}
    return known


def identity_info(node: Node) -> dict[str, Any]:
    cert = node.operational.certificate
    return {
        "agent_id": node.agent_id,
        "virtual_address": str(node.identity.virtual_address),
        "identity_key": node.identity.public_key.hex(),
        "operational_key": cert.operational_key.hex(),
        "operational_key_serial": cert.serial,
        "operational_key_expires": float(cert.not_after),
    }


def peer_info(node: Node, agent_id: str) -> PeerInfo:
    conn = node.connected(agent_id)
    row = node.db.query_one(
        "SELECT addresses, last_seen FROM peers WHERE agent_id = ?", (agent_id,)
    )
    addresses = json.loads(row[0]) if row is not None else []
    return PeerInfo(
        agent_id=agent_id,
        virtual_address=str(virtual_address(agent_id)),
        connected=conn is not None,
        trusted=node.trust.is_trusted(agent_id),
        address=conn.address if conn is not None else (addresses[0] if addresses else None),
        direction=conn.direction if conn is not None else None,
        path=path_name(conn) if conn is not None else "direct",
        rtt_ms=None if conn is None or conn.rtt is None else conn.rtt * 1000,
        streams=len(conn.streams) if conn is not None else 0,
        last_seen=time.time() if conn is not None else (row[1] if row is not None else None),
        user_agent=conn.user_agent if conn is not None else None,
    )


def peers(node: Node) -> list[PeerInfo]:
    """Connected, trusted and remembered peers."""
    ids = set(node._conns) | {p.agent_id for p in node.trust.trusted()}
    ids |= {r[0] for r in node.db.query("SELECT agent_id FROM peers")}
    return sorted((peer_info(node, a) for a in ids), key=lambda p: (not p.connected, p.agent_id))


async def ping(
    node: Node,
    agent_id: str,
    count: int,
    interval: float,
    on_reply: Callable[[int, float | None], None] | None,
    *,
    timeout: float,
) -> PingResult:
    """:meth:`Node.ping`: ``count`` session PINGs, ``interval`` seconds apart."""
    if not 1 <= count <= 10_000:
        raise InvalidArgument("count must be between 1 and 10000")
    if not 0 <= interval <= 60:
        raise InvalidArgument("interval must be between 0 and 60 seconds")
    conn = await node.connection(agent_id)
    rtts: list[float] = []
    for seq in range(1, count + 1):
        rtt = await conn.ping(timeout)
        if rtt is not None:
            rtts.append(rtt * 1000)
        if on_reply is not None:
            on_reply(seq, None if rtt is None else rtt * 1000)
        if seq < count and interval > 0:
            await asyncio.sleep(interval)
    return PingResult(
        agent_id=conn.agent_id,
        rtts_ms=tuple(rtts),
        sent=count,
        received=len(rtts),
        min_ms=min(rtts) if rtts else None,
        avg_ms=sum(rtts) / len(rtts) if rtts else None,
        max_ms=max(rtts) if rtts else None,
    )

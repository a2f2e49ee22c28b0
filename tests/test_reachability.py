"""Dial-back reachability and automatic relays: a node nobody can dial finds a relay in
the DHT on its own, reserves, and is then reached through it by agent ID alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import drop_session, target, wait_until

from swarmlink.errors import StreamReset
from swarmlink.nat import Reachability, ReachabilityTracker
from swarmlink.runtime import Node, NodeConfig
from swarmlink.runtime._natsvc import AUTONAT_PROTOCOL


def cfg(tmp: Path, name: str, **kw: Any) -> NodeConfig:
    return NodeConfig(home=tmp / name, listen=(("127.0.0.1", 0),), **kw)


def test_tracker_needs_two_opinions() -> None:
    t = ReachabilityTracker()
    t.record("a", False, 0.0)
    assert t.state(1.0) == Reachability.UNKNOWN
    t.record("b", False, 0.0)
    assert t.state(1.0) == Reachability.PRIVATE
    t.record("c", True, 0.0)
    assert t.state(1.0) == Reachability.UNKNOWN  # disagreement: not private any more
    t.record("d", True, 0.0)
    assert t.state(1.0) == Reachability.PUBLIC
    assert t.state(10_000.0) == Reachability.UNKNOWN  # results expire


async def test_private_node_gets_a_relay_by_itself(tmp_path: Path) -> None:
    relay = await Node.start(cfg(tmp_path, "relay", relay=True))
    boot = (target(relay),)
    public = await Node.start(cfg(tmp_path, "public", bootstrap=boot))
    private = await Node.start(cfg(tmp_path, "private", bootstrap=boot, advertise=("127.0.0.1:1",)))
    other = await Node.start(cfg(tmp_path, "other", bootstrap=boot))
    nodes = [relay, public, private, other]
    try:
        for n in nodes[1:]:
            await wait_until(lambda n=n: n.dht.info()["published_at"], "published", 20)
        # Enough sessions for two opinions each.
        for n in (public, private):
            for peer in nodes:
                if peer is not n:
                    await n.connection(peer.agent_id)
        assert await public.nat.check() == Reachability.PUBLIC
        assert await private.nat.check() == Reachability.PRIVATE
        assert list(private.relay.reservations) == [relay.agent_id]
        status = private.status()
        assert status.reachability == "private" and status.relays == (relay.agent_id,)
        await wait_until(
            lambda: private.dht._publishing is not None and private.dht._publishing.done(),
            "republished with the relay",
        )
        record = await private.dht.own_record()
        assert record.relays and record.relays[0].startswith(relay.agent_id)
        # other reaches private by ID, through the relay.
        await drop_session(other, private)
        other.db.execute("DELETE FROM peers WHERE agent_id = ?", (private.agent_id,))
        other.dht.store.remove(private.agent_id)
        assert (await other.ping(private.agent_id, interval=0)).received == 1
        info = next(p for p in other.peers() if p.agent_id == private.agent_id)
        assert info.path == f"relayed via {relay.agent_id}"
    finally:
        await asyncio.gather(*(n.close() for n in nodes))


async def test_dialback_is_rate_limited_and_validated(tmp_path: Path) -> None:
    a = await Node.start(cfg(tmp_path, "a"))
    b = await Node.start(cfg(tmp_path, "b"))
    try:
        await a.connect(target(b))
        conn = a.connected(b.agent_id)
        assert conn is not None
        stream = conn.open_stream(AUTONAT_PROTOCOL)
        stream.write_record({"a": "nope"})
        with pytest.raises(StreamReset, match="dial-back request"):
            await stream.read_record()
        # Addresses on another IP than the one b sees us at are never dialed.
        stream = conn.open_stream(AUTONAT_PROTOCOL)
        stream.write_record({"a": [f"198.51.100.7:{a.listen_port}"]})
        assert await stream.read_record() == {"ok": False, "a": ""}
        stream = conn.open_stream(AUTONAT_PROTOCOL)
        stream.write_record({"a": [f"127.0.0.1:{a.listen_port}"]})
        with pytest.raises(StreamReset, match="one dial-back a minute"):
            await stream.read_record()
        assert (await a.ping(b.agent_id, interval=0)).received == 1
    finally:
        await asyncio.gather(a.close(), b.close())


def test_filtering_follows_mapping_and_dial_backs() -> None:
    from swarmlink.nat import Filtering, Reachability, classify_filtering

    assert classify_filtering("none", Reachability.PUBLIC) == Filtering.NONE
    assert classify_filtering("endpoint-independent", Reachability.PUBLIC) == (
        Filtering.ENDPOINT_INDEPENDENT
    )
    assert classify_filtering("endpoint-independent", Reachability.PRIVATE) == Filtering.DEPENDENT
    assert classify_filtering("endpoint-dependent", Reachability.UNKNOWN) == Filtering.UNKNOWN

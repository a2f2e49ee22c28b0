"""The gossip layer on real in-process nodes: membership, pub/sub, replicated state,
persistence, and hostile input on the gossip stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import make_trusted, target, wait_until
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ErrorCode, ProtocolViolation, RemoteError
from swarmlink.runtime import Node, NodeConfig
from swarmlink.runtime._gossipsvc import GOSSIP_PROTOCOL
from swarmlink.runtime._gossipwire import split_record
from swarmlink.wire import cbor


async def _start(home: Path) -> Node:
    return await Node.start(NodeConfig(home=home, listen=(("127.0.0.1", 0),)))


def _alive(node: Node) -> set[str]:
    return {
        m["agent_id"] for m in node.gossip.members() if m["state"] == "alive" and not m["local"]
    }


async def _trio(tmp_path: Path) -> list[Node]:
    nodes = [await _start(tmp_path / name) for name in "abc"]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        await make_trusted(nodes[i], nodes[j])
    for node in nodes:
        others = {n.agent_id for n in nodes} - {node.agent_id}
        await wait_until(lambda node=node, o=others: _alive(node) >= o, "members alive", 20)
    return nodes


async def _close(nodes: list[Node]) -> None:
    for node in nodes:
        await node.close()


@pytest.mark.timeout(90)
async def test_trusted_nodes_see_each_other_publish_and_share_state(tmp_path: Path) -> None:
    nodes = await _trio(tmp_path)
    a, b, c = nodes
    try:
        subs = [b.gossip.subscribe("news"), c.gossip.subscribe("news")]
        await wait_until(
            lambda: a.gossip.pubsub.topic_peers("news") >= {b.agent_id, c.agent_id},
            "a learns who subscribes to news",
            20,
        )
        got: list[list[str]] = [[], []]

        async def collect(i: int) -> None:
            async for msg in subs[i]:
                got[i].append(msg.text)
                assert msg.author == a.agent_id

        tasks = [asyncio.create_task(collect(i)) for i in range(2)]
        try:
            sent = a.gossip.publish("news", b"hello")
            assert sent["peers"] >= 1
            await wait_until(lambda: all(g == ["hello"] for g in got), "delivered to b and c", 20)
        finally:
            for t in tasks:
                t.cancel()
            for s in subs:
                s.close()

        # Replicated state: a register, a set and a counter written on different nodes.
        a.state("team").set("leader", "a")
        b.state("team").add("skills", "search")
        c.state("team").add("skills", "code")
        for n in nodes:
            n.state("team").increment("tasks", 2)

        def converged() -> bool:
            views = [n.state("team").to_dict() for n in nodes]
            return views[0] == views[1] == views[2] and views[0].get("tasks") == 6

        await wait_until(converged, "state converged", 30, interval=0.05)
        assert a.state("team").to_dict() == {
            "leader": "a",
            "skills": ["code", "search"],
            "tasks": 6,
        }
    finally:
        await _close(nodes)


@pytest.mark.timeout(90)
async def test_state_survives_a_restart_and_an_offline_replica_catches_up(
    tmp_path: Path,
) -> None:
    a = await _start(tmp_path / "a")
    b = await _start(tmp_path / "b")
    try:
        await make_trusted(a, b)
        a.state("cfg").set("mode", "fast")
        b.state("cfg")
        await wait_until(lambda: b.state("cfg").get("mode") == "fast", "replicated", 20)
        await b.close()
        a.state("cfg").set("mode", "safe")  # written while b is down
        a.state("cfg").increment("version")
        b = await _start(tmp_path / "b")
        assert b.state("cfg").get("mode") == "fast"  # from b's own database
        await b.connect(target(a))
        await wait_until(
            lambda: b.state("cfg").to_dict() == {"mode": "safe", "version": 1},
            "offline replica caught up (anti-entropy)",
            30,
        )
    finally:
        await _close([a, b])


@pytest.mark.timeout(60)
async def test_garbage_on_the_gossip_stream_is_refused_and_gossip_goes_on(
    tmp_path: Path,
) -> None:
    nodes = await _trio(tmp_path)
    a, b, _ = nodes
    try:
        stream = await a.open_stream(b.agent_id, GOSSIP_PROTOCOL)
        stream.write(b"\x00\x00\x00\x03\xa1\x01\x02")  # a record that is not [channel, bytes]
        with pytest.raises(RemoteError) as info:
            await asyncio.wait_for(stream.read(), 10)
        assert info.value.code in (ErrorCode.MALFORMED, ErrorCode.PROTOCOL_ERROR)
        assert b.gossip.stats["invalid_records"] >= 1
        b.state("after").set("ok", True)
        await wait_until(lambda: a.state("after").get("ok") is True, "gossip still works", 20)
    finally:
        await _close(nodes)


@pytest.mark.timeout(60)
async def test_untrusted_agents_get_no_gossip(tmp_path: Path) -> None:
    a = await _start(tmp_path / "a")
    stranger = await _start(tmp_path / "s")
    try:
        await stranger.connect(target(a))
        stream = await stranger.open_stream(a.agent_id, GOSSIP_PROTOCOL)
        with pytest.raises(RemoteError) as info:
            await asyncio.wait_for(stream.read(), 10)
        assert info.value.code == ErrorCode.NOT_TRUSTED
        assert stranger.agent_id not in _alive(a)
    finally:
        await _close([a, stranger])


@pytest.mark.timeout(60)
async def test_a_node_that_shuts_down_is_reported_left(tmp_path: Path) -> None:
    nodes = await _trio(tmp_path)
    a, _, c = nodes
    try:
        await c.close()

        def state_of_c() -> str:
            return next((m["state"] for m in a.gossip.members() if m["agent_id"] == c.agent_id), "")

        await wait_until(lambda: state_of_c() == "left", "c reported left", 20)
    finally:
        await _close(nodes)


@pytest.mark.timeout(60)
async def test_membership_covers_trusted_agents_only(tmp_path: Path) -> None:
    """a-b and b-c trust each other, a and c do not: b gossips about both, yet a never
    tracks c (it could not probe it), so nobody suspects anyone."""
    nodes = [await _start(tmp_path / name) for name in "abc"]
    a, b, c = nodes
    try:
        await make_trusted(a, b)
        await make_trusted(b, c)
        await wait_until(lambda: _alive(b) == {a.agent_id, c.agent_id}, "b sees a and c", 20)
        await wait_until(lambda: _alive(a) == {b.agent_id}, "a sees b", 20)
        await wait_until(lambda: _alive(c) == {b.agent_id}, "c sees b", 20)
        for node in nodes:
            states = {m["agent_id"]: m["state"] for m in node.gossip.members()}
            assert "suspect" not in states.values() and "dead" not in states.values()
        assert c.agent_id not in {m["agent_id"] for m in a.gossip.members()}
        assert a.agent_id not in {m["agent_id"] for m in c.gossip.members()}
    finally:
        await _close(nodes)


def _split_by_decoder(body: bytes) -> tuple[int, bytes] | str:
    try:
        record = cbor.decode(body)
    except ProtocolViolation:
        return "refused"
    if (
        isinstance(record, list)
        and len(record) == 2
        and record[0] in (1, 2, 3)
        and isinstance(record[1], bytes)
    ):
        return record[0], record[1]
    return "refused"


def _split_or_refused(body: bytes) -> tuple[int, bytes] | str:
    try:
        return split_record(body)
    except ProtocolViolation:
        return "refused"


@given(st.integers(min_value=0, max_value=4), st.binary(max_size=70_000))
def test_record_envelope_fast_path_matches_the_decoder(channel: int, payload: bytes) -> None:
    """The envelope ``[channel, payload]`` is sliced without a decoder pass when it is in
    canonical form; whatever the bytes, the result is the decoder's (same pair, or refused)."""
    body = cbor.encode([channel, payload])
    assert _split_or_refused(body) == _split_by_decoder(body)
    if channel in (1, 2, 3):
        assert split_record(body) == (channel, payload)


@given(st.binary(max_size=40))
def test_record_envelope_of_any_bytes_matches_the_decoder(noise: bytes) -> None:
    for body in (noise, b"\x82\x02" + noise, b"\x82\x01\x58" + noise, b"\x82\x03\x59" + noise):
        assert _split_or_refused(body) == _split_by_decoder(body)

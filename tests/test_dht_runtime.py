"""The DHT over real nodes on loopback: join, resolve and dial by ID alone, capabilities,
persistence across restarts, hostile DHT input."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import drop_session, target, wait_until

from swarmlink.dht import DHT_PROTOCOL, Query, Request, Response, node_id
from swarmlink.dht._records import AgentRecord
from swarmlink.errors import ErrorCode, InvalidArgument, NotFound, StreamReset
from swarmlink.runtime import Node, NodeConfig
from swarmlink.runtime._dhtsvc import _read_message, _write_message, parse_bootstrap


def config(tmp: Path, name: str, *bootstrap: Node) -> NodeConfig:
    return NodeConfig(
        home=tmp / name,
        listen=(("127.0.0.1", 0),),
        bootstrap=tuple(target(b) for b in bootstrap),
    )


async def start_network(tmp: Path, n: int) -> list[Node]:
    first = await Node.start(config(tmp, "n0"))
    nodes = [first]
    for i in range(1, n):
        nodes.append(await Node.start(config(tmp, f"n{i}", first)))
    for node in nodes[1:]:
        await wait_until(lambda node=node: node.dht.joined, f"{node.agent_id[:8]} joined")
    # Every node has published its record (join ends with a publish).
    await wait_until(
        lambda: all(n.dht.info()["published_at"] for n in nodes), "records published", 20
    )
    return nodes


async def close_all(nodes: list[Node]) -> None:
    await asyncio.gather(*(n.close() for n in nodes))


async def test_every_node_resolves_every_other_by_id(tmp_path: Path) -> None:
    nodes = await start_network(tmp_path, 8)
    try:
        for a in nodes:
            for b in nodes:
                record = await a.dht.resolve(b.agent_id, fresh=True)
                assert record.agent_id == b.agent_id
                assert record.addresses == (f"127.0.0.1:{b.listen_port}",)
        status = nodes[3].status()
        assert status.dht_joined and status.dht_contacts >= 1
    finally:
        await close_all(nodes)


async def test_dial_by_id_alone(tmp_path: Path) -> None:
    nodes = await start_network(tmp_path, 5)
    try:
        a, b = nodes[1], nodes[4]
        a.db.execute("DELETE FROM peers WHERE agent_id = ?", (b.agent_id,))
        await drop_session(a, b)
        result = await a.ping(b.agent_id, interval=0)
        assert result.received == 1
        # Trust requests, messages and forwards too: nobody ever typed an address.
        c, d = nodes[2], nodes[3]
        assert await c.request_trust(d.agent_id, "by id") == "requested"
        await wait_until(lambda: any(p.agent_id == c.agent_id for p in d.pending_trust()), "req")
        await d.approve_trust(c.agent_id)
        await wait_until(lambda: c.trust.is_trusted(d.agent_id), "trusted")
        receipt = await c.send_message(d.agent_id, "hello by id")
        assert receipt.delivered

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readexactly(5))
            await w.drain()
            w.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        d.expose(port)
        live = c.connected(d.agent_id)
        if live is not None:
            live.close()
        c.db.execute("DELETE FROM peers WHERE agent_id = ?", (d.agent_id,))
        forward = await c.forward(0, d.agent_id, port)
        reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        server.close()
    finally:
        await close_all(nodes)


async def test_unknown_agent_is_not_found_with_a_reason(tmp_path: Path) -> None:
    nodes = await start_network(tmp_path, 3)
    try:
        from swarmlink.identity import IdentityKey

        ghost = IdentityKey.generate().agent_id
        with pytest.raises(NotFound, match="not found in the DHT"):
            await nodes[1].dht.resolve(ghost)
        with pytest.raises(NotFound):
            await nodes[1].ping(ghost)
    finally:
        await close_all(nodes)


async def test_lonely_node_explains_how_to_join(tmp_path: Path) -> None:
    node = await Node.start(config(tmp_path, "alone"))
    try:
        from swarmlink.identity import IdentityKey

        with pytest.raises(NotFound, match="--bootstrap"):
            await node.dht.resolve(IdentityKey.generate().agent_id)
        own = await node.dht.resolve(node.agent_id)
        assert own.agent_id == node.agent_id
    finally:
        await node.close()


async def test_capabilities_are_found(tmp_path: Path) -> None:
    nodes = await start_network(tmp_path, 6)
    try:
        await nodes[2].dht.add_capability("translate", description="EN to FR")
        await nodes[5].dht.add_capability("translate")
        await nodes[4].dht.add_capability("summarize")
        for node in (nodes[2], nodes[5], nodes[4]):
            task = node.dht._publishing
            assert task is not None
            await task
        found = await nodes[1].dht.find("translate")
        assert {r.agent_id for r in found} == {nodes[2].agent_id, nodes[5].agent_id}
        assert any(c.description == "EN to FR" for r in found for c in r.capabilities)
        await nodes[2].dht.remove_capability("translate")
        with pytest.raises(NotFound):
            await nodes[2].dht.remove_capability("translate")
        with pytest.raises(InvalidArgument):
            await nodes[2].dht.add_capability("Bad Tag")
        assert [c.tag for c in nodes[4].dht.capabilities()] == ["summarize"]
    finally:
        await close_all(nodes)


async def test_routing_table_and_records_survive_restart(tmp_path: Path) -> None:
    nodes = await start_network(tmp_path, 4)
    try:
        victim = nodes[2]
        contacts = {c.agent_id for c in victim.dht.core.table.contacts()}
        records = {r.agent_id for r in victim.dht.store}
        assert contacts and records
        await victim.close()
        again = await Node.start(NodeConfig(home=tmp_path / "n2", listen=(("127.0.0.1", 0),)))
        nodes[2] = again
        assert {c.agent_id for c in again.dht.core.table.contacts()} == contacts
        assert {r.agent_id for r in again.dht.store} == records
        # No bootstrap given this time: the saved table is enough to find others.
        await wait_until(lambda: again.dht.info()["published_at"], "republished")
        record = await nodes[1].dht.resolve(again.agent_id, fresh=True)
        assert record.addresses == (f"127.0.0.1:{again.listen_port}",)
    finally:
        await close_all(nodes)


async def test_hostile_dht_requests_are_refused_and_the_node_keeps_serving(
    tmp_path: Path,
) -> None:
    nodes = await start_network(tmp_path, 3)
    try:
        a, b = nodes[1], nodes[2]
        conn = await a.connection(b.agent_id)
        # Garbage instead of a request: the stream is reset, the node carries on.
        stream = conn.open_stream(DHT_PROTOCOL)
        stream.write(b"\x00\x00\x00\x05hello")
        with pytest.raises(StreamReset):
            await _read_message(stream)
        # An oversized length prefix.
        stream = conn.open_stream(DHT_PROTOCOL)
        stream.write(b"\x7f\xff\xff\xff")
        with pytest.raises(StreamReset, match="exceeds"):
            await _read_message(stream)
        # A forged record in a STORE is refused with a reason.
        record = await a.dht.own_record()
        forged = bytearray(record.encode())
        forged[-1] ^= 1
        response = await a.dht.request(b.agent_id, Query.STORE, node_id(a.agent_id), bytes(forged))
        assert not response.ok and "signature" in response.error
        # And a good request still works (a publishes now: b may have joined after a's
        # first publication).
        await a.dht.publish()
        response = await a.dht.request(b.agent_id, Query.FIND_VALUE, node_id(a.agent_id))
        assert response.ok and response.record is not None
        assert AgentRecord.verified(response.record, time.time()).agent_id == a.agent_id
        # Raw framing helpers agree with the service.
        stream = conn.open_stream(DHT_PROTOCOL)
        _write_message(stream, Request(Query.PING, 7, node_id(b.agent_id)).encode())
        stream.write_eof()
        assert await _read_message(stream)
    finally:
        await close_all(nodes)


def test_parse_bootstrap() -> None:
    from swarmlink.identity import IdentityKey

    agent = IdentityKey.generate().agent_id
    assert parse_bootstrap(f"{agent}@127.0.0.1:7420") == (agent, "127.0.0.1:7420")
    assert parse_bootstrap(f"{agent}@[::1]:7") == (agent, "[::1]:7")
    for bad in ("127.0.0.1:7420", f"{agent}@127.0.0.1:0", f"{agent}@x:y", "nobody@1.2.3.4:5"):
        with pytest.raises(InvalidArgument):
            parse_bootstrap(bad)


async def test_lying_nodes_cannot_forge_or_roll_back_a_record(tmp_path: Path) -> None:
    nodes = await start_network(tmp_path, 6)
    try:
        origin, target_node = nodes[1], nodes[5]
        liars = [n for n in nodes if n not in (origin, target_node)]
        now = time.time()
        old = AgentRecord.create(
            target_node.identity,
            target_node.operational.certificate,
            addresses=[f"127.0.0.1:{target_node.listen_port}"],
            sequence=1,
            now=now,
        )
        await target_node.dht.add_capability("fresh")
        task = target_node.dht._publishing
        assert task is not None
        current = await task
        mallory = nodes[0]
        forged = AgentRecord.create(
            mallory.identity, mallory.operational.certificate, sequence=2**40, now=now
        ).encode()
        tid = node_id(target_node.agent_id)

        def lie(payload: bytes, real: Any) -> Any:
            def handle(peer: str, addresses: Any, request: Request, now: float) -> Response:
                if request.kind == Query.FIND_VALUE and request.key == tid:
                    lies.append(peer)
                    return Response(request.request_id, True, record=payload)
                return real(peer, addresses, request, now)  # type: ignore[no-any-return]

            return handle

        lies: list[str] = []
        for payload in (forged, old.encode()):
            lies.clear()
            for liar in liars:
                liar.dht.core.handle = lie(payload, liar.dht.core.handle)  # type: ignore[method-assign]
            origin.dht.store.remove(target_node.agent_id)
            record = await origin.dht.resolve(target_node.agent_id, fresh=True)
            assert record.sequence == current.sequence
            assert [c.tag for c in record.capabilities] == ["fresh"]
            assert lies, "no liar was asked"
            for liar in liars:
                del liar.dht.core.handle  # back to the class method
    finally:
        await close_all(nodes)


async def test_a_waiter_survives_when_the_dial_it_waits_for_is_abandoned(
    tmp_path: Path,
) -> None:
    """Two callers want the same peer; the first gives up (timeout) mid-dial. The
    second must get its own session, not the first caller's cancellation."""
    nodes = await start_network(tmp_path, 2)
    a, b = nodes
    try:
        await drop_session(a, b)
        real_dial = a._dial
        gate = asyncio.Event()

        async def slow_dial(agent_id: str, host: str, port: int) -> Any:
            if not gate.is_set():
                gate.set()
                await asyncio.sleep(3600)  # the abandoned attempt: cancelled below
            return await real_dial(agent_id, host, port)

        a._dial = slow_dial  # type: ignore[method-assign]
        first = asyncio.create_task(a.connection(b.agent_id, hints=[target(b).split("@")[1]]))
        await gate.wait()
        second = asyncio.create_task(a.connection(b.agent_id))
        await wait_until(lambda: b.agent_id in a._dialing, "first dial registered")
        first.cancel()
        conn = await asyncio.wait_for(second, 10)
        assert conn.agent_id == b.agent_id
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await close_all(nodes)


async def test_a_request_on_a_session_that_lost_a_dial_race_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes dialing each other at once keep one session and close the other with
    DUPLICATE_CONNECTION, resetting its streams: a DHT request caught on the closed one is
    sent again on the kept one (a LAN test once failed its lookup on exactly this);
    any other reset still fails the request."""
    from swarmlink.runtime import _dhtsvc

    real = _dhtsvc._read_message
    resets: list[ErrorCode] = []

    async def racing(stream: Any) -> bytes:
        if resets:
            stream.reset()
            raise StreamReset("reset by session: duplicate connection", resets.pop())
        return await real(stream)

    monkeypatch.setattr(_dhtsvc, "_read_message", racing)
    nodes = await start_network(tmp_path, 2)
    try:
        a, b = nodes
        resets.append(ErrorCode.DUPLICATE_CONNECTION)
        response = await a.dht.request(b.agent_id, Query.PING, node_id(a.agent_id))
        assert response.ok and not resets
        resets.append(ErrorCode.CANCEL)
        with pytest.raises(StreamReset):
            await a.dht.request(b.agent_id, Query.PING, node_id(a.agent_id))
    finally:
        await close_all(nodes)

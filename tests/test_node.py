"""In-process nodes over real TLS on loopback: identity, trust, streams, services."""

from __future__ import annotations

import asyncio
import hashlib
import os
import urllib.request
from pathlib import Path

import pytest
from helpers import make_trusted, running_nodes, target, wait_until

from swarmlink.errors import (
    ErrorCode,
    InvalidArgument,
    NetworkError,
    NotFound,
    StateError,
    StreamRefused,
    StreamReset,
    VerificationFailed,
)
from swarmlink.runtime import Node, NodeConfig, Stream
from swarmlink.runtime import events as ev

ECHO = "/test/echo/1"


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()
    stream.write_eof()


async def test_connect_verifies_agent_id_and_keeps_serving(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b", "c") as (a, b, c):
        # c claims to be b's address: a expects c's ID at b's port and must refuse.
        wrong = f"{c.agent_id}@127.0.0.1:{b.listen_port}"
        with pytest.raises(VerificationFailed) as info:
            await a.connect(wrong)
        assert info.value.code == ErrorCode.AGENT_MISMATCH
        assert b.agent_id[:12] in str(info.value)
        # b keeps serving: the right ID connects.
        peer = await a.connect(target(b))
        assert peer.connected and peer.agent_id == b.agent_id
        await wait_until(lambda: b.connected(a.agent_id), "b sees a")
        assert {p.agent_id for p in a.peers() if p.connected} == {b.agent_id}


async def test_connect_errors_are_clear(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        with pytest.raises(InvalidArgument):
            await a.connect("not-an-agent@127.0.0.1:1")
        with pytest.raises(InvalidArgument):
            await a.connect(b.agent_id)
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(NetworkError, match="cannot connect"):
            await a.connect(f"{b.agent_id}@127.0.0.1:{port}")
        with pytest.raises(NotFound, match="no known address"):
            await a.ping(b.agent_id)


async def test_untrusted_peer_can_only_send_trust_requests(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        b.set_handler(ECHO, echo)
        await a.connect(target(b))
        stream = await a.open_stream(b.agent_id, ECHO)
        stream.write(b"hello")
        with pytest.raises(StreamRefused) as info:
            await stream.read()
        assert info.value.code == ErrorCode.NOT_TRUSTED
        assert "trust request" in str(info.value)
        with pytest.raises(StateError, match="trust"):
            await a.send_message(b.agent_id, "hi")
        # The session survives the refusal and the node still serves pings.
        result = await a.ping(b.agent_id, count=2, interval=0)
        assert result.received == 2


async def test_trust_request_approve_is_pushed_instantly(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        events: list[ev.NodeEvent] = []

        async def collect() -> None:
            async for event in b.subscribe():
                events.append(event)

        task = asyncio.create_task(collect())
        await asyncio.sleep(0)
        await a.connect(target(b))
        state = await a.request_trust(b.agent_id, "let's work together")
        assert state == "requested"
        await wait_until(lambda: any(isinstance(e, ev.TrustRequested) for e in events), "push")
        pending = b.pending_trust()
        assert [(p.agent_id, p.direction, p.reason) for p in pending] == [
            (a.agent_id, "in", "let's work together")
        ]
        assert await b.approve_trust(a.agent_id) == "trusted"
        await wait_until(lambda: a.trust.is_trusted(b.agent_id), "approval at a")
        assert b.trust.is_trusted(a.agent_id)
        task.cancel()


async def test_crossed_requests_approve_each_other(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await a.connect(target(b))
        await a.request_trust(b.agent_id, "a asks")
        await wait_until(lambda: b.pending_trust(), "request at b")
        assert await b.request_trust(a.agent_id, "b asks too") == "trusted"
        await wait_until(lambda: a.trust.is_trusted(b.agent_id), "trust at a")


async def test_reject(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await a.connect(target(b))
        await a.request_trust(b.agent_id)
        await wait_until(lambda: b.pending_trust(), "request at b")
        await b.reject_trust(a.agent_id)
        await wait_until(lambda: not a.pending_trust(), "rejection at a")
        assert not a.trust.is_trusted(b.agent_id)
        with pytest.raises(NotFound):
            await b.approve_trust(a.agent_id)


async def test_revocation_closes_streams_at_once(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        b.set_handler(ECHO, echo)
        await make_trusted(a, b)
        stream = await a.open_stream(b.agent_id, ECHO)
        stream.write(b"ping")
        assert await stream.readexactly(4) == b"ping"
        await b.revoke_trust(a.agent_id)
        with pytest.raises(StreamReset) as info:
            while await stream.read():
                pass
        assert info.value.code == ErrorCode.REVOKED
        await wait_until(lambda: not a.trust.is_trusted(b.agent_id), "revocation at a")
        again = await a.open_stream(b.agent_id, ECHO)
        again.write(b"x")
        with pytest.raises(StreamRefused):
            await again.read()


async def test_streams_echo_concurrently_with_backpressure(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        b.set_handler(ECHO, echo)
        await make_trusted(a, b)

        async def one(i: int) -> None:
            data = os.urandom(200_000 + i)
            stream = await a.open_stream(b.agent_id, ECHO)

            async def writer() -> None:
                for k in range(0, len(data), 7000):
                    stream.write(data[k : k + 7000])
                    await stream.drain()
                stream.write_eof()

            wtask = asyncio.create_task(writer())
            got = bytearray()
            while chunk := await stream.read():
                got += chunk
            await wtask
            assert bytes(got) == data

        await asyncio.gather(*(one(i) for i in range(20)))


async def test_messages_are_durable_and_ordered(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a") as (a,):
        b = await Node.start(NodeConfig(home=tmp_path / "b", listen=(("127.0.0.1", 0),)))
        port = b.listen_port
        await make_trusted(a, b)
        receipt = await a.send_message(b.agent_id, "one")
        assert receipt.delivered and receipt.seq == 1
        await b.close()
        # b is down: messages queue in a's outbox.
        queued = [await a.send_message(b.agent_id, f"m{i}") for i in range(5)]
        assert [r.delivered for r in queued] == [False] * 5
        b = await Node.start(NodeConfig(home=tmp_path / "b", listen=(("127.0.0.1", port),)))
        try:
            await a.connect(target(b))
            await wait_until(lambda: len(b.inbox()) == 6, "queued messages delivered")
            assert [m.text for m in b.inbox()] == ["one", "m0", "m1", "m2", "m3", "m4"]
            assert [m.seq for m in b.inbox(sender=a.agent_id)] == [1, 2, 3, 4, 5, 6]
        finally:
            await b.close()


async def test_send_file_checksum_and_safe_name(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await make_trusted(a, b)
        src = tmp_path / "data.bin"
        payload = os.urandom(3 * 1024 * 1024 + 17)
        src.write_bytes(payload)
        progress: list[int] = []
        receipt = await a.send_file(b.agent_id, str(src), lambda sent, total: progress.append(sent))
        assert receipt.size == len(payload)
        assert receipt.sha256 == hashlib.sha256(payload).hexdigest()
        assert progress[-1] == len(payload)
        files = b.received_files()
        assert len(files) == 1
        stored = Path(files[0]["path"])
        assert stored.parent == b.home / "files"
        assert stored.read_bytes() == payload
        with pytest.raises(InvalidArgument):
            await a.send_file(b.agent_id, str(tmp_path / "missing"))


async def test_http_through_a_tunnel_and_access_control(tmp_path: Path) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_nodes(tmp_path, "a", "b", "c") as (a, b, c):
            await make_trusted(a, b)
            await make_trusted(c, b)
            b.expose(port, allow=[a.agent_id])
            fwd = await a.forward(0, b.agent_id, port)
            url = f"http://127.0.0.1:{fwd.local_port}/"

            def get(u: str) -> bytes:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(u, timeout=10) as resp:
                    return bytes(resp.read())

            assert await asyncio.to_thread(get, url) == b"ok"
            assert [f.local_port for f in a.forwards()] == [fwd.local_port]
            # c is trusted by b but not allowed on this port.
            cfwd = await c.forward(0, b.agent_id, port)
            with pytest.raises(OSError):
                await asyncio.to_thread(get, f"http://127.0.0.1:{cfwd.local_port}/")
            await a.unforward(fwd.id)
            assert a.forwards() == []
            # Forwards on port 0 asked for side by side each get their own port (the
            # database row holds the bound port, never a shared placeholder).
            many = await asyncio.gather(*[a.forward(0, b.agent_id, port) for _ in range(6)])
            assert len({f.local_port for f in many}) == 6
            assert sorted(f.local_port for f in a.forwards()) == sorted(f.local_port for f in many)
            with pytest.raises(StateError, match="already forwarded"):
                await a.forward(many[0].local_port, b.agent_id, port)
            assert await asyncio.to_thread(get, f"http://127.0.0.1:{many[-1].local_port}/") == b"ok"
    finally:
        server.close()


async def test_ping_and_bench(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await make_trusted(a, b)
        replies: list[float | None] = []
        result = await a.ping(
            b.agent_id, count=3, interval=0, on_reply=lambda s, r: replies.append(r)
        )
        assert result.sent == result.received == 3 and len(replies) == 3
        assert result.min_ms is not None and result.min_ms > 0
        bench = await a.bench(b.agent_id, size=8 * 1024 * 1024)
        assert bench.bytes == 8 * 1024 * 1024 and bench.throughput_mib_s > 0


async def test_key_rotation_keeps_identity_and_trust(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        b.set_handler(ECHO, echo)
        await make_trusted(a, b)
        before = a.identity_info()
        after = a.rotate_key()
        assert after["agent_id"] == before["agent_id"]
        assert after["virtual_address"] == before["virtual_address"]
        assert after["operational_key_serial"] == before["operational_key_serial"] + 1
        assert after["operational_key"] != before["operational_key"]
        # Fresh connection with the new key: b still trusts a.
        conn = a.connected(b.agent_id)
        old = b.connected(a.agent_id)
        assert conn is not None
        conn.close()
        # (DHT traffic may open a new session at once: wait for the old one to go.)
        await wait_until(lambda: b.connected(a.agent_id) is not old, "old session gone")
        await a.connect(target(b))
        stream = await a.open_stream(b.agent_id, ECHO)
        stream.write(b"still trusted")
        assert await stream.readexactly(13) == b"still trusted"
        b_conn = b.connected(a.agent_id)
        assert b_conn is not None and b_conn.identity is not None
        assert b_conn.identity.certificate.serial == after["operational_key_serial"]


async def test_simultaneous_dial_settles_on_one_connection(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await asyncio.gather(a.connect(target(b)), b.connect(target(a)))
        await wait_until(
            lambda: a.connected(b.agent_id) is not None and b.connected(a.agent_id) is not None,
            "both connected",
        )
        await wait_until(
            lambda: len(a._all_conns) == 1 and len(b._all_conns) == 1, "duplicates closed"
        )
        ca, cb = a.connected(b.agent_id), b.connected(a.agent_id)
        assert ca is not None and cb is not None
        assert ca.outbound != cb.outbound  # the same TCP connection seen from both ends
        assert (await a.ping(b.agent_id, interval=0)).received == 1

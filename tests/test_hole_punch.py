"""Hole punching on loopback: a relayed session upgrades itself to a direct one, new
streams take the direct path, the relayed session stays behind it as fallback and
takes over (with a fresh punch later) when the direct one dies."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import drop_session, target, wait_until
from test_relay import ECHO, cfg, echo

from swarmlink.runtime import Node
from swarmlink.runtime import _punchsvc as punchsvc
from swarmlink.runtime import _sockets as sockets
from swarmlink.runtime import events as ev


async def _relayed_pair(tmp_path: Path, **kw: Any) -> tuple[Node, Node, Node]:
    """relay, a, b: both publish only an address where nobody answers (b reserved on the
    relay), so they first meet through the relay; their punches use where they listen."""
    relay = await Node.start(cfg(tmp_path, "relay", relay=True))
    boot = (target(relay),)
    b = await Node.start(
        cfg(tmp_path, "b", bootstrap=boot, relays=boot, advertise=("127.0.0.1:1",), **kw)
    )
    a = await Node.start(cfg(tmp_path, "a", bootstrap=boot, advertise=("127.0.0.1:1",), **kw))
    b.set_handler(ECHO, echo)
    a.set_handler(ECHO, echo)

    async def published() -> bool:
        record = await b.dht.own_record()
        return bool(record.relays) and b.dht.last_publish_stores > 0

    try:
        await wait_until(published, "b's record lists the relay", 15)
        await drop_session(a, b, "no session between a and b")
    except BaseException:
        print("b reservations", b.relay.reservations, "stores", b.dht.last_publish_stores)
        print("b record", await b.dht.own_record())
        await asyncio.gather(a.close(), b.close(), relay.close())
        raise
    return relay, a, b


async def _echo(node: Node, peer: str, payload: bytes) -> bytes:
    stream = await node.open_stream(peer, ECHO)
    stream.write(payload)
    stream.write_eof()
    got = b""
    while data := await stream.read():
        got += data
    return got


async def test_listener_and_dials_share_the_port(tmp_path: Path) -> None:
    async with await Node.start(cfg(tmp_path, "x")) as x, await Node.start(cfg(tmp_path, "y")) as y:
        await x.connect(target(y))
        conn = x.connected(y.agent_id)
        assert conn is not None
        assert conn.local_address == f"127.0.0.1:{x.listen_port}"  # dialed from the listener
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        assert sock is not None  # and without Nagle (40 ms stalls on every exchange)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # A second daemon cannot silently share the port (SO_REUSEPORT on the listener).
        with pytest.raises(OSError):
            sockets.check_port_free("127.0.0.1", x.listen_port)


async def test_relayed_session_upgrades_to_direct_and_falls_back(tmp_path: Path) -> None:
    relay, a, b = await _relayed_pair(tmp_path)
    events = a.subscribe()
    try:
        assert (await a.ping(b.agent_id, interval=0)).received == 1
        await a.request_trust(b.agent_id, "punch test")
        await wait_until(lambda: b.pending_trust(), "trust request")
        await b.approve_trust(a.agent_id)
        await wait_until(lambda: a.trust.is_trusted(b.agent_id), "trusted")
        # The punch over the relayed session opens a direct one; the relay stays behind.
        await wait_until(lambda: _path(a, b) == "direct", "direct TCP path")
        relayed = a._fallback.get(b.agent_id)
        assert relayed is not None and relayed.via == relay.agent_id
        info = next(p for p in a.peers() if p.agent_id == b.agent_id)
        assert info.path == "direct"
        payload = bytes(range(256)) * 4096
        assert await _echo(a, b.agent_id, payload) == payload
        direct = a.connected(b.agent_id)
        assert direct is not None and direct.via is None
        # b sees the same: direct in front, relayed behind.
        await wait_until(
            lambda: (c := b.connected(a.agent_id)) is not None and c.via is None, "b: direct"
        )
        async with asyncio.timeout(10):
            async for event in events:
                if isinstance(event, ev.PeerPathChanged) and event.path == "direct":
                    break
        # The direct session dies (as after a NAT rebinding): the relayed one takes over
        # at once, without a disconnect, and a fresh punch brings the direct path back.
        direct.close()
        await wait_until(lambda: a.connected(b.agent_id) is not direct, "direct gone")
        now = a.connected(b.agent_id)
        assert now is not None
        if now.via is not None:
            assert await _echo(a, b.agent_id, b"over the relay") == b"over the relay"
        await wait_until(
            lambda: _path(a, b) == "direct",
            "direct again after a new punch",
            punchsvc.REPUNCH_DELAYS[0] + 15,
        )
        assert await _echo(a, b.agent_id, payload) == payload
    finally:
        events.close()
        await asyncio.gather(a.close(), b.close(), relay.close())


async def test_no_punch_when_turned_off(tmp_path: Path) -> None:
    relay, a, b = await _relayed_pair(tmp_path, hole_punching=False)
    try:
        assert (await a.ping(b.agent_id, interval=0)).received == 1
        conn = a.connected(b.agent_id)
        assert conn is not None and conn.via == relay.agent_id
        assert not a.punch._running
    finally:
        await asyncio.gather(a.close(), b.close(), relay.close())


async def test_punched_socket_roles(tmp_path: Path) -> None:
    """After a simultaneous open, the end that hears a ClientHello is the TLS server;
    an end that hears nothing (the other is a listener) is the client."""
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    try:
        assert not await sockets.peer_speaks_first(left, 0.05)
        right.send(b"\x16\x03\x01")
        assert await sockets.peer_speaks_first(left, 1.0)
        assert left.recv(16) == b"\x16\x03\x01"  # peeked, not consumed
        right.close()
        with pytest.raises(ConnectionResetError):
            await sockets.peer_speaks_first(left, 1.0)
    finally:
        left.close()
        right.close()


async def test_quic_punch_upgrades_a_relayed_session(tmp_path: Path) -> None:
    """With QUIC alone, the direct path is a QUIC session over UDP from the listening
    port number, with the same identity-bound TLS; a TCP session would replace it."""
    relay, a, b = await _relayed_pair(tmp_path, punch_transports=("quic",))
    events = a.subscribe()
    try:
        assert (await a.ping(b.agent_id, interval=0)).received == 1
        # (b may also dial a over TCP at any time on loopback: watch for the QUIC path.)
        async with asyncio.timeout(15):
            async for event in events:
                if isinstance(event, ev.PeerPathChanged) and event.path == "direct (QUIC)":
                    break
        # Both ends dial QUIC: one of two simultaneous QUIC sessions may be closed as a
        # duplicate; the one in front carries the session (TLS proved the agent).
        conn = a.connected(b.agent_id)
        assert conn is not None and conn.via is None and conn.identity is not None
        assert conn.identity.agent_id == b.agent_id
        assert a.punch.quic is not None and a.punch.quic.port == a.listen_port
        assert (await a.ping(b.agent_id, interval=0)).received == 1
        # A direct TCP session to the same peer takes over; the QUIC one closes.
        await a._dial(b.agent_id, "127.0.0.1", b.listen_port)
        await wait_until(lambda: _path(a, b) == "direct", "TCP in front")
        await wait_until(
            lambda: a.punch.quic is not None and a.punch.quic.connections == 0, "QUIC closed"
        )
    finally:
        events.close()
        await asyncio.gather(a.close(), b.close(), relay.close())


def _path(a: Node, b: Node) -> str:
    return next(p.path for p in a.peers() if p.agent_id == b.agent_id)


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _through(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    got = await reader.read(-1)
    writer.close()
    return got


async def test_a_forward_follows_the_path_relayed_direct_and_back(tmp_path: Path) -> None:
    """Each connection through a forward takes the best session of the moment: direct
    once punched, the relay while the direct path is down, direct again after the new
    punch; the forward itself never needs to be recreated."""
    relay, a, b = await _relayed_pair(tmp_path)
    server = await asyncio.start_server(_tcp_echo, "127.0.0.1", 0)
    try:
        await a.request_trust(b.agent_id, "forward test")
        await wait_until(lambda: b.pending_trust(), "trust request")
        await b.approve_trust(a.agent_id)
        await wait_until(lambda: a.trust.is_trusted(b.agent_id), "trusted")
        port = server.sockets[0].getsockname()[1]
        b.expose(port, name="echo")
        fwd = await a.forward(0, b.agent_id, "echo")
        payload = bytes(range(256)) * 2048
        await wait_until(lambda: _path(a, b) == "direct", "direct TCP path")
        assert await _through(fwd.local_port, payload) == payload
        direct = a.connected(b.agent_id)
        assert direct is not None and direct.via is None
        # An open connection on the direct session while that session dies: it ends (its
        # stream is reset), and the next connection goes over the relay at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", fwd.local_port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        direct.close()
        await wait_until(lambda: a.connected(b.agent_id) is not direct, "direct gone")
        assert await asyncio.wait_for(reader.read(-1), 10) == b""
        writer.close()
        if (now := a.connected(b.agent_id)) is not None and now.via is not None:
            assert await _through(fwd.local_port, b"over the relay") == b"over the relay"
        await wait_until(
            lambda: _path(a, b) == "direct",
            "direct again after a new punch",
            punchsvc.REPUNCH_DELAYS[0] + 15,
        )
        assert await _through(fwd.local_port, payload) == payload
    finally:
        server.close()
        await asyncio.gather(a.close(), b.close(), relay.close())


async def test_quic_is_opened_only_when_a_punch_may_come(tmp_path: Path) -> None:
    """aioquic (and the pyOpenSSL it loads) costs memory: a node with only direct
    sessions never opens its UDP/QUIC endpoint; one behind a relay does."""
    async with await Node.start(cfg(tmp_path, "x")) as x, await Node.start(cfg(tmp_path, "y")) as y:
        await x.connect(target(y))
        assert (await x.ping(y.agent_id, interval=0)).received == 1
        assert x.punch.quic is None and y.punch.quic is None
    relay, a, b = await _relayed_pair(tmp_path / "relayed")
    try:
        await wait_until(lambda: b.punch.quic is not None, "b (reserved on a relay) opens QUIC")
        assert b.punch.quic is not None and b.punch.quic.port == b.listen_port
    finally:
        await asyncio.gather(a.close(), b.close(), relay.close())

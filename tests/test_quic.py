"""Swarmlink sessions over QUIC (one UDP socket per node, for hole punching): a full
session with bulk streams, the identity check (a certificate without its private key is
refused), and an endpoint that shrugs off strangers' datagrams."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import wait_until

from swarmlink.errors import ErrorCode, NetworkError, VerificationFailed
from swarmlink.identity import IdentityKey, KeyStore
from swarmlink.runtime import Node, NodeConfig, Stream
from swarmlink.runtime import _quic as quic_mod
from swarmlink.runtime._connection import PeerConnection
from swarmlink.runtime._quic import PUNCH_PAYLOAD, QuicEndpoint, QuicStreamTransport

ECHO = "/swarmlink/echo/test"
BULK = 5 * 1024 * 1024
CHUNK = 64 * 1024


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()
    stream.write_eof()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a = await Node.start(NodeConfig(home=tmp_path / "a", listen=(("127.0.0.1", 0),)))
    b = await Node.start(NodeConfig(home=tmp_path / "b", listen=(("127.0.0.1", 0),)))
    try:
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close())


async def bind(node: Node, *, accept: bool = True, key_of: Path | None = None) -> QuicEndpoint:
    """An endpoint with ``node``'s certificate (and ``key_of``'s private key, if given)."""
    cert, key = node.keystore.tls_files
    return await QuicEndpoint.bind(
        "127.0.0.1",
        0,
        cert_file=cert,
        key_file=key if key_of is None else KeyStore(key_of).tls_files[1],
        accept=(lambda: node._new_connection(outbound=False)) if accept else None,
    )


def other_keys(tmp: Path) -> Path:
    """A home holding a stranger's keys (another agent entirely)."""
    KeyStore(tmp / "stranger").load_or_create(now=time.time())
    return tmp / "stranger"


async def dial(ea: QuicEndpoint, a: Node, eb: QuicEndpoint, expected: str) -> PeerConnection:
    proto = await ea.connect(
        "127.0.0.1",
        eb.port,
        lambda: a._new_connection(outbound=True, expected=expected),
        timeout=5.0,
    )
    assert isinstance(proto, PeerConnection)
    return proto


async def test_session_over_quic_carries_bulk_streams_both_ways(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = nodes
    monkeypatch.setattr(b.trust, "is_trusted", lambda agent: agent == a.agent_id)
    b.set_handler(ECHO, echo)
    ea, eb = await bind(a), await bind(b)
    try:
        proto = await dial(ea, a, eb, b.agent_id)
        conn = await asyncio.wait_for(proto.ready, 10)
        assert conn is proto and conn.agent_id == b.agent_id
        assert isinstance(conn.transport, QuicStreamTransport)
        assert a.connected(b.agent_id) is conn
        inbound = await wait_until(lambda: b.connected(a.agent_id), "b sees a")
        assert isinstance(inbound.transport, QuicStreamTransport)
        assert inbound.address == f"127.0.0.1:{ea.port}"

        payload = os.urandom(BULK)
        stream = conn.open_stream(ECHO)
        started = time.perf_counter()

        async def send() -> None:
            for off in range(0, BULK, CHUNK):
                stream.write(payload[off : off + CHUNK])
                await stream.drain()
            stream.write_eof()

        async def receive() -> bytes:
            got = bytearray()
            while data := await stream.read():
                got += data
            return bytes(got)

        _, echoed = await asyncio.wait_for(asyncio.gather(send(), receive()), 120)
        elapsed = time.perf_counter() - started
        assert len(echoed) == BULK
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        mib = BULK / (1024 * 1024)
        print(
            f"\nQUIC echo: {mib:.0f} MiB each way in {elapsed:.2f}s = "
            f"{2 * mib / elapsed:.1f} MiB/s total ({mib / elapsed:.1f} MiB/s per direction)"
        )
        # A graceful session close ends the QUIC connection on both sides.
        conn.close()
        await wait_until(lambda: ea.connections == 0 and eb.connections == 0, "QUIC closed")
        assert b.connected(a.agent_id) is None
    finally:
        ea.close()
        eb.close()


async def test_wrong_expected_agent_is_refused(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    ea, eb = await bind(a), await bind(b)
    try:
        proto = await dial(ea, a, eb, IdentityKey.generate().agent_id)
        with pytest.raises(VerificationFailed) as err:
            await asyncio.wait_for(proto.ready, 10)
        assert err.value.code == ErrorCode.AGENT_MISMATCH
        assert a.connected(b.agent_id) is None
        await wait_until(lambda: ea.connections == 0, "refused connection closed")
    finally:
        ea.close()
        eb.close()


async def test_client_certificate_without_its_key_is_refused(
    nodes: tuple[Node, Node], tmp_path: Path
) -> None:
    """A client presenting a's certificate signs CertificateVerify with a stranger's key:
    the server's TLS rejects the handshake; nothing reaches the session layer."""
    a, b = nodes
    accepted: list[PeerConnection] = []

    def accept() -> PeerConnection:
        conn = b._new_connection(outbound=False)
        accepted.append(conn)
        return conn

    cert, key = b.keystore.tls_files
    eb = await QuicEndpoint.bind("127.0.0.1", 0, cert_file=cert, key_file=key, accept=accept)
    impostor = await bind(a, accept=False, key_of=other_keys(tmp_path))
    try:
        with pytest.raises(NetworkError, match=r"handshake .* failed.*TLS alert 51"):
            await impostor.connect(
                "127.0.0.1",
                eb.port,
                lambda: a._new_connection(outbound=True, expected=b.agent_id),
                timeout=5.0,
            )
        assert accepted == []
        assert b.connected(a.agent_id) is None
        await wait_until(lambda: eb.connections == 0, "server forgot the impostor")
    finally:
        impostor.close()
        eb.close()


async def test_server_certificate_without_its_key_is_refused(
    nodes: tuple[Node, Node], tmp_path: Path
) -> None:
    a, b = nodes
    ea = await bind(a)
    impostor = await bind(b, key_of=other_keys(tmp_path))  # b's certificate, wrong key
    try:
        with pytest.raises(NetworkError, match=r"handshake .* failed"):
            await dial(ea, a, impostor, b.agent_id)
        assert a.connected(b.agent_id) is None
        assert ea.connections == 0
    finally:
        ea.close()
        impostor.close()


async def test_client_without_certificate_is_refused(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    ea, eb = await bind(a), await bind(b)
    ea._client_config.certificate = None  # answer the CertificateRequest with nothing
    ea._client_config.private_key = None
    try:
        with pytest.raises(NetworkError, match="client certificate required"):
            await dial(ea, a, eb, b.agent_id)
        assert b.connected(a.agent_id) is None
        await wait_until(lambda: eb.connections == 0, "server forgot the connection")
    finally:
        ea.close()
        eb.close()


async def test_strangers_datagrams_do_not_disturb_the_endpoint(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    ea, eb = await bind(a), await bind(b)
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        target = ("127.0.0.1", eb.port)
        ea.punch("127.0.0.1", eb.port)
        ea.punch("127.0.0.1", eb.port)
        for datagram in (
            PUNCH_PAYLOAD,
            b"",
            b"\xff",
            os.urandom(40),
            b"\x40" + os.urandom(30),  # short header, unknown connection ID
            b"\xc0\x00\x00\x00\x01\x08" + os.urandom(1300),  # an "Initial" of noise
            b"\xc0\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x00\x00\x41" + os.urandom(1250),
            b"\xc0\xba\xdb\xad\x00" + os.urandom(1250),  # unknown version
        ):
            junk.sendto(datagram, target)
        eb.punch("127.0.0.1", ea.port)  # and the other way: a ignores it
        proto = await dial(ea, a, eb, b.agent_id)
        conn = await asyncio.wait_for(proto.ready, 10)
        assert conn.agent_id == b.agent_id
        assert eb.connections == 1  # no slot went to the noise
        assert await conn.ping(5.0) is not None
    finally:
        junk.close()
        ea.close()
        eb.close()


async def test_nobody_listening_fails_within_the_timeout(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    ea = await bind(a)
    deaf = await bind(b, accept=False)  # a QUIC endpoint that accepts nothing
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    nobody = free.getsockname()[1]
    free.close()
    try:
        for port in (nobody, deaf.port):
            started = time.monotonic()
            with pytest.raises(NetworkError, match=r"timed out after 0\.5s"):
                await ea.connect(
                    "127.0.0.1",
                    port,
                    lambda: a._new_connection(outbound=True, expected=b.agent_id),
                    timeout=0.5,
                )
            assert time.monotonic() - started < 3.0
            assert ea.connections == 0
        assert deaf.connections == 0
    finally:
        ea.close()
        deaf.close()


async def test_connection_limit_drops_new_initials(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a, b = nodes
    c = await Node.start(NodeConfig(home=tmp_path / "c", listen=(("127.0.0.1", 0),)))
    ea, eb, ec = await bind(a), await bind(b), await bind(c)
    monkeypatch.setattr(quic_mod, "MAX_QUIC_CONNECTIONS", 1)
    try:
        first = await dial(ea, a, eb, b.agent_id)
        await asyncio.wait_for(first.ready, 10)
        with pytest.raises(NetworkError, match="timed out"):
            await ec.connect(
                "127.0.0.1",
                eb.port,
                lambda: c._new_connection(outbound=True, expected=b.agent_id),
                timeout=0.5,
            )
        assert eb.connections == 1
    finally:
        ea.close()
        eb.close()
        ec.close()
        await c.close()


async def test_endpoint_close_ends_its_connections(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    ea, eb = await bind(a), await bind(b)
    try:
        proto = await dial(ea, a, eb, b.agent_id)
        conn = await asyncio.wait_for(proto.ready, 10)
        await wait_until(lambda: b.connected(a.agent_id), "b sees a")
        ea.close()
        assert conn.closed  # connection_lost ran at once
        assert a.connected(b.agent_id) is None
        assert ea.connections == 0
        # The peer heard CONNECTION_CLOSE (no idle timeout needed).
        await wait_until(lambda: b.connected(a.agent_id) is None, "b saw the close", 5)
        await wait_until(lambda: eb.connections == 0, "b forgot the connection", 5)
        with pytest.raises(NetworkError, match="closed"):
            await dial(ea, a, eb, b.agent_id)
    finally:
        ea.close()
        eb.close()

"""Hostile peers against a real node: each bad input gets a clear error, the node keeps
serving everyone else, and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from helpers import make_trusted, running_nodes, target, wait_until

from swarmlink.errors import CertificateExpired, ErrorCode, VerificationFailed
from swarmlink.identity import KeyStore, make_ssl_context
from swarmlink.runtime import Node, NodeConfig, Stream
from swarmlink.wire import cbor
from swarmlink.wire.framing import FrameDecoder, FrameType, encode_frame
from swarmlink.wire.version import Hello


async def raw_tls_client(
    home: Path, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS client with a valid swarmlink certificate that speaks frames by hand."""
    ks = KeyStore(home)
    ks.load_or_create(now=time.time())
    cert, key = ks.tls_files
    ctx = make_ssl_context(server=False, cert_file=cert, key_file=key)
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="swarmlink")


async def read_goaway(reader: asyncio.StreamReader) -> tuple[int, str]:
    decoder = FrameDecoder()
    while True:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            raise AssertionError("closed without GOAWAY")
        for frame in decoder.feed(data):
            if frame.type == FrameType.GOAWAY:
                payload = cbor.decode(frame.payload)
                return int(payload["c"]), str(payload["r"])


async def assert_still_serving(a: Node, b: Node) -> None:
    await a.connect(target(b))
    assert (await a.ping(b.agent_id, interval=0)).received == 1


@pytest.mark.parametrize(
    "frames,code",
    [
        # Oversized frame: a header claiming 2 GiB.
        (
            lambda: (2**31).to_bytes(4, "big") + bytes([0, 0]) + (1).to_bytes(4, "big"),
            ErrorCode.FRAME_TOO_LARGE,
        ),
        # Unknown frame type.
        (
            lambda: (
                encode_frame(FrameType.HELLO, 0, 0, Hello.local().encode())[:4]
                + b"\x63\x00\x00\x00\x00\x00"
                + Hello.local().encode()
            ),
            ErrorCode.MALFORMED,
        ),
        # Data before HELLO.
        (lambda: encode_frame(FrameType.DATA, 0, 1, b"hi"), ErrorCode.PROTOCOL_ERROR),
        # Malformed HELLO payload.
        (lambda: encode_frame(FrameType.HELLO, 0, 0, b"\xff\xff"), ErrorCode.MALFORMED),
    ],
)
async def test_malformed_frames_close_only_that_session(tmp_path: Path, frames, code) -> None:  # type: ignore[no-untyped-def]
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        reader, writer = await raw_tls_client(tmp_path / "evil", b.listen_port)
        writer.write(frames())
        got_code, reason = await read_goaway(reader)
        assert got_code in (int(code), int(ErrorCode.PROTOCOL_ERROR), int(ErrorCode.MALFORMED))
        assert reason
        writer.close()
        await assert_still_serving(a, b)


async def test_version_mismatch_is_explained(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        reader, writer = await raw_tls_client(tmp_path / "future", b.listen_port)
        hello = Hello(versions=(99,), features=("mux",), user_agent="swarmlink/99.0")
        writer.write(encode_frame(FrameType.HELLO, 0, 0, hello.encode()))
        code, reason = await read_goaway(reader)
        assert code == ErrorCode.VERSION_MISMATCH
        assert "99" in reason and "1" in reason
        writer.close()
        await assert_still_serving(a, b)


async def test_expired_operational_key_is_rejected(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        # Key files whose operational certificate expired a day ago (issued for one day,
        # two days ago; passing that `now` keeps the KeyStore from renewing it).
        stale = KeyStore(tmp_path / "stale")
        stale.load_or_create(now=time.time() - 2 * 86400, lifetime=86400)
        cert, key = stale.tls_files
        ctx = make_ssl_context(server=False, cert_file=cert, key_file=key)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", b.listen_port, ssl=ctx, server_hostname="swarmlink"
        )
        code, reason = await read_goaway(reader)
        assert code == ErrorCode.CERT_EXPIRED
        assert "expired" in reason
        writer.close()
        await assert_still_serving(a, b)


async def test_dialer_sees_expired_peer_certificate(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a") as (a,):
        ks = KeyStore(tmp_path / "stale")
        ident, _ = ks.load_or_create(now=time.time() - 2 * 86400, lifetime=86400)
        ctx = make_ssl_context(server=True, cert_file=ks.tls_files[0], key_file=ks.tls_files[1])
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(CertificateExpired):
                await a.connect(f"{ident.agent_id}@127.0.0.1:{port}")
        finally:
            server.close()
        assert a.connected(ident.agent_id) is None


async def test_replayed_trust_request_is_rejected(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await a.connect(target(b))
        a.trust.request(b.agent_id, "once", time.time())
        items = a.trust.outgoing(b.agent_id, time.time(), lambda: os.urandom(16))
        assert len(items) == 1
        envelope = items[0][1]
        replies = []
        for _ in range(2):
            stream = await a.open_stream(b.agent_id, "/swarmlink/trust/1")
            stream.write_record(envelope)
            stream.write_eof()
            replies.append(await stream.read_record())
        assert replies[0] == {"ok": True}
        assert isinstance(replies[1], dict) and replies[1]["ok"] is False
        assert replies[1]["code"] == ErrorCode.REPLAY
        assert len(b.pending_trust()) == 1  # counted once


async def test_trust_message_from_wrong_session_is_rejected(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b", "c") as (a, b, c):
        # c relays a request that a signed for b: b must see it came over c's session.
        a.trust.request(b.agent_id, "mine", time.time())
        envelope = a.trust.outgoing(b.agent_id, time.time(), lambda: os.urandom(16))[0][1]
        await c.connect(target(b))
        stream = await c.open_stream(b.agent_id, "/swarmlink/trust/1")
        stream.write_record(envelope)
        stream.write_eof()
        reply = await stream.read_record()
        assert isinstance(reply, dict) and reply["ok"] is False
        assert reply["code"] == ErrorCode.AGENT_MISMATCH
        assert b.pending_trust() == []


async def test_rotated_out_key_is_refused(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await make_trusted(a, b)
        old_cert = (a.home / "tls.crt").read_bytes()
        old_key = (a.home / "tls.key").read_bytes()
        a.rotate_key()
        conn = a.connected(b.agent_id)
        assert conn is not None
        conn.close()
        await a.connect(target(b))  # b now knows serial+1
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "tls.crt").write_bytes(old_cert)
        (tmp_path / "old" / "tls.key").write_bytes(old_key)
        os.chmod(tmp_path / "old" / "tls.key", 0o600)
        ctx = make_ssl_context(
            server=False,
            cert_file=tmp_path / "old" / "tls.crt",
            key_file=tmp_path / "old" / "tls.key",
        )
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", b.listen_port, ssl=ctx, server_hostname="swarmlink"
        )
        code, reason = await read_goaway(reader)
        assert code == ErrorCode.AUTH_FAILED and "rotated" in reason
        writer.close()


async def test_unknown_protocol_and_handler_crash(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await make_trusted(a, b)

        async def crash(stream: object) -> None:
            raise RuntimeError("boom")

        b.set_handler("/test/crash/1", crash)  # type: ignore[arg-type]
        s1 = await a.open_stream(b.agent_id, "/test/nope/1")
        with pytest.raises(Exception) as info:
            await s1.read()
        assert "no handler" in str(info.value)
        s2 = await a.open_stream(b.agent_id, "/test/crash/1")
        with pytest.raises(Exception) as info2:
            await s2.read()
        assert getattr(info2.value, "code", None) == ErrorCode.INTERNAL
        await assert_still_serving(a, b)
        with pytest.raises(VerificationFailed):
            await a.connect(f"{a.agent_id}@127.0.0.1:{a.listen_port}")
        await wait_until(lambda: True)


async def test_trust_protocol_is_rate_limited_per_peer(tmp_path: Path) -> None:
    from swarmlink.runtime._trustsvc import MAX_TRUST_MESSAGES_PER_MINUTE

    async with running_nodes(tmp_path, "a", "b", "c") as (a, b, c):
        await a.connect(target(b))
        stream = await a.open_stream(b.agent_id, "/swarmlink/trust/1")
        garbage = os.urandom(64)  # cheap to send, but each one costs the receiver a check
        total = MAX_TRUST_MESSAGES_PER_MINUTE + 10
        for _ in range(total):
            stream.write_record(garbage)
        stream.write_eof()
        codes = []
        for _ in range(total):
            reply = await stream.read_record()
            assert isinstance(reply, dict) and reply["ok"] is False
            codes.append(reply["code"])
        assert codes.count(ErrorCode.RATE_LIMITED) >= 10
        # Another peer is unaffected.
        await c.connect(target(b))
        await c.request_trust(b.agent_id, "hello")
        await wait_until(lambda: b.pending_trust(), "c's request")


async def test_owed_messages_are_pushed_after_a_restart(tmp_path: Path) -> None:
    """b owes a a message; b restarts; b dials a by itself and delivers it."""
    cfg = {n: NodeConfig(home=tmp_path / n, listen=(("127.0.0.1", 0),)) for n in "ab"}
    a = await Node.start(cfg["a"])
    b = await Node.start(cfg["b"])
    a_port = a.listen_port
    try:
        await make_trusted(a, b)
        await b.connect(target(a))  # b remembers a's address
        await a.close()
        receipt = await b.send_message(a.agent_id, "owed")
        assert not receipt.delivered
        await b.close()
        a = await Node.start(NodeConfig(home=tmp_path / "a", listen=(("127.0.0.1", a_port),)))
        b = await Node.start(cfg["b"])
        await wait_until(lambda: [m.text for m in a.inbox()] == ["owed"], "redelivery")
    finally:
        await a.close()
        await b.close()


async def test_a_handler_that_never_reads_cannot_exhaust_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarmlink.runtime import _connection

    monkeypatch.setattr(_connection, "MAX_SESSION_UNREAD", 3 * 1024 * 1024)
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        parked: list[Stream] = []
        never_read = asyncio.Event()

        async def lazy(stream: Stream) -> None:
            parked.append(stream)
            await never_read.wait()

        b.set_handler("/test/lazy/1", lazy)
        await make_trusted(a, b)
        streams = [await a.open_stream(b.agent_id, "/test/lazy/1") for _ in range(6)]
        for stream in streams:
            stream.write(os.urandom(900 * 1024))  # within each stream's 1 MiB window
        await wait_until(lambda: any(s.error is not None for s in streams), "a stream to be shed")
        errors = [s.error for s in streams if s.error is not None]
        assert errors and all(e.code == ErrorCode.FLOW_CONTROL for e in errors)
        conn = b.connected(a.agent_id)
        assert conn is not None
        assert sum(s.unread for s in conn.streams.values()) <= 3 * 1024 * 1024
        never_read.set()
        await assert_still_serving(a, b)

"""Relayed sessions: a node that cannot be dialed is reached through a relay it reserved
on, by agent ID alone; the session is end-to-end TLS (the relay sees only ciphertext);
relay abuse is refused with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import drop_session, make_trusted, target, wait_until

from swarmlink.errors import ErrorCode
from swarmlink.nat import RelayRefused
from swarmlink.runtime import Node, NodeConfig, Stream
from swarmlink.runtime import _relaysvc as relaysvc

ECHO = "/test/echo/1"
SECRET = b"TOP-SECRET-MARKER-" * 64


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()
    stream.write_eof()


def cfg(tmp: Path, name: str, **kw: Any) -> NodeConfig:
    return NodeConfig(home=tmp / name, listen=(("127.0.0.1", 0),), **kw)


async def test_unreachable_node_is_reached_through_its_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _through_the_relay(tmp_path, monkeypatch)


def test_the_relayed_session_comes_up_on_uvloop_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemons run on uvloop, whose ``start_tls`` refuses transports it did not make: the
    relayed TLS session then runs asyncio's TLS protocol over the stream transport."""
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_through_the_relay(tmp_path, monkeypatch))


async def _through_the_relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = bytearray()
    real_read = Stream.read

    async def spy(self: Stream, n: int = -1) -> bytes:
        data = await real_read(self, n)
        if self.protocol == relaysvc.RELAY_PROTOCOL and self.connection.node is relay:
            seen.extend(data)
        return data

    monkeypatch.setattr(Stream, "read", spy)
    relay = await Node.start(cfg(tmp_path, "relay", relay=True))
    boot = (target(relay),)
    # b listens, but tells the world an address where nobody answers: only the relay works
    # (no hole punching here: on loopback it would make the session direct at once).
    b = await Node.start(
        cfg(
            tmp_path,
            "b",
            bootstrap=boot,
            relays=boot,
            advertise=("127.0.0.1:1",),
            hole_punching=False,
        )
    )
    # a too (else b may dial it directly, and a direct session takes over).
    a = await Node.start(
        cfg(tmp_path, "a", bootstrap=boot, advertise=("127.0.0.1:1",), hole_punching=False)
    )
    try:
        b.set_handler(ECHO, echo)
        await wait_until(lambda: b.relay.reservations, "b reserved on the relay")

        async def published() -> bool:
            record = await b.dht.own_record()
            return bool(record.relays) and b.dht.info()["published_at"] is not None

        await wait_until(published, "b's record lists the relay")
        await wait_until(lambda: b.dht.last_publish_stores > 0, "stored", 15)
        # b may have dialed a itself while publishing (it can dial out): drop that session.
        await drop_session(a, b, "direct session gone")
        result = await a.ping(b.agent_id, interval=0)
        assert result.received == 1
        info = next(p for p in a.peers() if p.agent_id == b.agent_id)
        assert info.path == f"relayed via {relay.agent_id}"
        # Trust and an application stream over the relayed session.
        await a.request_trust(b.agent_id, "via relay")
        await wait_until(lambda: b.pending_trust(), "request over the relay")
        await b.approve_trust(a.agent_id)
        await wait_until(lambda: a.trust.is_trusted(b.agent_id), "trusted")
        stream = await a.open_stream(b.agent_id, ECHO)
        stream.write(SECRET)
        stream.write_eof()
        got = b""
        while data := await stream.read():
            got += data
        assert got == SECRET
        assert len(seen) > len(SECRET)  # the relay carried it...
        assert b"TOP-SECRET" not in seen  # ...and never saw it
        # b's session to the relay drops: the relay forgets the reservation, b makes it
        # again at once (not at its next renewal).
        core = relay.relay.core
        assert core is not None and b.agent_id in core.reservations
        to_relay = b.connected(relay.agent_id)
        assert to_relay is not None
        to_relay.close()
        await wait_until(lambda: b.connected(relay.agent_id) is not to_relay, "session gone")
        await wait_until(
            lambda: b.agent_id in core.reservations and relay.agent_id in b.relay.reservations,
            "reservation made again",
        )
    finally:
        await asyncio.gather(a.close(), b.close(), relay.close())


async def test_relay_abuse_is_refused(tmp_path: Path) -> None:
    relay = await Node.start(cfg(tmp_path, "relay", relay=True))
    plain = await Node.start(cfg(tmp_path, "plain"))
    a = await Node.start(cfg(tmp_path, "a"))
    try:
        await a.connect(target(relay))
        await a.connect(target(plain))
        await make_trusted(a, plain)
        with pytest.raises(RelayRefused, match="no reservation") as err:
            await a.relay.dial_via(relay.agent_id, plain.agent_id)
        assert err.value.code == ErrorCode.REFUSED
        with pytest.raises(RelayRefused, match="not a relay"):
            await a.relay.reserve(plain.agent_id)
        with pytest.raises(RelayRefused, match="not a relay"):
            await a.relay.dial_via(plain.agent_id, relay.agent_id)
        # An "incoming" circuit from a node we hold no reservation on is refused too.
        conn = plain.connected(a.agent_id)
        assert conn is not None
        stream = conn.open_stream(relaysvc.RELAY_PROTOCOL)
        stream.write_record({"t": "incoming", "from": plain.agent_id})
        reply = await stream.read_record()
        assert isinstance(reply, dict) and reply["ok"] is False
        assert "no reservation" in reply["error"]
        assert (await a.ping(relay.agent_id, interval=0)).received == 1
    finally:
        await asyncio.gather(a.close(), plain.close(), relay.close())


async def _relayed(tmp_path: Path) -> tuple[Node, Node, Node]:
    """relay, a, b: a reaches b (trusting each other) only through the relay; no punching."""
    relay = await Node.start(cfg(tmp_path, "relay", relay=True))
    boot = (target(relay),)
    b = await Node.start(
        cfg(tmp_path, "b", bootstrap=boot, relays=boot, advertise=("127.0.0.1:1",),
            hole_punching=False)
    )  # fmt: skip
    # a publishes an address where nobody answers too: b cannot dial it either.
    a = await Node.start(
        cfg(tmp_path, "a", bootstrap=boot, advertise=("127.0.0.1:1",), hole_punching=False)
    )
    b.set_handler(ECHO, echo)
    await wait_until(lambda: b.relay.reservations, "b reserved on the relay")
    # Trust is not what these tests are about (the first test runs the protocol over a
    # relay): mark each other trusted in memory.
    a.trust._trusted.add(b.agent_id)
    b.trust._trusted.add(a.agent_id)
    await a.relay.dial_via(relay.agent_id, b.agent_id)
    conn = a.connected(b.agent_id)
    assert conn is not None and conn.via == relay.agent_id
    return relay, a, b


async def test_a_relay_that_alters_data_breaks_the_session_not_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay, a, b = await _relayed(tmp_path)
    received = bytearray()

    async def keep(stream: Stream) -> None:
        while data := await stream.read():
            received.extend(data)

    b.set_handler("/test/keep/1", keep)
    real_read = Stream.read

    async def tamper(self: Stream, n: int = -1) -> bytes:
        data = await real_read(self, n)
        relayed = self.connection.node is relay and self.protocol == relaysvc.RELAY_PROTOCOL
        if relayed and len(data) > 64:  # a TLS record, not a relay control message
            data = data[:40] + bytes([data[40] ^ 1]) + data[41:]
        return data

    try:
        monkeypatch.setattr(Stream, "read", tamper)
        # The relay's pumps sit in reads begun before the patch: a first message lets
        # them return (unaltered); every later read is altered.
        assert (await a.ping(b.agent_id, interval=0)).received == 1
        stream = await a.open_stream(b.agent_id, "/test/keep/1")
        stream.write(SECRET)
        stream.write_eof()
        # TLS on the end-to-end session notices the flipped bit: that session ends...
        await wait_until(
            lambda: (c := a.connected(b.agent_id)) is None or c.via is None, "session ended"
        )
        # ...and b's application never saw a corrupted byte.
        assert SECRET.startswith(bytes(received))
        monkeypatch.setattr(Stream, "read", real_read)
        assert (await a.ping(relay.agent_id, interval=0)).received == 1  # the relay carries on
    finally:
        await asyncio.gather(a.close(), b.close(), relay.close())


async def test_a_relay_that_drops_mid_stream_fails_the_stream_quickly(tmp_path: Path) -> None:
    relay, a, b = await _relayed(tmp_path)
    try:
        stream = await a.open_stream(b.agent_id, ECHO)
        stream.write(b"first")
        assert await stream.readexactly(5) == b"first"
        await relay.close()  # the relay goes away with the circuit open
        with pytest.raises(Exception) as err:
            async with asyncio.timeout(10):
                while await stream.read():
                    pass
                stream.write(b"more")
        assert "closed" in str(err.value) or "reset" in str(err.value)
        await wait_until(lambda: a.connected(b.agent_id) is None, "relayed session gone")
    finally:
        await asyncio.gather(a.close(), b.close(), relay.close())

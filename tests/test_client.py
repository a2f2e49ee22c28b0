"""swarmlink.Client against the real ControlServer serving the in-memory fake node."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import FakeDht
from fake_node import AGENT_B, FakeNode
from helpers import wait_until as wait_for

from swarmlink.client import Client, ClientStream, error_from_json
from swarmlink.daemon import ControlServer
from swarmlink.errors import (
    CertificateExpired,
    ConnectionClosed,
    ErrorCode,
    InvalidArgument,
    LocalError,
    NetworkError,
    NodeNotRunning,
    NotFound,
    ProtocolViolation,
    RemoteError,
    StateError,
    StreamRefused,
    StreamReset,
    SwarmlinkError,
    VerificationFailed,
)
from swarmlink.runtime.events import MessageReceived, NodeEvent, PeerConnected, TrustRequested
from swarmlink.runtime.model import (
    BenchResult,
    Exposure,
    FileReceipt,
    Forward,
    InboxMessage,
    NodeStatus,
    PeerInfo,
    PendingTrust,
    PingResult,
    SendReceipt,
    TrustedPeer,
)


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slc", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node(home: Path) -> FakeNode:
    fake = FakeNode(home)
    fake.dht = FakeDht(fake.agent_id)  # type: ignore[attr-defined]
    return fake


@pytest.fixture
def dht(node: FakeNode) -> FakeDht:
    value: FakeDht = node.dht  # type: ignore[attr-defined]
    return value


@pytest.fixture
async def stopped() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def server(
    home: Path, node: FakeNode, stopped: asyncio.Event
) -> AsyncIterator[ControlServer]:
    srv = ControlServer(node, home / "control.sock", on_shutdown=stopped.set, attach_timeout=5.0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: ControlServer, home: Path) -> Client:
    return Client(home, timeout=10.0)


# ---- request / response ---------------------------------------------------------------------


async def test_every_request_response_method(client: Client, node: FakeNode) -> None:
    async with client as c:
        status = await c.status()
        assert isinstance(status, NodeStatus) and status.agent_id == node.agent_id
        assert (await c.identity())["agent_id"] == node.agent_id
        assert await c.peers() == []
        peer = await c.connect(f"{AGENT_B}@127.0.0.1:9")
        assert isinstance(peer, PeerInfo) and peer.agent_id == AGENT_B
        assert [p.agent_id for p in await c.peers()] == [AGENT_B]

        assert await c.trust_request(AGENT_B, reason="let's talk") == "requested"
        pending = await c.trust_pending()
        assert isinstance(pending[0], PendingTrust) and pending[0].reason == "let's talk"
        assert await c.trust_approve(AGENT_B) == "trusted"
        trusted = await c.trust_list()
        assert isinstance(trusted[0], TrustedPeer) and trusted[0].agent_id == AGENT_B
        assert await c.trust_reject(AGENT_B) == "rejected"

        receipt = await c.send_message(AGENT_B, "hello")
        assert receipt == SendReceipt(recipient=AGENT_B, seq=1, delivered=True)
        for text in ("a", "b", "c"):
            node.add_message(AGENT_B, text)
        inbox = await c.inbox()
        assert all(isinstance(m, InboxMessage) for m in inbox)
        assert [m.text for m in inbox] == ["a", "b", "c"]
        assert [m.text for m in await c.inbox(sender=AGENT_B, after=1, limit=1)] == ["b"]
        with pytest.raises(InvalidArgument, match="after must be an integer"):
            await c.inbox(after="1")  # type: ignore[arg-type]

        node.files.append({"id": 1, "name": "x"})
        assert await c.files() == [{"id": 1, "name": "x"}]

        exposure = await c.expose(8080, name="api", allow=[AGENT_B])
        assert exposure == Exposure(port=8080, name="api", allow=(AGENT_B,))
        assert await c.exposures() == [exposure]
        await c.unexpose(8080)
        assert await c.exposures() == []
        with pytest.raises(NotFound, match="not exposed"):
            await c.unexpose(8080)

        fwd = await c.forward(0, AGENT_B, 80)
        assert isinstance(fwd, Forward) and fwd.bind_host == "127.0.0.1"
        assert await c.forwards() == [fwd]
        await c.unforward(fwd.id)
        assert await c.forwards() == []

        bench = await c.bench(AGENT_B, size=4096)
        assert isinstance(bench, BenchResult) and bench.bytes == 4096
        assert (await c.rotate_key())["operational_key_serial"] == 2
        assert await c.trust_revoke(AGENT_B) == "revoked"


# Valid agent IDs (the DHT routes check them; FakeNode's AGENT_B is not one).
AGENT_P = "b" * 51 + "q"
AGENT_C = "c" * 51 + "a"


async def test_dht_methods(client: Client, node: FakeNode, dht: FakeDht) -> None:
    from swarmlink.dht._records import Capability

    dht.add_agent(AGENT_P, "192.0.2.7:7420", capabilities=[Capability("translate", "T", "d")])
    async with client as c:
        record = await c.lookup(AGENT_P)
        assert record["agent_id"] == AGENT_P and record["addresses"] == ["192.0.2.7:7420"]
        assert record["capabilities"][0]["description"] == "d"
        assert dht.resolved == [(AGENT_P, True)]

        assert await c.capabilities() == []
        cap = await c.add_capability("translate", name="Tr", description="EN→FR", protocol="/t")
        assert cap == {"tag": "translate", "name": "Tr", "description": "EN→FR", "protocol": "/t"}
        assert await c.add_capability("llm/chat") == {
            "tag": "llm/chat",
            "name": "",
            "description": "",
            "protocol": "",
        }
        assert [x["tag"] for x in await c.capabilities()] == ["llm/chat", "translate"]

        found = await c.find("translate")
        assert [a["agent_id"] for a in found] == sorted([AGENT_P, node.agent_id])
        assert await c.find("llm/chat") == [await c.lookup(node.agent_id)]
        assert await c.find("nobody") == []

        await c.remove_capability("llm/chat")  # a tag with '/' in the path
        assert [x["tag"] for x in await c.capabilities()] == ["translate"]

        info = await c.dht_info()
        assert info["contacts"] == 1 and info["joined"] is True
        assert set(info) >= {"records", "provider_records", "bootstrap", "published_at"}


async def test_dht_errors(client: Client, dht: FakeDht) -> None:
    with pytest.raises(NotFound, match=f"agent {AGENT_C} was not found in the DHT"):
        await client.lookup(AGENT_C)
    with pytest.raises(InvalidArgument, match="not an agent ID"):
        await client.lookup("nobody")
    with pytest.raises(InvalidArgument, match="agent ID"):
        await client.lookup("")
    with pytest.raises(InvalidArgument, match="lowercase"):
        await client.find("Bad Tag")
    with pytest.raises(InvalidArgument, match="1 to 64 characters"):
        await client.find("")
    with pytest.raises(InvalidArgument, match="lowercase"):
        await client.add_capability("UPPER")
    with pytest.raises(InvalidArgument, match="longer than 256"):
        await client.add_capability("ok", description="x" * 300)
    with pytest.raises(NotFound, match="does not advertise capability 'absent'"):
        await client.remove_capability("absent")
    with pytest.raises(InvalidArgument, match="lowercase"):
        await client.remove_capability("a b")
    dht.fail("find", NetworkError("the DHT did not answer"))
    with pytest.raises(NetworkError, match="the DHT did not answer"):
        await client.find("x")
    assert dht.caps == {}


async def test_client_is_exported_lazily_from_the_package(home: Path) -> None:
    import swarmlink

    assert swarmlink.Client is Client


@pytest.mark.parametrize(
    "exc",
    [
        InvalidArgument("bad agent ID"),
        NotFound("unknown peer"),
        StateError("no trust"),
        LocalError("local trouble"),
        NetworkError("connection refused"),
        ProtocolViolation("garbage frame", ErrorCode.FRAME_TOO_LARGE),
        VerificationFailed("expected agent x, got y", ErrorCode.AGENT_MISMATCH),
        CertificateExpired("expired"),
        StreamRefused("not trusted", ErrorCode.NOT_TRUSTED),
        ConnectionClosed("idle", ErrorCode.IDLE_TIMEOUT),
    ],
)
async def test_daemon_errors_are_reraised_as_the_same_class(
    client: Client, node: FakeNode, exc: SwarmlinkError
) -> None:
    node.fail("connect", exc)
    with pytest.raises(type(exc)) as info:
        await client.connect(f"{AGENT_B}@h:1")
    assert type(info.value) is type(exc)
    assert str(info.value) == str(exc)
    if isinstance(exc, RemoteError):
        assert isinstance(info.value, RemoteError) and info.value.code == exc.code


async def test_internal_errors_become_swarmlink_errors(client: Client, node: FakeNode) -> None:
    node.fail("status", KeyError("boom"))
    with pytest.raises(SwarmlinkError, match="internal error in the swarmlink daemon") as info:
        await client.status()
    assert type(info.value) is SwarmlinkError
    assert (await client.status()).agent_id == node.agent_id


def test_error_from_json_tolerates_odd_input() -> None:
    assert type(error_from_json({"type": "FutureError", "message": "m"})) is SwarmlinkError
    odd = error_from_json({"type": "StreamReset", "message": "m", "code": "no_such_code"})
    assert isinstance(odd, StreamReset) and odd.code == ErrorCode.CANCEL
    assert type(error_from_json("nonsense")) is SwarmlinkError
    assert type(error_from_json({"type": "NotFound", "message": "gone"})) is NotFound


async def test_no_daemon_is_a_clear_error(home: Path) -> None:
    expected = (
        f"no swarmlink daemon is running in {home} (start one with: swarmlink up --home {home})"
    )
    with pytest.raises(NodeNotRunning) as info:
        await Client(home).status()
    assert str(info.value) == expected
    # A stale socket (its daemon died): ECONNREFUSED, same error.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(home / "control.sock"))
    stale.close()
    with pytest.raises(NodeNotRunning, match="swarmlink up"):
        await Client(home).ping_result(AGENT_B)
    with pytest.raises(NodeNotRunning):
        await Client(home / "missing-dir").status()


def test_home_resolution(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("SWARMLINK_HOME", str(home))
    assert Client().socket_path == home / "control.sock"
    assert str(Client("~/x").home) == os.path.expanduser("~/x")


async def test_timeout_is_a_network_error(
    home: Path, server: ControlServer, node: FakeNode
) -> None:
    node.connect_gate = asyncio.Event()
    with pytest.raises(NetworkError, match=r"within 0\.2s \(POST /v1/connect\)"):
        await Client(home, timeout=0.2).connect(f"{AGENT_B}@h:1")
    node.connect_gate.set()


async def test_shutdown(client: Client, stopped: asyncio.Event) -> None:
    await client.shutdown()
    await asyncio.wait_for(stopped.wait(), 10)


# ---- NDJSON feeds ---------------------------------------------------------------------------


async def test_ping_feed_and_result(client: Client, node: FakeNode) -> None:
    lines = [line async for line in client.ping(AGENT_B, count=3, interval=0)]
    assert [line["event"] for line in lines] == ["reply", "reply", "reply", "result"]
    assert lines[2] == {"event": "reply", "seq": 3, "rtt_ms": None}
    result = await client.ping_result(AGENT_B, count=2, interval=0)
    assert isinstance(result, PingResult) and result.rtts_ms == (1.0, 2.0)
    node.fail_midway("ping", ConnectionClosed("gone", ErrorCode.SHUTDOWN))
    seen: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as info:
        async for line in client.ping(AGENT_B, count=3, interval=0):
            seen.append(line)
    assert info.value.code == ErrorCode.SHUTDOWN and len(seen) == 1
    with pytest.raises(InvalidArgument, match="bad agent ID"):
        await client.ping_result("nope")


async def test_send_file_feed(
    client: Client, node: FakeNode, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "data.bin").write_bytes(b"z" * 2500)
    monkeypatch.chdir(home)
    lines = [line async for line in client.send_file(AGENT_B, "data.bin")]  # relative: resolved
    assert [line["event"] for line in lines] == ["progress"] * 3 + ["result"]
    receipt = FileReceipt.from_json(lines[-1]["result"])
    assert receipt.size == 2500 and receipt.name == "data.bin"
    node.fail("send_file", AssertionError("the node must not be called"))
    with pytest.raises(InvalidArgument, match="does not exist"):
        async for _ in client.send_file(AGENT_B, home / "missing.bin"):
            pass
    with pytest.raises(InvalidArgument, match="not a regular file"):
        async for _ in client.send_file(AGENT_B, home):
            pass


@dataclass(frozen=True)
class _FutureEvent(NodeEvent):
    type: ClassVar[str] = "from_the_future"
    detail: str


async def test_events(client: Client, node: FakeNode) -> None:
    received: list[NodeEvent] = []

    async def consume() -> None:
        async for event in client.events():
            received.append(event)

    task = asyncio.create_task(consume())
    try:
        await wait_for(lambda: node.subscribers, "subscription")
        node.publish(PeerConnected(agent_id=AGENT_B, address="h:1", direction="outbound"))
        node.publish(_FutureEvent(detail="newer daemons may send this"))
        node.publish(TrustRequested(agent_id=AGENT_B, reason="hi"))
        node.publish(MessageReceived(7, AGENT_B, 1, "text", 1.0, 2.0))
        await wait_for(lambda: len(received) == 3, "events")
        assert received == [
            PeerConnected(agent_id=AGENT_B, address="h:1", direction="outbound"),
            TrustRequested(agent_id=AGENT_B, reason="hi"),
            MessageReceived(7, AGENT_B, 1, "text", 1.0, 2.0),
        ]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await wait_for(lambda: not node.subscribers, "unsubscribed")


async def test_events_end_when_the_node_closes(client: Client, node: FakeNode) -> None:
    async def consume() -> list[NodeEvent]:
        return [event async for event in client.events()]

    task = asyncio.create_task(consume())
    await wait_for(lambda: node.subscribers, "subscription")
    node.publish(TrustRequested(agent_id=AGENT_B, reason=""))
    await node.close()
    assert await asyncio.wait_for(task, 10) == [TrustRequested(agent_id=AGENT_B, reason="")]


# ---- streams ----------------------------------------------------------------------------------


async def test_open_stream_echo(client: Client) -> None:
    stream = await client.open_stream(AGENT_B, "/echo")
    assert isinstance(stream, ClientStream)
    assert stream.peer == AGENT_B and stream.protocol == "/echo"
    payload = os.urandom(500_000)
    stream.write(payload)
    await stream.drain()
    assert await stream.readexactly(10) == payload[:10]
    await stream.close()  # half-close: the echo ends its side after echoing everything
    with pytest.raises(StateError, match="write after write_eof"):
        stream.write(b"more")
    rest = bytearray()
    while chunk := await stream.read():
        rest += chunk
    assert bytes(rest) == payload[10:]
    assert stream.at_eof() and await stream.read() == b""


async def test_stream_context_manager(client: Client, node: FakeNode) -> None:
    async with await client.open_stream(AGENT_B, "/echo") as stream:
        stream.write(b"abc")
        assert await stream.readexactly(3) == b"abc"
    # Left cleanly: half-closed, the echo finished, the connection released.
    assert not node.streams[0].was_reset
    with pytest.raises(RuntimeError):
        async with await client.open_stream(AGENT_B, "/x"):
            raise RuntimeError("user code failed")
    await wait_for(lambda: node.streams[1].was_reset, "reset on error")


async def test_stream_reset_by_the_peer(client: Client, node: FakeNode) -> None:
    stream = await client.open_stream(AGENT_B, "/x")
    remote = node.remote_ends[0]
    stream.write(b"hi")
    await stream.drain()
    assert await remote.read() == b"hi"
    remote.write(b"partial")
    assert await stream.readexactly(7) == b"partial"
    remote.reset()
    with pytest.raises(StreamReset, match="reset"):
        await asyncio.wait_for(stream.read(), 10)
    with pytest.raises(StreamReset):
        stream.write(b"x")


async def test_stream_peer_end_is_not_a_reset(client: Client, node: FakeNode) -> None:
    stream = await client.open_stream(AGENT_B, "/x")
    remote = node.remote_ends[0]
    remote.write(b"all of it")
    remote.write_eof()
    assert await stream.readexactly(9) == b"all of it"
    assert await stream.read() == b""  # a clean end, though we have not closed our side
    stream.write(b"late reply")
    stream.write_eof()
    assert await remote.readall() == b"late reply"
    with pytest.raises(ProtocolViolation, match="ended after 0 of 4"):
        await stream.readexactly(4)


async def test_local_reset_reaches_the_peer(client: Client, node: FakeNode) -> None:
    stream = await client.open_stream(AGENT_B, "/x")
    remote = node.remote_ends[0]
    stream.write(b"x")
    await stream.drain()
    assert await remote.read() == b"x"
    stream.reset()
    with pytest.raises(StreamReset):
        await asyncio.wait_for(remote.read(), 10)
    with pytest.raises(StreamReset):
        await stream.read()


async def test_open_stream_errors(client: Client) -> None:
    with pytest.raises(StreamRefused) as info:
        await client.open_stream(AGENT_B, "/refuse")
    assert info.value.code == ErrorCode.NOT_TRUSTED
    with pytest.raises(InvalidArgument, match="bad agent ID"):
        await client.open_stream("nope", "/echo")


async def test_handle_serves_incoming_streams(client: Client, node: FakeNode) -> None:
    calls: list[str] = []

    async def shout(stream: ClientStream) -> None:
        calls.append(stream.peer)
        data = bytearray()
        while chunk := await stream.read():
            data += chunk
            if data == b"crash":
                raise ValueError("handler bug")
        stream.write(bytes(data).upper())
        await stream.drain()

    ready = asyncio.Event()
    task = asyncio.create_task(client.handle("/shout", shout, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert "/shout" in node.handlers
        remotes = [await node.incoming(AGENT_B, "/shout") for _ in range(3)]
        for i, remote in enumerate(remotes):
            remote.write(b"hello %d" % i)
            remote.write_eof()
        for i, remote in enumerate(remotes):
            assert await asyncio.wait_for(remote.readall(), 10) == b"HELLO %d" % i
        assert calls == [AGENT_B] * 3
        # A handler that fails before the peer finished sending resets the stream.
        crashing = await node.incoming(AGENT_B, "/shout")
        crashing.write(b"crash")
        with pytest.raises(StreamReset):
            await asyncio.wait_for(crashing.readall(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await wait_for(lambda: "/shout" not in node.handlers, "unregistered")


async def test_handle_errors(client: Client, server: ControlServer, node: FakeNode) -> None:
    async def nothing(stream: ClientStream) -> None:
        pass

    with pytest.raises(InvalidArgument, match="reserved"):
        await client.handle("/swarmlink/trust/1", nothing)
    task = asyncio.create_task(client.handle("/p", nothing))
    await wait_for(lambda: "/p" in node.handlers, "registration")
    with pytest.raises(StateError, match="already handles"):
        await client.handle("/p", nothing)
    await server.stop()  # the daemon goes away: handle() says so
    with pytest.raises(NodeNotRunning, match="ended the handler registration"):
        await asyncio.wait_for(task, 10)


async def test_daemon_stopping_resets_open_streams(
    client: Client, server: ControlServer, node: FakeNode
) -> None:
    stream = await client.open_stream(AGENT_B, "/x")
    stream.write(b"x")
    await stream.drain()
    assert await node.remote_ends[0].read() == b"x"
    await server.stop()
    with pytest.raises(StreamReset):
        await asyncio.wait_for(stream.read(), 10)
    with pytest.raises(StreamReset):
        await asyncio.wait_for(node.remote_ends[0].read(), 10)


async def test_garbage_from_the_socket_is_a_clear_error(home: Path) -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_unix_server(liar, str(home / "control.sock"))
    try:
        with pytest.raises(SwarmlinkError, match="bad response from the swarmlink daemon"):
            await Client(home).status()
    finally:
        srv.close()
        await srv.wait_closed()

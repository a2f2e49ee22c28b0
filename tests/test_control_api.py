"""The control API server (swarmlink.daemon) against an in-memory fake node.

Requests are written by hand (h11 client or raw bytes) so the wire contract in
docs/control-api.md is what is tested: statuses, headers, JSON shapes, NDJSON,
upgrades, limits and hostile input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
from conftest import FakeDht
from fake_node import AGENT_B, FakeNode
from helpers import wait_until as wait_for

from swarmlink.daemon import (
    MAX_HEADER_SIZE,
    MAX_REQUEST_BODY,
    ControlServer,
    JsonLogFormatter,
    _server,
    check_no_daemon,
    main,
    serve,
)
from swarmlink.daemon._run import _PidFile
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
    StateError,
    StreamRefused,
    StreamReset,
    SwarmlinkError,
)
from swarmlink.runtime.events import MessageReceived, PeerConnected

SEED = int(os.environ.get("SWARMLINK_TEST_SEED", "20261122"))
SRC = Path(__file__).resolve().parent.parent / "src"


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def home() -> Iterator[Path]:
    # Short paths: Unix socket paths are limited to 107 bytes.
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
async def shutdown_event() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def server(
    home: Path, node: FakeNode, shutdown_event: asyncio.Event
) -> AsyncIterator[ControlServer]:
    srv = ControlServer(
        node,
        home / "control.sock",
        on_shutdown=shutdown_event.set,
        request_timeout=3.0,
        attach_timeout=3.0,
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


# ---- a hand-written HTTP client ----------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]

    @property
    def error(self) -> dict[str, Any]:
        err = self.json()["error"]
        assert set(err) == {"type", "message", "code"}
        return dict(err)


class Conn:
    """One control connection driven with an h11 client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, sock: Path) -> Conn:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        return cls(reader, writer)

    async def send(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        extra: bytes = b"",
    ) -> None:
        data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        head = [("Host", "x"), ("Content-Length", str(len(data))), *(headers or [])]
        out = self.h11.send(h11.Request(method=method, target=target, headers=head)) or b""
        out += (self.h11.send(h11.Data(data=data)) or b"") if data else b""
        out += self.h11.send(h11.EndOfMessage()) or b""
        self.writer.write(out + extra)
        await self.writer.drain()

    async def event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await asyncio.wait_for(self.reader.read(65536), 10))
                continue
            assert isinstance(event, h11.Event)
            return event

    async def reply(self) -> Reply:
        head = await self.event()
        while isinstance(head, h11.InformationalResponse) and head.status_code == 100:
            head = await self.event()
        assert isinstance(head, h11.Response | h11.InformationalResponse), head
        headers = {k.decode().lower(): v.decode() for k, v in head.headers}
        if head.status_code == 101:
            return Reply(101, headers, b"")
        body = bytearray()
        while not isinstance(event := await self.event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        return Reply(head.status_code, headers, bytes(body))

    async def request(self, method: str, target: str, body: Any = None, **kw: Any) -> Reply:
        await self.send(method, target, body, **kw)
        reply = await self.reply()
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return reply

    def trailing(self) -> bytes:
        return self.h11.trailing_data[0]

    def close(self) -> None:
        self.writer.close()


async def call(sock: Path, method: str, target: str, body: Any = None, **kw: Any) -> Reply:
    conn = await Conn.open(sock)
    try:
        return await conn.request(method, target, body, **kw)
    finally:
        conn.close()


async def raw_exchange(sock: Path, data: bytes, *, half_close: bool = False) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or 10 s)."""
    reader, writer = await asyncio.open_unix_connection(str(sock))
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        out = bytearray()
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                out += chunk
        return bytes(out)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "swarmlink-stream")]


# ---- the socket -----------------------------------------------------------------------------


async def test_socket_is_private_stale_socket_replaced_second_server_refused(
    home: Path, node: FakeNode
) -> None:
    path = home / "control.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a dead daemon's leftover: bound, nobody listening
    stale.close()
    async with ControlServer(node, path) as srv:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert (await call(path, "GET", "/v1/status")).json()["agent_id"] == node.agent_id
        with pytest.raises(LocalError, match=rf"already running in {home} \(pid {os.getpid()}\)"):
            await ControlServer(FakeNode(home), path).start()
        assert srv.socket_path.exists()  # the refused server did not touch it
    assert not path.exists()


async def test_something_silent_on_the_socket_is_not_taken_over(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "PROBE_TIMEOUT", 0.1)
    path = home / "control.sock"
    squatter = socket.socket(socket.AF_UNIX)
    squatter.bind(str(path))
    squatter.listen(1)  # accepts (in the kernel) but never answers
    (home / "swarmlink.pid").write_text("4242\n")
    try:
        with pytest.raises(LocalError, match=r"already running in .* \(pid 4242\)"):
            await check_no_daemon(path)
    finally:
        squatter.close()


async def test_refuses_a_path_that_is_not_a_socket(home: Path, node: FakeNode) -> None:
    (home / "control.sock").write_text("hello")
    with pytest.raises(LocalError, match="not a socket"):
        await ControlServer(node, home / "control.sock").start()


async def test_socket_path_too_long(home: Path, node: FakeNode) -> None:
    deep = home / ("d" * 120)
    with pytest.raises(InvalidArgument, match="longer than 107"):
        await ControlServer(node, deep / "control.sock").start()


async def test_serve_runs_until_stop_and_shutdown_route(home: Path, node: FakeNode) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(node, home / "control.sock", stop))
    await wait_for((home / "control.sock").exists, "socket")
    reply = await call(home / "control.sock", "POST", "/v1/shutdown", {})
    assert reply.status == 200 and reply.json() == {"ok": True}
    await asyncio.wait_for(task, 10)
    assert stop.is_set() and not (home / "control.sock").exists()


# ---- unary routes ----------------------------------------------------------------------------


async def test_every_unary_route(server: ControlServer, node: FakeNode, home: Path) -> None:
    sock = server.socket_path
    conn = await Conn.open(sock)  # one keep-alive connection for all of them
    try:

        async def ok(method: str, target: str, body: Any = None) -> Any:
            reply = await conn.request(method, target, body)
            assert reply.status == 200, reply.body
            assert reply.headers["content-type"] == "application/json"
            return reply.json()

        status = await ok("GET", "/v1/status")
        assert status["agent_id"] == node.agent_id and status["home"] == str(home)
        assert (await ok("GET", "/v1/id"))["agent_id"] == node.agent_id
        assert await ok("GET", "/v1/peers") == {"peers": []}
        peer = await ok("POST", "/v1/connect", {"target": f"{AGENT_B}@127.0.0.1:9"})
        assert peer["agent_id"] == AGENT_B and peer["connected"] is True
        assert [p["agent_id"] for p in (await ok("GET", "/v1/peers"))["peers"]] == [AGENT_B]

        trust = await ok("POST", "/v1/trust/request", {"agent_id": AGENT_B, "reason": "hi"})
        assert trust == {"agent_id": AGENT_B, "state": "requested"}
        pending = (await ok("GET", "/v1/trust/pending"))["pending"]
        assert pending[0]["agent_id"] == AGENT_B and pending[0]["reason"] == "hi"
        assert (await ok("POST", "/v1/trust/approve", {"agent_id": AGENT_B}))["state"] == "trusted"
        assert [t["agent_id"] for t in (await ok("GET", "/v1/trust/list"))["trusted"]] == [AGENT_B]
        assert (await ok("POST", "/v1/trust/reject", {"agent_id": AGENT_B}))["state"] == "rejected"

        receipt = await ok("POST", "/v1/messages", {"agent_id": AGENT_B, "text": "héllo"})
        assert receipt == {"recipient": AGENT_B, "seq": 1, "delivered": True}
        assert node.sent == [(AGENT_B, "héllo")]

        for text in ("one", "two", "three"):
            node.add_message(AGENT_B, text)
        inbox = (await ok("GET", "/v1/inbox"))["messages"]
        assert [m["text"] for m in inbox] == ["one", "two", "three"]
        page = (await ok("GET", f"/v1/inbox?sender={AGENT_B}&after=1&limit=1"))["messages"]
        assert [m["text"] for m in page] == ["two"]
        assert (await ok("GET", "/v1/inbox?sender="))["messages"] == inbox

        node.files.append({"id": 1, "name": "f.bin", "size": 3})
        assert await ok("GET", "/v1/files") == {"files": [{"id": 1, "name": "f.bin", "size": 3}]}

        exposure = await ok(
            "POST", "/v1/exposures", {"port": 8080, "name": "api", "allow": [AGENT_B]}
        )
        assert exposure == {"port": 8080, "name": "api", "allow": [AGENT_B]}
        assert await ok("POST", "/v1/exposures", {"port": 22}) == {
            "port": 22,
            "name": None,
            "allow": [],
        }
        assert [e["port"] for e in (await ok("GET", "/v1/exposures"))["exposures"]] == [8080, 22]
        assert await ok("DELETE", "/v1/exposures/8080") == {"ok": True}
        assert [e["port"] for e in (await ok("GET", "/v1/exposures"))["exposures"]] == [22]

        fwd = await ok(
            "POST", "/v1/forwards", {"local_port": 0, "agent_id": AGENT_B, "remote_port": 80}
        )
        assert fwd["bind_host"] == "127.0.0.1" and fwd["remote_port"] == 80
        assert (await ok("GET", "/v1/forwards"))["forwards"] == [fwd]
        assert await ok("DELETE", f"/v1/forwards/{fwd['id']}") == {"ok": True}
        assert (await ok("GET", "/v1/forwards"))["forwards"] == []

        bench = await ok("POST", "/v1/bench", {"agent_id": AGENT_B, "bytes": 1024})
        assert bench["bytes"] == 1024
        assert (await ok("POST", "/v1/bench", {"agent_id": AGENT_B}))["bytes"] == 64 * 1024 * 1024

        rotated = await ok("POST", "/v1/key/rotate")
        assert rotated["operational_key_serial"] == 2
        assert (await ok("POST", "/v1/trust/revoke", {"agent_id": AGENT_B}))["state"] == "revoked"
    finally:
        conn.close()


async def test_not_found_and_state_errors_from_the_node(server: ControlServer) -> None:
    sock = server.socket_path
    reply = await call(sock, "DELETE", "/v1/exposures/9999")
    assert reply.status == 404 and reply.error["type"] == "NotFound"
    assert "not exposed" in reply.error["message"]
    reply = await call(sock, "POST", "/v1/messages", {"agent_id": AGENT_B, "text": "x"})
    assert reply.status == 409 and reply.error == {
        "type": "StateError",
        "message": f"no trust with {AGENT_B}",
        "code": None,
    }


# ---- DHT: lookup, find, capabilities ---------------------------------------------------------

# Valid agent IDs (FakeNode's AGENT_P is not one: the DHT routes check IDs).
AGENT_P = "b" * 51 + "q"
AGENT_C = "c" * 51 + "a"


async def test_dht_routes(server: ControlServer, node: FakeNode, dht: FakeDht) -> None:
    from swarmlink.dht._records import Capability

    sock = server.socket_path
    conn = await Conn.open(sock)
    try:

        async def ok(method: str, target: str, body: Any = None) -> Any:
            reply = await conn.request(method, target, body)
            assert reply.status == 200, reply.body
            assert reply.headers["content-type"] == "application/json"
            return reply.json()

        dht.add_agent(AGENT_P, "192.0.2.7:7420", capabilities=[Capability("translate", "T")])
        record = await ok("GET", f"/v1/lookup/{AGENT_P}")
        assert record["agent_id"] == AGENT_P and record["addresses"] == ["192.0.2.7:7420"]
        assert record["capabilities"] == [
            {"tag": "translate", "name": "T", "description": "", "protocol": ""}
        ]
        assert set(record) == {
            "agent_id",
            "addresses",
            "relays",
            "versions",
            "capabilities",
            "sequence",
            "issued",
            "expires",
            "key_serial",
            "key_expires",
        }
        assert dht.resolved == [(AGENT_P, True)]  # always a fresh lookup
        assert (await ok("GET", f"/v1/lookup/{node.agent_id}"))["agent_id"] == node.agent_id

        assert await ok("GET", "/v1/capabilities") == {"capabilities": []}
        cap = await ok(
            "POST",
            "/v1/capabilities",
            {"tag": "translate", "name": "Translator", "description": "EN→FR", "protocol": "/t/1"},
        )
        assert cap == {
            "tag": "translate",
            "name": "Translator",
            "description": "EN→FR",
            "protocol": "/t/1",
        }
        minimal = await ok("POST", "/v1/capabilities", {"tag": "llm/chat"})
        assert minimal == {"tag": "llm/chat", "name": "", "description": "", "protocol": ""}
        listed = (await ok("GET", "/v1/capabilities"))["capabilities"]
        assert [c["tag"] for c in listed] == ["llm/chat", "translate"]

        found = (await ok("GET", "/v1/find?capability=translate"))["agents"]
        assert [a["agent_id"] for a in found] == sorted([AGENT_P, node.agent_id])
        assert await ok("GET", "/v1/find?capability=nobody") == {"agents": []}

        # Tags may hold '/': percent-encoded or not, the path names the whole tag.
        assert await ok("DELETE", "/v1/capabilities/llm%2Fchat") == {"ok": True}
        await ok("POST", "/v1/capabilities", {"tag": "llm/chat"})
        assert await ok("DELETE", "/v1/capabilities/llm/chat") == {"ok": True}
        assert [c["tag"] for c in (await ok("GET", "/v1/capabilities"))["capabilities"]] == [
            "translate"
        ]

        info = await ok("GET", "/v1/dht")
        assert info["joined"] is True and info["contacts"] == 1
        assert info["advertised"] == ["127.0.0.1:7420"]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "type_", "fragment"),
    [
        ("GET", f"/v1/lookup/{AGENT_C}", None, 404, "NotFound", f"agent {AGENT_C} was not found"),
        ("GET", "/v1/lookup/not-an-agent", None, 400, "InvalidArgument", "not an agent ID"),
        ("GET", "/v1/lookup/", None, 400, "InvalidArgument", "agent ID"),
        ("GET", f"/v1/lookup/{AGENT_C}?fresh=0", None, 400, "InvalidArgument", "no query"),
        ("POST", f"/v1/lookup/{AGENT_C}", None, 405, "InvalidArgument", "GET"),
        ("GET", "/v1/find", None, 400, "InvalidArgument", "missing required parameter"),
        ("GET", "/v1/find?capability=", None, 400, "InvalidArgument", "1 to 64 characters"),
        ("GET", "/v1/find?capability=Bad%20Tag", None, 400, "InvalidArgument", "lowercase"),
        ("GET", f"/v1/find?capability={'x' * 65}", None, 400, "InvalidArgument", "64"),
        ("GET", "/v1/find?capability=a&x=1", None, 400, "InvalidArgument", "unknown parameter"),
        ("POST", "/v1/capabilities", {}, 400, "InvalidArgument", "missing required field 'tag'"),
        ("POST", "/v1/capabilities", {"tag": "UP"}, 400, "InvalidArgument", "lowercase"),
        ("POST", "/v1/capabilities", {"tag": 3}, 400, "InvalidArgument", "must be a string"),
        (
            "POST",
            "/v1/capabilities",
            {"tag": "ok", "description": "d" * 257},
            400,
            "InvalidArgument",
            "longer than 256",
        ),
        (
            "POST",
            "/v1/capabilities",
            {"tag": "ok", "description": "bell\a"},
            400,
            "InvalidArgument",
            "unprintable",
        ),
        ("POST", "/v1/capabilities", {"tag": "ok", "nam": "x"}, 400, "InvalidArgument", "'nam'"),
        (
            "DELETE",
            "/v1/capabilities/absent",
            None,
            404,
            "NotFound",
            "does not advertise capability 'absent'",
        ),
        ("DELETE", "/v1/capabilities/Bad", None, 400, "InvalidArgument", "lowercase"),
        ("DELETE", "/v1/capabilities/%ff", None, 400, "InvalidArgument", "percent-encoding"),
        ("DELETE", "/v1/capabilities", None, 405, "InvalidArgument", "GET, POST"),
        ("GET", "/v1/dht?x=1", None, 400, "InvalidArgument", "no query"),
    ],
)
async def test_dht_route_errors(
    server: ControlServer,
    dht: FakeDht,
    method: str,
    target: str,
    body: Any,
    status: int,
    type_: str,
    fragment: str,
) -> None:
    reply = await call(server.socket_path, method, target, body)
    assert reply.status == status, reply.body
    assert reply.error["type"] == type_, reply.error
    assert fragment in reply.error["message"], reply.error["message"]
    assert dht.caps == {}  # nothing happened


@pytest.mark.parametrize(
    ("method", "target", "exc", "status"),
    [
        ("GET", f"/v1/lookup/{AGENT_P}", NotFound("this node knows no other DHT node yet"), 404),
        ("GET", "/v1/find?capability=x", NetworkError("no answer"), 504),
        ("POST", "/v1/capabilities", InvalidArgument("the agent record is too big"), 400),
        ("GET", "/v1/dht", RuntimeError("boom"), 500),
    ],
)
async def test_dht_errors_from_the_node_map_to_status(
    server: ControlServer, dht: FakeDht, method: str, target: str, exc: Exception, status: int
) -> None:
    name = {"lookup": "resolve", "find": "find", "capabilities": "add_capability", "dht": "info"}
    dht.fail(name[target.split("/")[2].split("?")[0]], exc)
    body = {"tag": "t"} if method == "POST" else None
    reply = await call(server.socket_path, method, target, body)
    assert reply.status == status, reply.body
    if status == 500:
        assert reply.error["type"] == "InternalError"
    else:
        assert reply.error == {"type": type(exc).__name__, "message": str(exc), "code": None}


# ---- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "fragment"),
    [
        ("POST", "/v1/connect", b"{nope!}", 400, "not valid JSON"),
        ("POST", "/v1/connect", b"[1, 2]", 400, "must be a JSON object"),
        ("POST", "/v1/connect", b"\xff\xfe", 400, "UTF-8"),
        ("POST", "/v1/connect", b'{"target": NaN}', 400, "NaN"),
        ("POST", "/v1/connect", b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
        ("POST", "/v1/connect", b"{}", 400, "missing required field 'target'"),
        ("POST", "/v1/connect", b'{"target": 5}', 400, "must be a string"),
        ("POST", "/v1/ping", b'{"agent_id": 12}', 400, "'agent_id' must be a string"),
        ("POST", "/v1/ping", b'{"agent_id": "x", "count": true}', 400, "integer"),
        ("POST", "/v1/ping", b'{"agent_id": "x", "count": 0}', 400, "at least 1"),
        ("POST", "/v1/ping", b'{"agent_id": "x", "count": 1e9}', 400, "integer"),
        ("POST", "/v1/ping", b'{"agent_id": "x", "interval": "1"}', 400, "number"),
        ("POST", "/v1/ping", b'{"agent_id": "x", "interval": 61}', 400, "at most 60"),
        ("POST", "/v1/messages", b'{"agent_id": "x", "txt": "y"}', 400, "missing required"),
        (
            "POST",
            "/v1/messages",
            b'{"agent_id": "x", "text": "y", "z": 1}',
            400,
            "unknown field 'z'",
        ),
        ("POST", "/v1/exposures", b'{"port": 80, "allow": "all"}', 400, "array of strings"),
        ("POST", "/v1/exposures", b'{"port": 80, "name": 3}', 400, "string or null"),
        ("POST", "/v1/files", b'{"agent_id": "x", "path": "rel/a.txt"}', 400, "absolute"),
        ("POST", "/v1/key/rotate", b'{"x": 1}', 400, "unknown field 'x'"),
        ("GET", "/v1/inbox?after=x", b"", 400, "'after' must be an integer"),
        ("GET", "/v1/inbox?limit=0", b"", 400, "at least 1"),
        ("GET", "/v1/inbox?bogus=1", b"", 400, "unknown parameter 'bogus'"),
        ("GET", "/v1/inbox?after=1&after=2", b"", 400, "more than once"),
        ("GET", "/v1/status?x=1", b"", 400, "takes no query parameters"),
        ("DELETE", "/v1/exposures/abc", b"", 400, "'port' must be an integer"),
        ("DELETE", "/v1/forwards/-1", b"", 400, "at least 0"),
        ("GET", "/v1/nothing-here", b"", 404, "no such route"),
        ("GET", "/", b"", 404, "no such route"),
        ("POST", "/v1/status", b"", 405, "GET"),
        ("PUT", "/v1/exposures", b"", 405, "GET, POST"),
        ("GET", "/v1/streams", b"", 405, "POST"),
    ],
)
async def test_bad_requests_get_clear_errors(
    server: ControlServer,
    node: FakeNode,
    method: str,
    target: str,
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    before = len(node.exposures())
    reply = await call(server.socket_path, method, target, raw=body)
    assert reply.status == status, reply.body
    assert reply.error["type"] == "InvalidArgument" and reply.error["code"] is None
    assert fragment in reply.error["message"], reply.error["message"]
    if status == 405:
        assert reply.headers["allow"] == fragment
    assert len(node.exposures()) == before  # nothing happened
    assert (await call(server.socket_path, "GET", "/v1/status")).status == 200


async def test_oversized_bodies_are_refused(server: ControlServer) -> None:
    sock = server.socket_path
    # Declared too large: refused from the head, before any body is read.
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {MAX_REQUEST_BODY + 1}\r\n\r\n".encode()
    )
    reply = await raw_exchange(sock, head + b"{")
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:100]
    assert b'"InvalidArgument"' in reply and b"Connection: close" in reply
    # Exactly at the limit is fine (the node then rejects the message itself).
    body = json.dumps({"agent_id": AGENT_B, "text": ""}).encode()
    body = body.replace(b'""', b'"' + b"x" * (MAX_REQUEST_BODY - len(body)) + b'"')
    assert len(body) == MAX_REQUEST_BODY
    reply2 = await call(sock, "POST", "/v1/messages", raw=body)
    assert reply2.status == 409  # reached the node: no trust with b
    assert (await call(sock, "GET", "/v1/status")).status == 200


async def test_chunked_body_over_the_limit_gets_413(server: ControlServer) -> None:
    chunk = b"a" * 65536
    data = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += b"%x\r\n%s\r\n" % (len(chunk), chunk) * (MAX_REQUEST_BODY // len(chunk) + 1)
    reply = await raw_exchange(server.socket_path, data)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:100]


async def test_expect_100_continue(server: ControlServer) -> None:
    conn = await Conn.open(server.socket_path)
    try:
        reply = await conn.request(
            "POST",
            "/v1/connect",
            {"target": f"{AGENT_B}@h:1"},
            headers=[("Expect", "100-continue")],
        )
        assert reply.status == 200
    finally:
        conn.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01garbage\r\n\r\n",
        b"GET  /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nNo-Colon-Header\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"POST /v1/connect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /v1/connect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /v1/st\xc3\xa4tus HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_malformed_http_gets_4xx_and_server_keeps_serving(
    server: ControlServer, garbage: bytes
) -> None:
    reply = await raw_exchange(server.socket_path, garbage)
    assert reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.1 5"), reply[:100]
    if reply.startswith(b"HTTP/1.1 4"):
        assert b'"error"' in reply
    assert (await call(server.socket_path, "GET", "/v1/status")).status == 200


async def test_random_bytes_never_break_the_server(server: ControlServer) -> None:
    rng = random.Random(SEED)
    for _ in range(40):
        size = rng.choice([1, 7, 100, 4096, 70_000])
        data = bytes(rng.getrandbits(8) for _ in range(size))
        reply = await raw_exchange(server.socket_path, data, half_close=True)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]
    assert (await call(server.socket_path, "GET", "/v1/status")).status == 200
    await wait_for(lambda: server.connections == 0, "connections closed")


async def test_header_too_large(server: ControlServer) -> None:
    data = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_SIZE + 10)
    reply = await raw_exchange(server.socket_path, data + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:100]


async def test_slow_and_idle_clients_are_timed_out(home: Path, node: FakeNode) -> None:
    async with ControlServer(node, home / "control.sock", request_timeout=0.3) as srv:
        # Half a request, then silence: 408.
        reply = await raw_exchange(srv.socket_path, b"GET /v1/status HTTP/1.1\r\nHo")
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:100]
        # An idle keep-alive connection is closed quietly.
        conn = await Conn.open(srv.socket_path)
        assert (await conn.request("GET", "/v1/status")).status == 200
        assert await asyncio.wait_for(conn.reader.read(100), 10) == b""
        conn.close()


async def test_keep_alive_and_pipelining(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
    try:
        writer.write(b"GET /v1/id HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        data = bytearray()
        async with asyncio.timeout(10):
            while data.count(b'"agent_id"') < 3:
                data += await reader.read(65536)
        assert data.count(b"HTTP/1.1 200 ") == 3
    finally:
        writer.close()


# ---- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "type_name", "code"),
    [
        (InvalidArgument("bad agent"), 400, "InvalidArgument", None),
        (NotFound("no such peer"), 404, "NotFound", None),
        (StateError("node is closing"), 409, "StateError", None),
        (NodeNotRunning("what"), 400, "NodeNotRunning", None),
        (LocalError("local trouble"), 400, "LocalError", None),
        (ProtocolViolation("garbage", ErrorCode.MALFORMED), 502, "ProtocolViolation", "malformed"),
        (StreamRefused("not trusted", ErrorCode.NOT_TRUSTED), 502, "StreamRefused", "not_trusted"),
        (CertificateExpired("old cert"), 502, "CertificateExpired", "cert_expired"),
        (ConnectionClosed("bye"), 502, "ConnectionClosed", "no_error"),
        (NetworkError("connection refused"), 504, "NetworkError", None),
        (SwarmlinkError("generic"), 500, "SwarmlinkError", None),
        (ZeroDivisionError("division by zero"), 500, "InternalError", None),
    ],
)
async def test_exceptions_map_to_status_and_type(
    server: ControlServer,
    node: FakeNode,
    caplog: pytest.LogCaptureFixture,
    exc: BaseException,
    status: int,
    type_name: str,
    code: str | None,
) -> None:
    node.fail("connect", exc)
    with caplog.at_level(logging.INFO, logger="swarmlink.daemon"):
        reply = await call(server.socket_path, "POST", "/v1/connect", {"target": "t"})
    assert reply.status == status
    assert reply.error["type"] == type_name and reply.error["code"] == code
    message = exc.reason if hasattr(exc, "reason") else str(exc)
    assert message in reply.error["message"]
    if type_name == "InternalError":
        assert any(r.exc_info for r in caplog.records), "traceback logged"
    assert (await call(server.socket_path, "GET", "/v1/status")).status == 200


# ---- concurrency and limits --------------------------------------------------------------------


async def test_many_concurrent_clients(server: ControlServer, node: FakeNode) -> None:
    replies = await asyncio.gather(
        *(call(server.socket_path, "GET", "/v1/status") for _ in range(40)),
        *(
            call(server.socket_path, "POST", "/v1/trust/request", {"agent_id": AGENT_B})
            for _ in range(20)
        ),
    )
    assert all(r.status == 200 for r in replies)
    assert len(node.pending) == 20
    await wait_for(lambda: server.connections == 0, "all connections closed")


async def test_connection_limit(home: Path, node: FakeNode) -> None:
    async with ControlServer(node, home / "control.sock", max_connections=3) as srv:
        held = [await Conn.open(srv.socket_path) for _ in range(3)]
        await wait_for(lambda: srv.connections == 3, "3 connections")
        reply = await raw_exchange(srv.socket_path, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 ") and b'"StateError"' in reply
        assert (await held[0].request("GET", "/v1/status")).status == 200
        held[0].close()
        await wait_for(lambda: srv.connections == 2, "a slot freed")
        assert (await call(srv.socket_path, "GET", "/v1/status")).status == 200
        for conn in held[1:]:
            conn.close()


# ---- NDJSON -------------------------------------------------------------------------------------


async def test_ping_streams_replies_then_result(server: ControlServer) -> None:
    body = {"agent_id": AGENT_B, "count": 4, "interval": 0}
    reply = await call(server.socket_path, "POST", "/v1/ping", body)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/x-ndjson"
    assert reply.headers["transfer-encoding"] == "chunked"
    lines = reply.lines()
    assert lines[:4] == [
        {"event": "reply", "seq": 1, "rtt_ms": 1.0},
        {"event": "reply", "seq": 2, "rtt_ms": 2.0},
        {"event": "reply", "seq": 3, "rtt_ms": None},
        {"event": "reply", "seq": 4, "rtt_ms": 4.0},
    ]
    assert lines[4]["event"] == "result"
    assert lines[4]["result"]["sent"] == 4 and lines[4]["result"]["received"] == 3
    assert len(lines) == 5


async def test_ping_errors_before_and_during_the_stream(
    server: ControlServer, node: FakeNode
) -> None:
    # Before the first line: an ordinary JSON error with its status.
    reply = await call(server.socket_path, "POST", "/v1/ping", {"agent_id": "nope"})
    assert reply.status == 400 and reply.error["type"] == "InvalidArgument"
    node.fail("ping", NetworkError("unreachable"))
    reply = await call(server.socket_path, "POST", "/v1/ping", {"agent_id": AGENT_B})
    assert reply.status == 504 and reply.error["type"] == "NetworkError"
    # After the first line: an error event ends the stream.
    node.fail_midway("ping", ConnectionClosed("session lost", ErrorCode.IDLE_TIMEOUT))
    reply = await call(server.socket_path, "POST", "/v1/ping", {"agent_id": AGENT_B, "count": 3})
    assert reply.status == 200
    lines = reply.lines()
    assert lines[0]["event"] == "reply"
    assert lines[-1] == {
        "event": "error",
        "error": {"type": "ConnectionClosed", "message": "session lost", "code": "idle_timeout"},
    }


async def test_client_hanging_up_cancels_the_ping(server: ControlServer, node: FakeNode) -> None:
    node.ping_gate = asyncio.Event()
    conn = await Conn.open(server.socket_path)
    await conn.send("POST", "/v1/ping", {"agent_id": AGENT_B, "count": 5})
    await wait_for(lambda: server.connections == 1, "request in flight")
    conn.close()
    await wait_for(lambda: node.cancelled == ["ping"], "ping cancelled")
    await wait_for(lambda: server.connections == 0, "connection closed")


async def test_send_file_streams_progress(
    server: ControlServer, node: FakeNode, home: Path
) -> None:
    path = home / "payload.bin"
    path.write_bytes(os.urandom(3000))
    reply = await call(
        server.socket_path, "POST", "/v1/files", {"agent_id": AGENT_B, "path": str(path)}
    )
    assert reply.status == 200
    lines = reply.lines()
    assert lines[:3] == [
        {"event": "progress", "sent": 1024, "total": 3000},
        {"event": "progress", "sent": 2048, "total": 3000},
        {"event": "progress", "sent": 3000, "total": 3000},
    ]
    assert lines[3]["event"] == "result" and lines[3]["result"]["size"] == 3000
    node.fail_midway("send_file", StreamReset("peer gave up", ErrorCode.CANCEL))
    lines = (
        await call(
            server.socket_path, "POST", "/v1/files", {"agent_id": AGENT_B, "path": str(path)}
        )
    ).lines()
    assert lines[-1]["error"]["type"] == "StreamReset" and lines[-1]["error"]["code"] == "cancel"


async def test_events_stream_until_the_client_leaves(server: ControlServer, node: FakeNode) -> None:
    conn = await Conn.open(server.socket_path)
    try:
        await conn.send("GET", "/v1/events")
        head = await conn.event()
        assert isinstance(head, h11.Response) and head.status_code == 200
        assert len(node.subscribers) == 1  # subscribed before the head was sent
        node.publish(PeerConnected(agent_id=AGENT_B, address="h:1", direction="inbound"))
        node.publish(MessageReceived(1, AGENT_B, 1, "hi", 1.0, 2.0))
        lines: list[Any] = []
        buffer = b""
        while len(lines) < 2:
            event = await conn.event()
            assert isinstance(event, h11.Data)
            buffer += event.data
            *complete, buffer = buffer.split(b"\n")
            lines += [json.loads(x) for x in complete if x]
        assert lines[0] == {
            "type": "peer_connected",
            "agent_id": AGENT_B,
            "address": "h:1",
            "direction": "inbound",
        }
        assert lines[1]["type"] == "message_received" and lines[1]["text"] == "hi"
    finally:
        conn.close()
    await wait_for(lambda: not node.subscribers, "subscription closed")
    await wait_for(lambda: server.connections == 0, "connection closed")


async def test_events_stream_ends_cleanly_when_the_node_closes(
    server: ControlServer, node: FakeNode
) -> None:
    conn = await Conn.open(server.socket_path)
    try:
        await conn.send("GET", "/v1/events")
        assert isinstance(await conn.event(), h11.Response)
        await node.close()
        assert isinstance(await conn.event(), h11.EndOfMessage)
    finally:
        conn.close()


async def test_shutdown_answers_then_signals(
    server: ControlServer, shutdown_event: asyncio.Event
) -> None:
    reply = await call(server.socket_path, "POST", "/v1/shutdown")
    assert reply.status == 200 and reply.json() == {"ok": True}
    await asyncio.wait_for(shutdown_event.wait(), 10)


# ---- upgrades: streams ---------------------------------------------------------------------------


async def _upgrade(sock: Path, target: str, body: Any, extra: bytes = b"") -> Conn:
    conn = await Conn.open(sock)
    await conn.send("POST", target, body, headers=UPGRADE, extra=extra)
    reply = await conn.reply()
    assert reply.status == 101, reply.body
    assert reply.headers["upgrade"] == "swarmlink-stream"
    return conn


async def _read_to_eof(conn: Conn) -> bytes:
    out = bytearray(conn.trailing())
    async with asyncio.timeout(10):
        while chunk := await conn.reader.read(65536):
            out += chunk
    return bytes(out)


async def test_open_stream_echo_with_half_close(server: ControlServer, node: FakeNode) -> None:
    # Bytes sent right behind the request (before the 101) belong to the stream too.
    conn = await _upgrade(
        server.socket_path, "/v1/streams", {"agent_id": AGENT_B, "protocol": "/echo"}, b"early,"
    )
    payload = os.urandom(300_000)
    conn.writer.write(payload)
    conn.writer.write_eof()  # half-close: the echo service sees end-of-stream
    assert await _read_to_eof(conn) == b"early," + payload
    conn.close()
    stream = node.streams[0]
    assert stream.protocol == "/echo" and stream.peer == AGENT_B and not stream.was_reset
    await wait_for(lambda: server.connections == 0, "connection closed")


async def test_open_stream_errors_are_json_before_the_upgrade(server: ControlServer) -> None:
    sock = server.socket_path
    reply = await call(sock, "POST", "/v1/streams", {"agent_id": AGENT_B, "protocol": "/echo"})
    assert reply.status == 400 and "Upgrade: swarmlink-stream" in reply.error["message"]
    conn = await Conn.open(sock)
    await conn.send(
        "POST", "/v1/streams", {"agent_id": AGENT_B, "protocol": "/refuse"}, headers=UPGRADE
    )
    reply = await conn.reply()
    conn.close()
    assert reply.status == 502 and reply.error["type"] == "StreamRefused"
    assert reply.error["code"] == "not_trusted"
    bad = {"agent_id": AGENT_B, "protocol": "bad\nname"}
    reply = await call(sock, "POST", "/v1/streams", bad, headers=UPGRADE)
    assert reply.status == 400 and "bad protocol name" in reply.error["message"]


async def test_stream_reset_by_the_peer_drops_the_socket(
    server: ControlServer, node: FakeNode
) -> None:
    conn = await _upgrade(
        server.socket_path, "/v1/streams", {"agent_id": AGENT_B, "protocol": "/x"}
    )
    remote = node.remote_ends[0]
    conn.writer.write(b"hello")
    assert await remote.read() == b"hello"
    remote.write(b"world")
    assert await asyncio.wait_for(conn.reader.readexactly(5), 10) == b"world"
    remote.reset()
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(conn.reader.read(10), 10) == b""
    conn.close()
    await wait_for(lambda: server.connections == 0, "connection closed")


async def test_client_dropping_the_socket_resets_the_stream(
    server: ControlServer, node: FakeNode
) -> None:
    conn = await _upgrade(
        server.socket_path, "/v1/streams", {"agent_id": AGENT_B, "protocol": "/x"}
    )
    remote = node.remote_ends[0]
    conn.writer.write(b"partial")
    assert await remote.read() == b"partial"
    conn.writer.transport.abort()  # gone, without a half-close first
    with pytest.raises(StreamReset):
        async with asyncio.timeout(10):
            while await remote.read():
                pass
    assert node.streams[0].was_reset


async def test_client_half_close_is_not_a_reset(server: ControlServer, node: FakeNode) -> None:
    conn = await _upgrade(
        server.socket_path, "/v1/streams", {"agent_id": AGENT_B, "protocol": "/x"}
    )
    remote = node.remote_ends[0]
    conn.writer.write(b"request")
    conn.writer.write_eof()
    assert await remote.readall() == b"request"
    remote.write(b"response")
    remote.write_eof()
    assert await _read_to_eof(conn) == b"response"
    conn.close()
    await wait_for(lambda: server.connections == 0, "connection closed")
    assert not node.streams[0].was_reset


# ---- upgrades: handlers and attach ------------------------------------------------------------


async def _next_line(conn: Conn, buffer: bytearray) -> Any:
    async with asyncio.timeout(10):
        while b"\n" not in buffer:
            chunk = await conn.reader.read(65536)
            assert chunk, "registration closed"
            buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


async def test_handler_registration_and_attach(server: ControlServer, node: FakeNode) -> None:
    reg = await _upgrade(server.socket_path, "/v1/handlers", {"protocol": "/chat"})
    assert "/chat" in node.handlers
    buffer = bytearray(reg.trailing())
    remote = await node.incoming(AGENT_B, "/chat")
    announcement = await _next_line(reg, buffer)
    assert announcement["event"] == "incoming" and announcement["agent_id"] == AGENT_B
    assert announcement["protocol"] == "/chat"
    remote.write(b"ping from b")
    remote.write_eof()
    attached = await _upgrade(
        server.socket_path, "/v1/streams/attach", {"stream": announcement["stream"]}
    )
    got = bytearray(attached.trailing())
    async with asyncio.timeout(10):
        while len(got) < 11:
            got += await attached.reader.read(100)
    assert bytes(got) == b"ping from b"
    attached.writer.write(b"pong")
    attached.writer.write_eof()
    assert await remote.readall() == b"pong"
    assert await attached.reader.read(10) == b""
    attached.close()
    # The token is single use.
    reply = await call(
        server.socket_path,
        "POST",
        "/v1/streams/attach",
        {"stream": announcement["stream"]},
        headers=UPGRADE,
    )
    assert reply.status == 404 and reply.error["type"] == "NotFound"
    # Closing the registration unregisters the handler.
    reg.close()
    await wait_for(lambda: "/chat" not in node.handlers, "handler removed")


async def test_handler_rules(server: ControlServer, node: FakeNode) -> None:
    sock = server.socket_path
    reply = await call(
        sock, "POST", "/v1/handlers", {"protocol": "/swarmlink/msg/1"}, headers=UPGRADE
    )
    assert reply.status == 400 and "reserved" in reply.error["message"]
    reply = await call(sock, "POST", "/v1/handlers", {"protocol": "/chat"})
    assert reply.status == 400 and "Upgrade" in reply.error["message"]
    reg = await _upgrade(sock, "/v1/handlers", {"protocol": "/chat"})
    reply = await call(sock, "POST", "/v1/handlers", {"protocol": "/chat"}, headers=UPGRADE)
    assert reply.status == 409 and reply.error["type"] == "StateError"
    reply = await call(sock, "POST", "/v1/streams/attach", {"stream": "nope"}, headers=UPGRADE)
    assert reply.status == 404 and "no incoming stream" in reply.error["message"]
    reply = await call(sock, "POST", "/v1/streams/attach", {"stream": "x" * 65}, headers=UPGRADE)
    assert reply.status == 400
    reg.close()
    await wait_for(lambda: "/chat" not in node.handlers, "handler removed")


async def test_unattached_incoming_streams_are_reset(home: Path, node: FakeNode) -> None:
    async with ControlServer(node, home / "control.sock", attach_timeout=0.2) as srv:
        reg = await _upgrade(srv.socket_path, "/v1/handlers", {"protocol": "/slow"})
        buffer = bytearray(reg.trailing())
        remote = await node.incoming(AGENT_B, "/slow")
        token = (await _next_line(reg, buffer))["stream"]
        with pytest.raises(StreamReset):
            await asyncio.wait_for(remote.read(), 10)
        reply = await call(
            srv.socket_path, "POST", "/v1/streams/attach", {"stream": token}, headers=UPGRADE
        )
        assert reply.status == 404
        # Closing a registration resets the streams still waiting on it.
        remote2 = await node.incoming(AGENT_B, "/slow")
        await _next_line(reg, buffer)
        reg.close()
        with pytest.raises(StreamReset):
            await asyncio.wait_for(remote2.read(), 10)


# ---- the daemon process ------------------------------------------------------------------------


def test_json_log_formatter() -> None:
    record = logging.LogRecord("swarmlink.x", logging.INFO, "f", 1, "hello %s", ("you",), None)
    record.peer = "abc"
    record.msg_count = 3
    line = json.loads(JsonLogFormatter().format(record))
    assert line["level"] == "info" and line["logger"] == "swarmlink.x"
    assert line["msg"] == "hello you" and line["peer"] == "abc" and line["msg_count"] == 3
    assert line["ts"].endswith("+00:00")


def test_pid_file_lock(home: Path) -> None:
    first = _PidFile(home / "swarmlink.pid")
    first.acquire()
    try:
        assert (home / "swarmlink.pid").read_text().strip() == str(os.getpid())
        with pytest.raises(LocalError, match=rf"already running in {home} \(pid {os.getpid()}\)"):
            _PidFile(home / "swarmlink.pid").acquire()
    finally:
        first.release()
    assert not (home / "swarmlink.pid").exists()


def test_main_rejects_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", "/tmp/unused-home", "--listen", "1.2.3.4:notaport"])
    assert exit_info.value.code == 2
    assert "not a number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--bootstrap", "nonsense"], "expected AGENT_ID@HOST:PORT"),
        (["--bootstrap", f"{AGENT_P}@127.0.0.1:0"], "port must not be 0"),
        (["--bootstrap", "short@127.0.0.1:7420"], "not an agent ID"),
        (["--advertise", "0.0.0.0:7420"], "not a wildcard"),
        (["--advertise", "example.org:0"], "not port 0"),
        (["--advertise", "example.org:x"], "not a number"),
    ],
)
def test_main_rejects_bad_dht_options(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", "/tmp/unused-home", *args])
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_main_passes_dht_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlink.daemon import DaemonConfig, _main

    seen: list[DaemonConfig] = []
    monkeypatch.setattr(_main, "run_daemon", lambda config: seen.append(config) or 0)
    assert main(["--home", "/tmp/unused-home"]) == 0
    assert seen[-1].mdns is True and seen[-1].bootstrap == () and seen[-1].advertise == ()
    argv = ["--home", "/tmp/unused-home", "--no-mdns", "--bootstrap", f" {AGENT_P}@[::1]:7420 "]
    argv += ["--bootstrap", f"{AGENT_P}@127.0.0.1:7421"]
    argv += ["--advertise", "203.0.113.5:7420", "--advertise", "[2001:db8::1]:7420"]
    assert main(argv) == 0
    config = seen[-1]
    assert config.mdns is False
    assert config.bootstrap == (f"{AGENT_P}@[::1]:7420", f"{AGENT_P}@127.0.0.1:7421")
    assert config.advertise == ("203.0.113.5:7420", "[2001:db8::1]:7420")


# Runs the daemon entry point with the fake node standing in for swarmlink.runtime.node.
_FAKE_LAUNCHER = """
import sys, types
sys.path.insert(0, sys.argv.pop(1))
from fake_node import FakeNode
from swarmlink.runtime.config import NodeConfig

class Node:
    @classmethod
    async def start(cls, config):
        return FakeNode(config.home)

stub = types.ModuleType("swarmlink.runtime.node")
stub.Node, stub.NodeConfig = Node, NodeConfig
sys.modules["swarmlink.runtime.node"] = stub
from swarmlink.daemon import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("launcher", "stop_with"),
    [
        ("fake", "sigterm"),
        ("fake", "shutdown"),
        ("real", "sigterm"),
    ],
)
def test_daemon_process_lifecycle(home: Path, launcher: str, stop_with: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    if launcher == "fake":
        entry = [sys.executable, "-c", _FAKE_LAUNCHER, str(Path(__file__).parent)]
    else:
        entry = [sys.executable, "-m", "swarmlink.daemon"]
    cmd = [*entry, "--home", str(home), "--listen", "127.0.0.1:0", "--no-mdns"]
    # Leftovers of a daemon killed with -9: a stale socket and an unlocked pid file.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(home / "control.sock"))
    stale.close()
    (home / "swarmlink.pid").write_text("999999\n")
    proc = subprocess.Popen([*cmd, "--log-level", "debug"], env=env, stderr=subprocess.PIPE)
    try:
        sock = home / "control.sock"
        deadline = time.monotonic() + 30
        while not (home / "swarmlink.log").exists() or not _answers(sock):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "daemon did not come up"
            time.sleep(0.02)
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        assert (home / "swarmlink.pid").read_text().strip() == str(proc.pid)
        status = asyncio.run(call(sock, "GET", "/v1/status")).json()
        assert status["pid"] == proc.pid
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"already running in {home} (pid {proc.pid})" in second.stderr
        if stop_with == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            assert asyncio.run(call(sock, "POST", "/v1/shutdown")).json() == {"ok": True}
        assert proc.wait(timeout=30) == 0
        assert not sock.exists() and not (home / "swarmlink.pid").exists()
        lines = [json.loads(x) for x in (home / "swarmlink.log").read_text().splitlines()]
        assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
        assert any(x["msg"] == "daemon stopped" for x in lines)
        assert oct((home / "swarmlink.log").stat().st_mode & 0o777) == "0o600"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        return s.connect_ex(str(sock)) == 0

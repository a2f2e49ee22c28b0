"""An in-memory node implementing :class:`swarmlink.daemon.NodeAPI`, for control API tests.

Nothing touches the network. Peers are names in a dict; streams are in-memory pipes;
``fail(method, exc)`` makes the next call of ``method`` raise ``exc``, to exercise the
error mapping. ``open_stream`` to protocol ``/echo`` reaches an echo service; protocol
``/refuse`` raises :class:`StreamRefused`; ``incoming(...)`` simulates a peer opening a
stream to us (through the registered handler).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from swarmlink.daemon import NodeAPI, StreamAPI, StreamHandler
from swarmlink.errors import (
    ErrorCode,
    InvalidArgument,
    NotFound,
    StateError,
    StreamRefused,
    StreamReset,
)
from swarmlink.runtime.events import NodeEvent
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

__all__ = ["AGENT_A", "AGENT_B", "FakeNode", "FakeStream", "stream_pair"]

AGENT_A = "a" * 52
AGENT_B = "b" * 52


def _check_agent(agent_id: str) -> str:
    if len(agent_id) != 52 or not agent_id.isalnum() or agent_id.lower() != agent_id:
        raise InvalidArgument(f"bad agent ID {agent_id!r}: expected 52 base32 characters")
    return agent_id


class _Pipe:
    """One direction of an in-memory stream."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: StreamReset | None = None
        self.changed = asyncio.Event()

    def wake(self) -> None:
        self.changed.set()


class FakeStream:
    """One end of an in-memory stream pair (the StreamAPI surface, plus ``at_eof``)."""

    def __init__(self, inbound: _Pipe, outbound: _Pipe, *, peer: str, protocol: str) -> None:
        self._in = inbound
        self._out = outbound
        self.peer = peer
        self.protocol = protocol
        self.was_reset = False

    async def read(self, n: int = -1) -> bytes:
        pipe = self._in
        while not pipe.buffer and not pipe.eof and pipe.error is None:
            pipe.changed.clear()
            await pipe.changed.wait()
        if pipe.buffer:
            size = len(pipe.buffer) if n < 0 else min(n, len(pipe.buffer))
            data = bytes(pipe.buffer[:size])
            del pipe.buffer[:size]
            return data
        if pipe.error is not None:
            raise pipe.error
        return b""

    async def readall(self) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> None:
        if self._out.error is not None:
            raise self._out.error
        if self._out.eof:
            raise StateError("write after write_eof()")
        self._out.buffer += data
        self._out.wake()

    async def drain(self) -> None:
        if self._out.error is not None:
            raise self._out.error

    def write_eof(self) -> None:
        self._out.eof = True
        self._out.wake()

    def reset(self) -> None:
        self.was_reset = True
        error = StreamReset(f"stream {self.protocol} reset", ErrorCode.CANCEL)
        for pipe in (self._in, self._out):
            if pipe.error is None:
                pipe.error = error
            pipe.wake()

    async def close(self) -> None:
        self.write_eof()

    def at_eof(self) -> bool:
        return self._in.eof and not self._in.buffer


def stream_pair(peer_a: str, peer_b: str, protocol: str) -> tuple[FakeStream, FakeStream]:
    """Two connected ends: ``a`` talks to ``peer_a`` (its ``peer``), ``b`` to ``peer_b``."""
    ab, ba = _Pipe(), _Pipe()
    return (
        FakeStream(ba, ab, peer=peer_a, protocol=protocol),
        FakeStream(ab, ba, peer=peer_b, protocol=protocol),
    )


class _Subscription:
    def __init__(self, node: FakeNode) -> None:
        self._node = node
        self.queue: asyncio.Queue[NodeEvent | None] = asyncio.Queue()
        node.subscribers.add(self)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> NodeEvent:
        event = await self.queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        self._node.subscribers.discard(self)


class FakeNode:
    """In-memory :class:`NodeAPI`."""

    def __init__(self, home: Path, agent_id: str = AGENT_A) -> None:
        self.agent_id = agent_id
        self.home = home
        self.known: dict[str, PeerInfo] = {}
        self.trusted: dict[str, float] = {}
        self.pending: list[PendingTrust] = []
        self.messages: list[InboxMessage] = []
        self.sent: list[tuple[str, str]] = []
        self.files: list[dict[str, Any]] = []
        self._exposures: dict[int, Exposure] = {}
        self._forwards: dict[int, Forward] = {}
        self.handlers: dict[str, StreamHandler] = {}
        self.subscribers: set[_Subscription] = set()
        self.streams: list[FakeStream] = []  # our ends of streams we opened
        self.remote_ends: list[FakeStream] = []
        self.failures: dict[str, BaseException] = {}
        self.ping_gate: asyncio.Event | None = None
        self.connect_gate: asyncio.Event | None = None
        self.midway: dict[str, BaseException] = {}
        self.cancelled: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.file_chunk = 1024
        self.closed = False
        self.key_serial = 1

    # ---- test controls --------------------------------------------------------------------

    def fail(self, method: str, exc: BaseException) -> None:
        """Make the next call of ``method`` raise ``exc``."""
        self.failures[method] = exc

    def fail_midway(self, method: str, exc: BaseException) -> None:
        """Make the next ``ping`` / ``send_file`` raise ``exc`` after its first report."""
        self.midway[method] = exc

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _maybe_fail(self, method: str) -> None:
        exc = self.failures.pop(method, None)
        if exc is not None:
            raise exc

    def publish(self, event: NodeEvent) -> None:
        for sub in list(self.subscribers):
            sub.queue.put_nowait(event)

    def add_message(self, sender: str, text: str) -> InboxMessage:
        now = time.time()
        msg = InboxMessage(
            id=len(self.messages) + 1,
            sender=sender,
            seq=len(self.messages) + 1,
            sent_at=now,
            received_at=now,
            text=text,
        )
        self.messages.append(msg)
        return msg

    async def incoming(self, peer: str, protocol: str) -> FakeStream:
        """A peer opens a stream to us; returns the peer's end."""
        handler = self.handlers.get(protocol)
        if handler is None:
            raise StreamRefused(f"no handler for {protocol}", ErrorCode.UNKNOWN_PROTOCOL)
        remote, local = stream_pair(self.agent_id, peer, protocol)
        self.streams.append(local)
        self.remote_ends.append(remote)
        self._spawn(handler(local))
        return remote

    # ---- NodeAPI ---------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        self._maybe_fail("status")
        return NodeStatus(
            agent_id=self.agent_id,
            virtual_address="fd5a:7761:726d::1",
            listen=("127.0.0.1:7420",),
            home=str(self.home),
            pid=os.getpid(),
            version="0.1.0",
            uptime=1.0,
            peers_connected=sum(p.connected for p in self.known.values()),
            trusted_peers=len(self.trusted),
            pending_trust=len(self.pending),
            inbox_unread=len(self.messages),
            operational_key_serial=self.key_serial,
            operational_key_expires=time.time() + 3600,
        )

    def identity_info(self) -> dict[str, Any]:
        self._maybe_fail("identity_info")
        return {
            "agent_id": self.agent_id,
            "virtual_address": "fd5a:7761:726d::1",
            "operational_key_serial": self.key_serial,
        }

    def peers(self) -> list[PeerInfo]:
        self._maybe_fail("peers")
        return list(self.known.values())

    async def connect(self, target: str) -> PeerInfo:
        self._maybe_fail("connect")
        if self.connect_gate is not None:
            await self.connect_gate.wait()
        agent, sep, address = target.partition("@")
        if not sep or not address:
            raise InvalidArgument(f"bad target {target!r}: expected AGENT@HOST:PORT")
        info = PeerInfo(
            agent_id=_check_agent(agent),
            virtual_address="fd5a:7761:726d::2",
            connected=True,
            trusted=agent in self.trusted,
            address=address,
            direction="outbound",
            path="direct",
            rtt_ms=0.5,
            streams=0,
            last_seen=time.time(),
            user_agent="fake/1",
        )
        self.known[agent] = info
        return info

    async def ping(
        self,
        agent_id: str,
        count: int = 1,
        interval: float = 1.0,
        on_reply: Callable[[int, float | None], None] | None = None,
    ) -> PingResult:
        self._maybe_fail("ping")
        _check_agent(agent_id)
        rtts: list[float] = []
        try:
            for seq in range(1, count + 1):
                if self.ping_gate is not None:
                    await self.ping_gate.wait()
                rtt = None if seq % 3 == 0 else float(seq)
                if rtt is not None:
                    rtts.append(rtt)
                if on_reply is not None:
                    on_reply(seq, rtt)
                if "ping" in self.midway:
                    raise self.midway.pop("ping")
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled.append("ping")
            raise
        return PingResult(
            agent_id=agent_id,
            rtts_ms=tuple(rtts),
            sent=count,
            received=len(rtts),
            min_ms=min(rtts) if rtts else None,
            avg_ms=sum(rtts) / len(rtts) if rtts else None,
            max_ms=max(rtts) if rtts else None,
        )

    async def send_message(self, agent_id: str, text: str) -> SendReceipt:
        self._maybe_fail("send_message")
        _check_agent(agent_id)
        if agent_id not in self.trusted:
            raise StateError(f"no trust with {agent_id}")
        self.sent.append((agent_id, text))
        return SendReceipt(recipient=agent_id, seq=len(self.sent), delivered=True)

    def inbox(
        self, *, sender: str | None = None, after: int = 0, limit: int = 100
    ) -> list[InboxMessage]:
        self._maybe_fail("inbox")
        if not 1 <= limit <= 10_000:
            raise InvalidArgument("limit must be between 1 and 10000")
        out = [m for m in self.messages if m.id > after and (sender is None or m.sender == sender)]
        return out[:limit]

    async def send_file(
        self, agent_id: str, path: str, on_progress: Callable[[int, int], None] | None = None
    ) -> FileReceipt:
        self._maybe_fail("send_file")
        _check_agent(agent_id)
        data = _read(path)
        for sent in range(self.file_chunk, len(data) + self.file_chunk, self.file_chunk):
            if on_progress is not None:
                on_progress(min(sent, len(data)), len(data))
            if "send_file" in self.midway:
                raise self.midway.pop("send_file")
            await asyncio.sleep(0)
        return FileReceipt(
            recipient=agent_id,
            name=Path(path).name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            seconds=0.01,
        )

    def received_files(self) -> list[dict[str, Any]]:
        self._maybe_fail("received_files")
        return list(self.files)

    def expose(self, port: int, *, name: str | None = None, allow: Sequence[str] = ()) -> Exposure:
        self._maybe_fail("expose")
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"bad port {port}")
        exposure = Exposure(port=port, name=name, allow=tuple(_check_agent(a) for a in allow))
        self._exposures[port] = exposure
        return exposure

    def unexpose(self, port: int) -> None:
        self._maybe_fail("unexpose")
        if self._exposures.pop(port, None) is None:
            raise NotFound(f"port {port} is not exposed")

    def exposures(self) -> list[Exposure]:
        return list(self._exposures.values())

    async def forward(
        self, local_port: int, agent_id: str, remote_port: int, *, bind_host: str = "127.0.0.1"
    ) -> Forward:
        self._maybe_fail("forward")
        fwd = Forward(
            id=len(self._forwards) + 1,
            bind_host=bind_host,
            local_port=local_port or 40000 + len(self._forwards),
            agent_id=_check_agent(agent_id),
            remote_port=remote_port,
        )
        self._forwards[fwd.id] = fwd
        return fwd

    async def unforward(self, forward_id: int) -> None:
        self._maybe_fail("unforward")
        if self._forwards.pop(forward_id, None) is None:
            raise NotFound(f"no forward {forward_id}")

    def forwards(self) -> list[Forward]:
        return list(self._forwards.values())

    async def bench(self, agent_id: str, *, size: int = 64 * 1024 * 1024) -> BenchResult:
        self._maybe_fail("bench")
        return BenchResult(
            agent_id=_check_agent(agent_id),
            bytes=size,
            seconds=1.0,
            throughput_mib_s=size / 1024 / 1024,
            rtt_p50_ms=0.1,
            rtt_p99_ms=0.2,
        )

    async def request_trust(self, agent_id: str, reason: str = "") -> str:
        self._maybe_fail("request_trust")
        self.pending.append(PendingTrust(_check_agent(agent_id), "out", reason, time.time()))
        return "requested"

    async def approve_trust(self, agent_id: str) -> str:
        self._maybe_fail("approve_trust")
        self.trusted[_check_agent(agent_id)] = time.time()
        self.pending = [p for p in self.pending if p.agent_id != agent_id]
        return "trusted"

    async def reject_trust(self, agent_id: str) -> str:
        self._maybe_fail("reject_trust")
        self.pending = [p for p in self.pending if p.agent_id != agent_id]
        return "rejected"

    async def revoke_trust(self, agent_id: str) -> str:
        self._maybe_fail("revoke_trust")
        if self.trusted.pop(agent_id, None) is None:
            raise NotFound(f"{agent_id} is not trusted")
        return "revoked"

    def pending_trust(self) -> list[PendingTrust]:
        return list(self.pending)

    def trusted_peers(self) -> list[TrustedPeer]:
        return [TrustedPeer(a, since) for a, since in self.trusted.items()]

    def rotate_key(self) -> dict[str, Any]:
        self._maybe_fail("rotate_key")
        self.key_serial += 1
        return self.identity_info()

    async def open_stream(self, agent_id: str, protocol: str) -> StreamAPI:
        self._maybe_fail("open_stream")
        _check_agent(agent_id)
        if protocol == "/refuse":
            raise StreamRefused(f"stream {protocol} refused", ErrorCode.NOT_TRUSTED)
        local, remote = stream_pair(agent_id, self.agent_id, protocol)
        self.streams.append(local)
        self.remote_ends.append(remote)
        if protocol == "/echo":
            self._spawn(_echo(remote))
        return local

    def set_handler(self, protocol: str, handler: StreamHandler | None) -> None:
        self._maybe_fail("set_handler")
        if handler is None:
            self.handlers.pop(protocol, None)
        else:
            self.handlers[protocol] = handler

    def subscribe(self) -> AsyncIterator[NodeEvent]:
        return _Subscription(self)

    async def close(self) -> None:
        self.closed = True
        for sub in list(self.subscribers):
            sub.queue.put_nowait(None)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None


async def _echo(stream: FakeStream) -> None:
    try:
        while data := await stream.read():
            stream.write(data)
        stream.write_eof()
    except StreamReset:
        pass


def _typecheck(node: FakeNode) -> NodeAPI:
    return node  # mypy: FakeNode satisfies NodeAPI

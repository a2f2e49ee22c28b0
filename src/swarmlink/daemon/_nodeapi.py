"""The node interface the control server drives (structural, so mypy checks both sides).

:class:`swarmlink.runtime.node.Node` satisfies :class:`NodeAPI`; so does the in-memory
fake the tests use. The daemon only ever talks to the node through this interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..runtime.events import NodeEvent
from ..runtime.model import (
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

__all__ = [
    "DhtAPI",
    "GossipAPI",
    "JsonModelAPI",
    "NodeAPI",
    "StreamAPI",
    "StreamHandler",
    "TopicSubscriptionAPI",
]


class JsonModelAPI(Protocol):
    """A result the control API sends as JSON (an agent record, a capability)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object sent to clients."""
        ...


class DhtAPI(Protocol):
    """The node's DHT (see :class:`swarmlink.runtime._dhtsvc.DhtService`)."""

    async def resolve(self, agent_id: str, *, fresh: bool = False) -> JsonModelAPI:
        """The verified record of ``agent_id`` (NotFound if the network has none)."""
        ...

    async def find(self, tag: str) -> Sequence[JsonModelAPI]:
        """Verified records of the agents advertising capability ``tag``."""
        ...

    async def add_capability(
        self, tag: str, *, name: str = "", description: str = "", protocol: str = ""
    ) -> JsonModelAPI:
        """Advertise a capability (replacing one with the same tag) and republish."""
        ...

    async def remove_capability(self, tag: str) -> None:
        """Stop advertising ``tag`` (NotFound if not advertised) and republish."""
        ...

    def capabilities(self) -> Sequence[JsonModelAPI]:
        """The capabilities this agent advertises."""
        ...

    def info(self) -> dict[str, Any]:
        """Routing table and record store sizes, join state, bootstrap peers, ..."""
        ...


class TopicSubscriptionAPI(Protocol):
    """Messages on one topic (see :class:`swarmlink.runtime.TopicSubscription`)."""

    def __aiter__(self) -> AsyncIterator[JsonModelAPI]: ...

    def close(self) -> None:
        """Stop receiving."""
        ...


class GossipAPI(Protocol):
    """The node's gossip layer (see :class:`swarmlink.runtime._gossipsvc.GossipService`)."""

    def members(self) -> list[dict[str, Any]]:
        """Known members with state, incarnation, region and age."""
        ...

    def info(self) -> dict[str, Any]:
        """Member counts, topics, pub/sub peers, states, local health, counters."""
        ...

    def publish(self, topic: str, data: bytes) -> dict[str, Any]:
        """Sign and publish; the message ID and how many peers it went to."""
        ...

    def subscribe(self, topic: str) -> TopicSubscriptionAPI:
        """Messages on ``topic`` from now on."""
        ...

    def set_policy(self, topic: str, policy: str | list[str]) -> dict[str, Any]:
        """Who may publish on ``topic``."""
        ...

    def policies(self) -> list[dict[str, Any]]: ...

    def state_names(self) -> list[str]: ...

    def state_get(self, name: str, key: str | None = None) -> Any:
        """All values of state ``name``, or the value of ``key``."""
        ...

    def state_op(self, name: str, op: str, key: str, value: Any = None) -> list[Any]:
        """Apply set / delete / add / remove / increment locally and replicate it."""
        ...


class StreamAPI(Protocol):
    """One bidirectional byte stream to a peer (see :class:`swarmlink.runtime.Stream`)."""

    peer: str
    protocol: str

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (everything buffered when ``n < 0``); ``b""`` at end of stream."""
        ...

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the peer."""
        ...

    async def drain(self) -> None:
        """Wait while too much is queued towards the peer."""
        ...

    def write_eof(self) -> None:
        """Half-close: the peer reads end-of-stream after the data already written."""
        ...

    def reset(self) -> None:
        """Abort the stream in both directions."""
        ...

    async def close(self) -> None:
        """Half-close and flush."""
        ...


#: A coroutine serving one peer-opened stream.
StreamHandler = Callable[[StreamAPI], Awaitable[None]]


class ServicesAPI(Protocol):
    """The node's services (see :class:`swarmlink.runtime._services.Services`)."""

    socks_proxies: list[Any]

    async def remote_services(self, peer: str) -> list[dict[str, Any]]:
        """What ``peer`` exposes to us."""
        ...

    async def start_socks5(self, host: str, port: int) -> str:
        """Serve a SOCKS5 proxy into the overlay on ``host:port``; the bound address."""
        ...


class NodeAPI(Protocol):
    """What the control server needs from a running node."""

    agent_id: str
    home: Path

    @property
    def dht(self) -> DhtAPI: ...

    @property
    def services(self) -> ServicesAPI: ...

    @property
    def gossip(self) -> GossipAPI: ...

    def status(self) -> NodeStatus: ...

    def identity_info(self) -> dict[str, Any]: ...

    def peers(self) -> list[PeerInfo]: ...

    async def connect(self, target: str) -> PeerInfo: ...

    async def disconnect(self, agent_id: str) -> int: ...

    async def ping(
        self,
        agent_id: str,
        count: int = 1,
        interval: float = 1.0,
        on_reply: Callable[[int, float | None], None] | None = None,
    ) -> PingResult: ...

    async def send_message(self, agent_id: str, text: str) -> SendReceipt: ...

    def inbox(
        self, *, sender: str | None = None, after: int = 0, limit: int = 100
    ) -> list[InboxMessage]: ...

    async def send_file(
        self, agent_id: str, path: str, on_progress: Callable[[int, int], None] | None = None
    ) -> FileReceipt: ...

    def received_files(self) -> list[dict[str, Any]]: ...

    def expose(
        self, port: int, *, name: str | None = None, allow: Sequence[str] = ()
    ) -> Exposure: ...

    def unexpose(self, port: int) -> None: ...

    def exposures(self) -> list[Exposure]: ...

    async def forward(
        self, local_port: int, agent_id: str, remote: int | str, *, bind_host: str = "127.0.0.1"
    ) -> Forward: ...

    async def unforward(self, forward_id: int) -> None: ...

    def forwards(self) -> list[Forward]: ...

    async def bench(self, agent_id: str, *, size: int = 64 * 1024 * 1024) -> BenchResult: ...

    async def request_trust(self, agent_id: str, reason: str = "") -> str: ...

    async def approve_trust(self, agent_id: str) -> str: ...

    async def reject_trust(self, agent_id: str) -> str: ...

    async def revoke_trust(self, agent_id: str) -> str: ...

    def pending_trust(self) -> list[PendingTrust]: ...

    def trusted_peers(self) -> list[TrustedPeer]: ...

    def rotate_key(self) -> dict[str, Any]: ...

    async def open_stream(self, agent_id: str, protocol: str) -> StreamAPI: ...

    def set_handler(self, protocol: str, handler: StreamHandler | None) -> None: ...

    def subscribe(self) -> AsyncIterator[NodeEvent]: ...

    async def close(self) -> None: ...

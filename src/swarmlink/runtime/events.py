"""Node-level events, delivered to SDK subscribers and over the control API.

Each event is a small frozen dataclass; ``to_json()`` gives ``{"type": ..., **fields}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "FileReceived",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberSuspected",
    "MessageReceived",
    "NodeEvent",
    "PeerConnected",
    "PeerDisconnected",
    "PeerPathChanged",
    "StateChanged",
    "TrustEstablished",
    "TrustRejected",
    "TrustRequested",
    "TrustRevoked",
    "event_from_json",
]


@dataclass(frozen=True)
class NodeEvent:
    """Base class. ``type`` is the JSON discriminator."""

    type: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class PeerConnected(NodeEvent):
    """A session with ``agent_id`` is up (TLS verified, versions negotiated)."""

    type: ClassVar[str] = "peer_connected"
    agent_id: str
    address: str  # "host:port" of the other end
    direction: str  # "inbound" or "outbound"


@dataclass(frozen=True)
class PeerDisconnected(NodeEvent):
    """The last session with ``agent_id`` ended; ``code``/``reason`` say why."""

    type: ClassVar[str] = "peer_disconnected"
    agent_id: str
    code: str
    reason: str


@dataclass(frozen=True)
class PeerPathChanged(NodeEvent):
    """New streams to ``agent_id`` now take another path: ``"direct"`` once a hole punch
    (or a direct dial) succeeded, ``"relayed via RELAY"`` when the direct one was lost."""

    type: ClassVar[str] = "peer_path_changed"
    agent_id: str
    path: str
    address: str  # "host:port" of the other end of the new path


@dataclass(frozen=True)
class TrustRequested(NodeEvent):
    """``agent_id`` asks to be trusted (see ``trust pending`` / ``trust approve``)."""

    type: ClassVar[str] = "trust_requested"
    agent_id: str
    reason: str


@dataclass(frozen=True)
class TrustEstablished(NodeEvent):
    """Trust with ``agent_id`` now holds both ways."""

    type: ClassVar[str] = "trust_established"
    agent_id: str


@dataclass(frozen=True)
class TrustRejected(NodeEvent):
    """``agent_id`` rejected our trust request."""

    type: ClassVar[str] = "trust_rejected"
    agent_id: str
    reason: str


@dataclass(frozen=True)
class TrustRevoked(NodeEvent):
    """Trust with ``agent_id`` was revoked, by us or (``by_peer``) by them."""

    type: ClassVar[str] = "trust_revoked"
    agent_id: str
    by_peer: bool


@dataclass(frozen=True)
class MessageReceived(NodeEvent):
    """A message was stored in the inbox."""

    type: ClassVar[str] = "message_received"
    id: int
    sender: str
    seq: int
    text: str
    sent_at: float
    received_at: float


@dataclass(frozen=True)
class FileReceived(NodeEvent):
    """A file arrived, its checksum verified, and was stored under the node home."""

    type: ClassVar[str] = "file_received"
    sender: str
    name: str
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class MemberJoined(NodeEvent):
    """An agent joined the gossip membership (or was seen alive for the first time)."""

    type: ClassVar[str] = "member_joined"
    agent_id: str
    region: str


@dataclass(frozen=True)
class MemberSuspected(NodeEvent):
    """Membership suspects ``agent_id`` failed (it has a moment to refute)."""

    type: ClassVar[str] = "member_suspected"
    agent_id: str


@dataclass(frozen=True)
class MemberFailed(NodeEvent):
    """Membership declared ``agent_id`` dead (it did not refute the suspicion)."""

    type: ClassVar[str] = "member_failed"
    agent_id: str


@dataclass(frozen=True)
class MemberLeft(NodeEvent):
    """``agent_id`` left the membership on purpose (its node shut down)."""

    type: ClassVar[str] = "member_left"
    agent_id: str


@dataclass(frozen=True)
class StateChanged(NodeEvent):
    """A key of replicated state ``name`` changed, here or on another replica."""

    type: ClassVar[str] = "state_changed"
    name: str
    key: str
    value: Any
    deleted: bool
    origin: str  # the agent whose change this is


_BY_TYPE: dict[str, type[NodeEvent]] = {
    cls.type: cls
    for cls in (
        PeerConnected,
        PeerDisconnected,
        PeerPathChanged,
        MemberJoined,
        MemberSuspected,
        MemberFailed,
        MemberLeft,
        StateChanged,
        TrustRequested,
        TrustEstablished,
        TrustRejected,
        TrustRevoked,
        MessageReceived,
        FileReceived,
    )
}


def event_from_json(data: dict[str, Any]) -> NodeEvent | None:
    """Rebuild an event sent by the control API; ``None`` for unknown (newer) types."""
    cls = _BY_TYPE.get(str(data.get("type")))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})

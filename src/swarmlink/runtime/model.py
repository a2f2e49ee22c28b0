"""Plain data returned by the node, the control API and the SDK.

Each type is a frozen dataclass with ``to_json()`` (a JSON-able dict, the exact shape
the control API sends) and ``from_json()`` (its inverse, used by the clients).
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "BenchResult",
    "Exposure",
    "FileReceipt",
    "Forward",
    "GossipMessage",
    "InboxMessage",
    "JsonModel",
    "NodeStatus",
    "PeerInfo",
    "PendingTrust",
    "PingResult",
    "SendReceipt",
    "TrustedPeer",
]

_T = TypeVar("_T", bound="JsonModel")


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    # Per class, once: a subscriber decodes one model per message.
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


class JsonModel:
    """Mixin: dataclass <-> JSON dict (field names are the JSON keys)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls: type[_T], data: dict[str, Any]) -> _T:
        names = _field_names(cls)
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name not in names:
                continue  # tolerate newer daemons that add fields
            if isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class NodeStatus(JsonModel):
    agent_id: str
    virtual_address: str
    listen: tuple[str, ...]  # "host:port" actually bound (port 0 resolved)
    home: str
    pid: int
    version: str
    uptime: float  # seconds
    peers_connected: int
    trusted_peers: int
    pending_trust: int
    inbox_unread: int
    operational_key_serial: int
    operational_key_expires: float  # unix time
    dht_contacts: int = 0  # nodes in the DHT routing table
    dht_records: int = 0  # signed agent records stored for the network
    dht_joined: bool = False  # found other DHT nodes (bootstrap, mDNS or being found)
    mdns: bool = False  # mDNS discovery running
    reflexive_addresses: tuple[str, ...] = ()  # public addresses peers agree they see
    nat_mapping: str = "unknown"  # none, endpoint-independent, endpoint-dependent, ...
    nat_filtering: str = "unknown"  # none, endpoint-independent, address-and-port-dependent
    reachability: str = "unknown"  # public / private (from peers' dial-backs)
    relays: tuple[str, ...] = ()  # relays holding a reservation for us
    tun: str | None = None  # TUN interface (up --tun), None when off
    tun_mtu: int = 0
    # packets_out/in, bytes_out/in, dropped, refused, unreachable (see runtime/_tun.py)
    tun_counters: dict[str, int] | None = None


@dataclass(frozen=True)
class PeerInfo(JsonModel):
    agent_id: str
    virtual_address: str
    connected: bool
    trusted: bool
    address: str | None  # "host:port" of the live connection, or last known
    direction: str | None  # "outbound" / "inbound" / None when not connected
    path: str  # "direct" (relayed paths come with NAT traversal)
    rtt_ms: float | None
    streams: int
    last_seen: float | None
    user_agent: str | None


@dataclass(frozen=True)
class PingResult(JsonModel):
    agent_id: str
    rtts_ms: tuple[float, ...]
    sent: int
    received: int
    min_ms: float | None
    avg_ms: float | None
    max_ms: float | None


@dataclass(frozen=True)
class SendReceipt(JsonModel):
    recipient: str
    seq: int
    delivered: bool  # False: stored in the outbox, delivered when the peer is reachable


@dataclass(frozen=True)
class InboxMessage(JsonModel):
    id: int
    sender: str
    seq: int
    sent_at: float
    received_at: float
    text: str


@dataclass(frozen=True)
class TrustedPeer(JsonModel):
    agent_id: str
    since: float


@dataclass(frozen=True)
class PendingTrust(JsonModel):
    agent_id: str
    direction: str  # "in" (they asked us) or "out" (we asked them)
    reason: str
    created: float


@dataclass(frozen=True)
class FileReceipt(JsonModel):
    recipient: str
    name: str
    size: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class Exposure(JsonModel):
    port: int
    name: str | None
    allow: tuple[str, ...]  # empty: every trusted agent


@dataclass(frozen=True)
class Forward(JsonModel):
    id: int
    bind_host: str
    local_port: int
    agent_id: str
    remote_port: int  # 0 when the service is named
    remote_name: str | None = None  # the peer's service exposed under this name


@dataclass(frozen=True)
class BenchResult(JsonModel):
    agent_id: str
    bytes: int
    seconds: float
    throughput_mib_s: float
    rtt_p50_ms: float
    rtt_p99_ms: float


@dataclass(frozen=True)
class GossipMessage(JsonModel):
    """One pub/sub message delivered to a local subscriber (its signature was verified and
    its author allowed by the topic's policy)."""

    id: str  # message ID, hex
    topic: str
    author: str  # agent ID that signed it
    seqno: int
    data: bytes
    received_from: str  # the peer that forwarded it to us
    received_at: float

    @property
    def text(self) -> str:
        """The payload as UTF-8 text (undecodable bytes replaced)."""
        return self.data.decode("utf-8", "replace")

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        del out["data"]
        try:
            out["text"] = self.data.decode("utf-8")
        except UnicodeDecodeError:
            out["text"] = None
        out["data_b64"] = base64.b64encode(self.data).decode("ascii")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GossipMessage:
        fields = dict(data)
        fields["data"] = base64.b64decode(fields.pop("data_b64", ""))
        fields.pop("text", None)
        return super().from_json(fields)

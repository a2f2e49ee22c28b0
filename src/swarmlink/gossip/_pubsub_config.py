"""Configuration and counters of the pub/sub core."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import InvalidArgument
from ._score import ScoreParams

__all__ = ["PubSubConfig", "PubSubStats"]


@dataclass(frozen=True, slots=True)
class PubSubConfig:
    """Parameters of the mesh (GossipSub v1.1 names and defaults where they exist)."""

    #: Target mesh degree per topic, and the band kept by the heartbeat.
    d: int = 6
    d_low: int = 4
    d_high: int = 12
    #: Peers to IHAVE-gossip to per topic and heartbeat (at least; see gossip_factor).
    d_lazy: int = 6
    #: Mesh peers kept by score when pruning an oversubscribed mesh (the rest at random).
    d_score: int = 4
    #: Seconds between heartbeats (mesh maintenance, gossip, decay).
    heartbeat_interval: float = 1.0
    #: Heartbeat windows of the message cache, and how many of them are gossiped.
    history_length: int = 5
    history_gossip: int = 3
    #: Seconds a message ID is remembered as seen (duplicates are dropped).
    seen_ttl: float = 120.0
    #: Seconds a fanout set (topics we publish to without subscribing) lives unused.
    fanout_ttl: float = 60.0
    #: Backoff (s) sent with a PRUNE, and with the PRUNEs of an unsubscribe.
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    #: A GRAFT this soon (s) after our PRUNE costs a second behaviour penalty.
    graft_flood_threshold: float = 10.0
    #: Gossip to this fraction of the eligible non-mesh peers if more than d_lazy.
    gossip_factor: float = 0.25
    #: Times we answer one peer's IWANT for one message.
    gossip_retransmission: int = 3
    #: IHAVE entries accepted per peer per heartbeat (more are penalized and ignored).
    max_ihave_messages: int = 10
    #: Message IDs we ask one peer for (IWANT) per heartbeat.
    max_ihave_length: int = 100
    #: Seconds an IWANT may stay unanswered before the promise counts as broken.
    iwant_followup_time: float = 3.0
    #: Ask another advertiser for a message this many seconds after asking the first.
    iwant_retry: float = 0.5
    #: Every this many heartbeats, graft good peers if the mesh's median score is low.
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    #: Send our own messages to every topic peer above the publish threshold.
    flood_publish: bool = True
    #: Seconds a disconnected peer's penalties are kept (a reconnect does not wipe them).
    retain_score: float = 300.0
    #: Regions: prefer same-region mesh peers, bridge through a few nodes per region.
    region_preference: bool = True
    #: Bridges per region (per topic), and how far (hops) the election looks.
    bridges_per_region: int = 2
    bridge_max_distance: int = 12
    #: Seconds region-election updates are batched before they are sent.
    bridge_advert_delay: float = 0.1
    #: Cross-region IHAVE targets per topic per heartbeat (old messages only).
    cross_region_gossip: int = 1
    #: Remote mesh peers a node keeps when its region has no candidate for it.
    region_fill: int = 1
    #: Peer scoring.
    score: ScoreParams = field(default_factory=ScoreParams)

    def __post_init__(self) -> None:
        if not 1 <= self.d_low <= self.d <= self.d_high:
            raise InvalidArgument("need 1 <= d_low <= d <= d_high")
        if not 0 <= self.d_score <= self.d:
            raise InvalidArgument("need 0 <= d_score <= d")
        if not 1 <= self.history_gossip <= self.history_length:
            raise InvalidArgument("need 1 <= history_gossip <= history_length")
        if self.heartbeat_interval <= 0 or self.seen_ttl <= 0:
            raise InvalidArgument("heartbeat_interval and seen_ttl must be > 0")
        if not 0.0 <= self.gossip_factor <= 1.0:
            raise InvalidArgument("gossip_factor must be in [0, 1]")
        if self.bridges_per_region < 1 or self.bridge_max_distance < 1:
            raise InvalidArgument("bridges_per_region and bridge_max_distance must be >= 1")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise InvalidArgument(f"{f.name} must not be negative")


@dataclass(slots=True)
class PubSubStats:
    """Counters since the core was created (read them; don't write)."""

    #: Our own messages published.
    published: int = 0
    #: Messages delivered to the application (MessageReceived events).
    delivered: int = 0
    #: Copies of messages we already had.
    duplicates: int = 0
    #: Messages that failed verification.
    invalid: int = 0
    #: Messages whose author the topic policy refuses.
    not_allowed: int = 0
    #: Replays older than the author's expired messages.
    stale: int = 0
    #: Messages for topics we don't subscribe to.
    ignored: int = 0
    #: RPCs ignored because the sender was graylisted, or is not a known peer.
    graylisted: int = 0
    unknown_peer: int = 0
    #: Message copies queued for peers (forwarding, publishing, IWANT answers).
    messages_sent: int = 0
    #: IHAVE entries sent and received; message IDs asked (IWANT) and answered.
    ihave_sent: int = 0
    ihave_received: int = 0
    iwant_sent: int = 0
    iwant_received: int = 0
    iwant_served: int = 0
    #: GRAFTs and PRUNEs sent.
    graft_sent: int = 0
    prune_sent: int = 0
    #: Misbehaviour seen: the same message twice from one peer, unrequested duplicates,
    #: IWANT promises not kept, IHAVE over the per-heartbeat budget, GRAFTs in backoff.
    repeats: int = 0
    unrequested: int = 0
    broken_promises: int = 0
    ihave_flood: int = 0
    graft_backoff: int = 0
    #: Message copies dropped because a peer's outbound queue was full.
    queue_full: int = 0
    #: Heartbeats run.
    heartbeats: int = 0

"""Regional clusters for the pub/sub mesh: which nodes bridge a topic between regions.

Every node carries a region label (the runtime's choice: a data centre, a continent, a
latency cluster). With region preference on, a topic's mesh is built from same-region
peers, and only a few *bridges* per region keep cross-region links, so a message enters
each region a handful of times instead of once per random cross-region mesh link.

**The rule.** Each node ranks the members of a topic by ``rank(topic, agent)`` (a hash,
:func:`bridge_rank`); lower is better. The bridges of a region for a topic are the
``bridges_per_region`` best-ranked subscribers of that region (more precisely: of the
region's *connected component* of same-region peer links). Nobody knows the whole region,
so the nodes find them by a bounded distance-vector election over same-region links:

* a node's candidates are itself (distance 0), its same-region subscribed peers with a
  non-negative score (distance 1), and every entry its peers advertised (their distance
  plus one, up to ``max_distance``);
* it keeps the ``bridges_per_region`` best-ranked candidates (shortest distance per
  candidate) and advertises them to its same-region peers in a BRIDGE control entry, but
  never back to the peer it learned an entry from (split horizon), and only when what it
  would advertise to that peer changed; changes are batched for ``bridge_advert_delay``
  (0.1 s) so that a wave of improvements costs one update per peer, not one per step;
* it is a bridge for the topic if it is among its own best candidates.

Views converge in a few network round trips per hop of the region's diameter. When a
bridge leaves, its neighbours drop it at once and the others forget it as distances count
up to ``max_distance`` (bounded counting to infinity); the next-ranked node takes over.

**Links.** A bridge keeps, for every other region among its topic peers, at least one
mesh link (it grafts the best-ranked peer of that region it knows, most likely one of
that region's bridges). Non-bridges graft only same-region peers, and prune the cross-
region links they had grafted themselves; they accept cross-region GRAFTs (from the
other regions' bridges). A node with no same-region peer at all (a component of one)
bridges for nobody: it just keeps ``region_fill`` (1) cross-region mesh links to
receive. IHAVE gossip still goes to one cross-region peer per topic per heartbeat,
advertising only messages at least one heartbeat old (so it never races the mesh), which
repairs a region that its bridges failed.

**Failure modes** (documented, tested where cheap):

* A region split into several components of same-region links elects bridges per
  component: more cross-region links, but every component stays connected.
* Until views converge (joining nodes, warm-up) more nodes think they are bridges; the
  extra links are pruned as the election settles (with the usual PRUNE backoff).
* A trusted but lying peer can advertise made-up agents with tiny ranks at distance 1;
  its region then elects phantoms and keeps no bridges of its own. Delivery still holds:
  the other regions' bridges graft into it, and cross-region IHAVE repairs the rest, but
  latency into and out of that region grows. (Peers are trusted; a liar is a compromised
  member.)
* A bridge that drops messages (Byzantine) leaves its region to the other bridges
  (``bridges_per_region`` >= 2) and to the links other regions' bridges made into it.
* Ranks are fixed per (topic, agent), so one node bridges a topic as long as it lives;
  different topics spread the load over different nodes.
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["BRIDGE_DOMAIN", "BridgeElection", "bridge_rank"]

#: Domain separation of bridge ranks.
BRIDGE_DOMAIN = b"swarmlink/pubsub/bridge\0"


@functools.lru_cache(maxsize=1 << 16)
def bridge_rank(topic: str, agent: str) -> bytes:
    """An agent's rank for bridging ``topic`` (lower is better): 8 bytes of a hash."""
    data = BRIDGE_DOMAIN + topic.encode() + b"\0" + agent.encode()
    return hashlib.sha256(data).digest()[:8]


class BridgeElection:
    """One node's bridge election state for one topic (see the module docstring)."""

    __slots__ = (
        "best",
        "full",
        "local",
        "max_distance",
        "neighbours",
        "sent",
        "slots",
        "topic",
        "vias",
        "views",
    )

    def __init__(self, topic: str, local: str, slots: int, max_distance: int) -> None:
        self.topic = topic
        self.local = local
        self.slots = slots
        self.max_distance = max_distance
        #: Last view each same-region peer advertised to us.
        self.views: dict[str, tuple[tuple[str, int], ...]] = {}
        #: Our best candidates: (agent, distance, the peer we learned it from or "").
        self.best: list[tuple[str, int, str]] = [(local, 0, "")]
        self.full: tuple[tuple[str, int], ...] = ((local, 0),)
        self.vias: frozenset[str] = frozenset()
        #: The neighbours of the last recomputation.
        self.neighbours: list[str] = []
        #: What we last advertised to each peer.
        self.sent: dict[str, tuple[tuple[str, int], ...]] = {}

    def is_bridge(self) -> bool:
        return any(agent == self.local for agent, _, _ in self.best)

    def recompute(self, neighbours: list[str]) -> None:
        """Recompute the best candidates from the current same-region ``neighbours``."""
        self.neighbours = neighbours
        local = self.local
        limit = self.max_distance
        cand: dict[str, tuple[int, str]] = {local: (0, "")}
        for peer in neighbours:
            if peer != local:
                cand[peer] = (1, peer)
        views = self.views
        for peer in neighbours:
            for agent, dist in views.get(peer, ()):
                d = dist + 1
                if d > limit or agent == local:
                    continue
                known = cand.get(agent)
                if known is None or d < known[0]:
                    cand[agent] = (d, peer)
        topic = self.topic
        ranked = sorted((bridge_rank(topic, a), a) for a in cand)[: self.slots]
        self.best = [(a, cand[a][0], cand[a][1]) for _, a in ranked]
        self.full = tuple((a, d) for a, d, _ in self.best)
        self.vias = frozenset(via for _, _, via in self.best)

    def advert_for(self, peer: str) -> tuple[tuple[str, int], ...]:
        """What to advertise to ``peer`` (split horizon: not what we learned from it)."""
        if peer not in self.vias:
            return self.full
        return tuple((a, d) for a, d, via in self.best if via != peer)

    def forget(self, peer: str) -> None:
        self.views.pop(peer, None)
        self.sent.pop(peer, None)

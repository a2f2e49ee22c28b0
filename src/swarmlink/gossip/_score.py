"""Peer scoring for the pub/sub mesh, after GossipSub v1.1 (simplified, same shape).

.. code-block:: text

    score(p) = min(TOPIC_CAP, Σ_topics  w1·P1 + w2·P2 + w3·P3 + w3b·P3b + w4·P4²)
               + w7 · max(0, P7 - behaviour_threshold)²
               + w8 · max(0, P8 - policy_threshold)

* P1 — time in mesh (quanta since GRAFT, capped): a small bonus so good mesh peers are
  not pruned first when the mesh is oversubscribed.
* P2 — first deliveries: messages this peer was the first to bring us (capped).
* P3 — mesh delivery deficit: once a peer has been in our mesh for the activation time,
  ``(threshold - deliveries)²`` if it brought fewer than ``threshold`` (decaying count of
  first and near-first deliveries). Off by default (weight 0): the right threshold depends
  on the topic's message rate, which only the application knows. P3b keeps the deficit a
  peer had when we pruned it, so it cannot be grafted straight back.
* P4 — invalid messages (bad signature, key not matching the author): squared, strongly
  negative. Honest peers verify before forwarding, so an invalid message is the sender's
  own doing.
* P7 — behaviour penalty (squared above a free threshold): GRAFT while backed off, broken
  IWANT promises, the same message sent twice, unrequested duplicates, IHAVE floods,
  IWANTs for messages we never had.
* P8 — policy: messages by authors our topic policy does not allow. Linear and mild above
  a free allowance: the forwarder may legitimately trust that author.

Times in mesh are updated at each decay step (as the spec suggests), so the score only
changes when a counter does and is cached in between. Every counter decays once per
heartbeat (multiplied by its decay factor, set to 0 below ``decay_to_zero``).
Thresholds: below ``gossip_threshold`` no IHAVE/IWANT is exchanged with the peer; below
``publish_threshold`` our own messages are not flood-published to it; below
``graylist_threshold`` its RPCs are ignored entirely; below 0 it is pruned from every
mesh and never grafted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument

__all__ = ["PeerScore", "ScoreParams", "TopicScore"]


@dataclass(frozen=True, slots=True)
class ScoreParams:
    """Weights, caps, decays and thresholds of the score (per-heartbeat decay factors)."""

    #: No gossip (IHAVE/IWANT) to or from peers below this score.
    gossip_threshold: float = -10.0
    #: Our own messages are not flood-published to peers below this score.
    publish_threshold: float = -50.0
    #: RPCs from peers below this score are ignored entirely.
    graylist_threshold: float = -80.0
    #: Opportunistic grafting kicks in when the median mesh score is below this.
    opportunistic_graft_threshold: float = 1.0
    #: Counters below this become 0.
    decay_to_zero: float = 0.01
    #: Cap on the sum of the positive per-topic contributions.
    topic_cap: float = 50.0

    #: P1 (time in mesh): weight, quantum (s) and cap (quanta).
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 300.0
    #: P2 (first deliveries): weight, cap, decay.
    first_delivery_weight: float = 1.0
    first_delivery_cap: float = 25.0
    first_delivery_decay: float = 0.97
    #: P3 (mesh delivery deficit): weight (<= 0; 0 disables), threshold, cap, decay,
    #: near-first window (s) and activation time in the mesh (s).
    mesh_delivery_weight: float = 0.0
    mesh_delivery_threshold: float = 2.0
    mesh_delivery_cap: float = 20.0
    mesh_delivery_decay: float = 0.97
    mesh_delivery_window: float = 0.1
    mesh_delivery_activation: float = 10.0
    #: P3b (sticky mesh failure penalty): weight (<= 0) and decay.
    mesh_failure_weight: float = 0.0
    mesh_failure_decay: float = 0.99
    #: P4 (invalid messages): weight (<= 0, applies to the square) and decay.
    invalid_weight: float = -100.0
    invalid_decay: float = 0.99
    #: P7 (behaviour): weight (<= 0, applies to the square of the excess), free
    #: threshold and decay.
    behaviour_weight: float = -10.0
    behaviour_threshold: float = 4.0
    behaviour_decay: float = 0.95
    #: P8 (messages by authors our policy refuses): weight (<= 0, linear in the
    #: excess), free allowance and decay.
    policy_weight: float = -1.0
    policy_threshold: float = 5.0
    policy_decay: float = 0.9

    def __post_init__(self) -> None:
        if not (self.graylist_threshold <= self.publish_threshold <= self.gossip_threshold <= 0):
            raise InvalidArgument("need graylist <= publish <= gossip threshold <= 0")
        for name in (
            "mesh_delivery_weight",
            "mesh_failure_weight",
            "invalid_weight",
            "behaviour_weight",
            "policy_weight",
        ):
            if getattr(self, name) > 0:
                raise InvalidArgument(f"{name} must be <= 0")
        for name in (
            "first_delivery_decay",
            "mesh_delivery_decay",
            "mesh_failure_decay",
            "invalid_decay",
            "behaviour_decay",
            "policy_decay",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(f"{name} must be in [0, 1)")
        if self.time_in_mesh_quantum <= 0:
            raise InvalidArgument("time_in_mesh_quantum must be > 0")


class TopicScore:
    """Counters of one peer in one topic."""

    __slots__ = (
        "first_deliveries",
        "graft_time",
        "invalid",
        "mesh_deliveries",
        "mesh_failure",
        "mesh_time",
    )

    def __init__(self) -> None:
        #: When the peer joined our mesh, or None while it is not in it.
        self.graft_time: float | None = None
        #: Seconds in our mesh, as of the last decay step (P1 and P3 use it).
        self.mesh_time = 0.0
        self.first_deliveries = 0.0
        self.mesh_deliveries = 0.0
        self.mesh_failure = 0.0
        self.invalid = 0.0

    def deficit(self, params: ScoreParams) -> float:
        """P3's deficit (0 outside the mesh and before activation)."""
        if self.graft_time is None or self.mesh_time < params.mesh_delivery_activation:
            return 0.0
        return max(0.0, params.mesh_delivery_threshold - self.mesh_deliveries)


class PeerScore:
    """The score counters of one peer (see the module docstring)."""

    __slots__ = ("_value", "behaviour", "params", "policy", "topics")

    def __init__(self, params: ScoreParams) -> None:
        self.params = params
        self.topics: dict[str, TopicScore] = {}
        self.behaviour = 0.0
        self.policy = 0.0
        self._value: float | None = 0.0  # cached score; None when a counter changed

    def topic(self, topic: str) -> TopicScore:
        stats = self.topics.get(topic)
        if stats is None:
            stats = self.topics[topic] = TopicScore()
        return stats

    # ---- events ---------------------------------------------------------------------------

    def grafted(self, topic: str, now: float) -> None:
        stats = self.topic(topic)
        stats.graft_time = now
        stats.mesh_time = 0.0
        self._value = None

    def pruned(self, topic: str, now: float) -> None:
        """Left our mesh: a delivery deficit at that time becomes sticky (P3b)."""
        stats = self.topics.get(topic)
        if stats is None or stats.graft_time is None:
            return
        stats.mesh_time = now - stats.graft_time
        deficit = stats.deficit(self.params)
        stats.mesh_failure += deficit * deficit
        stats.graft_time = None
        stats.mesh_time = 0.0
        self._value = None

    def first_delivery(self, topic: str, in_mesh: bool) -> None:
        self._value = None
        p = self.params
        stats = self.topic(topic)
        stats.first_deliveries = min(p.first_delivery_cap, stats.first_deliveries + 1.0)
        if in_mesh:
            stats.mesh_deliveries = min(p.mesh_delivery_cap, stats.mesh_deliveries + 1.0)

    def near_first_delivery(self, topic: str) -> None:
        """A mesh peer brought a duplicate within the near-first window (P3 credit)."""
        self._value = None
        stats = self.topic(topic)
        stats.mesh_deliveries = min(self.params.mesh_delivery_cap, stats.mesh_deliveries + 1.0)

    def invalid_message(self, topic: str) -> None:
        self._value = None
        self.topic(topic).invalid += 1.0

    def penalize(self, amount: float = 1.0) -> None:
        """Add to the behaviour counter (P7)."""
        self._value = None
        self.behaviour += amount

    def not_allowed(self) -> None:
        """The peer forwarded a message by an author our policy refuses (P8)."""
        self._value = None
        self.policy += 1.0

    def forget_topic(self, topic: str) -> None:
        """The peer left ``topic``: drop its counters unless they hold a penalty."""
        stats = self.topics.get(topic)
        if stats is not None and stats.invalid == 0.0 and stats.mesh_failure == 0.0:
            del self.topics[topic]
            self._value = None

    # ---- decay and value ------------------------------------------------------------------

    def decay(self, now: float) -> None:
        """One decay step (call once per heartbeat); also updates the times in mesh."""
        p = self.params
        zero = p.decay_to_zero
        self._value = None
        for stats in self.topics.values():
            if stats.graft_time is not None:
                stats.mesh_time = now - stats.graft_time
            v = stats.first_deliveries * p.first_delivery_decay
            stats.first_deliveries = v if v >= zero else 0.0
            v = stats.mesh_deliveries * p.mesh_delivery_decay
            stats.mesh_deliveries = v if v >= zero else 0.0
            v = stats.mesh_failure * p.mesh_failure_decay
            stats.mesh_failure = v if v >= zero else 0.0
            v = stats.invalid * p.invalid_decay
            stats.invalid = v if v >= zero else 0.0
        v = self.behaviour * p.behaviour_decay
        self.behaviour = v if v >= zero else 0.0
        v = self.policy * p.policy_decay
        self.policy = v if v >= zero else 0.0

    def is_idle(self) -> bool:
        """No counter holds anything (a retained score can be dropped)."""
        return not self.behaviour and not self.policy and not self.topics

    def value(self) -> float:
        """The peer's score (times in mesh as of the last decay step)."""
        cached = self._value
        if cached is not None:
            return cached
        p = self.params
        total = 0.0
        for stats in self.topics.values():
            s = p.first_delivery_weight * stats.first_deliveries
            if stats.graft_time is not None:
                quanta = stats.mesh_time / p.time_in_mesh_quantum
                s += p.time_in_mesh_weight * min(p.time_in_mesh_cap, quanta)
                if p.mesh_delivery_weight:
                    deficit = stats.deficit(p)
                    s += p.mesh_delivery_weight * deficit * deficit
            s += p.mesh_failure_weight * stats.mesh_failure
            s += p.invalid_weight * stats.invalid * stats.invalid
            total += s
        total = min(total, p.topic_cap)
        excess = self.behaviour - p.behaviour_threshold
        if excess > 0:
            total += p.behaviour_weight * excess * excess
        excess = self.policy - p.policy_threshold
        if excess > 0:
            total += p.policy_weight * excess
        self._value = total
        return total

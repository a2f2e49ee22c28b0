"""Parameters and counters of the SWIM membership core."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import InvalidArgument
from ._swim_messages import MAX_UPDATES_PER_MESSAGE

__all__ = ["SwimConfig", "SwimStats"]


@dataclass(frozen=True)
class SwimConfig:
    """Protocol parameters (seconds unless noted). The defaults detect a crash at every
    node of a 10,000-node swarm with 20 ms links within 5 s, with no false positive at
    1 % message loss (see ``swarmlink.sim._swim_sim``). Links much slower than that need
    proportionally larger probe timeouts."""

    #: Time between two probes (scaled by the local health multiplier).
    probe_interval: float = 0.25
    #: Wait for a direct ack before asking for indirect probes.
    probe_timeout: float = 0.2
    #: Further wait for an indirect ack before suspecting the target.
    indirect_timeout: float = 0.3
    #: Members asked to probe the target indirectly.
    indirect_probes: int = 3
    #: An intermediary sends its Nack after this fraction of ``probe_timeout``.
    nack_fraction: float = 0.8
    #: Suspicion timeout with ``suspicion_k`` confirmations (the floor).
    suspicion_min: float = 1.5
    #: Suspicion timeout without any confirmation (the start).
    suspicion_max: float = 4.5
    #: Independent confirmations that bring the timeout down to ``suspicion_min``.
    suspicion_k: int = 3
    #: Period of the fast gossip rounds (only while updates are pending).
    gossip_interval: float = 0.1
    #: Members each gossip round sends to.
    gossip_fanout: int = 4
    #: Gossip rounds also pick members declared dead this recently, so that a member
    #: wrongly declared dead hears it and refutes.
    gossip_to_dead: float = 10.0
    #: Each update is transmitted ``retransmit_mult * ceil(log10(n + 1))`` times.
    retransmit_mult: int = 4
    #: Updates piggybacked on one message.
    max_piggyback: int = 16
    #: Pending updates kept (the most transmitted are dropped beyond).
    max_broadcast_queue: int = 4096
    #: Period of the full-state push-pull with one random member.
    push_pull_interval: float = 30.0
    #: Stretch ``push_pull_interval`` by ``ceil(log2(n) - 5)`` above 32 members (the
    #: state grows with n; gossip does the fast work).
    push_pull_scale: bool = True
    #: Dead and left members are forgotten this long after they died or left.
    dead_reclaim: float = 300.0
    #: Ceiling of the Lifeguard local health score (multiplier = score + 1).
    max_local_health: int = 8

    def __post_init__(self) -> None:
        positive = (
            "probe_interval",
            "probe_timeout",
            "indirect_timeout",
            "suspicion_min",
            "gossip_interval",
            "push_pull_interval",
            "dead_reclaim",
            "gossip_to_dead",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidArgument(f"SwimConfig.{name} must be a positive number")
        if self.suspicion_max < self.suspicion_min:
            raise InvalidArgument("SwimConfig.suspicion_max must be >= suspicion_min")
        if not 0.0 < self.nack_fraction < 1.0:
            raise InvalidArgument("SwimConfig.nack_fraction must be in (0, 1)")
        if self.nack_fraction * self.probe_timeout >= self.indirect_timeout:
            raise InvalidArgument(
                "SwimConfig.indirect_timeout must exceed nack_fraction * probe_timeout "
                "(the Nacks must arrive before the probe ends)"
            )
        counts = {
            "indirect_probes": (0, 64),
            "suspicion_k": (0, 64),
            "gossip_fanout": (1, 64),
            "retransmit_mult": (1, 64),
            "max_piggyback": (1, MAX_UPDATES_PER_MESSAGE),
            "max_broadcast_queue": (1, 1 << 20),
            "max_local_health": (0, 64),
        }
        for name, (low, high) in counts.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgument(f"SwimConfig.{name} must be an integer in {low}..{high}")


@dataclass(slots=True)
class SwimStats:
    """Counters of one node (monotonic; ``max_local_health`` is the highest Lifeguard
    score reached so far)."""

    messages_sent: int = 0
    messages_received: int = 0
    updates_sent: int = 0
    updates_received: int = 0
    probes: int = 0
    probe_failures: int = 0
    indirect_probes: int = 0
    nacks_received: int = 0
    missed_nacks: int = 0
    relays: int = 0
    gossip_rounds: int = 0
    push_pulls: int = 0
    suspicions: int = 0
    declared_dead: int = 0
    refutations: int = 0
    max_local_health: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

"""Deterministic gossip simulations: the real membership and pub/sub cores of
:mod:`swarmlink.gossip` over :class:`~swarmlink.sim._net.SimNet` (virtual time, link
latency and jitter, loss, partitions, crashed nodes), reproducible from a seed.

- :func:`run_pubsub_sim`: a GossipSub-style mesh over a random peer graph; publications
  from random live nodes; delivery ratio to live honest subscribers, time and hops to
  99.9 % and 100 %, redundancy, bytes per node per second, forged messages delivered;
  Byzantine nodes that drop, forge and flood; churn; regional clusters.
- :func:`run_swim_sim`: SWIM + Lifeguard membership; crashes, leaves and joins; failure
  detection time (first node and every live node), false positives, bytes per node per
  second.
"""

from __future__ import annotations

from ._pubsub_sim import PubSubSimConfig, PubSubSimResult, run_pubsub_sim
from ._swim_sim import SwimSimConfig, SwimSimResult, run_swim_sim

__all__ = [
    "PubSubSimConfig",
    "PubSubSimResult",
    "SwimSimConfig",
    "SwimSimResult",
    "run_pubsub_sim",
    "run_swim_sim",
]

"""Events of the gossip cores (frozen dataclasses), in one place.

- membership (:mod:`._swim_events`): MemberJoined, MemberSuspected, MemberFailed,
  MemberLeft, MemberRecovered, MemberUpdated, Refuted;
- pub/sub (:mod:`._pubsub_events`): MessageReceived, MessageRejected, PeerGrafted,
  PeerPruned;
- replicated state (:mod:`._replica_events`): StateChanged, StateCreated.
"""

from __future__ import annotations

from ._pubsub_events import (
    MessageReceived,
    MessageRejected,
    PeerGrafted,
    PeerPruned,
    PubSubEvent,
)
from ._replica_events import ReplicaEvent, StateChanged, StateCreated
from ._swim_events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspected,
    MemberUpdated,
    Refuted,
    SwimEvent,
)

__all__ = [
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberRecovered",
    "MemberSuspected",
    "MemberUpdated",
    "MessageReceived",
    "MessageRejected",
    "PeerGrafted",
    "PeerPruned",
    "PubSubEvent",
    "Refuted",
    "ReplicaEvent",
    "StateChanged",
    "StateCreated",
    "SwimEvent",
]

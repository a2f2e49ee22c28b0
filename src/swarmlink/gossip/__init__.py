"""swarmlink.gossip: sans-I/O cores for sharing knowledge without a broker.

- **Membership** (:class:`Membership`): SWIM with the Lifeguard refinements (indirect
  probes, suspicion with confirmations, local-health backoff), piggybacked and fast
  gossip dissemination, push-pull full sync.
- **Topic pub/sub** (:class:`PubSub`): a GossipSub-style mesh per topic (D / D_low /
  D_high, heartbeat, IHAVE/IWANT lazy repair, seen-cache), signed messages verified on
  receipt, peer scoring, regional clusters joined by a few bridge links.
- **Replicated state** (:class:`Replicas`, :class:`State`): delta-state CRDTs (LWW
  register/map, add-wins OR-set, PN-counter) with version vectors, delta propagation
  and periodic anti-entropy.

The asyncio glue is :mod:`swarmlink.runtime._gossipsvc`; the simulators are
:mod:`swarmlink.sim.gossip`.
"""

from __future__ import annotations

from . import events
from ._crdt import (
    MAX_KEYS,
    MAX_SET_ELEMENTS,
    MAX_VALUE_SIZE,
    Kind,
    LWWMap,
    LWWRegister,
    Op,
    ORSet,
    PNCounter,
    State,
    Value,
    VersionVector,
)
from ._names import STATE_TOPIC_PREFIX, validate_region
from ._pubsub import PubSub, allow_any
from ._pubsub_config import PubSubConfig, PubSubStats
from ._pubsub_messages import (
    MAX_MESSAGE_DATA,
    MAX_RPC_SIZE,
    MAX_TOPIC_LENGTH,
    Message,
    Rpc,
    decode_rpc,
    encode_rpc,
    message_id,
    sign_message,
    validate_topic,
    verify_message,
)
from ._replica import (
    MAX_REPLICA_MESSAGE,
    MAX_STATE_NAME,
    ReplicaConfig,
    ReplicaMessage,
    Replicas,
    ReplicaStats,
    decode_replica_message,
    encode_replica_message,
    validate_state_name,
)
from ._swim import InitialView, MemberInfo, Membership, MemberState, SwimConfig, SwimStats
from ._swim_messages import (
    MAX_REGION_LENGTH,
    MAX_SWIM_MESSAGE,
    SwimMessage,
    decode_swim,
    encode_swim,
)

__all__ = [
    "MAX_KEYS",
    "MAX_MESSAGE_DATA",
    "MAX_REGION_LENGTH",
    "MAX_REPLICA_MESSAGE",
    "MAX_RPC_SIZE",
    "MAX_SET_ELEMENTS",
    "MAX_STATE_NAME",
    "MAX_SWIM_MESSAGE",
    "MAX_TOPIC_LENGTH",
    "MAX_VALUE_SIZE",
    "STATE_TOPIC_PREFIX",
    "InitialView",
    "Kind",
    "LWWMap",
    "LWWRegister",
    "MemberInfo",
    "MemberState",
    "Membership",
    "Message",
    "ORSet",
    "Op",
    "PNCounter",
    "PubSub",
    "PubSubConfig",
    "PubSubStats",
    "ReplicaConfig",
    "ReplicaMessage",
    "ReplicaStats",
    "Replicas",
    "Rpc",
    "State",
    "SwimConfig",
    "SwimMessage",
    "SwimStats",
    "Value",
    "VersionVector",
    "allow_any",
    "decode_replica_message",
    "decode_rpc",
    "decode_swim",
    "encode_replica_message",
    "encode_rpc",
    "encode_swim",
    "events",
    "message_id",
    "sign_message",
    "validate_region",
    "validate_state_name",
    "validate_topic",
    "verify_message",
]

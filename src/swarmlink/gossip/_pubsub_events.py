"""Events of the pub/sub core (:class:`~swarmlink.gossip._pubsub.PubSub`), drained with
``PubSub.events()``."""

from __future__ import annotations

from dataclasses import dataclass

from ._pubsub_messages import Message

__all__ = [
    "MessageReceived",
    "MessageRejected",
    "PeerGrafted",
    "PeerPruned",
    "PubSubEvent",
]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A valid message, new to us, from an allowed author on a topic we subscribe to.

    Delivered once per message ID; it has been (or is being) forwarded to our mesh.
    """

    #: The topic it was published to (``message.topic``).
    topic: str
    #: The verified message.
    message: Message
    #: Its ID (:func:`~swarmlink.gossip._pubsub_messages.message_id`).
    msg_id: bytes
    #: The peer that delivered it to us first (not necessarily the author).
    from_peer: str
    #: Virtual time it arrived (the ``now`` of the ``receive`` call).
    received_at: float


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A message we dropped because it was invalid or its author is not allowed."""

    #: ``"invalid"`` (signature or author key did not verify: the peer was penalized),
    #: ``"not-allowed"`` (the topic policy refuses the author; mild penalty) or
    #: ``"stale"`` (a seqno older than what this author's expired messages reached).
    reason: str
    #: The topic the message claims.
    topic: str
    #: The ID it claims.
    msg_id: bytes
    #: The peer that sent it.
    from_peer: str


@dataclass(frozen=True, slots=True)
class PeerGrafted:
    """``peer`` joined our mesh for ``topic`` (we grafted it, or accepted its GRAFT)."""

    topic: str
    peer: str


@dataclass(frozen=True, slots=True)
class PeerPruned:
    """``peer`` left our mesh for ``topic`` (pruned by us or by it, or it went away)."""

    topic: str
    peer: str


#: Any event of the pub/sub core.
PubSubEvent = MessageReceived | MessageRejected | PeerGrafted | PeerPruned

"""Events a :class:`~swarmlink.trust.TrustBook` reports from its commands and ``receive``.

They mirror the trust events of :mod:`swarmlink.runtime.events` field for field (same
class names, same field names and order), so the runtime maps them 1:1. They are
separate classes because the trust layer sits *below* the runtime: these carry no JSON
``type`` discriminator and share the :class:`TrustEvent` base, so a caller can route
every trust event with one ``isinstance`` check.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrustEstablished", "TrustEvent", "TrustRejected", "TrustRequested", "TrustRevoked"]


@dataclass(frozen=True)
class TrustEvent:
    """Base class of every trust event.

    Attributes:
        agent_id: The other agent (the peer the event is about).
    """

    agent_id: str


@dataclass(frozen=True)
class TrustRequested(TrustEvent):
    """The peer asks us for trust; answer with ``approve`` or ``reject``.

    Reported when a new request arrives, or when a pending one is repeated with a
    different reason (a verbatim repeat, e.g. a redelivery, is absorbed silently).

    Attributes:
        agent_id: The agent asking.
        reason: Its stated reason, already checked (at most ``MAX_REASON_LENGTH``
            characters, one line, no control characters); may be empty.
    """

    reason: str


@dataclass(frozen=True)
class TrustEstablished(TrustEvent):
    """Trust with the peer now holds on our side.

    Reported when we approve a request, when the peer approves ours, and when two
    requests cross (each side asked the other: both are approved at once).

    Attributes:
        agent_id: The agent now trusted.
    """


@dataclass(frozen=True)
class TrustRejected(TrustEvent):
    """The peer rejected our request; it is no longer pending.

    Attributes:
        agent_id: The agent that rejected us.
        reason: The peer's reason, checked like a request reason; may be empty.
    """

    reason: str


@dataclass(frozen=True)
class TrustRevoked(TrustEvent):
    """Trust with the peer was withdrawn; it is no longer trusted.

    Attributes:
        agent_id: The agent no longer trusted.
        by_peer: ``True`` if the peer revoked (we received its REVOKE), ``False`` if we
            did (our own ``revoke`` command).
    """

    by_peer: bool

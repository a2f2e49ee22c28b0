"""Events a :class:`~swarmlink.trust.TrustBook` reports from its commands and ``receive``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrustEstablished", "TrustEvent", "TrustRejected", "TrustRequested", "TrustRevoked"]


@dataclass(frozen=True)
class TrustEvent:
    """Base class."""

    #: The other agent.
    agent_id: str


@dataclass(frozen=True)
class TrustRequested(TrustEvent):
    """The peer asks us for trust; answer with approve or reject."""

    #: The peer's stated reason (at most MAX_REASON_LENGTH characters).
    reason: str


@dataclass(frozen=True)
class TrustEstablished(TrustEvent):
    """Trust now holds both ways (approval, or crossed requests)."""


@dataclass(frozen=True)
class TrustRejected(TrustEvent):
    """The peer rejected our request."""

    #: Empty unless the peer gave one.
    reason: str


@dataclass(frozen=True)
class TrustRevoked(TrustEvent):
    """Trust was withdrawn; ``by_peer`` tells who did it."""

    by_peer: bool

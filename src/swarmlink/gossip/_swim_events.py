"""Events the SWIM membership core reports (drained with ``Membership.events()``).

Every event names the ``agent`` it is about, the ``incarnation`` the change carried and
the virtual ``time`` at which the local node applied it. Members of a shared initial view
(``Membership(initial=...)``) are known from the start and get no :class:`MemberJoined`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberRecovered",
    "MemberSuspected",
    "MemberUpdated",
    "Refuted",
    "SwimEvent",
]


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member we did not know (or that had left) is alive."""

    #: The member's agent ID.
    agent: str
    #: Its incarnation number when we learned of it.
    incarnation: int
    #: When we learned of it (virtual seconds).
    time: float
    #: Its region label ("" if it gave none).
    region: str


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    """A live member failed a probe (ours or someone else's) and is now suspect. It is
    declared dead (:class:`MemberFailed`) unless it refutes in time."""

    #: The suspected member.
    agent: str
    #: The incarnation it is suspected at.
    incarnation: int
    #: When we started suspecting it.
    time: float
    #: The member whose probe failed (the first one we heard of).
    suspected_by: str


@dataclass(frozen=True, slots=True)
class MemberFailed:
    """A member was declared dead: its suspicion expired here or elsewhere."""

    #: The failed member.
    agent: str
    #: The incarnation it was declared dead at.
    incarnation: int
    #: When we marked it dead.
    time: float
    #: Who declared it dead (us, or the node whose ``Dead`` update reached us first).
    declared_by: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member announced that it leaves the swarm (graceful; not a failure)."""

    #: The member that left.
    agent: str
    #: The incarnation of its leave announcement.
    incarnation: int
    #: When we learned of it.
    time: float


@dataclass(frozen=True, slots=True)
class MemberRecovered:
    """A suspect or dead member proved alive with a higher incarnation (it refuted the
    suspicion, or restarted)."""

    #: The member.
    agent: str
    #: Its new incarnation.
    incarnation: int
    #: When we learned of it.
    time: float
    #: The state it recovered from: ``"suspect"`` or ``"dead"``.
    previous: str


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """A live member announced a new region label (with a new incarnation)."""

    #: The member.
    agent: str
    #: The incarnation carrying the new label.
    incarnation: int
    #: When we learned of it.
    time: float
    #: The new region label.
    region: str


@dataclass(frozen=True, slots=True)
class Refuted:
    """We heard that *we* are suspect, dead or left, and refuted it by bumping our own
    incarnation and gossiping that we are alive (Lifeguard also counts this against our
    local health)."""

    #: The local agent ID.
    agent: str
    #: Our new incarnation.
    incarnation: int
    #: When we refuted.
    time: float
    #: What we were accused of: ``"suspect"``, ``"dead"``, ``"left"`` or ``"alive"`` (a
    #: stale alive claim with a higher incarnation, e.g. from before a restart).
    accused: str


SwimEvent = (
    MemberJoined
    | MemberSuspected
    | MemberFailed
    | MemberLeft
    | MemberRecovered
    | MemberUpdated
    | Refuted
)

"""Building blocks of the SWIM core: member states, the shared initial view, the per-node
member record and the transmit-limited broadcast queue.

Memory layout (why :class:`InitialView` exists): a simulation of 10,000 nodes where every
node keeps a private 10,000-entry table would hold 10^8 records. Instead, all simulated
nodes share one immutable :class:`InitialView` (every agent alive at incarnation 0 with its
region, plus the prebuilt ``Alive`` updates describing them), and each node stores only
*overrides*: a small record for every member whose state differs from that view (crashed,
refuted, left, joined later). A real node passes no initial view and keeps every member
it learns of as an override, which is the ordinary member table.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InvalidArgument
from ._swim_messages import (
    _AGENT_RE,
    Alive,
    Update,
    check_region,
)

__all__ = ["BroadcastQueue", "InitialView", "MemberInfo", "MemberState"]

# Internal state codes (ints compare and index fast); MemberState is the public face.
ALIVE = 0
SUSPECT = 1
DEAD = 2
LEFT = 3
#: A member of the initial view that was reaped: remembered only as "not a member".
REMOVED = 4


class MemberState(enum.StrEnum):
    """A member's state as the local node sees it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


STATE_NAMES = (MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as the local node sees it (a snapshot)."""

    #: The member's agent ID.
    agent: str
    #: alive, suspect, dead or left.
    state: MemberState
    #: The member's incarnation number (only the member itself raises it).
    incarnation: int
    #: Its region label ("" if none).
    region: str
    #: When its state last changed here (virtual seconds; construction time for members
    #: of the initial view that never changed).
    since: float


class InitialView:
    """An immutable starting membership shared by many cores: every agent alive at
    incarnation 0 in its region. Build one and pass the *same object* to every core
    (``Membership(initial=view)``); a plain mapping passed instead is wrapped per core,
    which is fine for a handful of nodes but shares nothing."""

    __slots__ = ("agents", "alive")

    def __init__(self, regions: Mapping[str, str]) -> None:
        for agent, region in regions.items():
            if not isinstance(agent, str) or _AGENT_RE.fullmatch(agent) is None:
                raise InvalidArgument(f"bad agent ID in the initial view: {agent!r:.80}")
            check_region(region)
        #: The agents in sorted order (probing walks this array).
        self.agents: tuple[str, ...] = tuple(sorted(regions))
        #: agent -> its ``Alive(agent, 0, region)`` update (shared by every node's state).
        self.alive: dict[str, Alive] = {a: Alive(a, 0, regions[a]) for a in self.agents}

    def __len__(self) -> int:
        return len(self.agents)


class Member:
    """Mutable per-node record of a member that differs from the initial view."""

    __slots__ = ("by", "incarnation", "region", "since", "state")

    def __init__(self, state: int, incarnation: int, region: str, since: float, by: str) -> None:
        self.state = state
        self.incarnation = incarnation
        self.region = region
        self.since = since
        #: Who suspected it / declared it dead (for the state we gossip in push-pull).
        self.by = by


class BroadcastQueue:
    """Pending updates, at most one per agent (a newer update about an agent replaces
    the older one and starts again at zero transmissions). Each message takes the
    updates transmitted least often so far (newest first among equals); an update is
    dropped once it has been transmitted ``limit`` times. Beyond ``max_size`` updates the
    most transmitted (then oldest) one is dropped, which bounds the cost of a storm of
    changes (a healing partition)."""

    __slots__ = ("_order", "entries", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        #: agent -> [update, transmissions, order] (read-only outside this class).
        self.entries: dict[str, list[object]] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def push(self, update: Update) -> None:
        self._order += 1
        items = self.entries
        items.pop(update.agent, None)
        items[update.agent] = [update, 0, self._order]
        if len(items) > self.max_size:
            worst = max(items.values(), key=_drop_key)
            del items[worst[0].agent]  # type: ignore[attr-defined]

    def pending(self, agent: str) -> Update | None:
        entry = self.entries.get(agent)
        return None if entry is None else entry[0]  # type: ignore[return-value]

    def take(self, count: int, limit: int) -> list[Update]:
        """Up to ``count`` updates for one message; each counts one transmission."""
        items = self.entries
        if not items or count <= 0:
            return []
        chosen = (
            list(items.values())
            if len(items) <= count
            else heapq.nsmallest(count, items.values(), key=_take_key)
        )
        out: list[Update] = []
        for entry in chosen:
            update: Update = entry[0]  # type: ignore[assignment]
            out.append(update)
            sent = entry[1] + 1  # type: ignore[operator]
            if sent >= limit:
                del items[update.agent]
            else:
                entry[1] = sent
        return out


def _take_key(entry: list[object]) -> tuple[int, int]:
    return entry[1], -entry[2]  # type: ignore[return-value,operator]


def _drop_key(entry: list[object]) -> tuple[int, int]:
    return entry[1], -entry[2]  # type: ignore[return-value,operator]

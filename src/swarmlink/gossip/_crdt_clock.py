"""Logical time for the CRDTs: dots, version vectors, causal contexts, hybrid logical
clocks, and the agent table the encodings share.

* A **dot** ``(agent, n)`` names the ``n``-th event of ``agent`` (``n >= 1``).
* A **version vector** maps agents to counters; it stands for the set of dots
  ``{(a, 1..vv[a])}``. Merge is the pointwise maximum.
* A **causal context** (Almeida, Shoker, Baquero, *Delta state replicated data types*,
  2018) is a version vector plus a *dot cloud*: dots seen out of order, beyond a gap.
  It is kept *compact*: no cloud dot is covered by the vector, and ``(a, vv[a] + 1)`` is
  never in the cloud (it is folded into the vector). Deltas that arrive out of order
  leave dots in the cloud until the gap is filled, normally by anti-entropy.
* A **hybrid logical clock** (Kulkarni et al., *Logical physical clocks*, 2014) stamps
  LWW writes with ``(wall ms, logical, agent)``: close to physical time, strictly
  increasing per agent, and, through :meth:`Hlc.tick`'s ``after``, greater than the
  stamp of the value being overwritten, so a write always supersedes what its writer
  saw even if the writer's clock is behind. The agent breaks ties between concurrent
  writes with equal ``(wall, logical)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..errors import InvalidArgument, StateError
from ._crdt_values import agent_or_bad, bad, check_agent, int_or_bad, list_or_bad

__all__ = [
    "MAX_CLOUD_DOTS",
    "MAX_HLC_LOGICAL",
    "MAX_HLC_WALL",
    "MAX_SEQUENCE",
    "CausalContext",
    "Dot",
    "Hlc",
    "Timestamp",
    "VersionVector",
]

Dot: TypeAlias = tuple[str, int]
"""``(agent, n)``: the ``n``-th event (``n >= 1``) of ``agent``."""

#: Largest dot counter / version-vector entry.
MAX_SEQUENCE = 2**63 - 1
#: Largest HLC wall-clock part, in milliseconds (the year 10889).
MAX_HLC_WALL = 2**48 - 1
#: Largest HLC logical part; past it the clock moves its wall part on by 1 ms.
MAX_HLC_LOGICAL = 2**32 - 1
#: Dots a decoded causal context may hold in its cloud (untrusted input).
MAX_CLOUD_DOTS = 8192


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    """An HLC stamp. Ordered by ``(wall, logical, agent)``."""

    #: Milliseconds of physical time (or more, if the writer's clock lagged).
    wall: int
    #: Orders stamps with the same ``wall``.
    logical: int
    #: The writer; breaks ties between concurrent writes.
    agent: str


class Hlc:
    """The hybrid logical clock of one agent (sans-I/O: ``now`` is passed in)."""

    __slots__ = ("_logical", "_wall", "agent")

    def __init__(self, agent: str) -> None:
        self.agent = check_agent(agent)
        self._wall = 0
        self._logical = 0

    def tick(self, now: float, after: Timestamp | None = None) -> Timestamp:
        """A fresh stamp for a local write at physical time ``now`` (seconds), greater
        than every stamp this clock gave before and than ``after`` (the stamp of the
        value the write replaces).

        ``after`` only raises this stamp; it does not drag the clock forward for other
        keys, so one far-future stamp from a peer does not skew every later write.
        """
        if not math.isfinite(now) or now < 0:
            raise InvalidArgument(f"now must be a finite non-negative time, not {now!r}")
        physical = min(int(now * 1000), MAX_HLC_WALL)
        if physical > self._wall:
            self._wall, self._logical = physical, 0
        else:
            self._wall, self._logical = _successor(self._wall, self._logical)
        wall, logical = self._wall, self._logical
        if after is not None and (after.wall, after.logical) >= (wall, logical):
            wall, logical = _successor(after.wall, after.logical)
        return Timestamp(wall, logical, self.agent)


def _successor(wall: int, logical: int) -> tuple[int, int]:
    if logical < MAX_HLC_LOGICAL:
        return wall, logical + 1
    if wall >= MAX_HLC_WALL:
        raise StateError("the hybrid logical clock is exhausted")
    return wall + 1, 0


class VersionVector:
    """Agent -> counter (only positive counters are stored). Mutable; merge is in place."""

    __slots__ = ("_counters",)

    def __init__(self, counters: Mapping[str, int] | None = None) -> None:
        self._counters: dict[str, int] = {}
        for agent, n in (counters or {}).items():
            check_agent(agent)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SEQUENCE:
                raise InvalidArgument(f"counters are integers in 0..{MAX_SEQUENCE}, not {n!r}")
            if n:
                self._counters[agent] = n

    def get(self, agent: str) -> int:
        """The counter of ``agent`` (0 if absent)."""
        return self._counters.get(agent, 0)

    def __contains__(self, dot: object) -> bool:
        """Whether the dot ``(agent, n)`` is covered (``n <= vv[agent]``)."""
        if not isinstance(dot, tuple) or len(dot) != 2:
            return False
        return bool(0 < dot[1] <= self._counters.get(dot[0], 0))

    def increment(self, agent: str) -> int:
        """Advance ``agent``'s counter by one and return it."""
        n = self._counters.get(agent, 0) + 1
        if n > MAX_SEQUENCE:
            raise StateError(f"the counter of {agent!r} is exhausted")
        self._counters[agent] = n
        return n

    def merge(self, other: VersionVector) -> bool:
        """Pointwise maximum with ``other``; whether anything changed."""
        mine = self._counters
        changed = False
        for agent, n in other._counters.items():
            if n > mine.get(agent, 0):
                mine[agent] = n
                changed = True
        return changed

    def __le__(self, other: VersionVector) -> bool:
        """Whether ``other`` covers every dot of this vector (dominates or equals)."""
        theirs = other._counters
        return all(n <= theirs.get(agent, 0) for agent, n in self._counters.items())

    def __ge__(self, other: VersionVector) -> bool:
        return other <= self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionVector) and self._counters == other._counters

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __len__(self) -> int:
        return len(self._counters)

    def __repr__(self) -> str:
        return f"VersionVector({dict(sorted(self._counters.items()))!r})"

    def items(self) -> list[tuple[str, int]]:
        """``(agent, counter)`` pairs, sorted by agent."""
        return sorted(self._counters.items())

    def to_dict(self) -> dict[str, int]:
        """A plain copy."""
        return dict(self._counters)

    def copy(self) -> VersionVector:
        clone = VersionVector()
        clone._counters = dict(self._counters)
        return clone

    def total(self) -> int:
        """Number of dots covered (sum of the counters)."""
        return sum(self._counters.values())

    def set_unchecked(self, agent: str, n: int) -> None:
        """Set a counter from already validated input (decoders)."""
        if n:
            self._counters[agent] = n

    def encode_flat(self, index: Mapping[str, int]) -> list[int]:
        """``[agent index, n, ...]`` sorted by agent index (see :class:`AgentTable`)."""
        pairs = sorted((index[a], n) for a, n in self._counters.items())
        return [x for pair in pairs for x in pair]

    @classmethod
    def decode_flat(cls, items: object, agents: list[str], max_len: int) -> VersionVector:
        """Inverse of :meth:`encode_flat` for untrusted input."""
        flat = list_or_bad(items, max_len, "a version vector", multiple=2)
        vv = cls()
        for i in range(0, len(flat), 2):
            agent = agent_at(agents, flat[i])
            if agent in vv._counters:
                raise bad("agent repeated in a version vector")
            vv._counters[agent] = int_or_bad(flat[i + 1], 1, MAX_SEQUENCE, "a counter")
        return vv


class CausalContext:
    """A compact causal context: a version vector plus a dot cloud."""

    __slots__ = ("cloud", "vv")

    def __init__(self) -> None:
        self.vv = VersionVector()
        self.cloud: set[Dot] = set()

    def __contains__(self, dot: Dot) -> bool:
        return dot in self.vv or dot in self.cloud

    def max_of(self, agent: str) -> int:
        """Highest counter of ``agent`` seen, contiguous or not."""
        top = self.vv.get(agent)
        for a, n in self.cloud:
            if a == agent and n > top:
                top = n
        return top

    def next_dot(self, agent: str) -> Dot:
        """The dot of ``agent``'s next event (not added to the context)."""
        n = self.max_of(agent) + 1
        if n > MAX_SEQUENCE:
            raise StateError(f"the dots of {agent!r} are exhausted")
        return (agent, n)

    def add(self, dot: Dot) -> None:
        """Record ``dot`` as seen."""
        if dot not in self:
            self.cloud.add(dot)
            self.compact()

    def merge(self, other: CausalContext) -> bool:
        """Union with ``other``; whether anything changed."""
        changed = self.vv.merge(other.vv)
        fresh = other.cloud - self.cloud
        if fresh:
            self.cloud |= fresh
        if changed or fresh:
            self.compact()
            return True
        return False

    def compact(self) -> None:
        """Fold cloud dots that continue the vector into it; drop covered ones."""
        if not self.cloud:
            return
        vv = self.vv
        keep: set[Dot] = set()
        for agent, n in sorted(self.cloud):
            top = vv.get(agent)
            if n == top + 1:
                vv.set_unchecked(agent, n)
            elif n > top:
                keep.add((agent, n))
        self.cloud = keep

    def covered_by(self, vv: VersionVector) -> bool:
        """Whether every dot of this context is in ``vv`` (it has nothing ``vv`` lacks)."""
        return self.vv <= vv and all(dot in vv for dot in self.cloud)

    def size(self) -> int:
        """Number of dots in the context."""
        return self.vv.total() + len(self.cloud)

    def dots(self) -> Iterator[Dot]:
        """Every dot of the context (the vector expanded; use only when :meth:`size` is
        small)."""
        for agent, top in self.vv.items():
            for n in range(1, top + 1):
                yield (agent, n)
        yield from self.cloud

    def agents(self) -> set[str]:
        """Agents with a dot in the context."""
        names = {a for a, _ in self.vv.items()}
        names.update(a for a, _ in self.cloud)
        return names

    def copy(self) -> CausalContext:
        clone = CausalContext()
        clone.vv = self.vv.copy()
        clone.cloud = set(self.cloud)
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CausalContext) and (self.vv, self.cloud) == (
            other.vv,
            other.cloud,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CausalContext({self.vv!r}, cloud={sorted(self.cloud)!r})"

    def encode_parts(self, index: Mapping[str, int]) -> tuple[list[int], list[int]]:
        """``(vector, cloud)``, both flat ``[agent index, n, ...]`` lists, sorted."""
        cloud = sorted((index[a], n) for a, n in self.cloud)
        return self.vv.encode_flat(index), [x for pair in cloud for x in pair]

    @classmethod
    def decode_parts(
        cls, vector: object, cloud: object, agents: list[str], max_agents: int
    ) -> CausalContext:
        """Inverse of :meth:`encode_parts` for untrusted input (the result is compacted)."""
        cc = cls()
        cc.vv = VersionVector.decode_flat(vector, agents, max_agents)
        flat = list_or_bad(cloud, MAX_CLOUD_DOTS, "a dot cloud", multiple=2)
        cc.cloud = set(decode_dots(flat, agents))
        cc.compact()
        return cc


# --------------------------------------------------------------------------- agent table


class AgentTable:
    """The agents an encoding names, listed once and referred to by index."""

    __slots__ = ("index", "names")

    def __init__(self, agents: Iterable[str]) -> None:
        self.names = sorted(set(agents))
        self.index = {name: i for i, name in enumerate(self.names)}

    def dots(self, dots: Iterable[Dot]) -> list[int]:
        """``[agent index, n, ...]`` for ``dots``, sorted."""
        pairs = sorted((self.index[a], n) for a, n in dots)
        return [x for pair in pairs for x in pair]


def decode_agents(item: object, max_agents: int) -> list[str]:
    """An agent table from untrusted input (valid, distinct names)."""
    names = [agent_or_bad(a) for a in list_or_bad(item, max_agents, "the agent table")]
    if len(set(names)) != len(names):
        raise bad("agent table repeats a name")
    return names


def agent_at(agents: list[str], item: object) -> str:
    """The agent at index ``item`` of the table, for untrusted input."""
    return agents[int_or_bad(item, 0, len(agents) - 1, "an agent index")]


def decode_dots(flat: list[Any], agents: list[str]) -> Iterator[Dot]:
    """Dots from a flat ``[agent index, n, ...]`` list (length already checked even)."""
    for i in range(0, len(flat), 2):
        yield (agent_at(agents, flat[i]), int_or_bad(flat[i + 1], 1, MAX_SEQUENCE, "a dot"))

"""Iterative Kademlia lookup over disjoint paths (S/Kademlia), as a sans-I/O state machine.

The caller owns the network. It asks :meth:`Lookup.next_queries` whom to query, sends a
FIND_NODE / FIND_VALUE for :attr:`Lookup.target` to each, and reports back with
:meth:`on_response` (the contacts the peer returned, and a value if it had one) or
:meth:`on_failure`. Unanswered queries fail at their deadline (:meth:`get_timer` /
:meth:`handle_timer`). Time is always passed in.

Disjoint paths: the seed contacts are dealt round-robin onto ``paths`` independent
shortlists, and a node queried (or learned) by one path is never used by another. A
minority of malicious nodes can then only poison the paths that happen to reach them; the
lookup still succeeds if any one path reaches the target's neighbourhood. Each path keeps
``alpha`` queries in flight and finishes when its ``k`` closest known nodes have all answered
or failed (or a value was found, for FIND_VALUE).
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import InvalidArgument

__all__ = [
    "ALPHA",
    "DISJOINT_PATHS",
    "LOOKUP_K",
    "MAX_CONTACTS_PER_RESPONSE",
    "QUERY_ATTEMPTS",
    "QUERY_TIMEOUT",
    "Lookup",
    "LookupStats",
    "Peer",
]

#: Queries in flight per path.
ALPHA = 3
#: Independent paths a lookup follows.
DISJOINT_PATHS = 3
#: Closest nodes a lookup converges on (the replication factor).
LOOKUP_K = 20
#: Seconds a query may stay unanswered before it counts as failed.
QUERY_TIMEOUT = 2.0
#: Times a node is asked before a timeout counts as a failure (datagram-style loss).
QUERY_ATTEMPTS = 2
#: Contacts taken from one response (the rest are ignored: untrusted input).
MAX_CONTACTS_PER_RESPONSE = 20

V = TypeVar("V")


@dataclass(frozen=True)
class Peer:
    """What a lookup needs to know about a node: its ID (agent ID) and XOR key."""

    agent_id: str
    node_id: bytes


@dataclass
class LookupStats:
    """Counters for the simulator and benchmarks."""

    queries: int = 0
    responses: int = 0
    failures: int = 0
    #: Depth (1 = a seed) of the deepest node that answered.
    hops: int = 0


@dataclass
class _Candidate:
    peer: Peer
    distance: int
    path: int
    depth: int
    state: str = "new"  # new → inflight → answered | failed
    deadline: float = 0.0
    attempts: int = 0


@dataclass
class _Path:
    index: int
    heap: list[tuple[int, str]] = field(default_factory=list)  # (distance, agent_id), unqueried
    answered: list[int] = field(default_factory=list)  # sorted distances of answered nodes
    inflight: int = 0


class Lookup(Generic[V]):
    """One lookup for ``target``; ``V`` is the type of value a FIND_VALUE may return."""

    def __init__(
        self,
        target: bytes,
        seeds: list[Peer],
        *,
        local_agent_id: str,
        now: float,
        k: int = LOOKUP_K,
        alpha: int = ALPHA,
        paths: int = DISJOINT_PATHS,
        timeout: float = QUERY_TIMEOUT,
        find_value: bool = False,
    ) -> None:
        if len(target) != 32:
            raise InvalidArgument("a lookup target is a 32-byte key")
        if k < 1 or alpha < 1 or paths < 1 or timeout <= 0:
            raise InvalidArgument("k, alpha, paths must be >= 1 and timeout > 0")
        self.target = target
        self._target_int = int.from_bytes(target, "big")
        self.k, self.alpha, self.timeout = k, alpha, timeout
        self.find_value = find_value
        self.local = local_agent_id
        self.stats = LookupStats()
        self.value: V | None = None
        self.value_from: str | None = None
        self._paths = [_Path(i) for i in range(max(1, min(paths, len(seeds) or 1)))]
        self._candidates: dict[str, _Candidate] = {}
        self._started = now
        ordered = sorted(seeds, key=self._distance)
        for i, peer in enumerate(ordered):
            self._learn(peer, i % len(self._paths), depth=1)

    # ---- bookkeeping ----------------------------------------------------------------

    def _distance(self, peer: Peer) -> int:
        return int.from_bytes(peer.node_id, "big") ^ self._target_int

    def _learn(self, peer: Peer, path: int, depth: int) -> None:
        if peer.agent_id == self.local or peer.agent_id in self._candidates:
            return  # disjointness: first path to learn a node owns it
        if len(peer.node_id) != 32:
            return
        cand = _Candidate(peer, self._distance(peer), path, depth)
        self._candidates[peer.agent_id] = cand
        heapq.heappush(self._paths[path].heap, (cand.distance, peer.agent_id))

    def _path_done(self, path: _Path) -> bool:
        """A path is done when its k closest known nodes are all answered or failed."""
        if path.inflight:
            return False
        if not path.heap:
            return True
        # Converged when the closest unqueried node is farther than the k-th closest
        # node that answered on this path.
        if len(path.answered) < self.k:
            return False
        return path.heap[0][0] > path.answered[self.k - 1]

    @property
    def done(self) -> bool:
        if self.value is not None:
            return True
        return all(self._path_done(p) for p in self._paths)

    # ---- outputs ----------------------------------------------------------------------

    def next_queries(self, now: float) -> list[Peer]:
        """Peers to query now (each exactly once); empty when waiting or done."""
        if self.done:
            return []
        out: list[Peer] = []
        for path in self._paths:
            if self._path_done(path):
                continue
            while path.inflight < self.alpha and path.heap:
                _, agent_id = heapq.heappop(path.heap)
                cand = self._candidates[agent_id]
                if cand.state != "new":
                    continue
                cand.state = "inflight"
                cand.attempts += 1
                cand.deadline = now + self.timeout
                path.inflight += 1
                self.stats.queries += 1
                out.append(cand.peer)
        return out

    def get_timer(self) -> float | None:
        deadlines = [c.deadline for c in self._candidates.values() if c.state == "inflight"]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[str]:
        """Expire overdue queries: each is asked again up to :data:`QUERY_ATTEMPTS` times,
        then counts as failed. Returns the agents that failed now (to tell the routing
        table)."""
        failed = []
        for cand in list(self._candidates.values()):
            if cand.state == "inflight" and cand.deadline <= now:
                if cand.attempts < QUERY_ATTEMPTS:
                    path = self._paths[cand.path]
                    path.inflight -= 1
                    cand.state = "new"
                    heapq.heappush(path.heap, (cand.distance, cand.peer.agent_id))
                else:
                    self._fail(cand)
                    failed.append(cand.peer.agent_id)
        return failed

    def depth_of(self, agent_id: str) -> int | None:
        """How many query rounds it took to learn ``agent_id`` (1 = a seed), if learned."""
        cand = self._candidates.get(agent_id)
        return None if cand is None else cand.depth

    def result(self) -> list[Peer]:
        """The k closest nodes that answered, closest first."""
        answered = [c for c in self._candidates.values() if c.state == "answered"]
        answered.sort(key=lambda c: c.distance)
        return [c.peer for c in answered[: self.k]]

    # ---- inputs -----------------------------------------------------------------------

    def on_response(
        self, agent_id: str, contacts: list[Peer], now: float, *, value: V | None = None
    ) -> None:
        """``agent_id`` answered with ``contacts`` (and, for FIND_VALUE, maybe a value)."""
        cand = self._candidates.get(agent_id)
        if cand is None or cand.state != "inflight":
            return  # unsolicited or late: ignore
        cand.state = "answered"
        path = self._paths[cand.path]
        path.inflight -= 1
        bisect.insort(path.answered, cand.distance)
        self.stats.responses += 1
        self.stats.hops = max(self.stats.hops, cand.depth)
        if value is not None and self.find_value and self.value is None:
            self.value, self.value_from = value, agent_id
        for peer in contacts[:MAX_CONTACTS_PER_RESPONSE]:
            self._learn(peer, cand.path, cand.depth + 1)

    def on_failure(self, agent_id: str, now: float) -> None:
        """``agent_id`` could not be reached or answered nonsense."""
        cand = self._candidates.get(agent_id)
        if cand is not None and cand.state == "inflight":
            self._fail(cand)

    def _fail(self, cand: _Candidate) -> None:
        cand.state = "failed"
        self._paths[cand.path].inflight -= 1
        self.stats.failures += 1

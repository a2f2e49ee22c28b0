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
or failed (or a value was found, for FIND_VALUE); nodes farther than the ``k``-th answer
are never queried.

Timeouts adapt to the network, as TCP's do (RFC 6298): each lookup keeps a smoothed RTT
and its variance from the answers it gets, and a query times out after ``srtt + 4·rttvar``
(at least :data:`MIN_QUERY_TIMEOUT`, at most the configured timeout), doubled for each
retry. A silent node is asked :data:`QUERY_ATTEMPTS` times before it counts as failed; after
its first timeout it no longer holds one of the ``alpha`` slots, so the path moves on while
it may still answer (a late answer is taken). Dead nodes then cost a few RTTs, and in
parallel, instead of full timeouts one after another.
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
    "MIN_QUERY_TIMEOUT",
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
QUERY_ATTEMPTS = 3
#: Shortest adaptive query timeout (seconds).
MIN_QUERY_TIMEOUT = 0.1
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
    sent: float = 0.0
    attempts: int = 0
    stalled: bool = False  # timed out once: asked again, no longer holding a slot


@dataclass
class _Path:
    index: int
    heap: list[tuple[int, str]] = field(default_factory=list)  # (distance, agent_id), unqueried
    answered: list[int] = field(default_factory=list)  # sorted distances of answered nodes
    inflight: int = 0
    inflight_distances: list[int] = field(default_factory=list)  # at most alpha


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
        rtt: tuple[float, float] | None = None,
    ) -> None:
        """``rtt`` seeds the adaptive timeout with a (smoothed RTT, variance) pair, e.g.
        :attr:`rtt_estimate` of this node's previous lookup."""
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
        self._inflight: dict[str, _Candidate] = {}
        self._resend: list[Peer] = []
        self._srtt: float | None = None if rtt is None else rtt[0]
        self._rttvar = 0.0 if rtt is None else rtt[1]
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

    def _bound(self, path: _Path) -> int | None:
        """Distance of the k-th closest node that answered on ``path`` (None: fewer)."""
        return path.answered[self.k - 1] if len(path.answered) >= self.k else None

    def _path_done(self, path: _Path) -> bool:
        """A path is done when its k closest known nodes are all answered or failed:
        nothing unqueried and nothing in flight is closer than the k-th answer."""
        bound = self._bound(path)
        if bound is None:
            return not path.inflight_distances and not path.heap
        if path.heap and path.heap[0][0] < bound:
            return False
        return all(d > bound for d in path.inflight_distances)

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
        out, self._resend = self._resend, []
        for path in self._paths:
            if self._path_done(path):
                continue
            bound = self._bound(path)
            while path.inflight < self.alpha and path.heap:
                if bound is not None and path.heap[0][0] > bound:
                    break  # farther than k answers already: cannot improve the result
                _, agent_id = heapq.heappop(path.heap)
                cand = self._candidates[agent_id]
                if cand.state != "new":
                    continue
                cand.state = "inflight"
                cand.attempts += 1
                cand.sent = now
                cand.deadline = now + self._rto(cand.attempts)
                self._inflight[agent_id] = cand
                path.inflight += 1
                path.inflight_distances.append(cand.distance)
                self.stats.queries += 1
                out.append(cand.peer)
        return out

    @property
    def rtt_estimate(self) -> tuple[float, float] | None:
        """(smoothed RTT, RTT variance) measured so far, to seed the next lookup."""
        return None if self._srtt is None else (self._srtt, self._rttvar)

    def _rto(self, attempt: int) -> float:
        """Timeout of a query's ``attempt``-th try (adaptive, doubled per retry)."""
        if self._srtt is None:
            return self.timeout
        base = max(MIN_QUERY_TIMEOUT, self._srtt + 4 * self._rttvar)
        return float(min(self.timeout, base * 2.0 ** (attempt - 1)))

    def _sample(self, rtt: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    def get_timer(self) -> float | None:
        if not self._inflight:
            return None
        return min(c.deadline for c in self._inflight.values())

    def handle_timer(self, now: float) -> list[str]:
        """Expire overdue queries: each is asked again up to :data:`QUERY_ATTEMPTS` times,
        then counts as failed. Returns the agents that failed now (to tell the routing
        table)."""
        failed = []
        for cand in [c for c in self._inflight.values() if c.deadline <= now]:
            if cand.attempts < QUERY_ATTEMPTS:
                # Ask again, but free its slot: the path goes on with other nodes while
                # this one may still answer (it is not done until this one answers or
                # fails, if it is among the closest).
                cand.attempts += 1
                cand.deadline = now + self._rto(cand.attempts)
                if not cand.stalled:
                    cand.stalled = True
                    self._paths[cand.path].inflight -= 1
                self.stats.queries += 1
                self._resend.append(cand.peer)
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
        if cand is None or cand.attempts == 0 or cand.state == "answered":
            return  # unsolicited or duplicate: ignore
        path = self._paths[cand.path]
        if cand.state == "inflight":
            if not cand.stalled:
                path.inflight -= 1
            path.inflight_distances.remove(cand.distance)
            del self._inflight[agent_id]
            if cand.attempts == 1:  # Karn: no samples from retried queries
                self._sample(now - cand.sent)
        elif cand.state == "failed":
            self.stats.failures -= 1  # it was only slow
        cand.state = "answered"  # a late answer to a retried query counts too
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
        del self._inflight[cand.peer.agent_id]
        path = self._paths[cand.path]
        if not cand.stalled:
            path.inflight -= 1
        path.inflight_distances.remove(cand.distance)
        self.stats.failures += 1

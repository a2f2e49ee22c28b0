"""Iterative lookup over disjoint paths, driven over a simulated network with virtual time."""

from __future__ import annotations

import hashlib
import random

import pytest

from swarmlink.dht._lookup import QUERY_ATTEMPTS, Lookup, Peer
from swarmlink.errors import InvalidArgument


def make_peer(i: int) -> Peer:
    node_id = hashlib.sha256(f"node-{i}".encode()).digest()
    return Peer(agent_id=f"n{i}", node_id=node_id)


class Net:
    """N nodes; each knows its 10 closest neighbours plus 30 random nodes."""

    def __init__(self, n: int, seed: int, evil: float = 0.0) -> None:
        rng = random.Random(seed)
        self.peers = [make_peer(i) for i in range(n)]
        self.by_id = {p.agent_id: p for p in self.peers}
        self.known: dict[str, list[Peer]] = {}
        for p in self.peers:
            me = int.from_bytes(p.node_id, "big")
            near = sorted(
                (q for q in self.peers if q is not p),
                key=lambda q: int.from_bytes(q.node_id, "big") ^ me,
            )[:10]
            self.known[p.agent_id] = near + rng.sample(self.peers, 30)
        self.evil = set(rng.sample([p.agent_id for p in self.peers], int(n * evil)))
        self.dead: set[str] = set()

    def answer(self, peer: Peer, target: bytes, k: int) -> list[Peer] | None:
        if peer.agent_id in self.dead:
            return None
        t = int.from_bytes(target, "big")
        if peer.agent_id in self.evil:  # eclipse attempt: answer only with accomplices
            pool = [self.by_id[a] for a in self.evil]
        else:
            pool = self.known[peer.agent_id]
        return sorted(pool, key=lambda q: int.from_bytes(q.node_id, "big") ^ t)[:k]

    def true_closest(self, target: bytes, n: int, among: set[str] | None = None) -> list[str]:
        t = int.from_bytes(target, "big")
        pool = [p for p in self.peers if among is None or p.agent_id in among]
        return [
            p.agent_id for p in sorted(pool, key=lambda q: int.from_bytes(q.node_id, "big") ^ t)[:n]
        ]


def run(net: Net, lookup: Lookup[str], *, now: float = 0.0, step: float = 0.01) -> float:
    """Drive the lookup: answers arrive one step after the query; the dead time out."""
    pending: list[Peer] = []
    for _ in range(100_000):
        for peer in pending:
            reply = net.answer(peer, lookup.target, lookup.k)
            if reply is not None:
                lookup.on_response(peer.agent_id, reply, now)
        pending = lookup.next_queries(now)
        if lookup.done:
            return now
        if not pending:
            timer = lookup.get_timer()
            assert timer is not None, "a lookup that is not done must be waiting for something"
            now = max(now + step, timer)
            lookup.handle_timer(now)
        else:
            now += step
    raise AssertionError("lookup did not terminate")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lookup_finds_the_closest_nodes(seed: int) -> None:
    net = Net(400, seed)
    rng = random.Random(seed)
    for _ in range(10):
        target = rng.randbytes(32)
        start = rng.choice(net.peers)
        lookup: Lookup[str] = Lookup(
            target, net.known[start.agent_id][:20], local_agent_id=start.agent_id, now=0.0
        )
        run(net, lookup)
        found = [p.agent_id for p in lookup.result()]
        others = {p.agent_id for p in net.peers} - {start.agent_id}
        assert found[0] == net.true_closest(target, 1, others)[0]
        assert lookup.stats.hops <= 6


def test_dead_nodes_time_out_and_the_lookup_still_converges() -> None:
    net = Net(300, 7)
    rng = random.Random(7)
    net.dead = set(rng.sample([p.agent_id for p in net.peers], 90))  # 30 % churn
    alive = {p.agent_id for p in net.peers} - net.dead
    for _ in range(10):
        target = rng.randbytes(32)
        start = net.by_id[rng.choice(sorted(alive))]
        lookup: Lookup[str] = Lookup(
            target, net.known[start.agent_id][:20], local_agent_id=start.agent_id, now=0.0
        )
        run(net, lookup)
        expected = net.true_closest(target, 1, alive - {start.agent_id})[0]
        assert lookup.result()[0].agent_id == expected
        assert lookup.stats.failures > 0


def test_disjoint_paths_survive_an_eclipse_attempt() -> None:
    net = Net(400, 11, evil=0.2)
    rng = random.Random(11)
    honest = {p.agent_id for p in net.peers} - net.evil
    ok = 0
    for _ in range(20):
        target = rng.randbytes(32)
        start = net.by_id[rng.choice(sorted(honest))]
        lookup: Lookup[str] = Lookup(
            target, net.known[start.agent_id][:20], local_agent_id=start.agent_id, now=0.0
        )
        run(net, lookup)
        found = {p.agent_id for p in lookup.result()}
        ok += net.true_closest(target, 1, honest - {start.agent_id})[0] in found
    assert ok >= 19


def test_find_value_stops_at_the_first_value() -> None:
    net = Net(200, 5)
    target = net.peers[42].node_id
    lookup: Lookup[str] = Lookup(
        target, net.known["n0"][:20], local_agent_id="n0", now=0.0, find_value=True
    )
    queried = 0
    now = 0.0
    while not lookup.done:
        batch = lookup.next_queries(now)
        queried += len(batch)
        for peer in batch:
            value = "record" if peer.agent_id == "n42" else None
            lookup.on_response(
                peer.agent_id, net.answer(peer, target, lookup.k) or [], now, value=value
            )
        now += 0.01
    assert lookup.value == "record" and lookup.value_from == "n42"
    assert lookup.next_queries(now) == []


def test_unsolicited_answers_are_ignored_and_late_ones_taken() -> None:
    seeds = [make_peer(i) for i in range(5)]
    lookup: Lookup[str] = Lookup(bytes(32), seeds, local_agent_id="me", now=0.0, k=3)
    lookup.on_response("n1", [make_peer(99)], 0.0)  # not queried yet
    assert lookup.stats.responses == 0
    asked = lookup.next_queries(0.0)
    now = 0.0
    for _ in range(QUERY_ATTEMPTS - 1):  # each timeout: each is asked once more
        now += 10.0
        assert lookup.handle_timer(now) == []
        again = lookup.next_queries(now)
        assert {p.agent_id for p in again} == {p.agent_id for p in asked}
    failed = lookup.handle_timer(now + 10.0)  # last timeout: failed, reported to the caller
    assert sorted(failed) == sorted(p.agent_id for p in asked)
    assert lookup.stats.failures == len(asked)
    for peer in asked:  # slow, not dead: a late answer still counts
        lookup.on_response(peer.agent_id, [make_peer(100)], now + 10.0)
        lookup.on_response(peer.agent_id, [make_peer(100)], now + 10.0)  # duplicate: ignored
    assert lookup.stats.responses == len(asked) and lookup.stats.failures == 0
    assert {p.agent_id for p in lookup.result()} <= {p.agent_id for p in asked}


def test_timeouts_adapt_to_the_measured_rtt() -> None:
    seeds = [make_peer(i) for i in range(40)]
    lookup: Lookup[str] = Lookup(bytes(32), seeds, local_agent_id="me", now=0.0, timeout=5.0)
    first = lookup.next_queries(0.0)
    assert lookup.get_timer() == 5.0  # no RTT known yet: the configured timeout
    for peer in first:
        lookup.on_response(peer.agent_id, [], 0.02)  # 20 ms answers
    lookup.next_queries(0.02)
    timer = lookup.get_timer()
    assert timer is not None and timer - 0.02 == pytest.approx(0.1)  # floor MIN_QUERY_TIMEOUT


def test_bad_parameters() -> None:
    with pytest.raises(InvalidArgument):
        Lookup(b"short", [], local_agent_id="me", now=0.0)
    with pytest.raises(InvalidArgument):
        Lookup(bytes(32), [], local_agent_id="me", now=0.0, alpha=0)
    empty: Lookup[str] = Lookup(bytes(32), [], local_agent_id="me", now=0.0)
    assert empty.done and empty.next_queries(0.0) == []

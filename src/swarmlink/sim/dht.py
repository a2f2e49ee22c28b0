"""Deterministic DHT simulator: the real DHT cores (:class:`~swarmlink.dht.DhtNode`,
:class:`~swarmlink.dht.Lookup`) over a simulated network with virtual time.

Everything is driven by one seeded :class:`random.Random`; the same seed gives the same
run, byte for byte. The network model: every node gets a random position, link latency is
``base + distance`` (so RTTs vary realistically), each message is lost with probability
``loss``, offline nodes never answer (the query times out), and adversarial nodes either
drop queries or answer with accomplices only (an eclipse attempt).

Nodes join one at a time through a bootstrap node by looking up their own ID, exactly as
a real node would, so routing tables are built by the protocol itself, not by an oracle.
"""

from __future__ import annotations

import heapq
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from ..dht import DhtNode, Lookup, Peer, Query, Request, node_id
from ..errors import InvalidArgument
from ..identity import agent_id_from_public_key

__all__ = ["SimConfig", "SimResult", "run_simulation"]


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one simulation run."""

    nodes: int = 1000
    lookups: int = 1000
    seed: int = 1
    #: Fraction of nodes offline while the lookups run (they left after joining).
    churn: float = 0.0
    #: Fraction of nodes that misbehave (half drop queries, half try to eclipse).
    adversarial: float = 0.0
    #: Probability that any one message is lost.
    loss: float = 0.0
    #: One-way latency: ``base_latency`` + up to ``spread_latency`` by distance (seconds).
    base_latency: float = 0.005
    spread_latency: float = 0.045
    query_timeout: float = 1.0
    k: int = 20
    alpha: int = 3
    paths: int = 3

    def __post_init__(self) -> None:
        if self.nodes < 2 or self.lookups < 0:
            raise InvalidArgument("a simulation needs at least 2 nodes")
        for name in ("churn", "adversarial", "loss"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(f"{name} must be in [0, 1)")


@dataclass
class SimResult:
    """What a run measured."""

    config: SimConfig
    success_rate: float
    hops: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    failures: int = 0
    join_seconds: float = 0.0
    lookup_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0

        hops = [float(h) for h in self.hops]
        return {
            "nodes": self.config.nodes,
            "lookups": self.config.lookups,
            "seed": self.config.seed,
            "churn": self.config.churn,
            "adversarial": self.config.adversarial,
            "loss": self.config.loss,
            "success_rate": round(self.success_rate, 5),
            "hops_median": statistics.median(hops) if hops else 0,
            "hops_p99": pct(hops, 0.99),
            "hops_max": max(self.hops, default=0),
            "latency_ms_p50": round(pct(self.latencies, 0.5) * 1000, 1),
            "latency_ms_p99": round(pct(self.latencies, 0.99) * 1000, 1),
            "messages_per_lookup": round(statistics.mean(self.messages), 1) if self.messages else 0,
            "join_seconds": round(self.join_seconds, 2),
            "lookup_seconds": round(self.lookup_seconds, 2),
        }


class _NullStore:
    def put(self, data: bytes, now: float) -> object:
        raise InvalidArgument("the simulator stores no records")

    def get_encoded(self, agent_id: str, now: float) -> bytes | None:
        return None


class _World:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.ids = [agent_id_from_public_key(self.rng.randbytes(32)) for _ in range(cfg.nodes)]
        self.nodes = {a: DhtNode(a, _NullStore(), k=cfg.k) for a in self.ids}
        self.pos = {a: (self.rng.random(), self.rng.random()) for a in self.ids}
        self.address = {a: (f"sim:{i}",) for i, a in enumerate(self.ids)}
        self.peers = {a: Peer(a, node_id(a)) for a in self.ids}
        self.offline: set[str] = set()
        self.droppers: set[str] = set()
        self.eclipsers: set[str] = set()
        self.accomplices: list[Peer] = []
        self.clock = 0.0
        self._rid = 0

    def latency(self, a: str, b: str) -> float:
        (xa, ya), (xb, yb) = self.pos[a], self.pos[b]
        span = ((xa - xb) ** 2 + (ya - yb) ** 2) ** 0.5 / 2**0.5
        return float(self.cfg.base_latency + self.cfg.spread_latency * span)

    def answer(self, asker: str, peer: str, target: bytes, now: float) -> list[Peer] | None:
        """What ``peer`` answers to FIND_NODE(target), or None if nothing comes back."""
        if peer in self.offline or peer in self.droppers:
            return None
        if self.cfg.loss and self.rng.random() < self.cfg.loss:
            return None
        if peer in self.eclipsers:
            return self.accomplices
        self._rid = (self._rid + 1) & 0xFFFF_FFFF
        resp = self.nodes[peer].handle(
            asker, self.address[asker], Request(Query.FIND_NODE, self._rid, target), now
        )
        peers = self.peers
        return [peers[c.agent_id] for c in resp.contacts]

    def run_lookup(
        self, origin: str, target: bytes, *, paths: int | None = None
    ) -> tuple[Lookup[bytes], float]:
        """Drive one lookup from ``origin`` in virtual time; returns it and its duration."""
        node = self.nodes[origin]
        start = self.clock
        lookup = node.new_lookup(target, start, paths=paths or self.cfg.paths)
        events: list[tuple[float, int, str, list[Peer] | None]] = []
        seq = 0
        now = start
        while True:
            for peer in lookup.next_queries(now):
                reply = self.answer(origin, peer.agent_id, target, now)
                if reply is not None:
                    rtt = 2 * self.latency(origin, peer.agent_id)
                    heapq.heappush(events, (now + rtt, seq, peer.agent_id, reply))
                    seq += 1
            if lookup.done:
                break
            timer = lookup.get_timer()
            if events and (timer is None or events[0][0] <= timer):
                now, _, peer_id, reply = heapq.heappop(events)
                assert reply is not None
                lookup.on_response(peer_id, reply, now)
                node.observe(peer_id, self.address[peer_id], now)
            elif timer is not None:
                now = timer
                for dead in lookup.handle_timer(now):
                    node.table.failed(dead, now)
            else:
                break
        self.clock = now
        node.finished(lookup)
        return lookup, now - start

    def join_all(self) -> None:
        first = self.ids[0]
        for i, agent in enumerate(self.ids[1:], start=1):
            bootstrap = self.ids[self.rng.randrange(i)] if i > 1 else first
            self.nodes[agent].observe(bootstrap, self.address[bootstrap], self.clock)
            self.nodes[bootstrap].observe(agent, self.address[agent], self.clock)
            # Find our neighbours (and be found by them); one path is enough for that.
            self.run_lookup(agent, node_id(agent), paths=1)


def run_simulation(cfg: SimConfig, *, progress: Any = None) -> SimResult:
    """Build the network (joins), apply churn and adversaries, run the lookups."""
    world = _World(cfg)
    started = time.perf_counter()
    world.join_all()
    joined = time.perf_counter()
    rng = world.rng
    population = world.ids[:]
    rng.shuffle(population)
    n_offline = int(cfg.nodes * cfg.churn)
    n_evil = int(cfg.nodes * cfg.adversarial)
    world.offline = set(population[:n_offline])
    evil = population[n_offline : n_offline + n_evil]
    world.droppers = set(evil[: len(evil) // 2])
    world.eclipsers = set(evil[len(evil) // 2 :])
    world.accomplices = [Peer(a, node_id(a)) for a in sorted(world.eclipsers)[: cfg.k]]
    honest_live = [a for a in world.ids if a not in world.offline and a not in evil]
    result = SimResult(config=cfg, success_rate=0.0)
    ok = 0
    for i in range(cfg.lookups):
        origin = rng.choice(honest_live)
        target = rng.choice(honest_live)
        if target == origin:
            target = honest_live[(honest_live.index(origin) + 1) % len(honest_live)]
        lookup, seconds = world.run_lookup(origin, node_id(target))
        found = any(p.agent_id == target for p in lookup.result())
        ok += found
        result.failures += not found
        result.hops.append(lookup.depth_of(target) or lookup.stats.hops)
        result.latencies.append(seconds)
        result.messages.append(lookup.stats.queries)
        if progress is not None and (i + 1) % max(1, cfg.lookups // 20) == 0:
            progress(i + 1, cfg.lookups)
    result.success_rate = ok / cfg.lookups if cfg.lookups else 1.0
    result.join_seconds = joined - started
    result.lookup_seconds = time.perf_counter() - joined
    return result

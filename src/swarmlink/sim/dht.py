"""Deterministic DHT simulator: the real DHT cores (:class:`~swarmlink.dht.DhtNode`,
:class:`~swarmlink.dht.Lookup`, :class:`~swarmlink.dht.RecordStore`) over a simulated
network with virtual time.

Everything is driven by one seeded :class:`random.Random`; the same seed gives the same
run. The network model: every node gets a random position and link latency is ``base +
distance`` (so RTTs vary realistically); each message is lost with probability ``loss``;
offline nodes never answer (the query times out); a partition cuts the network in two
for the lookup phase. Churn: a fraction of the nodes leave after joining, and another
fraction joins while the lookups run. Adversarial nodes come in four kinds, in equal
shares: *droppers* never answer; *eclipsers* answer with their accomplices only (wrong
data); *stale* nodes answer with nodes that have left (stale data); *forgers* answer
normally but try to store forged agent records (tampered genuine records and records
signed by themselves) at the nodes that hold their victims' records.

Nodes join one at a time through a bootstrap node by looking up their own ID, exactly as
a real node would, so routing tables are built by the protocol itself, not by an oracle.
Lookups are FIND_NODE lookups over 3 disjoint paths; one succeeds when the target itself
answered. The victims' records are real signed records, verified by real record stores.
"""

from __future__ import annotations

import heapq
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..dht import DhtNode, Lookup, Peer, Query, Request, node_id
from ..dht._records import AgentRecord, RecordStore
from ..errors import InvalidArgument
from ..identity import IdentityKey, OperationalCertificate, agent_id_from_public_key
from ..wire import cbor

__all__ = ["SimConfig", "SimResult", "run_simulation"]

#: Virtual time starts here (unix seconds), so signed records carry plausible times.
SIM_EPOCH = 1_800_000_000.0
#: Agents whose real signed records are published and attacked by the forgers.
MAX_VICTIMS = 20


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one simulation run."""

    nodes: int = 1000
    lookups: int = 1000
    seed: int = 1
    #: Fraction of nodes offline while the lookups run (they left after joining).
    churn: float = 0.0
    #: Fraction of nodes that join while the lookups run (the rest of the churn).
    joining: float = 0.0
    #: Fraction of nodes cut off into a second partition during the lookups.
    partition: float = 0.0
    #: Fraction of nodes that misbehave (drop, eclipse, stale answers, forged stores).
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
        if self.churn + self.joining + self.adversarial >= 0.9:
            raise InvalidArgument("churn + joining + adversarial must stay below 0.9")
        for name in ("churn", "joining", "partition", "adversarial", "loss"):
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
    forge_attempts: int = 0
    forged_accepted: int = 0
    records_resolved: int = 0
    records_checked: int = 0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0

        hops = [float(h) for h in self.hops]
        cfg = self.config
        return {
            "nodes": cfg.nodes,
            "lookups": cfg.lookups,
            "seed": cfg.seed,
            "churn": cfg.churn,
            "joining": cfg.joining,
            "partition": cfg.partition,
            "adversarial": cfg.adversarial,
            "loss": cfg.loss,
            "success_rate": round(self.success_rate, 5),
            "hops_median": statistics.median(hops) if hops else 0,
            "hops_p99": pct(hops, 0.99),
            "hops_max": max(self.hops, default=0),
            "hops_histogram": {str(h): n for h, n in sorted(Counter(self.hops).items())},
            "latency_ms_p50": round(pct(self.latencies, 0.5) * 1000, 1),
            "latency_ms_p90": round(pct(self.latencies, 0.9) * 1000, 1),
            "latency_ms_p99": round(pct(self.latencies, 0.99) * 1000, 1),
            "messages_per_lookup": round(statistics.mean(self.messages), 1) if self.messages else 0,
            "forge_attempts": self.forge_attempts,
            "forged_accepted": self.forged_accepted,
            "records_resolved": f"{self.records_resolved}/{self.records_checked}",
            "join_seconds": round(self.join_seconds, 2),
            "lookup_seconds": round(self.lookup_seconds, 2),
        }


class _World:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.ids = [agent_id_from_public_key(self.rng.randbytes(32)) for _ in range(cfg.nodes)]
        self.nodes = {a: DhtNode(a, RecordStore(), k=cfg.k) for a in self.ids}
        self.pos = {a: (self.rng.random(), self.rng.random()) for a in self.ids}
        self.address = {a: (f"sim:{i}",) for i, a in enumerate(self.ids)}
        self.peers = {a: Peer(a, node_id(a)) for a in self.ids}
        self.offline: set[str] = set()
        self.droppers: set[str] = set()
        self.eclipsers: set[str] = set()
        self.stale: set[str] = set()
        self.side: dict[str, int] = {}
        self.accomplices: list[Peer] = []
        self.departed: list[Peer] = []
        self.clock = SIM_EPOCH
        self._rid = 0

    def latency(self, a: str, b: str) -> float:
        (xa, ya), (xb, yb) = self.pos[a], self.pos[b]
        span = ((xa - xb) ** 2 + (ya - yb) ** 2) ** 0.5 / 2**0.5
        return float(self.cfg.base_latency + self.cfg.spread_latency * span)

    def _rid_next(self) -> int:
        self._rid = (self._rid + 1) & 0xFFFF_FFFF
        return self._rid

    def reachable(self, a: str, b: str) -> bool:
        return b not in self.offline and self.side.get(a, 0) == self.side.get(b, 0)

    def answer(self, asker: str, peer: str, target: bytes, now: float) -> list[Peer] | None:
        """What ``peer`` answers to FIND_NODE(target), or None if nothing comes back."""
        if not self.reachable(asker, peer) or peer in self.droppers:
            return None
        if self.cfg.loss and self.rng.random() < self.cfg.loss:
            return None
        if peer in self.eclipsers:
            return self.accomplices
        if peer in self.stale:
            return self.departed
        node = self.nodes[peer]
        resp = node.handle(
            asker, self.address[asker], Request(Query.FIND_NODE, self._rid_next(), target), now
        )
        self.pings(peer, now)
        peers = self.peers
        return [peers[c.agent_id] for c in resp.contacts]

    def pings(self, agent: str, now: float) -> None:
        """``agent`` checks the contacts its table asked to ping (background maintenance,
        modelled as instant: it costs no lookup time)."""
        table = self.nodes[agent].table
        for other in self.nodes[agent].take_pings():
            alive = self.reachable(agent, other) and other not in self.droppers
            table.ping_result(other, alive, now)

    def run_lookup(
        self, origin: str, target: bytes, *, paths: int | None = None
    ) -> tuple[Lookup[bytes], float]:
        """Drive one lookup from ``origin`` in virtual time; returns it and its duration."""
        cfg = self.cfg
        node = self.nodes[origin]
        start = self.clock
        lookup = node.new_lookup(
            target, start, paths=paths or cfg.paths, alpha=cfg.alpha, timeout=cfg.query_timeout
        )
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
                self.pings(origin, now)
            elif timer is not None:
                now = timer
                for dead in lookup.handle_timer(now):
                    node.table.failed(dead, now)
            else:
                break
        self.clock = now
        node.finished(lookup)
        return lookup, now - start

    def join(self, agent: str, bootstrap: str) -> None:
        self.nodes[agent].observe(bootstrap, self.address[bootstrap], self.clock)
        self.nodes[bootstrap].observe(agent, self.address[agent], self.clock)
        # Find our neighbours (and be found by them); one path is enough for that.
        self.run_lookup(agent, node_id(agent), paths=1)

    def join_all(self, members: list[str]) -> None:
        for i, agent in enumerate(members[1:], start=1):
            self.join(agent, members[self.rng.randrange(i)])

    # ---- signed records ---------------------------------------------------------------

    def store(self, origin: str, key: bytes, data: bytes, replicas: list[str]) -> int:
        """STORE ``data`` under ``key`` at ``replicas`` (real verification); accepted count."""
        accepted = 0
        for agent in replicas:
            if not self.reachable(origin, agent) or agent in self.droppers:
                continue
            resp = self.nodes[agent].handle(
                origin,
                self.address[origin],
                Request(Query.STORE, self._rid_next(), key, data),
                self.clock,
            )
            accepted += resp.ok
        return accepted

    def find_value(self, origin: str, key: bytes) -> bytes | None:
        """A record for ``key`` from the first node (closest first) that holds one."""
        lookup, _ = self.run_lookup(origin, key)
        for peer in lookup.result():
            resp = self.nodes[peer.agent_id].handle(
                origin, self.address[origin], Request(Query.FIND_VALUE, 0, key), self.clock
            )
            if resp.record is not None:
                return resp.record
        return None


def _victim_records(
    world: _World, victims: list[str], keys: dict[str, IdentityKey]
) -> dict[str, AgentRecord]:
    records: dict[str, AgentRecord] = {}
    for agent in victims:
        identity = keys[agent]
        cert = OperationalCertificate.issue(
            identity, world.rng.randbytes(32), now=world.clock, lifetime=86400.0, serial=1
        )
        records[agent] = AgentRecord.create(
            identity, cert, addresses=[f"10.0.{len(records)}.1:7420"], sequence=1, now=world.clock
        )
    return records


def _forgeries(genuine: AgentRecord, forger: IdentityKey, world: _World) -> list[bytes]:
    """A tampered copy of ``genuine`` and a record re-signed by the forger."""
    body = cbor.decode(genuine.encode())
    assert isinstance(body, dict)
    tampered = dict(body, a=["203.0.113.66:7420"], seq=genuine.sequence + 1)
    cert = OperationalCertificate.issue(
        forger, world.rng.randbytes(32), now=world.clock, lifetime=86400.0, serial=1
    )
    own = AgentRecord.create(forger, cert, sequence=2**40, now=world.clock)
    return [cbor.encode(tampered), own.encode()]


def run_simulation(cfg: SimConfig, *, progress: Any = None) -> SimResult:
    """Build the network (joins), apply churn, partitions and adversaries, publish and
    attack signed records, run the lookups (some nodes join in between)."""
    world = _World(cfg)
    rng = world.rng
    # Victims get real identity keys (their agent IDs replace generated ones).
    n_victims = min(MAX_VICTIMS, cfg.nodes // 50)
    keys: dict[str, IdentityKey] = {}
    for i in range(n_victims):
        ikey = IdentityKey.from_private_bytes(rng.randbytes(32))
        old, new = world.ids[i], ikey.agent_id
        world.ids[i] = new
        keys[new] = ikey
        del world.nodes[old], world.peers[old]
        world.pos[new] = world.pos.pop(old)
        world.address[new] = world.address.pop(old)
        world.nodes[new] = DhtNode(new, RecordStore(), k=cfg.k)
        world.peers[new] = Peer(new, node_id(new))
    order = world.ids[:]
    rng.shuffle(order)
    n_late = int(cfg.nodes * cfg.joining)
    late = [a for a in order if a not in keys][:n_late]
    late_set = set(late)
    members = [a for a in world.ids if a not in late_set]
    started = time.perf_counter()
    world.join_all(members)
    joined = time.perf_counter()

    population = [a for a in members if a not in keys]
    rng.shuffle(population)
    n_offline = int(cfg.nodes * cfg.churn)
    n_evil = int(cfg.nodes * cfg.adversarial)
    world.offline = set(population[:n_offline])
    world.departed = [world.peers[a] for a in sorted(world.offline)[: cfg.k]]
    evil = population[n_offline : n_offline + n_evil]
    quarter = len(evil) // 4
    world.droppers = set(evil[:quarter])
    world.eclipsers = set(evil[quarter : 2 * quarter])
    world.stale = set(evil[2 * quarter : 3 * quarter])
    forgers = evil[3 * quarter :]
    world.accomplices = [world.peers[a] for a in sorted(world.eclipsers)[: cfg.k]]
    if cfg.partition:
        cut = set(rng.sample(sorted(members), int(len(members) * cfg.partition)))
        world.side = {a: (1 if a in cut else 0) for a in world.ids}
    evil_set = set(evil)
    honest = [a for a in members if a not in world.offline and a not in evil_set]
    # Honest nodes per side of the partition, in the same order (targets share a side).
    by_side: dict[int, list[str]] = {}
    for a in honest:
        by_side.setdefault(world.side.get(a, 0), []).append(a)

    result = SimResult(config=cfg, success_rate=0.0)
    # Victims publish real signed records at their closest nodes; forgers attack them.
    records = _victim_records(world, sorted(keys), keys)
    forger_keys = {a: IdentityKey.from_private_bytes(rng.randbytes(32)) for a in forgers[:5]}
    for agent, record in records.items():
        rkey = node_id(agent)
        replicas = [p.agent_id for p in world.run_lookup(agent, rkey)[0].result()]
        world.store(agent, rkey, record.encode(), replicas)
        for forger, fkey in forger_keys.items():
            for forged in _forgeries(record, fkey, world):
                result.forge_attempts += len(replicas)
                result.forged_accepted += world.store(forger, rkey, forged, replicas)

    ok = 0
    joins_due = list(late)
    for i in range(cfg.lookups):
        if joins_due and i % max(1, cfg.lookups // max(1, len(late))) == 0:
            agent = joins_due.pop()
            world.join(agent, rng.choice(honest))
            honest.append(agent)
            by_side.setdefault(world.side.get(agent, 0), []).append(agent)
        origin = rng.choice(honest)
        candidates = by_side[world.side.get(origin, 0)]
        target = rng.choice(candidates)
        if target == origin:
            target = candidates[(candidates.index(origin) + 1) % len(candidates)]
        lookup, seconds = world.run_lookup(origin, node_id(target))
        found = any(p.agent_id == target for p in lookup.result())
        ok += found
        result.failures += not found
        result.hops.append(lookup.depth_of(target) or lookup.stats.hops)
        result.latencies.append(seconds)
        result.messages.append(lookup.stats.queries)
        if progress is not None and (i + 1) % max(1, cfg.lookups // 20) == 0:
            progress(i + 1, cfg.lookups)
    # Readers resolve the victims' records and verify them: the genuine ones come back.
    for agent, record in records.items():
        origin = rng.choice([a for a in honest if world.reachable(a, agent)] or honest)
        data = world.find_value(origin, node_id(agent))
        result.records_checked += 1
        if data is not None:
            try:
                got = AgentRecord.verified(data, world.clock, agent_id=agent)
            except Exception:
                continue
            result.records_resolved += got.encode() == record.encode()
    result.success_rate = ok / cfg.lookups if cfg.lookups else 1.0
    result.join_seconds = joined - started
    result.lookup_seconds = time.perf_counter() - joined
    return result

"""Pub/sub scenario: delivery, latency, redundancy and attack resistance of the mesh.

The real :class:`~swarmlink.gossip._pubsub.PubSub` cores run over
:class:`~swarmlink.sim._net.SimNet`: one-way ``latency`` plus uniform ``jitter`` (plus
``region_latency`` instead of ``latency`` between nodes of different regions), each RPC
lost with probability ``loss``. RPCs travel as objects; their wire size is counted
exactly (:func:`~swarmlink.gossip._pubsub_messages.encoded_size`).

Topology: a random connected graph (a random ring plus random links) with an average
degree of ``peers_per_node``; every node subscribes to one topic. With ``regions`` > 0
every node gets one of that many region labels at random (the links ignore regions, the
hard case for region preference). Every node has a real Ed25519 identity; messages are
really signed and verified. To keep 10,000-node runs fast the cores share a memoizing
verifier keyed by the whole message (every signed field, the key and the signature), so a
forgery can never hit an honest message's cache entry.

Timeline: ``warmup`` seconds of heartbeats (meshes form, bridge elections settle), then
``crashed`` nodes crash (their neighbours notice ``failure_detection`` seconds later),
then ``publications`` messages from random live honest nodes every ``interval`` seconds,
during which ``churn`` nodes leave and as many new nodes join at random times; then
``settle`` seconds for gossip repair.

Partition (``partition`` > 0): a random ``partition`` fraction of the initial nodes (side
B) is cut off from the rest (side A; nodes joining during the cut link to side A only)
when the publications start, for ``partition_duration`` seconds. Peers notice the cut
``failure_detection`` seconds later (cross-side links are removed, like timed-out
sessions) and redial at the heal (each cross-side link comes back up within
``failure_detection`` seconds). The first half of the publications is made during the cut,
starting ``failure_detection`` + :data:`REFORM_HEARTBEATS` heartbeats after it (the meshes
have re-formed on each side), and each is counted against the live honest nodes on its
publisher's side only (``delivery_ratio_during_partition``); the second half starts as
long after the heal, counted against everyone (``delivery_ratio``).

Byzantine nodes (``byzantine`` fraction, split in three) are members of the swarm (their
messages would be allowed) running the real core, but: *droppers* never forward a
message (they keep the mesh protocol and gossip IHAVEs they never honour); *forgers*
forward nothing and answer every message they get (and then, every heartbeat, the last
one again) with forgeries: a copy with a bad signature (same ID), altered data under the
original signature, the real author's ID with the forger's key, and a validly signed
message by an outsider the policy refuses;
*flooders* re-send every message to all their peers again and again, and each heartbeat
spam IHAVEs of made-up IDs, IWANTs of unknown IDs and GRAFTs.

Measured per publication over the live honest nodes (not crashed, not left before the
end, joined before the publication): delivery ratio, time and hops (mesh rounds) until
99.9 % and 100 % had it; copies received per node (redundancy); bytes sent per honest
node per second (heartbeat gossip included, Byzantine spam not); forged messages
delivered (must be 0); message copies that crossed a region boundary. Same seed, same
summary (except ``wall_seconds`` and ``peak_rss_mib``).
"""

from __future__ import annotations

import functools
import math
import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..gossip._pubsub import PubSub
from ..gossip._pubsub_config import PubSubConfig
from ..gossip._pubsub_events import MessageReceived
from ..gossip._pubsub_messages import (
    Graft,
    IHave,
    IWant,
    Message,
    Rpc,
    encoded_size,
    message_id,
    sign_message,
    verify_message,
)
from ..identity import IdentityKey
from ._net import SimNet

__all__ = ["PubSubSimConfig", "PubSubSimResult", "run_pubsub_sim"]

#: The one topic every node subscribes to.
SIM_TOPIC = "sim/news"
#: Times a flooder re-sends each message it gets, and the spacing (s).
FLOOD_REPEATS = 4
FLOOD_SPACING = 0.05
#: IHAVE entries and made-up IDs per entry a flooder sends each peer per heartbeat.
SPAM_IHAVES = 16
SPAM_IDS = 50
#: Heartbeats given the meshes to re-form after a cut or a heal is noticed, before
#: publishing again.
REFORM_HEARTBEATS = 3


@dataclass(frozen=True)
class PubSubSimConfig:
    """Parameters of one pub/sub simulation run."""

    nodes: int = 1000
    seed: int = 1
    #: Average number of peers (overlay connections) per node.
    peers_per_node: int = 20
    #: One-way latency and jitter within a region (s), and between regions.
    latency: float = 0.020
    jitter: float = 0.005
    region_latency: float = 0.05
    #: Probability that any one RPC is lost.
    loss: float = 0.0
    publications: int = 20
    #: Fraction of Byzantine nodes (droppers, forgers, flooders in equal parts).
    byzantine: float = 0.0
    #: Number of region labels (0: no regions), and whether the cores prefer them.
    regions: int = 0
    region_preference: bool = True
    #: Fraction of nodes leaving (and as many joining) while the publications run.
    churn: float = 0.0
    #: Fraction of nodes that crash after the warm-up.
    crashed: float = 0.0
    #: Seconds of heartbeats before publishing, between publications, and after the last.
    warmup: float = 8.0
    interval: float = 0.5
    settle: float = 5.0
    #: Seconds until the neighbours of a crashed node notice (the session times out).
    failure_detection: float = 2.0
    #: Payload bytes per message.
    message_size: int = 256
    #: Fraction of the initial nodes cut off from the rest while the first half of the
    #: publications is made (0: no partition), and the cut's length (s).
    partition: float = 0.0
    partition_duration: float = 10.0

    def __post_init__(self) -> None:
        if self.nodes < 4 or self.peers_per_node < 2 or self.publications < 1:
            raise InvalidArgument("need >= 4 nodes, >= 2 peers per node, >= 1 publication")
        for name in ("byzantine", "churn", "crashed", "loss"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(f"{name} must be in [0, 1)")
        if self.byzantine + self.churn + self.crashed >= 0.9:
            raise InvalidArgument("byzantine + churn + crashed must stay below 0.9")
        if self.regions < 0:
            raise InvalidArgument("regions must be >= 0")
        if not 0.0 <= self.partition < 1.0:
            raise InvalidArgument("partition must be in [0, 1)")
        if self.partition:
            if not 1 <= round(self.nodes * self.partition) <= self.nodes - 1:
                raise InvalidArgument("the partition must leave nodes on both sides")
            if self.publications < 2:
                raise InvalidArgument("a partition needs >= 2 publications")
            if self.reform + self.publications // 2 * self.interval > self.partition_duration:
                raise InvalidArgument(
                    "partition_duration too short for half the publications: need "
                    f">= {self.reform + self.publications // 2 * self.interval:g} s"
                )

    @property
    def reform(self) -> float:
        """Seconds from a cut or heal until publishing (again)."""
        return self.failure_detection + REFORM_HEARTBEATS * PubSubConfig().heartbeat_interval


@dataclass
class PubSubSimResult:
    """What a run measured (see :meth:`summary`)."""

    config: PubSubSimConfig
    expected: int = 0
    delivered: int = 0
    #: Publications made during the partition: deliveries expected on the publisher's
    #: side, and made there.
    expected_during_partition: int = 0
    delivered_during_partition: int = 0
    partition_side_b: int = 0
    #: Per publication: seconds and hops until 99.9 % / 100 % of its expected nodes had it
    #: (None if never).
    t999: list[float | None] = field(default_factory=list)
    t100: list[float | None] = field(default_factory=list)
    hops999: list[int | None] = field(default_factory=list)
    hops100: list[int | None] = field(default_factory=list)
    copies: int = 0
    cross_region: int = 0
    bytes_sent: int = 0
    node_seconds: float = 0.0
    forged_sent: int = 0
    forged_delivered: int = 0
    #: Honest nodes' view of Byzantine peers at the end: (negative scores, pairs) per kind.
    byzantine_scores: dict[str, tuple[int, int]] = field(default_factory=dict)
    mesh_sizes: list[int] = field(default_factory=list)
    bridges: int = 0
    wall_seconds: float = 0.0
    peak_rss_mib: float = 0.0

    def summary(self) -> dict[str, Any]:
        def stat(values: list[Any], fn: Callable[[list[Any]], Any], scale: float = 1.0) -> Any:
            known = [v for v in values if v is not None]
            if not known:
                return None
            return round(fn(known) * scale, 1)

        cfg = self.config
        pubs = max(1, len(self.t100))
        return {
            "nodes": cfg.nodes,
            "seed": cfg.seed,
            "byzantine": cfg.byzantine,
            "regions": cfg.regions,
            "region_preference": cfg.region_preference,
            "churn": cfg.churn,
            "crashed": cfg.crashed,
            "loss": cfg.loss,
            "publications": len(self.t100),
            "delivery_ratio": round(self.delivered / self.expected, 6) if self.expected else 1.0,
            "undelivered": self.expected - self.delivered,
            "ms_to_99.9%_p50": stat(self.t999, statistics.median, 1000),
            "ms_to_99.9%_max": stat(self.t999, max, 1000),
            "ms_to_100%_p50": stat(self.t100, statistics.median, 1000),
            "ms_to_100%_max": stat(self.t100, max, 1000),
            "never_100%": sum(1 for t in self.t100 if t is None),
            "hops_to_99.9%_p50": stat(self.hops999, statistics.median),
            "hops_to_99.9%_max": stat(self.hops999, max),
            "hops_to_100%_p50": stat(self.hops100, statistics.median),
            "hops_to_100%_max": stat(self.hops100, max),
            "redundancy": round(self.copies / self.delivered, 2) if self.delivered else 0.0,
            "bytes_per_node_per_s": round(self.bytes_sent / self.node_seconds)
            if self.node_seconds
            else 0,
            "forged_sent": self.forged_sent,
            "forged_delivered": self.forged_delivered,
            "cross_region_per_publication": round(self.cross_region / pubs, 1),
            "bridges": self.bridges,
            "mesh_size_mean": round(statistics.mean(self.mesh_sizes), 2) if self.mesh_sizes else 0,
            "byzantine_negative": {
                kind: f"{neg}/{total}" for kind, (neg, total) in self.byzantine_scores.items()
            },
            **(
                {
                    "partition": cfg.partition,
                    "partition_duration": cfg.partition_duration,
                    "partition_side_b": self.partition_side_b,
                    "delivery_ratio_during_partition": round(
                        self.delivered_during_partition / self.expected_during_partition, 6
                    )
                    if self.expected_during_partition
                    else 1.0,
                    "undelivered_during_partition": self.expected_during_partition
                    - self.delivered_during_partition,
                }
                if cfg.partition
                else {}
            ),
            "wall_seconds": round(self.wall_seconds, 1),
            "peak_rss_mib": round(self.peak_rss_mib),
        }


class _Publication:
    __slots__ = ("at", "hops", "mid", "msg", "origin", "times")

    def __init__(self, msg: Message, mid: bytes, at: float, origin: str) -> None:
        self.origin = origin
        self.msg = msg
        self.mid = mid
        self.at = at
        self.times: dict[str, float] = {origin: at}
        self.hops: dict[str, int] = {origin: 0}


class _World:
    def __init__(self, cfg: PubSubSimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.net = SimNet(self.rng, latency=cfg.latency, jitter=cfg.jitter, loss=cfg.loss)
        self.core_cfg = PubSubConfig(region_preference=cfg.region_preference)
        self.keys: dict[str, IdentityKey] = {}
        self.nodes: dict[str, PubSub] = {}
        self.adj: dict[str, list[str]] = {}
        self.region: dict[str, str] = {}
        self.members: set[str] = set()
        self.kind: dict[str, str] = {}  # Byzantine kind
        self.left: dict[str, float] = {}
        self.joined: dict[str, float] = {}
        self.crashed_at: dict[str, float] = {}
        self.side_b: set[str] = set()
        self.pubs: list[_Publication] = []
        self.pub_by_mid: dict[bytes, _Publication] = {}
        self.real: dict[int, Message] = {}  # id(obj) -> published message object
        self.forged: list[Message] = []
        self.last_seen: dict[str, Message] = {}
        self.forged_delivered = 0
        self.copies = 0
        self.cross = 0
        self.verified: dict[Message, bool] = {}
        self.outsider = IdentityKey.from_private_bytes(self.rng.randbytes(32))
        self.timer_fns: dict[str, Callable[[], None]] = {}
        self.forgery_seq = 0
        self.deliver = self._deliver
        if cfg.regions:
            gap = cfg.region_latency - cfg.latency
            region = self.region
            self.net.extra_latency = lambda a, b: gap if region[a] != region[b] else 0.0

    # ---- setup ---------------------------------------------------------------------------

    def verify(self, msg: Message) -> bool:
        ok = self.verified.get(msg)
        if ok is None:
            ok = self.verified[msg] = verify_message(msg)
        return ok

    def allowed(self, topic: str, author: str) -> bool:
        return author in self.members

    def new_node(self, now: float) -> str:
        key = IdentityKey.from_private_bytes(self.rng.randbytes(32))
        agent = key.agent_id
        self.keys[agent] = key
        self.members.add(agent)
        regions = self.cfg.regions
        self.region[agent] = f"r{self.rng.randrange(regions)}" if regions else ""
        self.nodes[agent] = PubSub(
            agent,
            self.core_cfg,
            random.Random(self.rng.getrandbits(64)),
            region=self.region[agent],
            allowed=self.allowed,
            verify=self.verify,
        )
        self.adj[agent] = []
        self.joined[agent] = now
        self.timer_fns[agent] = functools.partial(self.on_timer, agent)
        return agent

    def link(self, a: str, b: str, now: float) -> None:
        self.adj[a].append(b)
        self.adj[b].append(a)
        self.nodes[a].add_peer(b, now, region=self.region[b])
        self.nodes[b].add_peer(a, now, region=self.region[a])

    def build(self) -> list[str]:
        cfg = self.cfg
        ids = [self.new_node(0.0) for _ in range(cfg.nodes)]
        order = ids[:]
        self.rng.shuffle(order)
        edges: set[tuple[int, int]] = set()
        index = {a: i for i, a in enumerate(ids)}
        for i, a in enumerate(order):
            b = order[(i + 1) % len(order)]
            edges.add((min(index[a], index[b]), max(index[a], index[b])))
        target = cfg.nodes * cfg.peers_per_node // 2
        while len(edges) < target:
            i, j = self.rng.randrange(cfg.nodes), self.rng.randrange(cfg.nodes)
            if i != j:
                edges.add((min(i, j), max(i, j)))
        for i, j in sorted(edges):
            self.link(ids[i], ids[j], 0.0)
        for agent in ids:
            self.nodes[agent].subscribe(SIM_TOPIC, 0.0)
            self.flush(agent)
        return ids

    # ---- running -------------------------------------------------------------------------

    def on_timer(self, agent: str) -> None:
        if agent in self.net.crashed:
            return
        self.nodes[agent].handle_timer(self.net.now)
        kind = self.kind.get(agent)
        if kind == "flooder":
            self.spam(agent)
        elif kind == "forger" and agent in self.last_seen:
            self.forge(agent, self.last_seen[agent])
        self.flush(agent)

    def _deliver(self, src: str, dst: str, message: object) -> None:
        assert isinstance(message, Rpc)
        if message.messages:
            real = self.real
            regions = self.region
            for msg in message.messages:
                if id(msg) in real:
                    if dst not in self.kind:
                        self.copies += 1
                    if regions[src] != regions[dst]:
                        self.cross += 1
        self.nodes[dst].receive(src, message, self.net.now)
        self.flush(dst)

    def flush(self, agent: str) -> None:
        node = self.nodes[agent]
        net = self.net
        kind = self.kind.get(agent)
        for peer, rpc in node.messages_to_send():
            if kind is not None and rpc.messages:
                rpc = Rpc(rpc.subscriptions, (), rpc.ihave, rpc.iwant, rpc.graft, rpc.prune,
                          rpc.bridges)  # fmt: skip
                if not rpc:
                    continue
            net.send(agent, peer, rpc, encoded_size(rpc))
        for event in node.events():
            if isinstance(event, MessageReceived):
                self.on_received(agent, event)
        net.set_timer(agent, node.get_timer(), self.timer_fns[agent])

    def on_received(self, agent: str, event: MessageReceived) -> None:
        pub = self.pub_by_mid.get(event.msg_id)
        if pub is None:
            if id(event.message) not in self.real and agent not in self.kind:
                self.forged_delivered += 1
            return
        if agent not in pub.times:
            pub.times[agent] = event.received_at
            pub.hops[agent] = pub.hops.get(event.from_peer, 0) + 1
        kind = self.kind.get(agent)
        if kind == "forger":
            self.last_seen[agent] = event.message
            self.forge(agent, event.message)
        elif kind == "flooder":
            for i in range(1, FLOOD_REPEATS + 1):
                self.net.call_at(
                    self.net.now + i * FLOOD_SPACING,
                    functools.partial(self.resend, agent, event.message),
                )

    # ---- Byzantine behaviour ---------------------------------------------------------------

    def send_raw(self, agent: str, rpc: Rpc) -> None:
        size = encoded_size(rpc)
        for peer in self.adj[agent]:
            if peer not in self.left:
                self.net.send(agent, peer, rpc, size)

    def resend(self, agent: str, msg: Message) -> None:
        self.send_raw(agent, Rpc(messages=(msg,)))

    def forge(self, agent: str, msg: Message) -> None:
        rng = self.rng
        mine = self.keys[agent]
        self.forgery_seq += 1
        bad_sig = Message(msg.topic, msg.author, msg.key, msg.seqno, msg.data, rng.randbytes(64))
        altered = Message(
            msg.topic, msg.author, msg.key, msg.seqno, msg.data + b"!", msg.sig
        )  # fmt: skip
        mine_signed = sign_message(mine, msg.topic, msg.seqno, msg.data)
        wrong_key = Message(
            msg.topic, msg.author, mine.public_key, msg.seqno, msg.data, mine_signed.sig
        )
        outsider = sign_message(self.outsider, msg.topic, self.forgery_seq, msg.data)
        forgeries = (bad_sig, altered, wrong_key, outsider)
        self.forged.extend(forgeries)
        self.send_raw(agent, Rpc(messages=forgeries))

    def spam(self, agent: str) -> None:
        rng = self.rng
        ihave = tuple(
            IHave(SIM_TOPIC, tuple(rng.randbytes(20) for _ in range(SPAM_IDS)))
            for _ in range(SPAM_IHAVES)
        )
        iwant = (IWant(tuple(rng.randbytes(20) for _ in range(SPAM_IDS))),)
        self.send_raw(agent, Rpc(ihave=ihave, iwant=iwant, graft=(Graft(SIM_TOPIC),)))

    # ---- faults --------------------------------------------------------------------------

    def crash(self, agent: str) -> None:
        self.net.crashed.add(agent)
        self.crashed_at[agent] = self.net.now
        self.net.call_at(
            self.net.now + self.cfg.failure_detection, functools.partial(self.forget, agent)
        )

    def forget(self, agent: str) -> None:
        now = self.net.now
        for peer in self.adj[agent]:
            if peer not in self.net.crashed:
                self.nodes[peer].remove_peer(agent, now)
                self.flush(peer)

    def leave(self, agent: str) -> None:
        self.left[agent] = self.net.now
        self.net.crashed.add(agent)
        self.forget(agent)

    def join(self) -> None:
        now = self.net.now
        agent = self.new_node(now)
        connected = self.net.connected  # during a partition: this side only
        live = [
            a
            for a in self.nodes
            if a not in self.net.crashed and a != agent and connected(agent, a)
        ]
        for peer in self.rng.sample(live, min(len(live), self.cfg.peers_per_node)):
            self.link(agent, peer, now)
            self.flush(peer)
        self.nodes[agent].subscribe(SIM_TOPIC, now)
        self.flush(agent)

    def cross_links(self) -> list[tuple[str, str]]:
        """Links across the partition between two running nodes (each once)."""
        side_b = self.side_b
        down = self.net.crashed
        return [
            (a, b)
            for a in self.nodes
            if a in side_b and a not in down
            for b in self.adj[a]
            if b not in side_b and b not in down
        ]

    def cut(self) -> None:
        """The cross-side sessions time out."""
        now = self.net.now
        for a, b in self.cross_links():
            self.nodes[a].remove_peer(b, now)
            self.nodes[b].remove_peer(a, now)
        for agent in self.nodes:
            if agent not in self.net.crashed:
                self.flush(agent)

    def relink(self, a: str, b: str) -> None:
        """A cross-side session comes back after the heal."""
        if a in self.net.crashed or b in self.net.crashed:
            return
        now = self.net.now
        self.nodes[a].add_peer(b, now, region=self.region[b])
        self.nodes[b].add_peer(a, now, region=self.region[a])
        self.flush(a)
        self.flush(b)

    def heal(self) -> None:
        self.net.partition(None)
        for a, b in self.cross_links():
            when = self.net.now + self.rng.random() * self.cfg.failure_detection
            self.net.call_at(when, functools.partial(self.relink, a, b))

    def publish(self, origin: str, seqno: int) -> None:
        now = self.net.now
        data = self.rng.randbytes(self.cfg.message_size)
        msg = sign_message(self.keys[origin], SIM_TOPIC, seqno, data)
        mid = message_id(msg)
        pub = _Publication(msg, mid, now, origin)
        self.pubs.append(pub)
        self.pub_by_mid[mid] = pub
        self.real[id(msg)] = msg
        self.nodes[origin].publish(msg, now)
        self.flush(origin)


def _reach(pub: _Publication, expected: list[str], fraction: float) -> tuple[float, int] | None:
    """Seconds and hops until ``fraction`` of ``expected`` had the message (None: never)."""
    need = math.ceil(len(expected) * fraction - 1e-9)
    times = sorted(pub.times[a] - pub.at for a in expected if a in pub.times)
    if need == 0:
        return 0.0, 0
    if len(times) < need:
        return None
    hops = sorted(pub.hops[a] for a in expected if a in pub.hops)
    return times[need - 1], hops[need - 1]


def run_pubsub_sim(
    cfg: PubSubSimConfig, progress: Callable[[int, int], None] | None = None
) -> PubSubSimResult:
    """Run one scenario (see the module docstring)."""
    started = time.perf_counter()
    world = _World(cfg)
    rng = world.rng
    net = world.net
    ids = world.build()
    population = ids[:]
    rng.shuffle(population)
    n_byz = int(cfg.nodes * cfg.byzantine)
    for i, agent in enumerate(population[:n_byz]):
        world.kind[agent] = ("dropper", "forger", "flooder")[i * 3 // max(1, n_byz)]
    honest = population[n_byz:]
    n_crash = int(cfg.nodes * cfg.crashed)
    n_churn = int(cfg.nodes * cfg.churn)
    to_crash = honest[:n_crash]
    leavers = honest[n_crash : n_crash + n_churn]

    net.run(cfg.warmup, world.deliver)
    for agent in to_crash:
        world.crash(agent)
    t0 = cfg.warmup + (cfg.failure_detection if n_crash else 0.0)
    pub_times = [t0 + i * cfg.interval for i in range(cfg.publications)]
    heal_at = math.inf
    if cfg.partition:
        # its own stream, so that the rest matches the same seed without a cut
        side_rng = random.Random(f"{cfg.seed}/partition")
        world.side_b = set(side_rng.sample(ids, round(cfg.nodes * cfg.partition)))
        heal_at = t0 + cfg.partition_duration
        half = cfg.publications // 2
        pub_times = [t0 + cfg.reform + i * cfg.interval for i in range(half)] + [
            heal_at + cfg.reform + i * cfg.interval for i in range(cfg.publications - half)
        ]
        net.call_at(t0, lambda: net.partition([world.side_b]))
        net.call_at(t0 + cfg.failure_detection, world.cut)
        net.call_at(heal_at, world.heal)
    span = pub_times[-1] + cfg.interval - t0
    for agent in leavers:
        net.call_at(t0 + rng.random() * span, functools.partial(world.leave, agent))
    for _ in range(n_churn):
        net.call_at(t0 + rng.random() * span, world.join)
    net.run(t0, world.deliver)
    bytes_before = dict(net.bytes_sent)
    for i, when in enumerate(pub_times):
        net.run(when, world.deliver)
        live = [a for a in honest if a not in net.crashed]
        world.publish(live[rng.randrange(len(live))], i + 1)
        if progress is not None:
            progress(i + 1, cfg.publications)
    end = t0 + span + cfg.settle
    net.run(end, world.deliver)

    result = PubSubSimResult(config=cfg)
    final_honest = [
        a for a in world.nodes if a not in world.kind and a not in net.crashed
    ]  # fmt: skip
    side_b = world.side_b
    result.partition_side_b = len(side_b)
    for pub in world.pubs:
        expected = [a for a in final_honest if world.joined[a] <= pub.at and a != pub.origin]
        during = bool(side_b) and pub.at < heal_at
        if during:  # made during the cut: the publisher's side only
            side = pub.origin in side_b
            expected = [a for a in expected if (a in side_b) == side]
        got = sum(1 for a in expected if a in pub.times)
        if during:
            result.expected_during_partition += len(expected)
            result.delivered_during_partition += got
        else:
            result.expected += len(expected)
            result.delivered += got
        for fraction, times, hops in (
            (0.999, result.t999, result.hops999),
            (1.0, result.t100, result.hops100),
        ):
            reached = _reach(pub, expected, fraction)
            times.append(None if reached is None else reached[0])
            hops.append(None if reached is None else reached[1])
    result.copies = world.copies
    result.cross_region = world.cross
    result.bytes_sent = sum(net.bytes_sent[a] - bytes_before.get(a, 0) for a in final_honest)
    result.node_seconds = len(final_honest) * (end - t0)
    result.forged_sent = len(world.forged)
    result.forged_delivered = world.forged_delivered
    for agent in final_honest:
        node = world.nodes[agent]
        result.mesh_sizes.append(len(node.mesh(SIM_TOPIC)))
        result.bridges += node.is_bridge(SIM_TOPIC)
        for peer in node.peers():
            kind = world.kind.get(peer)
            if kind is not None:
                neg, total = result.byzantine_scores.get(kind, (0, 0))
                negative = node.score(peer) < 0
                result.byzantine_scores[kind] = (neg + negative, total + 1)
    result.wall_seconds = time.perf_counter() - started
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result

"""SWIM membership scenario: crash detection time and false positives at scale.

The real :class:`~swarmlink.gossip._swim.Membership` cores run over
:class:`~swarmlink.sim._net.SimNet` (one-way ``latency`` plus uniform ``jitter``, each
message lost with probability ``loss``). Messages travel as objects; their wire size is
counted exactly with :func:`~swarmlink.gossip._swim_messages.encoded_size`.

Bootstrap: every node starts with the same converged view, one shared
:class:`~swarmlink.gossip._swim_view.InitialView` (all nodes alive at incarnation 0, each
with a region label), instead of joining one by one: the scenario measures failure
detection, not bootstrap, and the shared view keeps 10,000 nodes within a few hundred MiB
(each node stores only what differs from the view). Probe and push-pull timers start at
random phases.

Timeline: ``warmup`` seconds of steady state; then ``crashes`` random nodes crash (stop
sending and receiving) at random times in ``[warmup, duration - settle]``; meanwhile
``leaves`` nodes leave gracefully (and stop two seconds later) and ``joins`` new nodes join
through a random seed (they start empty and learn the swarm by push-pull). The run ends at
``duration``.

Measured: for each crash, the time until the first live node and until *every* live node
declared it dead (live nodes: never crashed, never left, present from the start);
false positives (a node that had not crashed, declared dead by anyone), suspicions of
live nodes and refutations; that every live node saw each leave as a leave (not a
failure) and learned each joiner; bytes and messages sent per node per second. The same
seed gives the same summary (except ``wall_seconds``).

Partition (``partition`` > 0): a random ``partition`` fraction of the initial nodes (side
B) is cut off from the rest (side A; joiners always join side A through a side-A seed) from
``warmup + partition_at`` for ``partition_duration`` seconds. Both sides are expected to
declare the other side dead; at the heal the harness records how many live nodes did
(``partition_split_seen_by`` of ``partition_live_nodes``) and then how long it takes until
every live node sees every other live node alive again (``heal_seconds``). Healing relies
on the daemon's rejoin policy, emulated for every node (``rejoin``, on by default with a
partition): every ``REJOIN_INTERVAL * U(0.5, 1.5)`` seconds a node calls
``Membership.join`` with up to ``REJOIN_PER_ROUND`` random agents it does not see alive or
suspect (in the simulation every node trusts every other node). With a partition, a
failure declared across the two sides is never a false positive: the declaring node
(``MemberFailed.declared_by``) is on the other side, or our own suspicion expired and the
node that first raised it (``MemberSuspected.suspected_by``) is on the other side. These
are ``cross_side_declarations``; ``false_positives`` counts same-side declarations only.
After the heal the other side's ``Dead`` updates also reach a member's own side (relayed,
so the event names the relaying neighbour) until the member refutes them: same-side
declarations relayed after the heal are ``heal_echo_declarations``, not false positives.
And crash detection is measured over the live nodes on the crashed node's side only (the
other side may have declared it dead already, because of the cut).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..gossip._swim import Membership, SwimConfig
from ..gossip._swim_events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    Refuted,
)
from ..gossip._swim_messages import encoded_size
from ..gossip._swim_view import InitialView
from ..identity import agent_id_from_public_key
from ._net import SimNet

__all__ = ["SwimSimConfig", "SwimSimResult", "run_swim_sim"]

#: Region labels the simulated nodes are spread over.
SIM_REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east")
#: Seconds a leaving node keeps running (spreading its leave) before it stops.
LEAVE_LINGER = 2.0
#: The daemon's partition-healing policy, as in
#: :mod:`swarmlink.runtime._gossipsvc` (``REJOIN_INTERVAL``, ``REJOIN_PER_ROUND``; not
#: imported: that module pulls in the whole runtime). Keep them in step.
REJOIN_INTERVAL = 10.0
REJOIN_PER_ROUND = 3
#: Virtual seconds between checks of whether the swarm has healed after a partition.
HEAL_CHECK = 0.1


@dataclass(frozen=True)
class SwimSimConfig:
    """Parameters of one SWIM simulation run."""

    nodes: int = 1000
    seed: int = 1
    #: One-way link latency and its uniform jitter (seconds).
    latency: float = 0.020
    jitter: float = 0.005
    #: Probability that any one message is lost.
    loss: float = 0.01
    #: Nodes that crash during the run.
    crashes: int = 10
    #: Length of the run (virtual seconds).
    duration: float = 20.0
    #: Steady state before the first crash.
    warmup: float = 2.0
    #: No crash in the last ``settle`` seconds (time left to detect it).
    settle: float = 7.0
    #: Nodes that leave gracefully / new nodes that join during the run.
    leaves: int = 1
    joins: int = 1
    #: Fraction of the initial nodes cut off from the rest (side B; 0: no partition), the
    #: cut's start (seconds after ``warmup``) and its length.
    partition: float = 0.0
    partition_at: float = 2.0
    partition_duration: float = 10.0
    #: Emulate the daemon's rejoin rounds (None: only when there is a partition).
    rejoin: bool | None = None
    #: Protocol parameters of every node.
    swim: SwimConfig = field(default_factory=SwimConfig)

    def __post_init__(self) -> None:
        if self.nodes < 4:
            raise InvalidArgument("a SWIM simulation needs at least 4 nodes")
        if self.crashes < 0 or self.leaves < 0 or self.joins < 0:
            raise InvalidArgument("crashes, leaves and joins must be >= 0")
        if self.crashes + self.leaves > self.nodes - 2:
            raise InvalidArgument("too many crashes and leaves for the number of nodes")
        if self.duration - self.settle <= self.warmup:
            raise InvalidArgument("duration must exceed warmup + settle")
        if not 0.0 <= self.loss < 1.0:
            raise InvalidArgument("loss must be in [0, 1)")
        if not 0.0 <= self.partition < 1.0:
            raise InvalidArgument("partition must be in [0, 1)")
        if self.partition:
            if self.partition_at < 0 or self.partition_duration <= 0:
                raise InvalidArgument("partition_at must be >= 0, partition_duration > 0")
            if not 1 <= round(self.nodes * self.partition) <= self.nodes - 1:
                raise InvalidArgument("the partition must leave nodes on both sides")
            if self.heal_at >= self.duration:
                raise InvalidArgument(
                    "the partition must heal before the end: warmup + partition_at + "
                    "partition_duration < duration"
                )

    @property
    def cut_at(self) -> float:
        """Virtual time the partition starts."""
        return self.warmup + self.partition_at

    @property
    def heal_at(self) -> float:
        """Virtual time the partition heals."""
        return self.warmup + self.partition_at + self.partition_duration

    @property
    def rejoins(self) -> bool:
        return self.partition > 0 if self.rejoin is None else self.rejoin


@dataclass
class SwimSimResult:
    """What a run measured (see :meth:`summary`)."""

    config: SwimSimConfig
    #: Per crash: seconds until the first / the last live node declared it dead (None if
    #: some live node never did within the run).
    detect_first: list[float] = field(default_factory=list)
    detect_all: list[float | None] = field(default_factory=list)
    #: (observer, agent, time) of every failure declared about a node that had not crashed.
    false_positives: list[tuple[str, str, float]] = field(default_factory=list)
    #: Distinct (agent, incarnation) suspicions of nodes that had not crashed.
    false_suspicions: int = 0
    refutations: int = 0
    #: Per leaver: live nodes that saw the leave, that declared it dead instead.
    leave_seen: list[int] = field(default_factory=list)
    leave_failed: list[int] = field(default_factory=list)
    #: Per joiner: live nodes that learned of it, and seconds until all had.
    join_seen: list[int] = field(default_factory=list)
    join_all_seconds: list[float | None] = field(default_factory=list)
    live_nodes: int = 0
    bytes_sent: int = 0
    messages_sent: int = 0
    messages_lost: int = 0
    max_local_health: int = 0
    #: Partition: nodes on side B; live nodes at the heal and how many of them had
    #: declared every live node of the other side dead by then; seconds from the cut until
    #: all had (None: not all); seconds from the heal until every live node saw every other
    #: live node alive (None: not within the run); failures declared across the sides.
    partition_side_b: int = 0
    partition_live_nodes: int = 0
    partition_split_seen_by: int = 0
    partition_split_seconds: float | None = None
    heal_seconds: float | None = None
    cross_side_declarations: int = 0
    heal_echo_declarations: int = 0
    rejoin_rounds: int = 0
    wall_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        cfg = self.config

        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            if not ordered:
                return 0.0
            return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)

        everyone = [t for t in self.detect_all if t is not None]
        node_seconds = cfg.nodes * cfg.duration
        return {
            "nodes": cfg.nodes,
            "seed": cfg.seed,
            "latency_ms": cfg.latency * 1000,
            "jitter_ms": cfg.jitter * 1000,
            "loss": cfg.loss,
            "duration": cfg.duration,
            "crashes": cfg.crashes,
            "live_nodes": self.live_nodes,
            "detect_first_p50": pct(self.detect_first, 0.5),
            "detect_first_p99": pct(self.detect_first, 0.99),
            "detect_first_max": round(max(self.detect_first, default=0.0), 3),
            "detect_all_p50": pct(everyone, 0.5),
            "detect_all_p99": pct(everyone, 0.99),
            "detect_all_max": round(max(everyone, default=0.0), 3),
            "crashes_detected_by_all": len(everyone),
            "false_positives": len({agent for _, agent, _ in self.false_positives}),
            "false_positive_declarations": len(self.false_positives),
            "false_suspicions": self.false_suspicions,
            "refutations": self.refutations,
            "leaves_seen_by": self.leave_seen,
            "leaves_declared_dead_by": self.leave_failed,
            "joins_known_by": self.join_seen,
            "join_all_seconds": [None if t is None else round(t, 3) for t in self.join_all_seconds],
            "bytes_per_node_per_s": round(self.bytes_sent / node_seconds, 1),
            "messages_per_node_per_s": round(self.messages_sent / node_seconds, 2),
            "messages_lost": self.messages_lost,
            "max_local_health": self.max_local_health,
            **(
                {
                    "partition": cfg.partition,
                    "partition_at": round(cfg.cut_at, 3),
                    "partition_duration": cfg.partition_duration,
                    "partition_side_b": self.partition_side_b,
                    "partition_live_nodes": self.partition_live_nodes,
                    "partition_split_seen_by": self.partition_split_seen_by,
                    "partition_split_seconds": None
                    if self.partition_split_seconds is None
                    else round(self.partition_split_seconds, 3),
                    "heal_seconds": None
                    if self.heal_seconds is None
                    else round(self.heal_seconds, 3),
                    "cross_side_declarations": self.cross_side_declarations,
                    "heal_echo_declarations": self.heal_echo_declarations,
                    "rejoin_rounds": self.rejoin_rounds,
                }
                if cfg.partition
                else {}
            ),
            "wall_seconds": round(self.wall_seconds, 2),
        }


class _World:
    def __init__(self, cfg: SwimSimConfig) -> None:
        self.cfg = cfg
        rng = random.Random(cfg.seed)
        self.rng = rng
        self.net = SimNet(
            random.Random(rng.getrandbits(64)),
            latency=cfg.latency,
            jitter=cfg.jitter,
            loss=cfg.loss,
        )
        self.ids = [agent_id_from_public_key(rng.randbytes(32)) for _ in range(cfg.nodes)]
        regions = {a: rng.choice(SIM_REGIONS) for a in self.ids}
        view = InitialView(regions)
        self.cores: dict[str, Membership] = {}
        self.timer_fns: dict[str, Callable[[], None]] = {}
        for agent in self.ids:
            self._add(agent, regions[agent], view)
        self.down: dict[str, float] = {}  # crashed (or stopped) node -> when
        self.crash_time: dict[str, float] = {}
        self.failed_at: dict[str, dict[str, float]] = {}
        self.left_seen: dict[str, set[str]] = {}
        self.joined_at: dict[str, dict[str, float]] = {}
        self.suspected: set[tuple[str, int]] = set()
        self.false_positives: list[tuple[str, str, float]] = []
        self.refutations = 0
        #: Partition: side B (everyone else, joiners included, is side A); failures
        #: declared across the sides; nodes that called leave.
        self.side_b: set[str] = set()
        self.cross_side = 0
        self.heal_echo = 0
        self.suspected_by: dict[tuple[str, str], str] = {}
        self.cut_healed = False
        self.leaving: set[str] = set()
        self.rejoin_rounds = 0
        self.rejoin_rng = random.Random(rng.getrandbits(64)) if cfg.rejoins else None
        self.heal_seconds: float | None = None
        if self.rejoin_rng is not None:
            for agent in self.ids:
                self.schedule_rejoin(agent)

    def _add(self, agent: str, region: str, view: InitialView | None) -> Membership:
        core = Membership(
            agent,
            self.cfg.swim,
            random.Random(self.rng.getrandbits(64)),
            self.net.now,
            region=region,
            initial=view,
        )
        self.cores[agent] = core

        def fire(agent: str = agent, core: Membership = core) -> None:
            core.handle_timer(self.net.now)
            self.flush(agent, core)

        self.timer_fns[agent] = fire
        self.net.set_timer(agent, core.get_timer(), fire)
        return core

    def flush(self, agent: str, core: Membership) -> None:
        net = self.net
        out = core.messages_to_send()
        if out:
            send = net.send
            for dst, msg in out:
                send(agent, dst, msg, encoded_size(msg))
        events = core.events()
        if events:
            self._record(agent, events)
        net.set_timer(agent, core.get_timer(), self.timer_fns[agent])

    def deliver(self, src: str, dst: str, msg: object) -> None:
        core = self.cores[dst]
        core.receive(src, msg, self.net.now)  # type: ignore[arg-type]
        self.flush(dst, core)

    def _record(self, observer: str, events: list[Any]) -> None:
        now = self.net.now
        for ev in events:
            cls = ev.__class__
            if cls is MemberFailed:
                self.failed_at.setdefault(ev.agent, {}).setdefault(observer, now)
                if ev.agent not in self.crash_time:
                    side_b = self.side_b
                    origin = ev.declared_by
                    if origin == observer:  # our suspicion expired: who raised it?
                        origin = self.suspected_by.get((observer, ev.agent), origin)
                    if (ev.agent in side_b) != (origin in side_b):
                        self.cross_side += 1  # the partition, not a false positive
                    elif self.cut_healed and ev.declared_by != observer:
                        self.heal_echo += 1  # relayed, maybe from the other side
                    else:
                        self.false_positives.append((observer, ev.agent, now))
            elif cls is MemberSuspected:
                if self.side_b:
                    self.suspected_by[observer, ev.agent] = ev.suspected_by
                if ev.agent not in self.down:
                    self.suspected.add((ev.agent, ev.incarnation))
            elif cls is MemberLeft:
                self.left_seen.setdefault(ev.agent, set()).add(observer)
            elif cls is MemberJoined:
                self.joined_at.setdefault(ev.agent, {}).setdefault(observer, now)
            elif cls is Refuted:
                self.refutations += 1

    def stop(self, agent: str) -> None:
        self.down[agent] = self.net.now
        self.net.crashed.add(agent)
        self.net.set_timer(agent, None, self.timer_fns[agent])

    # ---- the daemon's rejoin rounds and the partition ------------------------------------

    def schedule_rejoin(self, agent: str) -> None:
        rng = self.rejoin_rng
        assert rng is not None
        delay = REJOIN_INTERVAL * (0.5 + rng.random())
        self.net.set_timer("rejoin:" + agent, self.net.now + delay, lambda: self.rejoin(agent))

    def rejoin(self, agent: str) -> None:
        """``GossipService._rejoin``: push-pull with a few trusted (here: all other)
        agents that membership does not see alive or suspect."""
        rng = self.rejoin_rng
        core = self.cores[agent]
        if rng is None or agent in self.down or core.left:
            return
        is_alive = core.is_alive
        missing = [a for a in self.cores if a != agent and not is_alive(a)]
        if missing:
            self.rejoin_rounds += 1
            core.join(rng.sample(missing, min(REJOIN_PER_ROUND, len(missing))), self.net.now)
            self.flush(agent, core)
        self.schedule_rejoin(agent)

    def live(self) -> list[str]:
        """Nodes running now that never crashed and are not leaving."""
        return [a for a in self.cores if a not in self.down and a not in self.leaving]

    def other_side(self, observer: str, agents: list[str]) -> list[str]:
        side = observer in self.side_b
        return [a for a in agents if (a in self.side_b) != side]

    def same_side(self, agent: str, agents: list[str]) -> list[str]:
        side = agent in self.side_b
        return [a for a in agents if (a in self.side_b) == side]

    def healed(self) -> bool:
        """Every live node sees every other live node alive (or suspect)."""
        live = self.live()
        need = len(live) - 1
        cores = self.cores
        if any(cores[a].num_live < need for a in live):
            return False
        for a in live:
            is_alive = cores[a].is_alive
            if not all(is_alive(b) for b in live if b != a):
                return False
        return True

    def check_heal(self) -> None:
        if self.heal_seconds is not None:
            return
        if self.healed():
            self.heal_seconds = self.net.now - self.cfg.heal_at
        else:
            self.net.call_at(self.net.now + HEAL_CHECK, self.check_heal)


def run_swim_sim(
    cfg: SwimSimConfig, progress: Callable[[float, float], None] | None = None
) -> SwimSimResult:
    """Run the scenario of the module docstring; ``progress(virtual_now, duration)`` is
    called about once per virtual second."""
    started = time.perf_counter()
    world = _World(cfg)
    rng = world.rng
    net = world.net
    order = list(world.ids)
    rng.shuffle(order)
    crashed = order[: cfg.crashes]
    leavers = order[cfg.crashes : cfg.crashes + cfg.leaves]
    for agent in crashed:
        world.crash_time[agent] = rng.uniform(cfg.warmup, cfg.duration - cfg.settle)
    for agent in crashed:

        def crash(agent: str = agent) -> None:
            world.stop(agent)

        net.call_at(world.crash_time[agent], crash)
    span = cfg.duration - cfg.settle - cfg.warmup
    for i, agent in enumerate(leavers):
        when = cfg.warmup + span * (i + 1) / (cfg.leaves + 1)

        def leave(agent: str = agent) -> None:
            world.leaving.add(agent)
            core = world.cores[agent]
            core.leave(net.now)
            world.flush(agent, core)
            net.call_at(net.now + LEAVE_LINGER, lambda: world.stop(agent))

        net.call_at(when, leave)
    joiners: dict[str, float] = {}
    survivors = order[cfg.crashes + cfg.leaves :]
    split: dict[str, Any] = {}
    if cfg.partition:
        # its own stream, so that the rest of the run matches the same seed without a cut
        side_rng = random.Random(f"{cfg.seed}/partition")
        world.side_b = set(side_rng.sample(world.ids, round(cfg.nodes * cfg.partition)))
        survivors = [a for a in survivors if a not in world.side_b]  # joiners: side A
        net.call_at(cfg.cut_at, lambda: net.partition([world.side_b]))

        def heal() -> None:
            live = world.live()
            seen_by = 0
            last = None
            for observer in live:
                other = world.other_side(observer, live)
                if not any(world.cores[observer].is_alive(a) for a in other):
                    seen_by += 1
                for a in other:
                    at = world.failed_at.get(a, {}).get(observer)
                    if at is not None and at >= cfg.cut_at:
                        last = at if last is None else max(last, at)
            split.update(live=len(live), seen_by=seen_by, last=last)
            net.partition(None)
            world.cut_healed = True
            world.check_heal()

        net.call_at(cfg.heal_at, heal)
    for i in range(cfg.joins):
        agent = agent_id_from_public_key(rng.randbytes(32))
        when = cfg.warmup + span * (i + 0.5) / cfg.joins
        seed = rng.choice(survivors)
        region = rng.choice(SIM_REGIONS)
        joiners[agent] = when

        def join(agent: str = agent, seed: str = seed, region: str = region) -> None:
            core = world._add(agent, region, None)
            core.join([seed], net.now)
            world.flush(agent, core)
            if world.rejoin_rng is not None:
                world.schedule_rejoin(agent)

        net.call_at(when, join)

    step = 1.0
    t = 0.0
    while t < cfg.duration:
        t = min(cfg.duration, t + step)
        net.run(t, world.deliver)
        if progress is not None:
            progress(t, cfg.duration)

    live = [a for a in world.ids if a not in world.down and a not in leavers]
    result = SwimSimResult(cfg, live_nodes=len(live))

    def observers(agent: str) -> list[str]:
        # with a partition, only the crashed (or leaving) node's side can tell its crash
        # (or leave) from the cut
        return world.same_side(agent, live) if cfg.partition else live

    for agent in crashed:
        seen = world.failed_at.get(agent, {})
        watchers = observers(agent)
        times = [seen[o] - world.crash_time[agent] for o in watchers if o in seen]
        if times:
            result.detect_first.append(min(times))
        result.detect_all.append(max(times) if len(times) == len(watchers) else None)
    result.false_positives = world.false_positives
    result.false_suspicions = len(world.suspected)
    result.refutations = world.refutations
    for agent in leavers:
        watching = set(observers(agent))
        result.leave_seen.append(len(world.left_seen.get(agent, set()) & watching))
        result.leave_failed.append(len(set(world.failed_at.get(agent, {})) & watching))
    for agent, when in joiners.items():
        seen_at = world.joined_at.get(agent, {})
        known = [seen_at[o] for o in live if o in seen_at]
        result.join_seen.append(len(known))
        result.join_all_seconds.append(max(known) - when if len(known) == len(live) else None)
    result.bytes_sent = sum(net.bytes_sent.values())
    result.messages_sent = net.messages_sent
    result.messages_lost = net.messages_lost
    result.max_local_health = max(c.stats.max_local_health for c in world.cores.values())
    result.partition_side_b = len(world.side_b)
    result.partition_live_nodes = split.get("live", 0)
    result.partition_split_seen_by = split.get("seen_by", 0)
    last = split.get("last")
    result.partition_split_seconds = None if last is None else last - cfg.cut_at
    result.heal_seconds = world.heal_seconds
    result.cross_side_declarations = world.cross_side
    result.heal_echo_declarations = world.heal_echo
    result.rejoin_rounds = world.rejoin_rounds
    result.wall_seconds = time.perf_counter() - started
    return result

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
                    self.false_positives.append((observer, ev.agent, now))
            elif cls is MemberSuspected:
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
            core = world.cores[agent]
            core.leave(net.now)
            world.flush(agent, core)
            net.call_at(net.now + LEAVE_LINGER, lambda: world.stop(agent))

        net.call_at(when, leave)
    joiners: dict[str, float] = {}
    survivors = order[cfg.crashes + cfg.leaves :]
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
    for agent in crashed:
        seen = world.failed_at.get(agent, {})
        times = [seen[o] - world.crash_time[agent] for o in live if o in seen]
        if times:
            result.detect_first.append(min(times))
        result.detect_all.append(max(times) if len(times) == len(live) else None)
    result.false_positives = world.false_positives
    result.false_suspicions = len(world.suspected)
    result.refutations = world.refutations
    for agent in leavers:
        result.leave_seen.append(len(world.left_seen.get(agent, set()) & set(live)))
        result.leave_failed.append(len(set(world.failed_at.get(agent, {})) & set(live)))
    for agent, when in joiners.items():
        seen_at = world.joined_at.get(agent, {})
        known = [seen_at[o] for o in live if o in seen_at]
        result.join_seen.append(len(known))
        result.join_all_seconds.append(max(known) - when if len(known) == len(live) else None)
    result.bytes_sent = sum(net.bytes_sent.values())
    result.messages_sent = net.messages_sent
    result.messages_lost = net.messages_lost
    result.max_local_health = max(c.stats.max_local_health for c in world.cores.values())
    result.wall_seconds = time.perf_counter() - started
    return result

"""SWIM + Lifeguard membership core: state machine in memory with virtual time, and codec.

Cores talk through an in-test transfer loop (:class:`Cluster`): every message is encoded,
decoded and checked against the original, delayed by a fixed latency, optionally lost or
cut; timers fire in virtual time. No sleeps; fixed seeds.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from swarmlink.errors import InvalidArgument, ProtocolViolation, StateError
from swarmlink.gossip._swim import Membership, SwimConfig
from swarmlink.gossip._swim_events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspected,
    MemberUpdated,
    Refuted,
    SwimEvent,
)
from swarmlink.gossip._swim_messages import (
    MAX_AGENT_ID_LENGTH,
    MAX_PUSHPULL_MEMBERS,
    MAX_REGION_LENGTH,
    MAX_SWIM_MESSAGE,
    MAX_UPDATES_PER_MESSAGE,
    Ack,
    Alive,
    Dead,
    Gossip,
    Left,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    SwimMessage,
    Update,
    decode_swim,
    encode_swim,
    encoded_size,
)
from swarmlink.gossip._swim_view import InitialView, MemberState
from swarmlink.wire import cbor

LATENCY = 0.01


class Cluster:
    """Cores connected by an in-memory network with virtual time."""

    def __init__(
        self,
        names: Iterable[str],
        *,
        seed: int = 1,
        config: SwimConfig | None = None,
        loss: float = 0.0,
        shared_view: bool = True,
    ) -> None:
        self.names = list(names)
        self.config = config or SwimConfig()
        self.rng = random.Random(seed)
        self.loss = loss
        self.now = 0.0
        self.view = InitialView({n: "r1" for n in self.names}) if shared_view else None
        self.nodes: dict[str, Membership] = {}
        self.events: dict[str, list[SwimEvent]] = {}
        self.queue: list[tuple[float, int, str, str, bytes]] = []
        self.seq = 0
        self.crashed: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        self.groups: list[set[str]] | None = None
        self.sent = 0
        for name in self.names:
            self.add(name, view=self.view)

    def add(self, name: str, *, view: InitialView | None = None) -> Membership:
        node = Membership(
            name,
            self.config,
            random.Random(self.rng.getrandbits(64)),
            self.now,
            region="r1",
            initial=view,
        )
        self.nodes[name] = node
        self.events.setdefault(name, [])
        if name not in self.names:
            self.names.append(name)
        return node

    def blocked(self, a: str, b: str) -> bool:
        if a in self.crashed or b in self.crashed or frozenset((a, b)) in self.cut:
            return True
        if self.groups is not None:
            return not any(a in g and b in g for g in self.groups)
        return False

    def flush(self, name: str) -> None:
        node = self.nodes[name]
        for dst, msg in node.messages_to_send():
            data = encode_swim(msg)
            assert len(data) == encoded_size(msg)
            assert decode_swim(data) == msg
            self.sent += 1
            if self.blocked(name, dst) or (self.loss and self.rng.random() < self.loss):
                continue
            self.seq += 1
            heapq.heappush(self.queue, (self.now + LATENCY, self.seq, name, dst, data))
        self.events[name].extend(node.events())

    def run(self, until: float) -> None:
        while True:
            timers = [
                (t, n)
                for n, node in self.nodes.items()
                if n not in self.crashed and (t := node.get_timer()) is not None
            ]
            next_timer = min(timers, default=(math.inf, ""))
            next_msg = self.queue[0][0] if self.queue else math.inf
            when = min(next_timer[0], next_msg)
            if when > until:
                break
            self.now = when
            if next_msg <= next_timer[0]:
                _, _, src, dst, data = heapq.heappop(self.queue)
                if self.blocked(src, dst):
                    continue
                self.nodes[dst].receive(src, decode_swim(data), when)
                self.flush(dst)
            else:
                self.nodes[next_timer[1]].handle_timer(when)
                self.flush(next_timer[1])
        self.now = until

    def live(self) -> list[str]:
        return [n for n in self.names if n not in self.crashed and not self.nodes[n].left]

    def state_of(self, observer: str, agent: str) -> MemberState | None:
        info = self.nodes[observer].member(agent)
        return None if info is None else info.state

    def failed(self, agent: str) -> dict[str, float]:
        return {
            n: e.time
            for n, evs in self.events.items()
            for e in evs
            if isinstance(e, MemberFailed) and e.agent == agent
        }

    def of_type(self, kind: type, agent: str) -> list[tuple[str, SwimEvent]]:
        return [
            (n, e)
            for n, evs in self.events.items()
            for e in evs
            if isinstance(e, kind) and getattr(e, "agent", None) == agent
        ]


NAMES = [f"node-{i}" for i in range(8)]


# ---- protocol behaviour ------------------------------------------------------------------


def test_detects_a_crashed_node_everywhere_within_five_seconds() -> None:
    cluster = Cluster(NAMES, seed=3)
    cluster.run(2.0)
    victim = NAMES[5]
    cluster.crashed.add(victim)
    cluster.run(2.0 + 8.0)
    failed = cluster.failed(victim)
    live = cluster.live()
    assert set(failed) == set(live)
    assert max(failed.values()) - 2.0 < 5.0
    for n in live:
        assert cluster.state_of(n, victim) == MemberState.DEAD
        assert victim not in cluster.nodes[n].alive_members()
        assert cluster.nodes[n].num_live == len(live) - 1
    # It was suspected before it was declared dead.
    assert cluster.of_type(MemberSuspected, victim)
    assert sum(cluster.nodes[n].stats.declared_dead for n in live) >= 1


def test_suspected_but_alive_node_refutes() -> None:
    cluster = Cluster(NAMES, seed=4)
    cluster.run(1.0)
    target, liar, hearer = NAMES[2], NAMES[0], NAMES[1]
    cluster.nodes[hearer].receive(liar, Gossip((Suspect(target, 0, liar),)), cluster.now)
    cluster.flush(hearer)
    assert cluster.state_of(hearer, target) == MemberState.SUSPECT
    cluster.run(10.0)
    assert not cluster.failed(target)
    refuted = [e for e in cluster.events[target] if isinstance(e, Refuted)]
    assert refuted and refuted[0].accused == "suspect" and refuted[0].incarnation == 1
    for n in cluster.live():
        info = cluster.nodes[n].member(target)
        assert info is not None and info.state == MemberState.ALIVE
        assert info.incarnation == 1
    recovered = cluster.of_type(MemberRecovered, target)
    assert recovered and all(e.previous == "suspect" for _, e in recovered)  # type: ignore[union-attr]
    # Lifeguard: refuting counts against the refuter's own health (then heals).
    assert cluster.nodes[target].stats.refutations == 1


def test_dead_node_that_was_alive_refutes_and_recovers() -> None:
    cluster = Cluster(NAMES[:5], seed=5)
    cluster.run(0.5)
    target, hearer = NAMES[3], NAMES[1]
    cluster.nodes[hearer].receive(NAMES[0], Gossip((Dead(target, 0, NAMES[0]),)), cluster.now)
    cluster.flush(hearer)
    cluster.run(5.0)
    for n in cluster.live():
        assert cluster.state_of(n, target) == MemberState.ALIVE
    assert any(isinstance(e, Refuted) and e.accused == "dead" for e in cluster.events[target])
    assert all(e.previous == "dead" for _, e in cluster.of_type(MemberRecovered, target))  # type: ignore[union-attr]


def test_indirect_probe_saves_a_node_whose_direct_link_is_cut() -> None:
    cluster = Cluster(NAMES[:6], seed=6)
    a, x = NAMES[0], NAMES[4]
    cluster.cut.add(frozenset((a, x)))
    cluster.run(20.0)
    assert not cluster.of_type(MemberSuspected, x)
    assert not cluster.of_type(MemberSuspected, a)
    assert cluster.nodes[a].stats.indirect_probes > 0
    assert cluster.nodes[a].stats.probe_failures == 0
    assert sum(cluster.nodes[n].stats.relays for n in cluster.names) > 0


def _lone_core(config: SwimConfig) -> tuple[Membership, list[str]]:
    peers = ["p1", "p2", "p3", "p4"]
    core = Membership("me", config, random.Random(9), 0.0, initial={p: "" for p in [*peers, "me"]})
    return core, peers


def _drive(
    core: Membership, until: float, *, ack: bool, nack: bool, log: list[float] | None = None
) -> None:
    """Run one core alone: peers answer pings if ``ack``, PingReqs with Nacks if ``nack``."""
    while (t := core.get_timer()) is not None and t <= until:
        core.handle_timer(t)
        for dst, msg in core.messages_to_send():
            if isinstance(msg, Ping):
                if log is not None:
                    log.append(t)
                if ack:
                    core.receive(dst, Ack(msg.seq), t + 0.01)
            elif isinstance(msg, PingReq) and nack:
                core.receive(dst, Nack(msg.seq), t + 0.02)
        core.events()


def test_local_health_rises_on_missed_acks_and_nacks_and_falls_back() -> None:
    config = SwimConfig(suspicion_min=100.0, suspicion_max=100.0)
    core, _ = _lone_core(config)
    pings: list[float] = []
    _drive(core, 30.0, ack=False, nack=False, log=pings)
    assert core.local_health == config.max_local_health
    # the probe interval stretched with the multiplier
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert gaps[-1] == pytest.approx(config.probe_interval * (config.max_local_health + 1))
    assert core.stats.missed_nacks > 0
    _drive(core, 200.0, ack=True, nack=False)
    assert core.local_health == 0
    assert core.stats.probes > core.stats.probe_failures


def test_nacks_from_helpers_spare_local_health() -> None:
    # The target is silent but helpers reach us with Nacks: our links work, so the probe
    # failure does not count against our own health.
    config = SwimConfig(suspicion_min=100.0, suspicion_max=100.0)
    core, _ = _lone_core(config)
    _drive(core, 5.0, ack=False, nack=True)
    assert core.stats.probe_failures > 0
    assert core.stats.nacks_received > 0
    assert core.local_health == 0


def test_unreachable_sends_indirect_probes_at_once() -> None:
    core, peers = _lone_core(SwimConfig())
    t = core.get_timer()
    assert t is not None
    core.handle_timer(t)
    [(target, ping)] = core.messages_to_send()
    assert isinstance(ping, Ping)
    core.unreachable(target, t + 0.001)
    reqs = core.messages_to_send()
    assert len(reqs) == SwimConfig().indirect_probes
    assert all(isinstance(m, PingReq) and m.target == target for _, m in reqs)
    assert {d for d, _ in reqs} <= set(peers) - {target}
    # an intermediary that cannot reach the target NACKs at once
    core.receive("p1", PingReq(77, "p2"), t + 0.002)
    [(dst, relay_ping)] = core.messages_to_send()
    assert dst == "p2" and isinstance(relay_ping, Ping)
    core.unreachable("p2", t + 0.003)
    out = core.messages_to_send()
    assert [(d, type(m), getattr(m, "seq", None)) for d, m in out] == [("p1", Nack, 77)]
    # ...and still forwards a late ack
    core.receive("p2", Ack(relay_ping.seq), t + 0.004)
    assert [(d, type(m), getattr(m, "seq", None)) for d, m in core.messages_to_send()] == [
        ("p1", Ack, 77)
    ]


def test_ping_gets_an_ack_carrying_pending_updates() -> None:
    core, _ = _lone_core(SwimConfig())
    core.receive("p1", Gossip((Alive("newcomer", 0, "eu"),)), 0.0)
    [joined] = core.events()
    assert isinstance(joined, MemberJoined) and joined.region == "eu"
    core.receive("p2", Ping(5), 0.01)
    acks = [(d, m) for d, m in core.messages_to_send() if isinstance(m, Ack)]
    assert acks == [("p2", Ack(5, (Alive("newcomer", 0, "eu"),)))]


def test_graceful_leave_is_reported_as_left_not_failed() -> None:
    cluster = Cluster(NAMES[:6], seed=7)
    cluster.run(1.0)
    leaver = NAMES[2]
    cluster.nodes[leaver].leave(cluster.now)
    cluster.flush(leaver)
    cluster.run(2.0)
    assert cluster.nodes[leaver].leave_done
    cluster.crashed.add(leaver)  # the process exits
    cluster.run(15.0)
    left = cluster.of_type(MemberLeft, leaver)
    assert {n for n, _ in left} == set(cluster.live())
    assert not cluster.failed(leaver)
    for n in cluster.live():
        assert cluster.state_of(n, leaver) == MemberState.LEFT
    assert cluster.nodes[leaver].members()[0].state == MemberState.LEFT
    with pytest.raises(StateError):
        cluster.nodes[leaver].join([NAMES[0]], cluster.now)


def test_join_via_a_seed() -> None:
    cluster = Cluster(NAMES[:5], seed=8)
    cluster.run(1.0)
    joiner = cluster.add("joiner")
    joiner.join([NAMES[0]], cluster.now)
    cluster.flush("joiner")
    cluster.run(4.0)
    for n in cluster.names:
        if n != "joiner":
            assert cluster.state_of(n, "joiner") == MemberState.ALIVE
    assert sorted(joiner.alive_members()) == sorted(NAMES[:5])
    joined = [e for e in cluster.events["joiner"] if isinstance(e, MemberJoined)]
    assert len(joined) == 5


def test_cluster_without_shared_view_forms_by_joins() -> None:
    names = NAMES[:6]
    cluster = Cluster(names, seed=9, shared_view=False)
    for i, n in enumerate(names[1:], 1):
        cluster.nodes[n].join([names[i - 1]], cluster.now)
        cluster.flush(n)
        cluster.run(cluster.now + 0.5)
    cluster.run(10.0)
    for n in names:
        assert sorted(cluster.nodes[n].alive_members()) == sorted(set(names) - {n})
    assert not any(cluster.failed(n) for n in names)


def test_push_pull_heals_a_partition() -> None:
    config = SwimConfig(push_pull_interval=3.0)
    cluster = Cluster(NAMES, seed=10, config=config)
    cluster.run(1.0)
    side_a, side_b = set(NAMES[:4]), set(NAMES[4:])
    cluster.groups = [side_a, side_b]
    cluster.run(20.0)
    for n in side_a:  # each side declared the other dead
        assert all(cluster.state_of(n, m) == MemberState.DEAD for m in side_b)
    cluster.groups = None
    cluster.run(60.0)
    for n in NAMES:
        assert sorted(cluster.nodes[n].alive_members()) == sorted(set(NAMES) - {n})
    assert any(isinstance(e, Refuted) for n in NAMES for e in cluster.events[n])


def test_dead_members_are_reaped() -> None:
    config = SwimConfig(dead_reclaim=10.0)
    cluster = Cluster(NAMES[:5], seed=11, config=config)
    cluster.crashed.add(NAMES[4])
    cluster.run(8.0)
    assert cluster.state_of(NAMES[0], NAMES[4]) == MemberState.DEAD
    cluster.run(25.0)
    for n in cluster.live():
        assert cluster.nodes[n].member(NAMES[4]) is None
        assert NAMES[4] not in [m.agent for m in cluster.nodes[n].members()]


def test_large_state_travels_in_chunks_and_is_answered_after_the_last() -> None:
    names = [f"member-{i:04d}" for i in range(1000)]
    view = InitialView({n: "eu-west" for n in names})
    a = Membership(names[0], SwimConfig(), random.Random(1), 0.0, initial=view)
    b = Membership("newcomer", SwimConfig(), random.Random(2), 0.0)
    b.join([names[0]], 0.0)
    [(dst, request)] = b.messages_to_send()
    assert dst == names[0] and isinstance(request, PushPull) and not request.more
    a.receive("newcomer", request, 0.01)
    chunks = [m for _, m in a.messages_to_send() if isinstance(m, PushPull)]
    assert len(chunks) == math.ceil(1000 / MAX_PUSHPULL_MEMBERS)
    assert [c.more for c in chunks] == [True] * (len(chunks) - 1) + [False]
    assert all(c.response for c in chunks)
    assert all(len(encode_swim(c)) <= MAX_SWIM_MESSAGE for c in chunks)
    for chunk in chunks:
        b.receive(names[0], chunk, 0.02)
    assert not [m for _, m in b.messages_to_send() if isinstance(m, PushPull)]
    assert len(b.alive_members()) == 1000
    # a chunked request is answered once, after its last chunk
    c = Membership("other", SwimConfig(), random.Random(3), 0.0, initial=view)
    for chunk in chunks:
        c.receive(names[0], PushPull(False, chunk.members, chunk.more), 0.03)
        replies = [m for _, m in c.messages_to_send() if isinstance(m, PushPull)]
        assert bool(replies) == (not chunk.more)


def test_region_change_is_gossiped() -> None:
    cluster = Cluster(NAMES[:5], seed=12)
    cluster.run(0.5)
    cluster.nodes[NAMES[1]].set_region("ap-south", cluster.now)
    cluster.run(3.0)
    for n in cluster.live():
        info = cluster.nodes[n].member(NAMES[1])
        assert info is not None and info.region == "ap-south" and info.incarnation == 1
    updated = cluster.of_type(MemberUpdated, NAMES[1])
    assert len(updated) == 4


def test_lossy_network_has_no_false_positives() -> None:
    cluster = Cluster(NAMES, seed=13, loss=0.05)
    cluster.run(30.0)
    assert not any(cluster.failed(n) for n in NAMES)


def test_members_snapshot_and_views() -> None:
    core, peers = _lone_core(SwimConfig())
    members = core.members()
    assert members[0].agent == "me" and members[0].state == MemberState.ALIVE
    assert sorted(m.agent for m in members[1:]) == peers
    assert sorted(core.alive_members()) == peers
    assert core.is_alive("p1") and not core.is_alive("me") and not core.is_alive("nobody")
    assert core.member("nobody") is None
    assert core.num_live == 4


def test_config_and_arguments_are_validated() -> None:
    with pytest.raises(InvalidArgument):
        SwimConfig(probe_interval=0)
    with pytest.raises(InvalidArgument):
        SwimConfig(suspicion_min=5.0, suspicion_max=1.0)
    with pytest.raises(InvalidArgument):
        SwimConfig(probe_timeout=1.0, indirect_timeout=0.5)
    with pytest.raises(InvalidArgument):
        SwimConfig(max_piggyback=MAX_UPDATES_PER_MESSAGE + 1)
    with pytest.raises(InvalidArgument):
        Membership("bad id", SwimConfig(), random.Random(1), 0.0)
    with pytest.raises(InvalidArgument):
        Membership("ok", SwimConfig(), random.Random(1), 0.0, region="x" * 100)
    with pytest.raises(InvalidArgument):
        InitialView({"a b": ""})


# ---- invariants under random schedules ---------------------------------------------------


class SwimMachine(RuleBasedStateMachine):
    """Random crashes, leaves, joins, false accusations and time steps on a loss-free
    network. Invariants: incarnations never decrease, no node ever sees itself dead, and
    a node that never crashed or left is never declared dead by the protocol (a forged
    ``Dead`` is believed until the victim refutes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster([f"m{i}" for i in range(6)], seed=21)
        self.gone: set[str] = set()  # crashed or left
        self.seen_inc: dict[tuple[str, str], int] = {}
        self.joined = 0

    def _alive(self) -> list[str]:
        return [n for n in self.cluster.names if n not in self.gone]

    @rule(seconds=st.floats(0.05, 3.0))
    def advance(self, seconds: float) -> None:
        self.cluster.run(self.cluster.now + seconds)

    @precondition(lambda self: len(self._alive()) > 3)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        victim = data.draw(st.sampled_from(self._alive()))
        self.cluster.crashed.add(victim)
        self.gone.add(victim)

    @precondition(lambda self: len(self._alive()) > 3)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        leaver = data.draw(st.sampled_from(self._alive()))
        self.cluster.nodes[leaver].leave(self.cluster.now)
        self.cluster.flush(leaver)
        self.gone.add(leaver)
        self.cluster.run(self.cluster.now + 2.0)
        self.cluster.crashed.add(leaver)

    @precondition(lambda self: self.joined < 3)
    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        seed = data.draw(st.sampled_from(self._alive()))
        self.joined += 1
        name = f"j{self.joined}"
        self.cluster.add(name).join([seed], self.cluster.now)
        self.cluster.flush(name)

    @rule(data=st.data(), dead=st.booleans())
    def false_accusation(self, data: st.DataObject, dead: bool) -> None:
        alive = self._alive()
        target = data.draw(st.sampled_from(alive))
        hearer = data.draw(st.sampled_from(alive))
        info = self.cluster.nodes[hearer].member(target)
        inc = 0 if info is None else info.incarnation
        update: Update = Dead(target, inc, "liar") if dead else Suspect(target, inc, "liar")
        self.cluster.nodes[hearer].receive("liar", Gossip((update,)), self.cluster.now)
        self.cluster.flush(hearer)

    @invariant()
    def incarnations_never_decrease(self) -> None:
        for name, node in self.cluster.nodes.items():
            for m in node.members():
                key = (name, m.agent)
                assert m.incarnation >= self.seen_inc.get(key, 0)
                self.seen_inc[key] = m.incarnation

    @invariant()
    def nobody_sees_itself_dead(self) -> None:
        for node in self.cluster.nodes.values():
            me = node.members()[0]
            assert me.agent == node.local
            assert me.state in (MemberState.ALIVE, MemberState.LEFT)

    @invariant()
    def live_nodes_are_never_declared_dead(self) -> None:
        # (a forged Dead update from "liar" is believed, then refuted: not the protocol's)
        for name in self._alive():
            observers = [
                (n, e)
                for n, e in self.cluster.of_type(MemberFailed, name)
                if e.declared_by != "liar"  # type: ignore[union-attr]
            ]
            assert not observers, f"{name} declared dead by {observers}"


TestSwimMachine = SwimMachine.TestCase
TestSwimMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)


# ---- codec ---------------------------------------------------------------------------


agents = st.sampled_from(["a", "node-1", "z" * MAX_AGENT_ID_LENGTH, "A!~x", "p2"])
incs = st.integers(0, 2**32 - 1)
regions = st.sampled_from(["", "eu-west", "日本", "r" * MAX_REGION_LENGTH])
updates: st.SearchStrategy[Update] = st.one_of(
    st.builds(Alive, agents, incs, regions),
    st.builds(Suspect, agents, incs, agents),
    st.builds(Dead, agents, incs, agents),
    st.builds(Left, agents, incs),
)
update_lists = st.lists(updates, max_size=MAX_UPDATES_PER_MESSAGE).map(tuple)
messages: st.SearchStrategy[SwimMessage] = st.one_of(
    st.builds(Ping, incs, update_lists),
    st.builds(Ack, incs, update_lists),
    st.builds(PingReq, incs, agents, update_lists),
    st.builds(Nack, incs, update_lists),
    st.builds(Gossip, update_lists),
    st.builds(
        PushPull,
        st.booleans(),
        st.lists(updates, max_size=MAX_PUSHPULL_MEMBERS).map(tuple),
        st.booleans(),
    ),
)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_codec_round_trip_and_exact_size(msg: SwimMessage) -> None:
    data = encode_swim(msg)
    assert decode_swim(data) == msg
    assert encoded_size(msg) == len(data)
    assert encode_swim(decode_swim(data)) == data


@settings(max_examples=60, deadline=None)
@given(messages)
def test_codec_truncations_raise_protocol_violation(msg: SwimMessage) -> None:
    data = encode_swim(msg)
    cuts = range(len(data)) if len(data) < 200 else range(0, len(data), len(data) // 97 + 1)
    for cut in cuts:
        with pytest.raises(ProtocolViolation):
            decode_swim(data[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_codec_garbage_raises_protocol_violation_only(data: bytes) -> None:
    try:
        msg = decode_swim(data)
    except ProtocolViolation:
        return
    assert encode_swim(msg) == data  # anything accepted is canonical


@settings(max_examples=100, deadline=None)
@given(messages, st.data())
def test_codec_mutations_raise_protocol_violation_only(
    msg: SwimMessage, data: st.DataObject
) -> None:
    raw = bytearray(encode_swim(msg))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_swim(bytes(raw))
    except ProtocolViolation:
        return
    assert encode_swim(decoded) == bytes(raw)


def test_golden_bytes() -> None:
    assert encode_swim(Ping(1)) == bytes([0x83, 0x01, 0x01, 0x80])
    assert encode_swim(Gossip((Alive("a", 2, "r"),))) == bytes.fromhex("82058184006161026172")
    assert encode_swim(Gossip((Left("a", 0),))) == bytes.fromhex("820581830361610" + "0")
    assert encode_swim(PushPull(True, ())) == bytes.fromhex("8406f5f480")
    assert encode_swim(PushPull(False, (), more=True)) == bytes.fromhex("8406f4f580")
    assert encode_swim(PingReq(7, "t", ())) == bytes.fromhex("8403076174" + "80")


def test_codec_limits() -> None:
    many = tuple(Left(f"a{i}", 0) for i in range(MAX_UPDATES_PER_MESSAGE + 1))
    with pytest.raises(InvalidArgument):
        encode_swim(Gossip(many))
    with pytest.raises(InvalidArgument):
        encode_swim(Ping(2**32))
    with pytest.raises(InvalidArgument):
        encode_swim(Gossip((Alive("a" * (MAX_AGENT_ID_LENGTH + 1), 0),)))
    with pytest.raises(InvalidArgument):
        encode_swim(Gossip((Alive("a", 0, "x" * (MAX_REGION_LENGTH + 1)),)))
    with pytest.raises(InvalidArgument):
        encode_swim(Gossip((Alive("has space", 0),)))
    # the decoder enforces the same limits on hand-made CBOR
    bad: list[cbor.CborValue] = [
        [5, [[3, "a", 0]] * (MAX_UPDATES_PER_MESSAGE + 1)],
        [1, 2**32, []],
        [1, -1, []],
        [5, [[0, "a" * (MAX_AGENT_ID_LENGTH + 1), 0, ""]]],
        [5, [[0, "a", 0, "x" * (MAX_REGION_LENGTH + 1)]]],
        [5, [[0, "a", 0, "bad\nregion"]]],
        [5, [[9, "a", 0, ""]]],
        [5, [[3, "a", 0, "extra"]]],
        [6, 1, False, []],
        [6, True, 0, []],
        [6, True, []],
        [6, True, False, [[3, "a", 0]] * (MAX_PUSHPULL_MEMBERS + 1)],
        [7, []],
        [1, True, []],
        {"kind": 1},
        [],
    ]
    for value in bad:
        with pytest.raises(ProtocolViolation):
            decode_swim(cbor.encode(value))
    with pytest.raises(ProtocolViolation):
        decode_swim(b"\x82\x05" + b"\x00" * MAX_SWIM_MESSAGE)
    with pytest.raises(ProtocolViolation):
        decode_swim("not bytes")  # type: ignore[arg-type]

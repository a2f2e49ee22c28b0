"""The replicated-state core: deltas, push-pull anti-entropy, wire codec, persistence."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlink.errors import InvalidArgument, NotFound, ProtocolViolation, StateError
from swarmlink.gossip._crdt import Op, State, VersionVector
from swarmlink.gossip._replica import (
    MAX_DELTA_SIZE,
    MAX_REPLICA_MESSAGE,
    MAX_STATE_NAME,
    MAX_STATES_PER_DIGEST,
    Digest,
    ReplicaConfig,
    ReplicaMessage,
    Replicas,
    StateMsg,
    decode_replica_message,
    encode_replica_message,
    message_size,
    validate_state_name,
)
from swarmlink.gossip._replica_events import StateChanged, StateCreated
from swarmlink.wire import cbor

NAMES = ["alpha", "beta", "gamma", "delta-1", "e.f_g"]


class Net:
    """A tiny in-memory network: deltas go to every other core (as pub/sub would),
    replica messages to their peer through the wire codec. ``groups`` partitions it;
    ``loss`` drops deltas (anti-entropy messages are always delivered when connected)."""

    def __init__(self, cores: Sequence[Replicas], rng: random.Random, loss: float = 0.0) -> None:
        self.cores = {c.local: c for c in cores}
        self.rng = rng
        self.loss = loss
        self.now = 0.0
        self.group: dict[str, int] = {}
        self.messages = 0
        for core in cores:
            core.set_peers(self.cores)

    def partition(self, groups: Sequence[Collection[str]] | None) -> None:
        self.group = {a: i for i, g in enumerate(groups or []) for a in g}

    def connected(self, a: str, b: str) -> bool:
        return self.group.get(a, -1) == self.group.get(b, -1)

    def pump(self) -> None:
        """Deliver everything in flight (and what it causes) until quiet."""
        for _ in range(100):
            moved = False
            for src, core in self.cores.items():
                for name, delta in core.deltas_to_broadcast():
                    for dst, other in self.cores.items():
                        if (
                            dst != src
                            and self.connected(src, dst)
                            and self.rng.random() >= self.loss
                        ):
                            other.receive_delta(name, delta, self.now, src)
                    moved = True
                for dst, msg in core.messages_to_send():
                    moved = True
                    self.messages += 1
                    wire = decode_replica_message(encode_replica_message(msg))
                    if self.connected(src, dst):
                        self.cores[dst].receive(src, wire, self.now)
            if not moved:
                return
        raise AssertionError("the network never went quiet")

    def run(self, seconds: float, step: float = 0.25) -> None:
        """Advance virtual time, firing due timers and delivering messages."""
        end = self.now + seconds
        while self.now < end:
            self.now += step
            for core in self.cores.values():
                timer = core.get_timer()
                if timer is not None and timer <= self.now:
                    core.handle_timer(self.now)
            self.pump()

    def write(self, who: str, name: str, op: Op, key: str, value: Any = None) -> None:
        self.cores[who].apply_local(name, op, key, value, 1000.0 + self.now)
        self.pump()

    def converged(self) -> bool:
        """Every core holds the same states (a state only created, still empty, may be
        missing elsewhere: nobody needs to fetch nothing)."""
        names = sorted({n for c in self.cores.values() for n in c.state_names()})
        copies = [
            [c.get_state(n) if c.has_state(n) else State() for n in names]
            for c in self.cores.values()
        ]
        return all(states == copies[0] for states in copies)


def make(n: int, **config: Any) -> list[Replicas]:
    return [Replicas(f"n{i}", ReplicaConfig(**config), random.Random(i)) for i in range(n)]


def changes(core: Replicas) -> list[tuple[str, str, Any, bool, str]]:
    return [
        (e.name, e.key, e.value, e.deleted, e.origin)
        for e in core.events()
        if isinstance(e, StateChanged)
    ]


# ---- deltas ------------------------------------------------------------------------------


def test_deltas_replicate_between_two_cores() -> None:
    a, b = make(2)
    net = Net([a, b], random.Random(1))
    events = a.apply_local("doc", Op.SET, "k", {"v": 1}, 10.0)
    assert events == [StateChanged("doc", "k", {"v": 1}, False, "n0")]
    assert a.events() == events  # also queued
    net.pump()
    assert b.events() == [
        StateCreated("doc", "n0"),
        StateChanged("doc", "k", {"v": 1}, False, "n0"),
    ]
    net.write("n0", "doc", Op.ADD, "tags", "x")
    assert b.state_names() == ["doc"]
    assert b.get_state("doc").to_dict() == {"k": {"v": 1}, "tags": ["x"]}


def test_remote_changes_raise_events_with_the_author_as_origin() -> None:
    a, b = make(2)
    net = Net([a, b], random.Random(1))
    net.write("n0", "doc", Op.INCREMENT, "c", 2)
    assert b.events() == [
        StateCreated("doc", "n0"),
        StateChanged("doc", "c", 2, False, "n0"),
    ]
    net.write("n1", "doc", Op.SET, "r", 1)
    net.write("n1", "doc", Op.DELETE, "r")
    assert changes(a) == [
        ("doc", "c", 2, False, "n0"),
        ("doc", "r", 1, False, "n1"),
        ("doc", "r", None, True, "n1"),
    ]
    net.write("n0", "doc", Op.SET, "c2", 5)
    net.write("n0", "doc", Op.SET, "c2", 5)  # same value again: no visible change
    assert changes(b) == [
        ("doc", "r", 1, False, "n1"),
        ("doc", "r", None, True, "n1"),
        ("doc", "c2", 5, False, "n0"),
    ]
    assert net.converged()


def test_deltas_of_one_name_are_joined_until_drained() -> None:
    a, b = make(2)
    for i in range(5):
        a.apply_local("doc", Op.ADD, "s", i, 1.0)
    a.apply_local("other", Op.SET, "k", 1, 1.0)
    out = a.deltas_to_broadcast()
    assert [name for name, _ in out] == ["doc", "other"]
    assert a.deltas_to_broadcast() == []
    for name, data in out:
        b.receive_delta(name, data, 1.0, "n0")
    assert b.get_state("doc") == a.get_state("doc") and b.get_state("other") == a.get_state("other")
    assert a.stats.deltas_published == 2 and b.stats.deltas_received == 2


def test_big_bursts_are_split_into_deltas_under_the_limit() -> None:
    a, b = make(2)
    for i in range(20):
        a.apply_local("doc", Op.SET, f"k{i}", b"x" * 4000, 1.0)
    out = a.deltas_to_broadcast()
    assert len(out) > 1 and all(len(data) <= MAX_DELTA_SIZE for _, data in out)
    for name, data in reversed(out):  # any order
        b.receive_delta(name, data, 1.0, "n0")
    assert b.get_state("doc") == a.get_state("doc")


def test_no_op_operations_publish_nothing() -> None:
    (a,) = make(1)
    a.apply_local("doc", Op.REMOVE, "s", "absent", 1.0)
    assert a.deltas_to_broadcast() == [] and a.events() == []
    with pytest.raises(InvalidArgument):
        a.apply_local("doc", Op.SET, "s", {1, 2}, 1.0)  # type: ignore[arg-type]
    a.apply_local("doc", Op.INCREMENT, "c", None, 1.0)
    with pytest.raises(InvalidArgument):
        a.apply_local("doc", Op.SET, "c", 1, 1.0)  # a counter key
    with pytest.raises(InvalidArgument):
        a.apply_local("no spaces", Op.SET, "k", 1, 1.0)
    assert len(a.deltas_to_broadcast()) == 1 and a.get_state("doc").to_dict() == {"c": 1}


# ---- anti-entropy ------------------------------------------------------------------------


def test_partition_then_heal_converges_by_anti_entropy() -> None:
    cores = make(3)
    net = Net(cores, random.Random(7))
    net.write("n0", "doc", Op.SET, "shared", "before")
    net.partition([["n0", "n1"], ["n2"]])
    net.write("n0", "doc", Op.SET, "shared", "left")
    net.write("n1", "doc", Op.ADD, "set", "from-left")
    net.write("n2", "doc", Op.ADD, "set", "from-right")
    net.write("n2", "doc", Op.REMOVE, "set", "from-right")
    net.write("n2", "doc", Op.ADD, "set", "again")
    net.write("n2", "doc", Op.INCREMENT, "count", 5)
    net.write("n1", "doc", Op.INCREMENT, "count", -2)
    net.write("n2", "other", Op.SET, "only-right", True)
    net.run(20)
    assert cores[0].get_state("doc") == cores[1].get_state("doc")
    assert cores[0].get_state("doc") != cores[2].get_state("doc")
    assert not cores[0].has_state("other")
    net.partition(None)
    net.run(30)
    assert net.converged()
    doc = cores[0].get_state("doc").to_dict()
    assert doc == {"count": 3, "set": ["again", "from-left"], "shared": "left"}
    assert cores[0].get_state("other").to_dict() == {"only-right": True}


def test_lost_deltas_are_repaired_by_anti_entropy() -> None:
    cores = make(4)
    net = Net(cores, random.Random(3), loss=0.6)
    rng = random.Random(5)
    for i in range(40):
        who = f"n{rng.randrange(4)}"
        name = rng.choice(NAMES[:3])
        op = rng.choice([Op.SET, Op.ADD, Op.REMOVE, Op.INCREMENT])
        value = rng.randrange(3)
        with contextlib.suppress(InvalidArgument):
            net.write(who, name, op, f"{op}-{i % 3}", value)
    assert not net.converged()
    net.loss = 0.0
    net.run(60)
    assert net.converged()
    for core in cores:
        for name in core.state_names():
            assert not core.get_state(name).context().cloud


def test_a_newcomer_pulls_every_state() -> None:
    old = make(2)
    net = Net(old, random.Random(1))
    for name in NAMES:
        net.write("n0", name, Op.SET, "k", name)
    (new,) = [Replicas("n9", ReplicaConfig(), random.Random(9))]
    net.cores["n9"] = new
    for core in net.cores.values():
        core.set_peers(net.cores)
    new.sync_with("n1")
    net.pump()
    assert new.state_names() == sorted(NAMES)
    created = [e.name for e in new.events() if isinstance(e, StateCreated)]
    assert sorted(created) == sorted(NAMES)
    assert net.converged()


def test_push_pull_in_one_exchange() -> None:
    a, b = make(2)
    net = Net([a, b], random.Random(1))
    net.partition([["n0"], ["n1"]])
    net.write("n0", "x", Op.SET, "k", "a")  # only a has x
    net.write("n1", "y", Op.SET, "k", "b")  # only b has y
    net.write("n0", "z", Op.SET, "k", "a")  # both have z, a's copy is older
    net.write("n1", "z", Op.SET, "k", "b")
    net.partition(None)
    net.messages = 0
    a.sync_with("n1")
    net.pump()
    assert net.converged()
    # digest; states x, z + reply digest asking for y and z; states y, z
    assert net.messages == 6
    assert a.get_state("z").get("k") == "b"
    net.messages = 0
    a.sync_with("n1")
    net.pump()
    assert net.messages == 1  # in sync: just the digest


def test_digests_walk_through_many_names_in_chunks() -> None:
    a, b = make(2, digest_names=2)
    net = Net([a, b], random.Random(1))
    net.partition([["n0"], ["n1"]])
    for name in ["a1", "a3", "a5", "a7", "a9"]:
        net.write("n0", name, Op.SET, "k", 1)
    for name in ["a0", "a2", "a4", "a6", "a8", "b"]:  # between and around a's names
        net.write("n1", name, Op.SET, "k", 2)
    net.partition(None)
    ranges = []
    for _ in range(3):
        a.handle_timer(a.get_timer() or 0.0)
        sent = a.messages_to_send()
        assert len(sent) == 1
        digest = sent[0][1]
        assert isinstance(digest, Digest) and len(digest.versions) <= 2
        ranges.append((digest.after, digest.upto))
        b.receive("n0", digest, 0.0)
        net.pump()
    assert ranges == [(None, "a3"), ("a3", "a7"), ("a7", None)]
    assert a.state_names() == b.state_names() and len(a.state_names()) == 11
    net.run(10)
    assert net.converged()


@settings(max_examples=50)
@given(
    st.sets(st.sampled_from([*NAMES, "a", "z", "m0", "m1"]), max_size=9),
    st.sets(st.sampled_from([*NAMES, "a", "z", "m0", "m1"]), max_size=9),
    st.integers(1, 4),
)
def test_one_digest_cycle_covers_every_name(mine: set[str], theirs: set[str], chunk: int) -> None:
    a, b = make(2, digest_names=chunk)
    for name in mine:
        a.apply_local(name, Op.SET, "k", "a", 1.0)
    for name in theirs:
        b.apply_local(name, Op.SET, "k", "b", 2.0)
    a.sync_with("n1")
    for _, msg in a.messages_to_send():
        b.receive("n0", msg, 0.0)
    for _, msg in b.messages_to_send():
        a.receive("n1", msg, 0.0)
    for _, msg in a.messages_to_send():
        b.receive("n0", msg, 0.0)
    assert a.state_names() == b.state_names() == sorted(mine | theirs)
    for name in mine | theirs:
        assert a.get_state(name) == b.get_state(name)


@pytest.mark.parametrize("budget", [1, 300])
def test_answers_are_bounded_and_finish_over_rounds(budget: int) -> None:
    a, b = make(2, answer_bytes=budget)
    net = Net([a, b], random.Random(1))
    net.partition([["n0"], ["n1"]])
    for name in NAMES:
        net.write("n0", name, Op.SET, "k", "v" * 100)
    net.partition(None)
    b.sync_with("n0")
    net.pump()
    assert (len(b.state_names()) == 1) if budget == 1 else (1 < len(b.state_names()) < 5)
    net.run(60)
    assert net.converged()


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(NAMES[:2]),
            st.sampled_from([Op.SET, Op.ADD, Op.REMOVE, Op.INCREMENT, Op.DELETE]),
            st.sampled_from(["k1", "k2"]),
            st.integers(0, 2),
            st.booleans(),
        ),
        min_size=5,
        max_size=30,
    ),
    st.integers(0, 1000),
)
def test_random_partitions_and_loss_converge(steps: list[tuple[Any, ...]], seed: int) -> None:
    cores = make(3)
    net = Net(cores, random.Random(seed), loss=0.3)
    for who, name, op, key, value, split in steps:
        net.partition([["n0"], ["n1", "n2"]] if split else None)
        with contextlib.suppress(InvalidArgument):
            net.write(f"n{who}", name, op, key, value)
    net.partition(None)
    net.loss = 0.0
    net.run(40, step=1.0)
    assert net.converged()


# ---- timer ---------------------------------------------------------------------------------


def test_timer_runs_rounds_every_jittered_interval() -> None:
    (a,) = make(1, anti_entropy_interval=5.0, jitter=0.2)
    assert a.get_timer() == 0.0
    a.handle_timer(0.0)  # no peers: just schedules
    assert a.messages_to_send() == []
    first = a.get_timer()
    assert first is not None and 4.0 <= first <= 6.0
    a.handle_timer(first - 1.0)  # early: nothing
    assert a.get_timer() == first
    a.set_peers(["p1", "p2", "n0"])
    seen = set()
    now = first
    for _ in range(20):
        a.handle_timer(now)
        (sent,) = a.messages_to_send()
        seen.add(sent[0])
        nxt = a.get_timer()
        assert nxt is not None and 4.0 <= nxt - now <= 6.0
        now = nxt
    assert seen == {"p1", "p2"}  # never itself
    assert a.stats.digests_sent == 20


# ---- persistence ---------------------------------------------------------------------------


def test_snapshot_restore_and_dirty_tracking() -> None:
    a, b = make(2)
    a.apply_local("doc", Op.SET, "k", 1, 1.0)
    a.apply_local("doc", Op.ADD, "s", "x", 1.0)
    assert a.take_dirty() == {"doc"} and a.take_dirty() == set()
    delta = a.deltas_to_broadcast()[0][1]
    b.receive_delta("doc", delta, 1.0, "n0")
    assert b.take_dirty() == {"doc"}
    b.receive_delta("doc", delta, 1.0, "n0")  # duplicate: nothing changed
    assert b.take_dirty() == set()
    saved = a.snapshot("doc")
    restarted = Replicas("n0", ReplicaConfig(), random.Random(0))
    restarted.restore("doc", saved)
    assert restarted.get_state("doc") == a.get_state("doc")
    assert restarted.events() == [] and restarted.take_dirty() == set()
    restarted.apply_local("doc", Op.SET, "k", 2, 2.0)  # continues its own dots
    assert restarted.get_state("doc").version_vector().to_dict() == {"n0": 3}
    with pytest.raises(NotFound):
        a.snapshot("missing")
    with pytest.raises(ProtocolViolation):
        restarted.restore("doc", saved[:-1])
    with pytest.raises(InvalidArgument):
        restarted.restore("bad name", saved)
    assert restarted.get_state("doc").get("k") == 2


# ---- limits and bad input --------------------------------------------------------------------


def test_state_count_limit() -> None:
    a, b = make(2, max_states=2)
    a.get_state("one")
    a.get_state("two")
    with pytest.raises(StateError):
        a.get_state("three")
    b.apply_local("three", Op.SET, "k", 1, 1.0)
    ((name, data),) = b.deltas_to_broadcast()
    a.receive_delta(name, data, 1.0, "n1")
    assert not a.has_state("three") and a.stats.states_refused == 1
    b.receive("n0", Digest(()), 0.0)
    ((_, state_msg),) = b.messages_to_send()
    a.receive("n1", state_msg, 0.0)
    assert a.state_names() == ["one", "two"]


def snapshot(core: Replicas) -> dict[str, bytes]:
    return {name: core.snapshot(name) for name in core.state_names()}


@pytest.mark.parametrize(
    "msg",
    [
        StateMsg("doc", b"garbage"),
        StateMsg("doc", cbor.encode({"a": ["x"], "v": [0, 1], "s": ["k", [b"\x01", [0, 2]]]})),
        StateMsg("bad name", State().encode()),
        StateMsg("", State().encode()),
    ],
)
def test_bad_states_raise_and_change_nothing(msg: StateMsg) -> None:
    (a,) = make(1)
    a.apply_local("doc", Op.SET, "k", 1, 1.0)
    a.events()
    a.take_dirty()
    before = snapshot(a)
    with pytest.raises(ProtocolViolation):
        a.receive("n1", msg, 1.0)
    with pytest.raises(ProtocolViolation):
        a.receive_delta(msg.name, msg.state, 1.0, "n1")
    assert snapshot(a) == before and a.events() == [] and a.take_dirty() == set()
    with pytest.raises(InvalidArgument):
        a.receive("n1", "not a message", 1.0)  # type: ignore[arg-type]


def test_empty_states_from_peers_create_nothing() -> None:
    (a,) = make(1)
    a.receive("n1", StateMsg("doc", State().encode()), 0.0)
    a.receive_delta("doc", State().encode(), 0.0, "n1")
    assert a.state_names() == [] and a.events() == []


def test_names() -> None:
    for good in ["a", "A-b_c.d", "0", "x" * MAX_STATE_NAME]:
        assert validate_state_name(good) == good
    for bad in ["", "-a", ".a", "a b", "a/b", "é", "x" * (MAX_STATE_NAME + 1), 3, None]:
        with pytest.raises(InvalidArgument):
            validate_state_name(bad)  # type: ignore[arg-type]


def test_config_is_checked() -> None:
    bads: list[dict[str, Any]] = [
        {"anti_entropy_interval": 0.0},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_states": 0},
        {"digest_names": 0},
        {"digest_names": MAX_STATES_PER_DIGEST + 1},
        {"answer_bytes": 0},
    ]
    for bad in bads:
        with pytest.raises(InvalidArgument):
            ReplicaConfig(**bad)
    with pytest.raises(InvalidArgument):
        Replicas("", ReplicaConfig(), random.Random(0))


# ---- wire codec ------------------------------------------------------------------------------

agents = st.sampled_from(["a", "b", "agent-c", "z" * 52])
vvs = st.dictionaries(agents, st.integers(1, 2**40), max_size=4).map(VersionVector)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
digests = st.builds(
    Digest,
    st.dictionaries(names, vvs, max_size=6).map(lambda d: tuple(sorted(d.items()))),
    st.none() | names,
    st.none() | names,
    st.booleans(),
)
state_msgs = st.builds(StateMsg, names, st.binary(max_size=100))


@given(digests | state_msgs)
def test_messages_round_trip(msg: ReplicaMessage) -> None:
    data = encode_replica_message(msg)
    assert decode_replica_message(data) == msg
    assert encode_replica_message(decode_replica_message(data)) == data
    assert message_size(msg) >= len(data) // 2


@given(digests | state_msgs, st.data())
def test_damaged_messages_raise_protocol_violation_only(
    msg: ReplicaMessage, data: st.DataObject
) -> None:
    encoded = encode_replica_message(msg)
    for cut in range(len(encoded)):
        with pytest.raises(ProtocolViolation):
            decode_replica_message(encoded[:cut])
    damaged = bytearray(encoded)
    for pos, xor in data.draw(
        st.lists(st.tuples(st.integers(0, len(encoded) - 1), st.integers(1, 255)), max_size=3)
    ):
        damaged[pos] ^= xor
    with contextlib.suppress(ProtocolViolation):
        decode_replica_message(bytes(damaged))


@given(st.binary(max_size=300))
def test_message_garbage_raises_protocol_violation_only(data: bytes) -> None:
    with contextlib.suppress(ProtocolViolation):
        decode_replica_message(data)


@pytest.mark.parametrize(
    "body",
    [
        [],
        [3, "doc", b""],
        [True, "doc", b""],
        [2, "doc"],
        [2, "bad name", b""],
        [2, "doc", "text"],
        [2, "doc", b"x" * (MAX_REPLICA_MESSAGE - 100)],
        [1, False, None, None, [], []],
        [1, 1, None, None, [], []],
        [1, False, "bad name", None, [], []],
        [1, False, None, None, ["a", "a"], []],
        [1, False, None, None, ["a"], ["b", [0, 1], "a", [0, 1]]],  # unsorted
        [1, False, None, None, ["a"], ["a", [0, 1], "a", [0, 1]]],  # repeated
        [1, False, None, None, ["a"], ["a", [1, 1]]],  # agent index out of range
        [1, False, None, None, ["a"], ["a", [0, 0]]],
        [
            1,
            False,
            None,
            None,
            [],
            [x for i in range(MAX_STATES_PER_DIGEST + 1) for x in (f"n{i:04}", [])],  # type: ignore[var-annotated]
        ],
    ],
)
def test_decoder_refuses_malformed_messages(body: list[Any]) -> None:
    data = cbor.encode(body)
    if body == [1, False, None, None, [], []]:
        assert decode_replica_message(data) == Digest(())
        return
    with pytest.raises(ProtocolViolation):
        decode_replica_message(data)


def test_oversized_messages_are_refused() -> None:
    with pytest.raises(ProtocolViolation):
        decode_replica_message(b"\x00" * (MAX_REPLICA_MESSAGE + 1))
    with pytest.raises(InvalidArgument):
        encode_replica_message(StateMsg("doc", b"x" * MAX_REPLICA_MESSAGE))
    with pytest.raises(InvalidArgument):
        encode_replica_message("nope")  # type: ignore[arg-type]


def test_wire_format_is_pinned() -> None:
    digest = Digest((("doc", VersionVector({"agent-a": 3, "agent-b": 1})),), None, "doc")
    golden = bytes.fromhex("8601f4f663646f6382676167656e742d61676167656e742d628263646f638400030101")
    assert encode_replica_message(digest) == golden
    assert decode_replica_message(golden) == digest
    assert encode_replica_message(StateMsg("doc", b"\xa0")) == bytes.fromhex("830263646f6341a0")

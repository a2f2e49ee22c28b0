"""CRDTs of replicated state: semilattice laws, convergence, semantics, codecs, limits."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlink.errors import InvalidArgument, ProtocolViolation, StateError
from swarmlink.gossip._crdt import (
    MAX_AGENTS,
    MAX_ENCODED_STATE,
    MAX_KEYS,
    MAX_SET_ELEMENTS,
    MAX_STATE_SIZE,
    MAX_VALUE_DEPTH,
    MAX_VALUE_SIZE,
    CausalContext,
    Hlc,
    Kind,
    LWWMap,
    LWWRegister,
    Op,
    ORSet,
    PNCounter,
    State,
    Timestamp,
    Value,
    VersionVector,
    decode_value,
    encode_value,
)
from swarmlink.gossip._crdt_clock import MAX_HLC_LOGICAL
from swarmlink.wire import cbor

T = TypeVar("T")
AGENTS = ["a", "b", "c", "d", "e"]
KEYS = ["k1", "k2", "k3"]
SMALL_VALUES = [None, 0, 1, 1.0, True, False, "x", b"x", [1, "x"], {"a": 1}, -0.0]
TIMES = [1.0, 1.0, 1.0004, 2.0, 0.5]

# ---- values -------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def same(a: Value, b: Value) -> bool:
    """Type-strict equality (1, 1.0 and True differ; -0.0 and 0.0 differ)."""
    return encode_value(a) == encode_value(b)


@given(values)
def test_values_round_trip_exactly(value: Value) -> None:
    data = encode_value(value)
    back = decode_value(data)
    assert same(back, value)
    assert encode_value(back) == data


def test_value_types_are_kept_apart() -> None:
    encodings = {encode_value(v) for v in [1, 1.0, True, "1", b"1", [1], 0.0, -0.0, None]}
    assert len(encodings) == 9
    assert isinstance(decode_value(encode_value(2.5)), float)
    assert decode_value(encode_value((1, (2,)))) == [1, [2]]  # tuples read back as lists


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, {1: "x"}, {"a": {2: 3}}, {1, 2}, object(), 2**64, "\ud800"],
)
def test_non_values_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        encode_value(bad)


def test_value_limits() -> None:
    encode_value(b"x" * (MAX_VALUE_SIZE - 3))
    with pytest.raises(InvalidArgument, match="exceeds"):
        encode_value(b"x" * MAX_VALUE_SIZE)
    deep: Value = 1
    for _ in range(MAX_VALUE_DEPTH):
        deep = [deep]
    encode_value(deep)
    with pytest.raises(InvalidArgument, match="deeper"):
        encode_value([deep])
    with pytest.raises(ProtocolViolation):
        decode_value(cbor.encode([[[[[[[[[1]]]]]]]]]))
    with pytest.raises(ProtocolViolation):
        decode_value(cbor.encode(b"x" * MAX_VALUE_SIZE))


@pytest.mark.parametrize(
    "data",
    [
        cbor.encode({0: b"\x00" * 7}),
        cbor.encode({0: b"\x7f\xf8" + b"\x00" * 6}),  # NaN
        cbor.encode({0: b"\x00" * 8, "a": 1}),
        cbor.encode({"a": 1, 2: 3}),
        b"",
        b"\xff",
    ],
)
def test_bad_value_encodings(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        decode_value(data)


@given(st.binary(max_size=64))
def test_value_garbage_raises_protocol_violation_only(data: bytes) -> None:
    with contextlib.suppress(ProtocolViolation):
        decode_value(data)


# ---- clocks ----------------------------------------------------------------------------


def test_hlc_is_monotonic_and_follows_physical_time() -> None:
    clock = Hlc("a")
    first = clock.tick(10.0)
    assert first == Timestamp(10_000, 0, "a")
    assert clock.tick(10.0) == Timestamp(10_000, 1, "a")
    assert clock.tick(9.0) == Timestamp(10_000, 2, "a")  # clock went back: logical grows
    assert clock.tick(11.0) == Timestamp(11_000, 0, "a")
    # a write supersedes the stamp it replaces, without dragging the clock along
    ahead = Timestamp(99_000, 5, "z")
    assert clock.tick(11.0, ahead) == Timestamp(99_000, 6, "a")
    assert clock.tick(12.0) == Timestamp(12_000, 0, "a")
    assert clock.tick(12.0, Timestamp(1, 0, "z")) == Timestamp(12_000, 1, "a")


def test_hlc_logical_overflow_moves_the_wall_on() -> None:
    clock = Hlc("a")
    top = Timestamp(5_000, MAX_HLC_LOGICAL, "b")
    assert clock.tick(1.0, top) == Timestamp(5_001, 0, "a")
    for bad_now in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidArgument):
            clock.tick(bad_now)
    with pytest.raises(InvalidArgument):
        Hlc("")


@given(st.lists(st.sampled_from(TIMES), min_size=1, max_size=30))
def test_hlc_stamps_strictly_increase(times: list[float]) -> None:
    clock = Hlc("a")
    stamps = [clock.tick(t) for t in times]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


vectors = st.dictionaries(st.sampled_from(AGENTS), st.integers(0, 6), max_size=4).map(VersionVector)


@given(vectors, vectors, vectors)
def test_version_vector_merge_is_a_join(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    check_laws(a, b, c, VersionVector.copy, VersionVector.merge)
    ab = a.copy()
    ab.merge(b)
    assert a <= ab and b <= ab and ab >= a
    assert (a <= b and b <= a) == (a == b)
    for agent, n in ab.items():
        assert (agent, n) in ab and (agent, n + 1) not in ab
        assert n == max(a.get(agent), b.get(agent))


def test_version_vector_basics() -> None:
    vv = VersionVector({"a": 2, "b": 0})
    assert vv.to_dict() == {"a": 2} and len(vv) == 1 and vv.total() == 2
    assert vv.increment("b") == 1 and vv.get("b") == 1
    assert ("a", 2) in vv and ("a", 3) not in vv and ("a", 0) not in vv and "a" not in vv
    for bad in ({"a": -1}, {"a": True}, {"": 1}, {"a": 2**63}):
        with pytest.raises(InvalidArgument):
            VersionVector(bad)


def test_causal_context_compacts_the_cloud() -> None:
    cc = CausalContext()
    cc.add(("a", 3))
    cc.add(("a", 2))
    assert cc.vv.to_dict() == {} and cc.cloud == {("a", 2), ("a", 3)}
    assert cc.next_dot("a") == ("a", 4)  # never reuses a dot seen out of order
    cc.add(("a", 1))
    assert cc.vv.to_dict() == {"a": 3} and not cc.cloud
    other = CausalContext()
    other.add(("a", 5))
    other.add(("b", 1))
    assert cc.merge(other) and not cc.merge(other)
    assert cc.vv.to_dict() == {"a": 3, "b": 1} and cc.cloud == {("a", 5)}
    assert ("a", 5) in cc and ("a", 4) not in cc
    assert cc.size() == 5 and sorted(cc.dots()) == [("a", n) for n in (1, 2, 3, 5)] + [("b", 1)]
    assert not cc.covered_by(VersionVector({"a": 4, "b": 1}))
    assert cc.covered_by(VersionVector({"a": 5, "b": 1}))


# ---- laws -----------------------------------------------------------------------------


def check_laws(a: T, b: T, c: T, copy: Callable[[T], T], merge: Callable[[T, T], Any]) -> None:
    """merge is commutative, associative and idempotent (checked through copies)."""

    def join(x: T, y: T) -> T:
        out = copy(x)
        merge(out, y)
        return out

    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == a
    ab = join(a, b)
    assert join(ab, b) == ab and join(ab, a) == ab


def pick3(data: st.DataObject, pool: list[T]) -> tuple[T, T, T]:
    index = st.integers(0, len(pool) - 1)
    return pool[data.draw(index)], pool[data.draw(index)], pool[data.draw(index)]


# Random histories: each step is ("op", replica, ...) or ("sync", source, target).
syncs = st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2))


def history(op: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    return st.lists(op | syncs, min_size=1, max_size=24)


def play(
    steps: list[tuple[Any, ...]],
    new: Callable[[int], T],
    do: Callable[[T, int, tuple[Any, ...]], T | None],
    merge: Callable[[T, T], Any],
) -> list[T]:
    """Run a history on 3 replicas; returns the replicas and every delta produced."""
    replicas = [new(i) for i in range(3)]
    deltas: list[T] = []
    for step in steps:
        if step[0] == "sync":
            merge(replicas[step[2]], replicas[step[1]])
            continue
        with contextlib.suppress(InvalidArgument):
            delta = do(replicas[step[1]], step[1], step)
            if delta is not None:
                deltas.append(delta)
    return replicas + deltas


register_ops = st.tuples(
    st.just("op"), st.integers(0, 2), st.sampled_from(SMALL_VALUES), st.sampled_from(TIMES)
)


def register_pool(steps: list[tuple[Any, ...]]) -> list[LWWRegister]:
    clocks = [Hlc(a) for a in AGENTS[:3]]

    def do(reg: LWWRegister, i: int, step: tuple[Any, ...]) -> LWWRegister:
        return reg.set(step[2], clocks[i].tick(step[3], reg.stamp))

    return play(steps, lambda i: LWWRegister(), do, LWWRegister.merge)


@given(history(register_ops), st.data())
def test_lww_register_laws(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    check_laws(*pick3(data, register_pool(steps)), LWWRegister.copy, LWWRegister.merge)


map_ops = st.tuples(
    st.just("op"),
    st.integers(0, 2),
    st.sampled_from(["set", "delete"]),
    st.sampled_from(KEYS),
    st.sampled_from(SMALL_VALUES),
    st.sampled_from(TIMES),
)


def map_pool(steps: list[tuple[Any, ...]]) -> list[LWWMap]:
    clocks = [Hlc(a) for a in AGENTS[:3]]

    def do(lww: LWWMap, i: int, step: tuple[Any, ...]) -> LWWMap:
        _, _, kind, key, value, now = step
        stamp = clocks[i].tick(now, lww.stamp(key))
        return lww.set(key, value, stamp) if kind == "set" else lww.delete(key, stamp)

    return play(steps, lambda i: LWWMap(), do, LWWMap.merge)


@given(history(map_ops), st.data())
def test_lww_map_laws(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    check_laws(*pick3(data, map_pool(steps)), LWWMap.copy, LWWMap.merge)


set_ops = st.tuples(
    st.just("op"),
    st.integers(0, 2),
    st.sampled_from(["add", "remove"]),
    st.sampled_from(["x", "y", 1, 1.0, None, [1]]),
)


def orset_pool(steps: list[tuple[Any, ...]]) -> list[ORSet]:
    def do(orset: ORSet, i: int, step: tuple[Any, ...]) -> ORSet:
        _, _, kind, element = step
        return orset.add(AGENTS[i], element) if kind == "add" else orset.remove(element)

    return play(steps, lambda i: ORSet(), do, ORSet.merge)


@given(history(set_ops), st.data())
def test_orset_laws(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    check_laws(*pick3(data, orset_pool(steps)), ORSet.copy, ORSet.merge)


counter_ops = st.tuples(st.just("op"), st.integers(0, 2), st.integers(-5, 5))


def counter_pool(steps: list[tuple[Any, ...]]) -> list[PNCounter]:
    def do(counter: PNCounter, i: int, step: tuple[Any, ...]) -> PNCounter:
        return counter.increment(AGENTS[i], step[2])

    return play(steps, lambda i: PNCounter(), do, PNCounter.merge)


@given(history(counter_ops), st.data())
def test_pn_counter_laws(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    check_laws(*pick3(data, counter_pool(steps)), PNCounter.copy, PNCounter.merge)


state_ops = st.one_of(
    st.tuples(
        st.just("op"),
        st.integers(0, 2),
        st.sampled_from([Op.SET, Op.ADD, Op.REMOVE]),
        st.sampled_from(KEYS),
        st.sampled_from(SMALL_VALUES),
        st.sampled_from(TIMES),
    ),
    st.tuples(
        st.just("op"),
        st.integers(0, 2),
        st.just(Op.INCREMENT),
        st.sampled_from(KEYS),
        st.integers(-3, 3),
        st.just(0.0),
    ),
    st.tuples(
        st.just("op"),
        st.integers(0, 2),
        st.just(Op.DELETE),
        st.sampled_from(KEYS),
        st.none(),
        st.sampled_from(TIMES),
    ),
)


def state_do(state: State, i: int, step: tuple[Any, ...]) -> State:
    _, _, op, key, value, now = step
    return state.apply(op, key, value, now)[0]


def state_pool(steps: list[tuple[Any, ...]]) -> list[State]:
    return play(steps, lambda i: State(AGENTS[i]), state_do, State.merge)


@given(history(state_ops), st.data())
def test_state_laws(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    check_laws(*pick3(data, state_pool(steps)), State.copy, State.merge)


def shown(state: State) -> dict[str, bytes]:
    return {key: encode_value(value) for key, value in state.items()}


@given(history(state_ops), st.data())
def test_state_merge_reports_exactly_the_keys_that_changed(
    steps: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    a, b, _ = pick3(data, state_pool(steps))
    a = a.copy()
    before = shown(a)
    changed = a.merge(b)
    after = shown(a)
    assert changed == sorted(
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    )
    assert a.merge(b) == []


@given(history(state_ops))
def test_state_local_operations_report_their_change(steps: list[tuple[Any, ...]]) -> None:
    state = State("a")
    for step in steps:
        if step[0] != "op":
            continue
        before = shown(state)
        with contextlib.suppress(InvalidArgument):
            delta, changed = state.apply(*step[2:])
            after = shown(state)
            assert changed == [k for k in [step[3]] if before.get(k) != after.get(k)]
            assert state.merge(delta) == []  # the delta is already in
            assert delta.agent is None


# ---- convergence ------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    st.integers(3, 5),
    st.lists(st.tuples(st.integers(0, 4), state_ops, st.integers(0, 3)), min_size=8, max_size=50),
    st.randoms(use_true_random=False),
    st.sampled_from([0.0, 0.3]),
)
def test_replicas_converge_under_lossy_reordered_duplicated_deltas(
    n: int,
    steps: list[tuple[int, tuple[Any, ...], int]],
    rng: random.Random,
    loss: float,
) -> None:
    """Ops interleave with deliveries of random pending deltas (reordered, sometimes
    twice, sometimes lost); then a full-state exchange makes every replica equal. Without
    loss, the deltas alone suffice."""
    replicas = [State(AGENTS[i]) for i in range(n)]
    pending: list[tuple[int, State]] = []  # (target, delta)
    increments = 0
    for who, step, deliveries in steps:
        who %= n
        with contextlib.suppress(InvalidArgument):
            delta = state_do(replicas[who], who, step)
            pending += [(t, delta) for t in range(n) if t != who]
            if step[2] is Op.INCREMENT and step[3] == "k1":
                increments += step[4]
        for _ in range(deliveries):
            if pending:
                target, delta = pending.pop(rng.randrange(len(pending)))
                if rng.random() >= loss:
                    replicas[target].merge(delta)
                if rng.random() < 0.2:
                    pending.append((target, delta))  # delivered again later
    rng.shuffle(pending)
    for target, delta in pending:
        if rng.random() >= loss:
            replicas[target].merge(delta)
    if loss == 0.0:
        assert all(r == replicas[0] for r in replicas)
    # anti-entropy: each replica pulls every other's full state (one ring pass suffices
    # after everyone has pushed to replica 0)
    for r in replicas[1:]:
        replicas[0].merge(State.decode(r.encode()))
    for r in replicas[1:]:
        r.merge(State.decode(replicas[0].encode()))
    first = replicas[0]
    assert all(r == first for r in replicas)
    assert all(r.to_dict() == first.to_dict() for r in replicas)
    assert all(r.version_vector() == first.version_vector() for r in replicas)
    assert not first.context().cloud  # every gap filled
    if first.kind("k1") is Kind.COUNTER:
        assert first.get("k1") == increments


# ---- semantics ---------------------------------------------------------------------------


def test_orset_add_wins_over_a_concurrent_remove() -> None:
    a, b = ORSet(), ORSet()
    b.merge(a.add("a", "x"))
    removed = b.remove("x")  # b saw a's add and removes it
    readded = a.add("a", "x")  # concurrently, a adds "x" again
    a.merge(removed)
    b.merge(readded)
    assert a == b and a.value() == ["x"]
    # a remove that observed the add does remove it
    b.merge(b.remove("x"))
    a.merge(b)
    assert a.value() == [] == b.value()


def test_state_sets_are_add_wins_and_delete_spares_concurrent_adds() -> None:
    a, b = State("a"), State("b")
    b.merge(a.add("s", "x"))
    removed = b.remove("s", "x")
    readded = a.add("s", "x")
    cleared = b.delete("s", 5.0)
    concurrent = a.add("s", "y")
    for delta in (removed, cleared):
        a.merge(delta)
    for delta in (readded, concurrent):
        b.merge(delta)
    assert a == b and a.get("s") == ["x", "y"]
    b.merge(b.delete("s", 6.0))  # observed everything: the set is gone
    a.merge(b)
    assert "s" not in a and a.to_dict() == {} and a.kind("s") is None


def test_orset_keeps_no_tombstones() -> None:
    s = ORSet()
    for i in range(50):
        s.add("a", i)
    for i in range(50):
        s.remove(i)
    assert s.value() == [] and s.dot_count() == 0
    assert not s.context().cloud and s.context().vv.to_dict() == {"a": 50}
    assert len(s.encode()) < 20


def test_orset_re_add_replaces_the_old_dots() -> None:
    a, b = ORSet(), ORSet()
    b.add("b", "x")
    b.merge(a.add("a", "x"))  # concurrent adds: both dots kept
    assert b.dot_count() == 2
    a.merge(b.add("b", "x"))  # an add that observed both replaces them
    assert a.dot_count() == 1 == b.dot_count()
    a.add("a", "x")
    assert a.dot_count() == 1 and "x" in a and "y" not in a and object() not in a


def test_orset_sorts_mixed_elements() -> None:
    s = ORSet()
    elements: list[Value] = [{"a": 1}, [2], b"b", "z", "a", 3, 1.5, 1, True, None]
    for element in elements:
        s.add("a", element)
    assert s.value() == [None, True, 1, 1.5, 3, "a", "z", b"b", [2], {"a": 1}]


def test_lww_tie_break_by_agent() -> None:
    x, y = LWWRegister(), LWWRegister()
    x.set("from-a", Timestamp(1000, 0, "a"))
    y.set("from-b", Timestamp(1000, 0, "b"))
    x2, y2 = x.copy(), y.copy()
    x2.merge(y)
    y2.merge(x)
    assert x2.value() == y2.value() == "from-b"
    assert not x2.merge(x)
    # and in a state: equal wall time, equal logical counter
    sa, sb = State("a"), State("b")
    da, db = sa.set("k", 1, 5.0), sb.set("k", 2, 5.0)
    sa.merge(db)
    sb.merge(da)
    assert sa.get("k") == sb.get("k") == 2


def test_lww_map_delete_and_set_race_by_stamp() -> None:
    a, b = LWWMap(), LWWMap()
    a.set("k", 1, Timestamp(1, 0, "a"))
    b.merge(a)
    late_delete = b.delete("k", Timestamp(3, 0, "b"))
    early_set = a.set("k", 2, Timestamp(2, 0, "a"))
    a.merge(late_delete)
    b.merge(early_set)
    assert a == b and "k" not in a and a.get("k", "gone") == "gone" and a.value() == {}
    a.set("k", 3, Timestamp(4, 0, "a"))
    assert a.value() == {"k": 3} and len(a) == 1 and a.keys() == ["k"]
    assert a.stamp("k") == Timestamp(4, 0, "a") and a.entry_count() == 1


def test_state_delete_after_seeing_a_future_stamp_still_wins() -> None:
    a, b = State("a"), State("b")
    a.merge(b.set("k", "future", 1000.0))  # b's clock is far ahead
    b.merge(a.delete("k", 1.0))
    assert "k" not in b and b.get("k") is None


def test_pn_counter_sums_increments_and_decrements() -> None:
    a, b = PNCounter(), PNCounter()
    a.increment("a", 5)
    a.increment("a", -2)
    b.increment("b", 10)
    b.increment("b", -1)
    a.merge(b)
    assert a.value() == 12 and a.counts() == {"a": (5, 2), "b": (10, 1)}
    with pytest.raises(InvalidArgument):
        a.increment("a", True)
    with pytest.raises(InvalidArgument):
        a.increment("a", 2**63)


def test_state_kinds_and_plain_values() -> None:
    s = State("a")
    s.set("r", {"x": [1, 2]}, 1.0)
    s.add("s", "b")
    s.add("s", "a")
    s.increment("c", 3)
    s.increment("c", -5)
    assert s.to_dict() == {"c": -2, "r": {"x": [1, 2]}, "s": ["a", "b"]}
    assert [s.kind(k) for k in ("r", "s", "c", "none")] == [
        Kind.REGISTER,
        Kind.SET,
        Kind.COUNTER,
        None,
    ]
    assert s.get("none", 7) == 7 and "none" not in s and "r" in s and len(s) == 3
    got = s.get("r")
    assert isinstance(got, dict)
    got["x"] = 0  # a copy: the state is unchanged
    assert s.get("r") == {"x": [1, 2]}
    for op, key, value in [
        (Op.SET, "s", 1),
        (Op.SET, "c", 1),
        (Op.ADD, "r", 1),
        (Op.ADD, "c", 1),
        (Op.REMOVE, "r", 1),
        (Op.INCREMENT, "r", 1),
        (Op.INCREMENT, "s", 1),
        (Op.DELETE, "c", None),
        (Op.INCREMENT, "c", 1.5),
        ("frobnicate", "c", 1),
    ]:
        with pytest.raises(InvalidArgument):
            s.apply(op, key, value, 2.0)
    for op in (Op.SET, Op.DELETE):  # LWW writes need the time
        with pytest.raises(InvalidArgument, match="time"):
            s.apply(op, "new", 1)
    for op, key, value in [(Op.ADD, "c", 1)]:
        with pytest.raises(InvalidArgument):
            s.apply(op, key, value, 2.0)
    # delete frees registers and sets
    s.delete("r", 2.0)
    s.delete("s", 2.0)
    assert s.to_dict() == {"c": -2}
    s.add("r", "now a set")
    s.set("s", "now a register", 3.0)
    assert s.to_dict() == {"c": -2, "r": ["now a set"], "s": "now a register"}
    assert s.remove("r", "absent").is_empty()
    assert s.increment("c").encode()  # n defaults to 1
    assert s.get("c") == -1


def test_concurrent_kinds_are_kept_and_shown_by_precedence() -> None:
    a, b, c = State("a"), State("b"), State("c")
    deltas = [a.set("k", "reg", 1.0), b.add("k", "elem"), c.increment("k", 4)]
    for s in (a, b, c):
        for d in deltas:
            s.merge(d)
    assert a == b == c
    assert a.get("k") == "reg" and a.kind("k") is Kind.REGISTER
    a.delete("k", 2.0)  # removes the register and the set; a counter cannot go
    assert a.get("k") == 4 and a.kind("k") is Kind.COUNTER
    b.merge(a)
    assert b.to_dict() == {"k": 4}


def test_delta_and_copies_cannot_be_written() -> None:
    s = State("a")
    delta = s.set("k", 1, 1.0)
    for target in (delta, s.copy(), State.decode(s.encode()), State()):
        with pytest.raises(StateError):
            target.set("k", 2, 1.0)
    with pytest.raises(InvalidArgument):
        State("a", Hlc("b"))
    for bad_key in ("", "x" * 257, 3, "\ud800"):
        with pytest.raises(InvalidArgument):
            s.set(bad_key, 1, 1.0)  # type: ignore[arg-type]


def test_state_restarts_from_its_own_snapshot_without_reusing_dots() -> None:
    a = State("a")
    a.set("k", 1, 1.0)
    saved = a.encode()
    later = a.add("s", "x")  # broadcast, then the node crashes before saving
    b = State("b")
    b.merge(later)
    restored = State.decode(saved, "a")
    restored.merge(b)  # anti-entropy brings our own later dot back
    assert restored.version_vector().to_dict() == {"a": 2}
    assert restored.add("s", "y").context().cloud == {("a", 3)}  # the next dot, not 2
    assert restored.version_vector().to_dict() == {"a": 3}


# ---- codecs ------------------------------------------------------------------------------


@given(history(state_ops), st.data())
def test_state_encoding_round_trips(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    pool = state_pool(steps)
    state = pool[data.draw(st.integers(0, len(pool) - 1))]
    encoded = state.encode()
    back = State.decode(encoded)
    assert back == state and back.encode() == encoded and back.to_dict() == state.to_dict()
    assert back.size_estimate() == state.size_estimate()
    assert len(encoded) <= state.size_estimate() + 8  # the estimate errs on the high side


@given(history(state_ops), st.data())
def test_state_decoding_of_damaged_bytes_raises_protocol_violation_only(
    steps: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    pool = state_pool(steps)
    encoded = pool[data.draw(st.integers(0, len(pool) - 1))].encode()
    for cut in range(len(encoded)):
        with pytest.raises(ProtocolViolation):
            State.decode(encoded[:cut])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(encoded) - 1), st.integers(1, 255))))
    damaged = bytearray(encoded)
    for pos, xor in flips:
        damaged[pos] ^= xor
    with contextlib.suppress(ProtocolViolation):
        decoded = State.decode(bytes(damaged))
        # whatever decodes is a valid state: it merges and re-encodes
        target = pool[0].copy()
        target.merge(decoded)
        assert State.decode(decoded.encode()) == decoded


@given(st.binary(max_size=200))
def test_crdt_garbage_raises_protocol_violation_only(data: bytes) -> None:
    for decode in (State.decode, LWWRegister.decode, LWWMap.decode, ORSet.decode, PNCounter.decode):
        with contextlib.suppress(ProtocolViolation):
            decode(data)


@given(history(set_ops), history(counter_ops), history(map_ops), history(register_ops))
def test_standalone_encodings_round_trip(
    s: list[tuple[Any, ...]],
    c: list[tuple[Any, ...]],
    m: list[tuple[Any, ...]],
    r: list[tuple[Any, ...]],
) -> None:
    pools: list[tuple[list[Any], Any]] = [
        (orset_pool(s), ORSet),
        (counter_pool(c), PNCounter),
        (map_pool(m), LWWMap),
        (register_pool(r), LWWRegister),
    ]
    for pool, kind in pools:
        for item in pool:
            encoded = item.encode()
            assert kind.decode(encoded) == item
            assert kind.decode(encoded).encode() == encoded
            for cut in range(0, len(encoded), 3):
                with pytest.raises(ProtocolViolation):
                    kind.decode(encoded[:cut])


def state_body(**parts: Any) -> bytes:
    return cbor.encode(parts)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"x": []},
        {"a": ["a", "a"]},
        {"a": [""]},
        {"a": ["a"], "v": [1, 1]},  # agent index out of range
        {"a": ["a"], "v": [0, 0]},  # counters start at 1
        {"a": ["a"], "v": [0, 1, 0, 2]},  # agent repeated
        {"a": ["a"], "v": [0]},  # odd flat list
        {"a": ["a"], "v": [0, 1], "s": ["k", ["x", [0, 1]]]},  # element not canonical value
        {"a": ["a"], "v": [0, 1], "s": ["k", [b"\x01", [0, 2]]]},  # dot outside the context
        {"a": ["a"], "v": [0, 2], "s": ["k", [b"\x01", [0, 1], b"\x02", [0, 1]]]},  # dot reused
        {"a": ["a"], "v": [0, 1], "s": ["k", []]},
        {"a": ["a"], "v": [0, 1], "s": ["k", [b"\x01", []]]},
        {"a": ["a"], "n": ["k", []]},
        {"a": ["a"], "n": ["k", [0, 1, -1]]},
        {"a": ["a"], "n": ["k", [0, 1, 0], "k", [0, 1, 0]]},
        {"a": ["a"], "r": ["k", 0, 1, 0, b"\x01", "k", 0, 1, 0, b"\x02"]},
        {"a": ["a"], "r": ["", 0, 1, 0, b"\x01"]},
        {"a": ["a"], "r": ["k", 0, 2**48, 0, b"\x01"]},
        {"a": ["a"], "r": ["k", 0, 1, 0, "text"]},
        {"a": ["a"], "r": ["k", 0, 1, True, b"\x01"]},
    ],
)
def test_state_decoder_refuses_malformed_states(body: Any) -> None:
    with pytest.raises(ProtocolViolation):
        State.decode(cbor.encode(body))


def test_state_decoder_accepts_equivalent_context_forms() -> None:
    # a cloud dot that continues the vector is folded in, and covered ones dropped
    state = State.decode(state_body(a=["a"], v=[0, 1], d=[0, 1, 0, 2, 0, 4]))
    assert state.context().vv.to_dict() == {"a": 2} and state.context().cloud == {("a", 4)}
    assert State.decode(state.encode()) == state


# ---- limits ------------------------------------------------------------------------------


def test_local_key_limit() -> None:
    s = State("a")
    for i in range(MAX_KEYS):
        s.increment(f"k{i}")
    with pytest.raises(StateError, match="keys"):
        s.set("one-more", 1, 1.0)
    s.increment("k0")  # existing keys still change
    assert State.decode(s.encode()) == s
    lww = LWWMap()
    for i in range(MAX_KEYS):
        lww.delete(f"k{i}", Timestamp(1, 0, "a"))  # tombstones count
    with pytest.raises(StateError):
        lww.set("one-more", 1, Timestamp(1, 0, "a"))


def test_local_set_limit() -> None:
    s = State("a")
    o = ORSet()
    for i in range(MAX_SET_ELEMENTS):
        s.add("s", i)
        o.add("a", i)
    with pytest.raises(StateError, match="elements"):
        s.add("s", "one-more")
    with pytest.raises(StateError):
        o.add("a", "one-more")
    s.add("s", 0)  # re-adding an element is fine
    s.remove("s", 1)
    s.add("s", "one-more")
    assert len(s.get("s")) == MAX_SET_ELEMENTS  # type: ignore[arg-type]


def test_local_size_limit() -> None:
    s = State("a")
    big = b"x" * (MAX_VALUE_SIZE - 10)
    with pytest.raises(StateError, match="bytes"):
        for i in range(MAX_STATE_SIZE // MAX_VALUE_SIZE + 2):
            s.set(f"k{i}", big, 1.0)
    assert len(s.encode()) <= MAX_STATE_SIZE
    assert len(s.encode()) > MAX_STATE_SIZE * 0.9
    assert State.decode(s.encode()) == s


def test_local_agent_limit() -> None:
    s = State("me")
    counter = PNCounter()
    for i in range(MAX_AGENTS):
        s.merge(State(f"w{i}").increment("c"))
        counter.increment(f"w{i}")
    with pytest.raises(StateError, match="at most"):
        s.increment("c")
    with pytest.raises(StateError, match="writers"):
        s.set("r", 1, 1.0)
    with pytest.raises(StateError):
        counter.increment("me")
    assert s.get("c") == MAX_AGENTS == counter.value()


def test_decoder_size_limits() -> None:
    with pytest.raises(ProtocolViolation):
        State.decode(b"\x00" * (MAX_ENCODED_STATE + 1))
    too_many = [x for i in range(2 * MAX_KEYS + 1) for x in (f"k{i}", 0, 1, 0, None)]
    with pytest.raises(ProtocolViolation):
        State.decode(state_body(a=["a"], r=too_many))
    ok = [x for i in range(2 * MAX_KEYS) for x in (f"k{i}", 0, 1, 0, None)]
    assert len(State.decode(state_body(a=["a"], r=ok)).to_dict()) == 0


# ---- golden vector ----------------------------------------------------------------------

#: A state pinned byte for byte: agents a and b; register k = 1.5 and a tombstone for
#: "gone"; set s = {x (dot a2), y (dot b1)}; counter c = -2 (a: 0 up, 2 down).
GOLDEN_STATE = bytes.fromhex(
    "a5616182676167656e742d61676167656e742d62616e8261638300000261728a64676f6e65001907d000f6"
    "616b001903e8004ba100483ff800000000000061738261738442617882000242617982010161768400040101"
)


def test_state_wire_format_is_pinned() -> None:
    s = State("agent-a")
    s.set("k", 1.5, 1.0)
    s.add("s", "x")
    s.increment("c", -2)
    s.delete("gone", 2.0)
    s.merge(State("agent-b").add("s", "y"))
    assert s.encode() == GOLDEN_STATE
    back = State.decode(GOLDEN_STATE)
    assert back.to_dict() == {"c": -2, "k": 1.5, "s": ["x", "y"]}
    assert back.version_vector().to_dict() == {"agent-a": 4, "agent-b": 1}

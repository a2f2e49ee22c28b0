"""Kademlia routing table core: IDs, distance, buckets, eviction, closest, refresh."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.dht import (
    BUCKET_REFRESH,
    CAPABILITY_DOMAIN,
    ID_BITS,
    MAX_CAPABILITY_TAG,
    MAX_FAILURES,
    REPLACEMENT_CACHE,
    Contact,
    K,
    RoutingTable,
    bucket_index,
    capability_key,
    distance,
    node_id,
)
from swarmlink.errors import InvalidArgument
from swarmlink.identity import agent_id_digest, agent_id_from_public_key

LOCAL_DIGEST = hashlib.sha256(b"local").digest()
LOCAL_INT = int.from_bytes(LOCAL_DIGEST, "big")


def agent(digest: bytes) -> str:
    """The agent ID that encodes ``digest`` (so tests choose node IDs directly)."""
    return base64.b32encode(digest).decode().rstrip("=").lower()


LOCAL = agent(LOCAL_DIGEST)


def in_bucket(index: int, salt: int = 0) -> bytes:
    """A digest in bucket ``index`` of LOCAL (deterministic, varies with ``salt``)."""
    free = ID_BITS - 1 - index
    low = int.from_bytes(hashlib.sha256(b"salt%d" % salt).digest(), "big") & ((1 << free) - 1)
    return (LOCAL_INT ^ ((1 << free) | low)).to_bytes(32, "big")


def contact(digest: bytes, *addresses: str) -> Contact:
    return Contact.from_agent(agent(digest), addresses)


def full_bucket(table: RoutingTable, index: int, now: float = 0.0) -> list[Contact]:
    members = [contact(in_bucket(index, i), f"10.0.0.{i}:7000") for i in range(table.k)]
    for i, c in enumerate(members):
        assert table.observe(c, now + i) is None
    return members


def ids(contacts: list[Contact]) -> list[str]:
    return [c.agent_id for c in contacts]


# -- IDs -------------------------------------------------------------------------------------


def test_node_id_is_agent_digest() -> None:
    aid = agent_id_from_public_key(bytes(range(32)))
    assert node_id(aid) == agent_id_digest(aid)
    assert node_id(aid.upper()) == node_id(aid)
    assert len(node_id(aid)) == 32
    with pytest.raises(InvalidArgument):
        node_id("not-an-agent")


def test_distance() -> None:
    a, b = bytes(32), b"\x00" * 31 + b"\x05"
    assert distance(a, a) == 0
    assert distance(a, b) == distance(b, a) == 5
    assert distance(b"\xff" * 32, a) == 2**256 - 1
    with pytest.raises(InvalidArgument):
        distance(b"\x00" * 31, a)
    with pytest.raises(InvalidArgument):
        distance(a, "x" * 32)  # type: ignore[arg-type]


def test_bucket_index_examples() -> None:
    zero = bytes(32)
    assert bucket_index(zero, b"\x80" + bytes(31)) == 0
    assert bucket_index(zero, b"\xff" * 32) == 0
    assert bucket_index(zero, b"\x40" + bytes(31)) == 1
    assert bucket_index(zero, bytes(31) + b"\x01") == 255
    assert bucket_index(zero, bytes(31) + b"\x02") == 254
    with pytest.raises(InvalidArgument):
        bucket_index(zero, zero)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_bucket_index_is_common_prefix_length(a: bytes, b: bytes) -> None:
    if a == b:
        return
    bits_a = format(int.from_bytes(a, "big"), "0256b")
    bits_b = format(int.from_bytes(b, "big"), "0256b")
    prefix = next(i for i in range(256) if bits_a[i] != bits_b[i])
    assert bucket_index(a, b) == bucket_index(b, a) == prefix
    assert 2 ** (255 - prefix) <= distance(a, b) < 2 ** (256 - prefix)


def test_capability_key() -> None:
    expected = hashlib.sha256(b"swarmlink/capability/v1\0llm/chat").digest()
    assert CAPABILITY_DOMAIN == b"swarmlink/capability/v1\0"
    assert capability_key("llm/chat") == expected
    assert capability_key("a") != capability_key("b")
    for ok in ("a", "x" * MAX_CAPABILITY_TAG, "llm/chat-v1.2_beta", "0"):
        assert len(capability_key(ok)) == 32
    for bad in ("", "x" * (MAX_CAPABILITY_TAG + 1), "LLM", "a b", "é", "a:b", "a\0"):
        with pytest.raises(InvalidArgument):
            capability_key(bad)
    with pytest.raises(InvalidArgument):
        capability_key(b"llm")  # type: ignore[arg-type]


# -- Contact ---------------------------------------------------------------------------------


def test_contact_from_agent_normalises() -> None:
    aid = agent(in_bucket(3))
    c = Contact.from_agent(aid.upper(), ["1.2.3.4:1"])
    assert c.agent_id == aid
    assert c.node_id == in_bucket(3)
    assert c.addresses == ("1.2.3.4:1",)


def test_contact_validation() -> None:
    aid = agent(in_bucket(3))
    with pytest.raises(InvalidArgument):
        Contact(aid, in_bucket(4), ())
    with pytest.raises(InvalidArgument):
        Contact(aid.upper(), in_bucket(3), ())
    with pytest.raises(InvalidArgument):
        Contact.from_agent("zzz", ())
    with pytest.raises(InvalidArgument):
        Contact.from_agent(aid, [f"h{i}:1" for i in range(9)])
    with pytest.raises(InvalidArgument):
        Contact.from_agent(aid, [""])
    with pytest.raises(InvalidArgument):
        Contact.from_agent(aid, ["x" * 129])
    with pytest.raises(InvalidArgument):
        Contact(aid, in_bucket(3), ["a"])  # type: ignore[arg-type]


# -- RoutingTable basics ---------------------------------------------------------------------


def test_constructor_validation() -> None:
    with pytest.raises(InvalidArgument):
        RoutingTable("bogus")
    for bad in (0, -1, True):
        with pytest.raises(InvalidArgument):
            RoutingTable(LOCAL, k=bad)
    t = RoutingTable(LOCAL.upper())
    assert t.local_agent_id == LOCAL and t.local_id == LOCAL_DIGEST and t.k == K
    assert len(t) == 0 and t.contacts() == []


def test_local_never_inserted() -> None:
    t = RoutingTable(LOCAL)
    assert t.observe(contact(LOCAL_DIGEST, "x:1"), 1.0) is None
    assert len(t) == 0 and LOCAL not in t and t.get(LOCAL) is None
    assert t.remove(LOCAL) is False
    assert t.failed(LOCAL, 1.0) is False
    t.ping_result(LOCAL, False, 1.0)
    assert len(t) == 0


def test_observe_get_contains_len() -> None:
    t = RoutingTable(LOCAL)
    a, b = contact(in_bucket(0), "a:1"), contact(in_bucket(7), "b:1")
    assert t.observe(a, 1.0) is None
    assert t.observe(b, 2.0) is None
    assert len(t) == 2
    assert a.agent_id in t and a.agent_id.upper() in t and 42 not in t and "junk" not in t
    assert t.get(a.agent_id) == a and t.get(b.agent_id.upper()) == b
    assert t.get(agent(in_bucket(9))) is None
    with pytest.raises(InvalidArgument):
        t.get("junk")
    assert t.contacts() == [a, b]  # bucket 0 first
    assert t.bucket_contacts(0) == [a] and t.bucket_contacts(7) == [b]
    with pytest.raises(InvalidArgument):
        t.observe("not a contact", 1.0)  # type: ignore[arg-type]


def test_observe_refresh_moves_to_tail_and_updates_addresses() -> None:
    t = RoutingTable(LOCAL, k=3)
    members = full_bucket(t, 2)
    updated = Contact.from_agent(members[0].agent_id, ["new:1", "new:2"])
    assert t.observe(updated, 10.0) is None
    assert ids(t.bucket_contacts(2)) == ids([members[1], members[2], updated])
    got = t.get(updated.agent_id)
    assert got is not None and got.addresses == ("new:1", "new:2")
    assert len(t) == 3


def test_full_bucket_returns_least_recently_seen_and_caches_newcomer() -> None:
    t = RoutingTable(LOCAL, k=3)
    members = full_bucket(t, 1)
    newcomer = contact(in_bucket(1, 100), "n:1")
    assert t.observe(newcomer, 5.0) == members[0]
    assert newcomer.agent_id not in t
    assert t.replacements(1) == [newcomer]
    assert ids(t.bucket_contacts(1)) == ids(members)
    # other buckets are unaffected
    assert t.observe(contact(in_bucket(2)), 6.0) is None


def test_replacement_cache_is_bounded_and_keeps_most_recent() -> None:
    t = RoutingTable(LOCAL, k=2)
    full_bucket(t, 0)
    extra = [contact(in_bucket(0, 100 + i)) for i in range(REPLACEMENT_CACHE + 3)]
    for i, c in enumerate(extra):
        assert t.observe(c, 10.0 + i) is not None
    assert ids(t.replacements(0)) == ids(extra[-REPLACEMENT_CACHE:])
    # seeing a cached newcomer again makes it the most recent replacement
    again = extra[-REPLACEMENT_CACHE]
    t.observe(again, 50.0)
    assert t.replacements(0)[-1] == again
    assert len(t.replacements(0)) == REPLACEMENT_CACHE


def test_ping_alive_keeps_old_contact() -> None:
    t = RoutingTable(LOCAL, k=3)
    members = full_bucket(t, 4)
    newcomer = contact(in_bucket(4, 100))
    oldest = t.observe(newcomer, 5.0)
    assert oldest == members[0]
    t.ping_result(oldest.agent_id, True, 6.0)
    assert ids(t.bucket_contacts(4)) == ids([members[1], members[2], members[0]])
    assert newcomer.agent_id not in t and t.replacements(4) == [newcomer]


def test_ping_dead_evicts_and_promotes_most_recent_replacement() -> None:
    t = RoutingTable(LOCAL, k=3)
    members = full_bucket(t, 4)
    first, second = contact(in_bucket(4, 100)), contact(in_bucket(4, 101))
    assert t.observe(first, 5.0) == members[0]
    assert t.observe(second, 6.0) == members[0]
    t.ping_result(members[0].agent_id, False, 7.0)
    assert members[0].agent_id not in t
    assert second.agent_id in t and first.agent_id not in t
    assert t.replacements(4) == [first]
    assert len(t) == 3
    # a ping result for a contact already gone is ignored
    t.ping_result(members[0].agent_id, False, 8.0)
    t.ping_result(members[0].agent_id, True, 8.0)
    assert len(t) == 3 and members[0].agent_id not in t


def test_ping_dead_without_replacement_just_evicts() -> None:
    t = RoutingTable(LOCAL)
    a = contact(in_bucket(3))
    t.observe(a, 1.0)
    t.ping_result(a.agent_id, False, 2.0)
    assert len(t) == 0


def test_remove() -> None:
    t = RoutingTable(LOCAL, k=2)
    members = full_bucket(t, 5)
    r1, r2 = contact(in_bucket(5, 100)), contact(in_bucket(5, 101))
    t.observe(r1, 3.0)
    t.observe(r2, 4.0)
    assert t.remove(members[1].agent_id) is True
    assert r2.agent_id in t and t.replacements(5) == [r1]
    assert t.remove(r1.agent_id) is True  # from the cache
    assert t.replacements(5) == []
    assert t.remove(r1.agent_id) is False
    assert t.remove(agent(in_bucket(9))) is False
    with pytest.raises(InvalidArgument):
        t.remove("junk")
    assert ids(t.contacts()) == ids([members[0], r2])


def test_failures_evict_only_with_replacement() -> None:
    t = RoutingTable(LOCAL, k=2)
    members = full_bucket(t, 6)
    victim = members[0].agent_id
    for _ in range(MAX_FAILURES + 2):
        assert t.failed(victim, 1.0) is False  # no replacement: keep it
    assert victim in t and t.failures(victim) == MAX_FAILURES + 2
    # a newcomer now takes the failing contact's slot at once
    newcomer = contact(in_bucket(6, 100))
    assert t.observe(newcomer, 2.0) is None
    assert newcomer.agent_id in t and victim not in t
    assert t.failures(victim) == 0


def test_failures_evict_at_max_when_replacement_waits() -> None:
    t = RoutingTable(LOCAL, k=2)
    members = full_bucket(t, 6)
    cached = contact(in_bucket(6, 100))
    t.observe(cached, 2.0)
    victim = members[1].agent_id
    for _ in range(MAX_FAILURES - 1):
        assert t.failed(victim, 3.0) is False
    assert victim in t
    assert t.failed(victim, 4.0) is True
    assert victim not in t and cached.agent_id in t


def test_success_resets_failures() -> None:
    t = RoutingTable(LOCAL, k=2)
    members = full_bucket(t, 6)
    t.observe(contact(in_bucket(6, 100)), 2.0)
    a, b = members[0].agent_id, members[1].agent_id
    for _ in range(MAX_FAILURES - 1):
        t.failed(a, 3.0)
        t.failed(b, 3.0)
    t.observe(members[0], 4.0)
    t.ping_result(b, True, 4.0)
    assert t.failures(a) == t.failures(b) == 0
    assert t.failed(a, 5.0) is False and t.failed(b, 5.0) is False


def test_failed_unknown_or_cached() -> None:
    t = RoutingTable(LOCAL, k=1)
    full_bucket(t, 6)
    cached = contact(in_bucket(6, 100))
    t.observe(cached, 1.0)
    assert t.failed(cached.agent_id, 2.0) is False
    assert t.replacements(6) == []  # a failing candidate is dropped
    assert t.failed(agent(in_bucket(40)), 2.0) is False
    assert t.failures(agent(in_bucket(40))) == 0


# -- closest ---------------------------------------------------------------------------------


def brute_closest(t: RoutingTable, target: bytes, n: int, exclude: set[str]) -> list[str]:
    pool = [c for c in t.contacts() if c.agent_id not in exclude]
    pool.sort(key=lambda c: distance(c.node_id, target))
    return ids(pool[:n])


def test_closest_basics() -> None:
    t = RoutingTable(LOCAL, k=4)
    everyone = [contact(in_bucket(i % 12, i)) for i in range(40)]
    for i, c in enumerate(everyone):
        t.observe(c, float(i))
    target = everyone[5].node_id
    got = t.closest(target, 5)
    assert got[0] == everyone[5]
    assert ids(got) == brute_closest(t, target, 5, set())
    assert t.closest(target, 0) == []
    assert len(t.closest(target, 1000)) == len(t)
    ex = {everyone[5].agent_id.upper()}
    assert everyone[5] not in t.closest(target, 5, exclude=ex)
    assert ids(t.closest(LOCAL_DIGEST, 7)) == brute_closest(t, LOCAL_DIGEST, 7, set())
    assert len(t.closest(target)) == min(K, len(t))
    with pytest.raises(InvalidArgument):
        t.closest(b"short")
    with pytest.raises(InvalidArgument):
        t.closest(target, -1)
    assert RoutingTable(LOCAL).closest(target) == []


bucket_digest = st.tuples(st.integers(0, 14), st.integers(0, 2**256 - 1)).map(
    lambda p: (LOCAL_INT ^ ((1 << (255 - p[0])) | (p[1] >> (p[0] + 1)))).to_bytes(32, "big")
)
any_digest = st.one_of(bucket_digest, st.binary(min_size=32, max_size=32))


@given(
    st.lists(any_digest, min_size=5, max_size=80),
    st.one_of(any_digest, st.just(LOCAL_DIGEST)),
    st.integers(0, 30),
    st.integers(1, 6),
    st.data(),
)
def test_closest_matches_brute_force(
    digests: list[bytes], target: bytes, n: int, k: int, data: st.DataObject
) -> None:
    t = RoutingTable(LOCAL, k=k)
    for i, d in enumerate(digests):
        t.observe(contact(d), float(i))
    members = ids(t.contacts())
    exclude = set(data.draw(st.lists(st.sampled_from(members), max_size=5))) if members else set()
    got = t.closest(target, n, exclude=exclude)
    assert ids(got) == brute_closest(t, target, n, exclude)


# -- invariants under random operation sequences ---------------------------------------------

operation = st.tuples(
    st.sampled_from(["observe", "observe", "observe", "alive", "dead", "failed", "remove"]),
    st.integers(0, 39),
)


crowded_digest = st.tuples(st.integers(0, 3), st.integers(0, 2**256 - 1)).map(
    lambda p: (LOCAL_INT ^ ((1 << (255 - p[0])) | (p[1] >> (p[0] + 1)))).to_bytes(32, "big")
)


@given(
    st.lists(crowded_digest, min_size=8, max_size=40, unique=True),
    st.lists(operation, min_size=30, max_size=200),
)
def test_invariants_under_random_operations(
    digests: list[bytes], ops: list[tuple[str, int]]
) -> None:
    k = 3
    t = RoutingTable(LOCAL, k=k)
    pool = [contact(d, f"h{i}:1") for i, d in enumerate([*digests, LOCAL_DIGEST])]
    for step, (op, i) in enumerate(ops):
        c = pool[i % len(pool)]
        now = float(step)
        before = set(ids(t.contacts()))
        if op == "observe":
            was_member = c.agent_id in t
            index = None if c.agent_id == LOCAL else bucket_index(LOCAL_DIGEST, c.node_id)
            failing = index is not None and any(
                t.failures(m.agent_id) >= MAX_FAILURES for m in t.bucket_contacts(index)
            )
            full = index is not None and len(t.bucket_contacts(index)) >= k
            result = t.observe(c, now)
            after = set(ids(t.contacts()))
            if was_member:
                assert after == before and result is None  # a refresh never evicts
                assert t.bucket_contacts(bucket_index(LOCAL_DIGEST, c.node_id))[-1] == c
            elif full and not failing:
                assert after == before  # live contacts are never displaced
                assert result is not None and result.agent_id in before
                assert index is not None and t.replacements(index)[-1] == c
            elif index is not None:
                assert after - before == {c.agent_id} and result is None
        elif op == "alive":
            t.ping_result(c.agent_id, True, now)
            assert set(ids(t.contacts())) == before
        elif op == "dead":
            t.ping_result(c.agent_id, False, now)
            assert c.agent_id not in t
        elif op == "failed":
            t.failed(c.agent_id, now)
        else:
            t.remove(c.agent_id)
            assert c.agent_id not in t
        # invariants
        assert LOCAL not in t
        everyone = t.contacts()
        assert len(everyone) == len(t) == len(set(ids(everyone)))
        assert sum(len(t.bucket_contacts(i)) for i in range(4)) == len(t)
        for index in range(4):  # crowded digests all fall in buckets 0..3
            members = t.bucket_contacts(index)
            cached = t.replacements(index)
            assert len(members) <= k
            assert len(cached) <= REPLACEMENT_CACHE
            assert not set(ids(members)) & set(ids(cached))
            for m in members + cached:
                assert bucket_index(LOCAL_DIGEST, m.node_id) == index
            assert LOCAL not in ids(cached)


# -- refresh ---------------------------------------------------------------------------------


def test_stale_buckets_with_virtual_time() -> None:
    t = RoutingTable(LOCAL)
    assert t.stale_buckets(0.0) == []  # nothing known: the join lookup comes first
    t.observe(contact(in_bucket(3)), 100.0)
    assert t.stale_buckets(100.0) == [0, 1, 2]  # never touched, farther than our neighbour
    for i in (0, 1, 2):
        t.touch_bucket(i, 200.0)
    assert t.stale_buckets(200.0) == []
    assert t.stale_buckets(100.0 + BUCKET_REFRESH - 1) == []
    assert t.stale_buckets(100.0 + BUCKET_REFRESH) == [3]
    assert t.stale_buckets(200.0 + BUCKET_REFRESH) == [0, 1, 2, 3]
    assert t.stale_buckets(250.0, interval=50.0) == [0, 1, 2, 3]
    # activity in a bucket counts as a touch
    t.observe(contact(in_bucket(3)), 200.0 + BUCKET_REFRESH)
    assert t.stale_buckets(200.0 + BUCKET_REFRESH) == [0, 1, 2]
    t.ping_result(agent(in_bucket(3)), True, 300.0 + BUCKET_REFRESH)
    with pytest.raises(InvalidArgument):
        t.touch_bucket(256, 1.0)
    with pytest.raises(InvalidArgument):
        t.touch_bucket(-1, 1.0)


@given(st.integers(0, 255), st.integers(0, 2**32))
def test_random_id_in_bucket_lands_there(index: int, seed: int) -> None:
    t = RoutingTable(LOCAL)
    rng = random.Random(seed)
    target = t.random_id_in_bucket(index, rng)
    assert len(target) == 32
    assert bucket_index(LOCAL_DIGEST, target) == index


def test_random_id_in_bucket_is_deterministic_and_varied() -> None:
    t = RoutingTable(LOCAL)
    a = [t.random_id_in_bucket(10, random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(1)
    assert len({t.random_id_in_bucket(0, rng) for _ in range(20)}) == 20
    assert t.random_id_in_bucket(255, rng) == (LOCAL_INT ^ 1).to_bytes(32, "big")
    for bad in (-1, 256, True):
        with pytest.raises(InvalidArgument):
            t.random_id_in_bucket(bad, rng)

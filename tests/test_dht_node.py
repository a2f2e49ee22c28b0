"""The DHT node core: answering requests, rate limits, stored and provider records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from swarmlink.dht._ids import capability_key, distance, node_id
from swarmlink.dht._messages import Query, Request
from swarmlink.dht._node import MAX_REQUESTS_BURST, DhtNode
from swarmlink.errors import ErrorCode, ProtocolViolation
from swarmlink.identity import agent_id_from_public_key

AGENTS = [agent_id_from_public_key(hashlib.sha256(bytes([i, 1])).digest()) for i in range(60)]
ME, PEER = AGENTS[0], AGENTS[1]


@dataclass(frozen=True)
class Cap:
    tag: str


@dataclass(frozen=True)
class FakeRecord:
    agent_id: str
    capabilities: tuple[Cap, ...]


class FakeStore:
    """Stands in for the verified record store: 'valid' records are b'ok:<agent>:<tags>'."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, data: bytes, now: float) -> FakeRecord:
        parts = data.split(b":")
        if parts[0] != b"ok":
            raise ProtocolViolation("forged record", ErrorCode.AUTH_FAILED)
        agent = parts[1].decode()
        tags = tuple(Cap(t) for t in parts[2].decode().split(",") if t)
        self.data[agent] = data
        return FakeRecord(agent, tags)

    def get_encoded(self, agent_id: str, now: float) -> bytes | None:
        return self.data.get(agent_id)


def filled_node() -> DhtNode:
    node = DhtNode(ME, FakeStore())
    for agent in AGENTS[2:]:
        node.observe(agent, ["127.0.0.1:1"], 0.0)
    return node


def test_find_node_returns_the_closest_known_contacts() -> None:
    node = filled_node()
    target = hashlib.sha256(b"target").digest()
    resp = node.handle(PEER, ["10.0.0.9:7420"], Request(Query.FIND_NODE, 9, target), 1.0)
    assert resp.ok and resp.request_id == 9
    got = [c.agent_id for c in resp.contacts]
    known = [a for a in AGENTS[2:] if node.table.get(a) is not None]
    expected = sorted(known, key=lambda a: distance(node_id(a), target))[: len(got)]
    assert got == expected and PEER not in got
    assert node.table.get(PEER) is not None  # the requester was learned


def test_requests_are_rate_limited_per_peer() -> None:
    node = filled_node()
    req = Request(Query.PING, 1, bytes(32))
    results = [node.handle(PEER, [], req, 5.0).ok for _ in range(int(MAX_REQUESTS_BURST) + 20)]
    assert results.count(False) >= 20
    assert node.handle(AGENTS[2], [], req, 5.0).ok  # others are unaffected
    assert node.handle(PEER, [], req, 10.0).ok  # the budget refills with time


def test_store_and_find_value() -> None:
    node = filled_node()
    owner = AGENTS[7]
    key = node_id(owner)
    record = f"ok:{owner}:".encode()
    assert node.handle(PEER, [], Request(Query.STORE, 1, key, record), 1.0).ok
    resp = node.handle(PEER, [], Request(Query.FIND_VALUE, 2, key), 1.0)
    assert resp.record == record and not resp.contacts
    other = node.handle(PEER, [], Request(Query.FIND_VALUE, 3, node_id(AGENTS[8])), 1.0)
    assert other.record is None and other.contacts


def test_bad_stores_are_refused_with_a_reason() -> None:
    node = filled_node()
    owner = AGENTS[7]
    forged = node.handle(PEER, [], Request(Query.STORE, 1, node_id(owner), b"bad:x:"), 1.0)
    assert not forged.ok and "forged" in forged.error
    wrong_key = node.handle(
        PEER, [], Request(Query.STORE, 2, node_id(AGENTS[8]), f"ok:{owner}:".encode()), 1.0
    )
    assert not wrong_key.ok and "key" in wrong_key.error


def test_providers_by_capability() -> None:
    node = filled_node()
    key = capability_key("translate")
    for agent in AGENTS[10:13]:
        rec = f"ok:{agent}:translate,summarize".encode()
        assert node.handle(agent, [], Request(Query.ADD_PROVIDER, 1, key, rec), 1.0).ok
    liar = f"ok:{AGENTS[13]}:summarize".encode()
    assert not node.handle(AGENTS[13], [], Request(Query.ADD_PROVIDER, 2, key, liar), 1.0).ok
    resp = node.handle(PEER, [], Request(Query.GET_PROVIDERS, 3, key), 2.0)
    assert len(resp.providers) == 3
    assert node.providers(key, 1.0 + 3601) == ()  # expired


def test_new_lookup_is_seeded_from_the_table() -> None:
    node = filled_node()
    lookup = node.new_lookup(hashlib.sha256(b"x").digest(), 0.0)
    first = lookup.next_queries(0.0)
    assert first and all(p.agent_id != ME for p in first)

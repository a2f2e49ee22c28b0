"""Signed agent records and the record store: every bad record is refused with a reason."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.dht import DhtNode, Query, Request, capability_key, node_id
from swarmlink.dht._records import (
    MAX_CAPABILITIES,
    MAX_RECORD_ADDRESSES,
    MAX_RECORD_LIFETIME,
    AgentRecord,
    Capability,
    RecordStore,
)
from swarmlink.errors import (
    CertificateExpired,
    ErrorCode,
    InvalidArgument,
    ProtocolViolation,
    RemoteError,
    VerificationFailed,
)
from swarmlink.identity import IdentityKey, OperationalKey
from swarmlink.wire import cbor

NOW = 1_800_000_000.0
ALICE = IdentityKey.generate()
MALLORY = IdentityKey.generate()
ALICE_OP = OperationalKey.generate(ALICE, now=NOW, lifetime=30 * 86400, serial=1)
MALLORY_OP = OperationalKey.generate(MALLORY, now=NOW, lifetime=30 * 86400, serial=1)


def record(seq: int = 1, **kw: object) -> AgentRecord:
    args: dict[str, object] = {
        "addresses": ["127.0.0.1:7420", "[::1]:7420"],
        "capabilities": [Capability("translate", description="EN to FR")],
        "sequence": seq,
        "now": NOW,
    }
    args.update(kw)
    return AgentRecord.create(ALICE, ALICE_OP.certificate, **args)  # type: ignore[arg-type]


def resign(body: dict[str, object], key: IdentityKey = ALICE) -> bytes:
    from swarmlink.dht._records import RECORD_DOMAIN

    unsigned = {k: v for k, v in body.items() if k != "sig"}
    sig = key.sign(RECORD_DOMAIN, cbor.encode(unsigned))
    return cbor.encode({**unsigned, "sig": sig})


def body_of(rec: AgentRecord) -> dict[str, object]:
    value = cbor.decode(rec.encode())
    assert isinstance(value, dict)
    return value


def test_round_trip_and_verify() -> None:
    rec = record()
    again = AgentRecord.verified(rec.encode(), NOW + 10, agent_id=ALICE.agent_id)
    assert again == rec
    assert again.agent_id == ALICE.agent_id
    assert again.addresses == ("127.0.0.1:7420", "[::1]:7420")
    assert again.capabilities[0].description == "EN to FR"
    assert again.to_json()["capabilities"][0]["tag"] == "translate"


def test_unsigned_record_is_refused() -> None:
    body = body_of(record())
    del body["sig"]
    with pytest.raises(ProtocolViolation, match="wrong fields"):
        AgentRecord.decode(cbor.encode(body))
    body["sig"] = b"\0" * 64
    with pytest.raises(VerificationFailed):
        AgentRecord.verified(cbor.encode(body), NOW)


def test_forged_record_is_refused() -> None:
    # Mallory rewrites Alice's addresses and signs with her own key.
    body = body_of(record())
    body["a"] = ["203.0.113.9:7420"]
    with pytest.raises(VerificationFailed):
        AgentRecord.verified(resign(body, MALLORY), NOW)
    # Or claims Alice's ID with her own certificate: then it is simply Mallory's record.
    body["c"] = MALLORY_OP.certificate.encode()
    rec = AgentRecord.verified(resign(body, MALLORY), NOW)
    with pytest.raises(ProtocolViolation) as err:
        rec.verify(NOW, agent_id=ALICE.agent_id)
    assert err.value.code == ErrorCode.AGENT_MISMATCH


def test_tampered_bytes_are_refused() -> None:
    data = bytearray(record().encode())
    i = data.find(b"127.0.0.1")
    data[i] = ord("9")
    with pytest.raises(VerificationFailed):
        AgentRecord.verified(bytes(data), NOW)


def test_expired_record_is_refused() -> None:
    rec = record(lifetime=60)
    with pytest.raises(CertificateExpired, match="expired"):
        AgentRecord.verified(rec.encode(), NOW + 61)


def test_record_of_an_expired_operational_key_is_refused() -> None:
    op = OperationalKey.generate(ALICE, now=NOW, lifetime=100, serial=2)
    rec = AgentRecord.create(ALICE, op.certificate, sequence=1, now=NOW)
    assert rec.expires <= op.certificate.not_after  # never outlives the key
    with pytest.raises(CertificateExpired):
        AgentRecord.verified(rec.encode(), NOW + 200)


def test_record_from_the_future_is_refused() -> None:
    rec = record(now=NOW + 3600)
    with pytest.raises(ProtocolViolation, match="future"):
        AgentRecord.verified(rec.encode(), NOW)


def test_oversized_record_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="shorten"):
        record(
            capabilities=[Capability(f"t{i}", description="x" * 256) for i in range(16)],
        )
    big = body_of(record())
    big["cap"] = [{"t": f"t{i}", "d": "x" * 256} for i in range(16)]
    with pytest.raises(ProtocolViolation, match="bytes"):
        AgentRecord.decode(resign(big))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("v", 2, "version"),
        ("a", ["nohost"], "HOST:PORT"),
        ("a", ["1.2.3.4:0"], "non-zero port"),
        ("a", ["a b:1"], "spaces"),
        ("a", [f"10.0.0.{i}:1" for i in range(MAX_RECORD_ADDRESSES + 1)], "at most"),
        ("cap", [{"t": "UPPER"}], "lowercase"),
        ("cap", [{"t": "a"}, {"t": "a"}], "duplicate"),
        ("cap", [{"t": f"t{i}"} for i in range(MAX_CAPABILITIES + 1)], "at most"),
        ("cap", [{"t": "a", "x": "y"}], "capability is a map"),
        ("seq", -1, "unsigned"),
        ("exp", int(NOW) + MAX_RECORD_LIFETIME + 10, "lifetime"),
        ("c", b"junk", "certificate|malformed|CBOR"),
        ("sig", b"short", "64 bytes"),
    ],
)
def test_malformed_records_are_refused(field: str, value: object, match: str) -> None:
    body = body_of(record())
    body[field] = value
    data = cbor.encode(body) if field == "sig" else resign(body)
    with pytest.raises(RemoteError, match=match):
        AgentRecord.decode(data)


def test_store_keeps_the_highest_sequence() -> None:
    store = RecordStore()
    r1, r2 = record(1), record(2, addresses=["127.0.0.1:9999"])
    store.put(r1.encode(), NOW)
    assert store.put(r2.encode(), NOW).sequence == 2
    with pytest.raises(RemoteError) as err:
        store.put(r1.encode(), NOW)
    assert err.value.code == ErrorCode.STALE
    assert store.put(r2.encode(), NOW) == r2  # the same record again is fine
    other = record(2, addresses=["127.0.0.1:1"])
    with pytest.raises(RemoteError, match="different record"):
        store.put(other.encode(), NOW)
    assert store.get(ALICE.agent_id, NOW) == r2
    assert [a for a, _ in store.take_changes()] == [ALICE.agent_id]
    assert store.take_changes() == []


def test_store_drops_expired_records_and_accepts_older_ones_after_expiry() -> None:
    store = RecordStore()
    store.put(record(5, lifetime=60).encode(), NOW)
    assert store.get(ALICE.agent_id, NOW + 61) is None
    # After expiry a restarted agent whose counter went back is accepted again.
    store.put(record(1, now=NOW + 62).encode(), NOW + 62)
    assert store.get(ALICE.agent_id, NOW + 62) is not None


def test_store_capacity_is_enforced() -> None:
    store = RecordStore(capacity=1)
    store.put(record().encode(), NOW)
    theirs = AgentRecord.create(MALLORY, MALLORY_OP.certificate, sequence=1, now=NOW)
    with pytest.raises(RemoteError) as err:
        store.put(theirs.encode(), NOW)
    assert err.value.code == ErrorCode.RATE_LIMITED


def test_dht_node_stores_and_serves_records() -> None:
    store = RecordStore()
    node = DhtNode(MALLORY.agent_id, store)
    rec = record()
    key = node_id(ALICE.agent_id)
    resp = node.handle(ALICE.agent_id, [], Request(Query.STORE, 1, key, rec.encode()), NOW)
    assert resp.ok
    found = node.handle(ALICE.agent_id, [], Request(Query.FIND_VALUE, 2, key), NOW)
    assert found.record == rec.encode()
    # A record under another agent's key, or a forged one, is refused with a reason.
    wrong = node.handle(
        ALICE.agent_id, [], Request(Query.STORE, 3, node_id(MALLORY.agent_id), rec.encode()), NOW
    )
    assert not wrong.ok and "not its agent" in wrong.error
    body = body_of(record(7))
    body["a"] = ["198.51.100.1:1"]
    forged = node.handle(ALICE.agent_id, [], Request(Query.STORE, 4, key, cbor.encode(body)), NOW)
    assert not forged.ok and "signature" in forged.error
    stale = node.handle(ALICE.agent_id, [], Request(Query.STORE, 5, key, record(0).encode()), NOW)
    assert not stale.ok and "[stale]" in stale.error
    # Provider records must advertise the capability.
    ckey = capability_key("translate")
    ok = node.handle(ALICE.agent_id, [], Request(Query.ADD_PROVIDER, 6, ckey, rec.encode()), NOW)
    assert ok.ok and node.providers(ckey, NOW) == (rec.encode(),)
    bad = node.handle(
        ALICE.agent_id, [], Request(Query.ADD_PROVIDER, 7, capability_key("x"), rec.encode()), NOW
    )
    assert not bad.ok and "does not advertise" in bad.error


@given(
    addresses=st.lists(
        st.tuples(st.integers(0, 255), st.integers(1, 65535)).map(
            lambda t: f"10.0.0.{t[0]}:{t[1]}"
        ),
        max_size=MAX_RECORD_ADDRESSES,
    ),
    tags=st.lists(st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,20}", fullmatch=True), max_size=6),
    seq=st.integers(0, 2**62),
)
def test_record_round_trip_property(addresses: list[str], tags: list[str], seq: int) -> None:
    rec = record(seq, addresses=addresses, capabilities=[Capability(t) for t in tags])
    again = AgentRecord.verified(rec.encode(), NOW)
    assert again == rec
    assert again.encode() == rec.encode() == dataclasses.replace(rec, encoded=b"").encode()

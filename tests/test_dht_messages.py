"""DHT messages: round trips, strict decoding, limits."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.dht._messages import (
    MAX_CONTACTS,
    MAX_DHT_MESSAGE,
    Query,
    Request,
    Response,
    WireContact,
    decode_request,
    decode_response,
)
from swarmlink.errors import ErrorCode, InvalidArgument, ProtocolViolation
from swarmlink.identity import agent_id_from_public_key
from swarmlink.wire import cbor

AGENTS = [agent_id_from_public_key(hashlib.sha256(bytes([i])).digest()) for i in range(30)]

keys = st.binary(min_size=32, max_size=32)
contacts = st.builds(
    WireContact,
    st.sampled_from(AGENTS),
    st.lists(st.sampled_from(["127.0.0.1:7420", "[::1]:9", "10.0.0.1:1"]), max_size=3).map(tuple),
)


@given(
    st.sampled_from([q for q in Query if q not in (Query.STORE, Query.ADD_PROVIDER)]),
    st.integers(0, 2**32 - 1),
    keys,
)
def test_request_round_trip(kind: Query, rid: int, key: bytes) -> None:
    req = Request(kind, rid, key)
    assert decode_request(req.encode()) == req


@given(
    st.sampled_from([Query.STORE, Query.ADD_PROVIDER]), keys, st.binary(min_size=1, max_size=300)
)
def test_store_requests_carry_a_record(kind: Query, key: bytes, record: bytes) -> None:
    req = Request(kind, 7, key, record)
    assert decode_request(req.encode()) == req
    with pytest.raises(ProtocolViolation, match="needs record"):
        decode_request(Request(kind, 7, key).encode())


@given(
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.lists(contacts, max_size=MAX_CONTACTS).map(tuple),
    st.one_of(st.none(), st.binary(min_size=1, max_size=200)),
    st.lists(st.binary(min_size=1, max_size=100), max_size=8).map(tuple),
    st.text(max_size=50),
)
def test_response_round_trip(
    rid: int,
    ok: bool,
    cs: tuple[WireContact, ...],
    record: bytes | None,
    providers: tuple[bytes, ...],
    error: str,
) -> None:
    resp = Response(rid, ok, cs, record, providers, error)
    assert decode_response(resp.encode()) == resp


@given(st.binary(max_size=400))
def test_garbage_only_raises_protocol_violations(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(ProtocolViolation):
            decode(data)


@pytest.mark.parametrize(
    "body",
    [
        {"q": "nope", "n": 1, "k": bytes(32)},
        {"q": "ping", "n": -1, "k": bytes(32)},
        {"q": "ping", "n": 1, "k": bytes(31)},
        {"q": "ping", "n": 1, "k": bytes(32), "x": 1},
        {"q": "ping", "n": 1, "k": bytes(32), "r": b"unexpected"},
        {"q": "store", "n": 1, "k": bytes(32), "r": b""},
        [1, 2, 3],
    ],
)
def test_bad_requests(body: object) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode_request(cbor.encode(body))  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.MALFORMED


@pytest.mark.parametrize(
    "body",
    [
        {"n": 1, "ok": 1},
        {"n": 1, "ok": True, "c": [["not-an-agent", []]]},
        {"n": 1, "ok": True, "c": [[AGENTS[0], ["a\nb"]]]},
        {"n": 1, "ok": True, "c": [[AGENTS[0], []]] * (MAX_CONTACTS + 1)},
        {"n": 1, "ok": True, "p": [b"x"] * 9},
        {"n": 1, "ok": True, "e": "x" * 1000},
    ],
)
def test_bad_responses(body: object) -> None:
    with pytest.raises(ProtocolViolation):
        decode_response(cbor.encode(body))  # type: ignore[arg-type]


def test_size_limits() -> None:
    with pytest.raises(ProtocolViolation, match="exceeds"):
        decode_request(bytes(MAX_DHT_MESSAGE + 1))
    with pytest.raises(InvalidArgument):
        Response(1, True, providers=(bytes(4096),) * 20).encode()

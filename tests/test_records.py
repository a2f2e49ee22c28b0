"""Length-prefixed CBOR records: golden vectors, limits, incremental decoding.

``tests/vectors/records.json`` is a list of ``{"note", "value", "hex"}``: ``hex`` is the
whole record (u32 big-endian length + CBOR). ``value`` uses the convention of
``tests/vectors/cbor.json``: plain JSON, plus ``{"$bytes": "<hex>"}`` for byte strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ErrorCode, InvalidArgument, ProtocolViolation
from swarmlink.wire import cbor
from swarmlink.wire.records import (
    MAX_RECORD_SIZE,
    RECORD_HEADER_SIZE,
    RecordDecoder,
    encode_record,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "records.json").read_text("utf-8"))


def from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    return value


def feed_whole(data: bytes, decoder: RecordDecoder | None = None) -> list[Any]:
    decoder = decoder or RecordDecoder()
    return decoder.feed(data)


def feed_bytewise(data: bytes, decoder: RecordDecoder | None = None) -> list[Any]:
    decoder = decoder or RecordDecoder()
    out: list[Any] = []
    for i in range(len(data)):
        out.extend(decoder.feed(data[i : i + 1]))
    return out


FEEDERS = [feed_whole, feed_bytewise]


def header(size: int) -> bytes:
    return size.to_bytes(4, "big")


ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
values = st.recursive(
    st.none() | st.booleans() | ints | st.binary(max_size=20) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5) | ints, children, max_size=4)
    ),
    max_leaves=12,
)


# --------------------------------------------------------------------------- vectors


def test_constants() -> None:
    assert MAX_RECORD_SIZE == 64 * 1024
    assert RECORD_HEADER_SIZE == 4


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["note"])
def test_vector_encode(vector: dict[str, Any]) -> None:
    assert encode_record(from_json(vector["value"])).hex() == vector["hex"]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["note"])
def test_vector_decode(vector: dict[str, Any], feed: Any) -> None:
    assert feed(bytes.fromhex(vector["hex"])) == [from_json(vector["value"])]


@pytest.mark.parametrize("feed", FEEDERS)
def test_vector_stream(feed: Any) -> None:
    stream = b"".join(bytes.fromhex(v["hex"]) for v in VECTORS)
    assert feed(stream) == [from_json(v["value"]) for v in VECTORS]


# --------------------------------------------------------------------------- encoding


def test_encode_record_layout() -> None:
    assert encode_record({"a": 1}) == b"\x00\x00\x00\x04" + cbor.encode({"a": 1})
    assert encode_record(None) == b"\x00\x00\x00\x01\xf6"


def test_encode_record_size_limit() -> None:
    # A byte string of n bytes (256 <= n < 65536) encodes to n + 3 bytes.
    at_limit = encode_record(b"\x00" * (MAX_RECORD_SIZE - 3))
    assert len(at_limit) == RECORD_HEADER_SIZE + MAX_RECORD_SIZE
    assert at_limit[:4] == header(MAX_RECORD_SIZE)
    assert feed_whole(at_limit) == [b"\x00" * (MAX_RECORD_SIZE - 3)]
    with pytest.raises(InvalidArgument, match="exceeds the limit of 65536"):
        encode_record(b"\x00" * (MAX_RECORD_SIZE - 2))


def test_encode_record_rejects_unencodable_values() -> None:
    with pytest.raises(InvalidArgument):
        encode_record(1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- decoding


def test_buffered_and_has_partial() -> None:
    decoder = RecordDecoder()
    assert (decoder.buffered, decoder.has_partial) == (0, False)
    record = encode_record([1, 2, 3])
    assert decoder.feed(record[:2]) == []
    assert (decoder.buffered, decoder.has_partial) == (2, True)
    assert decoder.feed(record[2:6]) == []
    assert (decoder.buffered, decoder.has_partial) == (6, True)
    assert decoder.feed(record[6:] + record[:5]) == [[1, 2, 3]]
    assert (decoder.buffered, decoder.has_partial) == (5, True)
    assert decoder.feed(record[5:]) == [[1, 2, 3]]
    assert (decoder.buffered, decoder.has_partial) == (0, False)
    assert decoder.feed(b"") == []


def test_several_records_in_one_feed() -> None:
    data = encode_record(1) + encode_record("two") + encode_record([3])
    assert RecordDecoder().feed(data) == [1, "two", [3]]


@pytest.mark.parametrize("feed", FEEDERS)
def test_oversized_prefix_rejected_before_body(feed: Any) -> None:
    decoder = RecordDecoder()
    with pytest.raises(ProtocolViolation) as info:
        feed(header(MAX_RECORD_SIZE + 1), decoder)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    assert "65537" in info.value.reason
    assert decoder.buffered == 0


def test_oversized_prefix_rejected_on_its_fourth_byte() -> None:
    decoder = RecordDecoder()
    prefix = header(0xFFFFFFFF)
    for i in range(3):
        assert decoder.feed(prefix[i : i + 1]) == []
    with pytest.raises(ProtocolViolation) as info:
        decoder.feed(prefix[3:] + b"\x00" * 100)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


def test_oversized_prefix_after_good_records() -> None:
    with pytest.raises(ProtocolViolation) as info:
        RecordDecoder().feed(encode_record(1) + header(MAX_RECORD_SIZE + 1))
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


def test_custom_limit() -> None:
    decoder = RecordDecoder(max_record_size=8)
    assert decoder.feed(encode_record(b"12345")) == [b"12345"]  # 6-byte body
    assert decoder.feed(encode_record(b"1234567")) == [b"1234567"]  # 8-byte body
    with pytest.raises(ProtocolViolation) as info:
        decoder.feed(encode_record(b"12345678"))  # 9-byte body
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    zero = RecordDecoder(max_record_size=0)
    with pytest.raises(ProtocolViolation) as info:
        zero.feed(encode_record(None))
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_invalid_limit(bad: int) -> None:
    with pytest.raises(InvalidArgument):
        RecordDecoder(max_record_size=bad)


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "truncated"),
        (b"\xf9\x00\x00", "half-precision"),
        (b"\x18\x01", "non-shortest"),
        (b"\x00\x00", "trailing"),
        (b"\xa2\x61b\x01\x61a\x02", "unsorted"),
        (b"\x62\xc3\x28", "UTF-8"),
        (b"\x81" * 17 + b"\x00", "nesting"),
    ],
)
def test_malformed_body(feed: Any, body: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolViolation) as info:
        feed(header(len(body)) + body)
    assert info.value.code is ErrorCode.MALFORMED
    assert fragment in info.value.reason


def test_decoder_stays_failed() -> None:
    decoder = RecordDecoder()
    with pytest.raises(ProtocolViolation):
        decoder.feed(header(1) + b"\xff")
    for _ in range(2):
        with pytest.raises(ProtocolViolation) as info:
            decoder.feed(encode_record(1))
        assert info.value.code is ErrorCode.MALFORMED
    assert decoder.buffered == 0

    decoder = RecordDecoder()
    with pytest.raises(ProtocolViolation):
        decoder.feed(header(MAX_RECORD_SIZE + 1))
    with pytest.raises(ProtocolViolation) as info:
        decoder.feed(b"")
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


def test_big_record_fed_byte_by_byte() -> None:
    value: dict[str, Any] = {"blob": bytes(range(256)) * 200, "n": 7}
    record = encode_record(value)
    assert len(record) > 50_000
    decoder = RecordDecoder()
    assert feed_bytewise(record[:-1], decoder) == []
    assert decoder.buffered == len(record) - 1
    assert decoder.feed(record[-1:]) == [value]
    assert decoder.buffered == 0


# --------------------------------------------------------------------------- properties


@given(st.lists(values, max_size=6), st.data())
def test_any_split_decodes_to_the_same_records(records: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode_record(r) for r in records)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = RecordDecoder()
    out: list[Any] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[previous:cut]))
        previous = cut
    assert out == records
    assert not decoder.has_partial


@given(st.lists(values, max_size=4))
def test_byte_by_byte_decodes_to_the_same_records(records: list[Any]) -> None:
    stream = b"".join(encode_record(r) for r in records)
    assert feed_bytewise(stream) == records
    assert feed_whole(stream) == records


@given(st.lists(values, min_size=1, max_size=4), st.data())
def test_partial_state_reported(records: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode_record(r) for r in records)
    cut = data.draw(st.integers(0, len(stream)))
    decoder = RecordDecoder()
    done = decoder.feed(stream[:cut])
    consumed = sum(len(encode_record(r)) for r in done)
    assert done == records[: len(done)]
    assert decoder.buffered == cut - consumed
    assert decoder.has_partial == (cut != consumed)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_protocol_violation(data: bytes) -> None:
    for feed in FEEDERS:
        try:
            feed(data)
        except ProtocolViolation as exc:
            assert exc.code in (ErrorCode.MALFORMED, ErrorCode.FRAME_TOO_LARGE)


@given(st.binary(max_size=64))
def test_arbitrary_bodies_only_raise_malformed(body: bytes) -> None:
    for feed in FEEDERS:
        try:
            records = feed(header(len(body)) + body)
        except ProtocolViolation as exc:
            assert exc.code is ErrorCode.MALFORMED
        else:
            assert [cbor.encode(r) for r in records] == [body]

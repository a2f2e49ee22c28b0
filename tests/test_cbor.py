"""Deterministic CBOR codec: golden vectors, strict rejections, properties.

``tests/vectors/cbor.json`` is a list of ``{"value": ..., "hex": ..., "note": ...}``.
``value`` describes the Python value in JSON: JSON null / booleans / integers / strings /
arrays stand for themselves; ``{"$bytes": "<hex>"}`` is a byte string;
``{"$map": [[key, value], ...]}`` is a map with any (int or str) keys; any other JSON
object is a map with text keys. ``hex`` is the one valid encoding.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ErrorCode, InvalidArgument, ProtocolViolation
from swarmlink.wire import cbor
from swarmlink.wire.cbor import MAX_DEPTH, MAX_ITEMS, decode, encode

VECTORS = json.loads((Path(__file__).parent / "vectors" / "cbor.json").read_text("utf-8"))


def from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$map"}:
            return {from_json(k): from_json(v) for k, v in value["$map"]}
        return {k: from_json(v) for k, v in value.items()}
    return value


def normalize(value: Any) -> Any:
    """What decode() returns for an encoded value: lists for sequences, bytes for buffers."""
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def reference_encode(value: Any) -> bytes:
    """An independent, slow, obviously-correct encoder used as an oracle."""

    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 256**size:
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise AssertionError(n)

    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, (bytes, bytearray)):
        return head(2, len(value)) + bytes(value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return head(3, len(raw)) + raw
    if isinstance(value, (list, tuple)):
        return head(4, len(value)) + b"".join(reference_encode(v) for v in value)
    if isinstance(value, dict):
        pairs = sorted((reference_encode(k), reference_encode(v)) for k, v in value.items())
        return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)
    raise AssertionError(type(value))


def expect_malformed(data: bytes, fragment: str = "", **limits: int) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        decode(data, **limits)
    assert info.value.code is ErrorCode.MALFORMED
    assert "offset" in info.value.reason
    assert fragment in info.value.reason, info.value.reason
    return info.value


# --------------------------------------------------------------------------- strategies

ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
scalars = st.none() | st.booleans() | ints | st.binary(max_size=40) | st.text(max_size=30)
keys = st.text(max_size=8) | ints
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=30,
)


# --------------------------------------------------------------------------- vectors


def test_vector_file_is_substantial() -> None:
    assert len(VECTORS) >= 50
    assert {v["hex"] for v in VECTORS} >= {"00", "17", "1818", "8301820203820405"}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["hex"][:24])
def test_vector_encode(vector: dict[str, Any]) -> None:
    assert encode(from_json(vector["value"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["hex"][:24])
def test_vector_decode(vector: dict[str, Any]) -> None:
    value = decode(bytes.fromhex(vector["hex"]))
    assert value == from_json(vector["value"])
    assert type(value) is type(from_json(vector["value"]))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["hex"][:24])
def test_vector_every_prefix_is_truncated(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    for cut in range(len(data)):
        expect_malformed(data[:cut])


# --------------------------------------------------------------------------- encoding


def test_encode_accepts_buffers_tuples_and_subclasses() -> None:
    class Code(enum.IntEnum):
        SEVEN = 7

    class Name(str):
        pass

    assert encode(bytearray(b"\x01\x02")) == b"\x42\x01\x02"
    assert encode(memoryview(b"\x01\x02")) == b"\x42\x01\x02"
    assert encode((1, (2,))) == encode([1, [2]]) == b"\x82\x01\x81\x02"
    assert encode(Code.SEVEN) == b"\x07"
    assert encode(ErrorCode.MALFORMED) == b"\x03"
    # (Mapping keys are invariant for mypy, hence the ignores; the runtime accepts them.)
    assert encode({Code.SEVEN: Name("x")}) == b"\xa1\x07\x61x"  # type: ignore[arg-type]
    assert encode({Name("k"): True}) == b"\xa1\x61k\xf5"  # type: ignore[arg-type]


def test_encode_sorts_keys_whatever_the_insertion_order() -> None:
    forward: dict[str | int, int] = {"a": 1, "b": 2, 1: 3, -5: 4}
    backward = dict(reversed(list(forward.items())))
    assert encode(forward) == encode(backward) == bytes.fromhex("a4010324046161016162" + "02")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (1.5, "float"),
        (0.0, "float"),
        (float("nan"), "float"),
        (2**64, "larger than"),
        (-(2**64) - 1, "smaller than"),
        ({1, 2}, "set"),
        (object(), "object"),
        (1j, "complex"),
        ({1.0: 1}, "keys must be str or int"),
        ({True: 1}, "keys must be str or int"),
        ({None: 1}, "keys must be str or int"),
        ({b"k": 1}, "keys must be str or int"),
        ({(1, 2): 1}, "keys must be str or int"),
        ({2**64: 1}, "larger than"),
        ("\ud800", "not valid Unicode"),
        ([1, [2, {"x": 1.25}]], "float"),
    ],
)
def test_encode_rejects(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        encode(value)


def test_encode_rejects_cycles_and_absurd_depth() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidArgument, match="nested deeper"):
        encode(cyclic)
    deep: Any = 0
    for _ in range(cbor.MAX_ENCODE_DEPTH + 1):
        deep = {"d": deep}
    with pytest.raises(InvalidArgument, match="nested deeper"):
        encode(deep)


def test_encode_depth_at_the_encode_limit_works() -> None:
    deep: Any = 0
    for _ in range(cbor.MAX_ENCODE_DEPTH):
        deep = [deep]
    assert decode(encode(deep), max_depth=cbor.MAX_DEPTH_CEILING) == deep


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("hex_data", "fragment"),
    [
        # non-shortest arguments, for integers and for lengths
        ("1800", "non-shortest"),
        ("1817", "non-shortest"),
        ("190017", "non-shortest"),
        ("1900ff", "non-shortest"),
        ("1a0000ffff", "non-shortest"),
        ("1b00000000ffffffff", "non-shortest"),
        ("3817", "non-shortest"),
        ("5800", "non-shortest"),
        ("780161", "non-shortest"),
        ("980101", "non-shortest"),
        ("b8010101", "non-shortest"),
        ("81 1817", "non-shortest"),
        # indefinite lengths and break
        ("5f4101ff", "indefinite"),
        ("7f6161ff", "indefinite"),
        ("9f01ff", "indefinite"),
        ("bf616101ff", "indefinite"),
        ("ff", "break"),
        ("8201ff", "break"),
        # tags
        ("c074323031332d30332d32315432303a30343a30305a", "tags"),
        ("c249010000000000000000", "tags"),
        ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", "tags"),
        # floats and simple values
        ("f90000", "half-precision"),
        ("f93c00", "half-precision"),
        ("fa47c35000", "single-precision"),
        ("fb3ff199999999999a", "double-precision"),
        ("f7", "undefined"),
        ("f0", "simple value 16"),
        ("e0", "simple value 0"),
        ("f818", "simple values other than"),
        ("f8ff", "simple values other than"),
        # reserved additional information
        ("1c", "reserved"),
        ("3d", "reserved"),
        ("5e", "reserved"),
        ("9c", "reserved"),
        ("fc", "reserved"),
        # maps: duplicates, order, key types
        ("a2616101616102", "duplicate map key"),
        ("a2010101 02", "duplicate map key"),
        ("a2616201616102", "unsorted map key"),
        ("a2616101 0102", "unsorted map key"),
        ("a2200100 02", "unsorted map key"),
        ("a26261610161 7a02", "unsorted map key"),
        ("a1400 1", "map key must be"),
        ("a18001", "map key must be"),
        ("a1a001", "map key must be"),
        ("a1f601", "map key must be"),
        ("a1f501", "map key must be"),
        ("a1c00101", "map key must be"),
        # trailing bytes
        ("0000", "trailing"),
        ("8001", "trailing"),
        ("f6f6", "trailing"),
        # truncation
        ("", "truncated"),
        ("18", "truncated 1-byte"),
        ("1900", "truncated 2-byte"),
        ("1a000000", "truncated 4-byte"),
        ("1b00000000000000", "truncated 8-byte"),
        ("821901", "truncated 2-byte"),
        ("a161 61", "truncated"),
        ("6261", "string length 2 exceeds the 1 remaining"),
        ("82" + "4401020304" + "44010203", "string length 4 exceeds the 3"),
        # invalid UTF-8
        ("62c328", "invalid UTF-8"),
        ("61ff", "invalid UTF-8"),
        ("61c0", "invalid UTF-8"),
        ("62c080", "invalid UTF-8"),  # overlong NUL
        ("63eda080", "invalid UTF-8"),  # UTF-16 surrogate
        ("64f4908080", "invalid UTF-8"),  # beyond U+10FFFF
    ],
)
def test_decode_rejects(hex_data: str, fragment: str) -> None:
    expect_malformed(bytes.fromhex(hex_data.replace(" ", "")), fragment)


def test_error_message_names_offset() -> None:
    error = expect_malformed(bytes.fromhex("8301021817"))
    assert error.reason == "CBOR: non-shortest argument encoding at offset 3"
    error = expect_malformed(bytes.fromhex("a2616201616102"))
    assert error.reason == "CBOR: unsorted map key at offset 4"
    assert str(error).endswith("[malformed]")


@pytest.mark.parametrize(
    "hex_data",
    [
        "5b1000000000000000" + "0000",  # byte string claiming 2**60 bytes
        "7b1000000000000000" + "00",  # text string claiming 2**60 bytes
        "5bffffffffffffffff",  # 2**64 - 1
        "5a7fffffff00",
    ],
)
def test_huge_declared_string_fails_fast(hex_data: str) -> None:
    expect_malformed(bytes.fromhex(hex_data), "exceeds")


def test_huge_declared_containers_fail_fast() -> None:
    # Against the item budget first, then against the remaining input.
    expect_malformed(bytes.fromhex("9b0fffffffffffffff00"), "allowed total of items")
    expect_malformed(bytes.fromhex("bb0fffffffffffffff00"), "allowed total of items")
    expect_malformed(bytes.fromhex("99100000"), "cannot fit", max_items=2**20)
    expect_malformed(bytes.fromhex("9b0fffffffffffffff00"), "cannot fit", max_items=2**62)
    expect_malformed(bytes.fromhex("a3000100"), "cannot fit")
    expect_malformed(bytes.fromhex("a2000100"), "cannot fit")


def nested_arrays(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


def test_depth_limit() -> None:
    assert MAX_DEPTH == 16
    assert decode(nested_arrays(MAX_DEPTH)) is not None
    expect_malformed(nested_arrays(MAX_DEPTH + 1), "nesting deeper than 16")
    # Maps count as levels too; scalars do not.
    assert decode(b"\xa1\x61a" * MAX_DEPTH + b"\x00") is not None
    expect_malformed(b"\xa1\x61a" * (MAX_DEPTH + 1) + b"\x00", "nesting deeper")
    assert decode(b"\x00", max_depth=0) == 0
    expect_malformed(b"\x80", "nesting deeper than 0", max_depth=0)
    assert decode(nested_arrays(3), max_depth=3) == [[[0]]]
    expect_malformed(nested_arrays(4), "nesting deeper than 3", max_depth=3)
    expect_malformed(nested_arrays(20_000), "nesting deeper")


def test_item_limit_counts_every_element_and_entry() -> None:
    assert MAX_ITEMS == 4096
    assert decode(encode([0] * MAX_ITEMS)) == [0] * MAX_ITEMS
    expect_malformed(encode([0] * (MAX_ITEMS + 1)), "allowed total of items")
    # [[0, 0], {1: 2}] has 2 + 2 + 1 = 5 items.
    data = encode([[0, 0], {1: 2}])
    assert decode(data, max_items=5) == [[0, 0], {1: 2}]
    expect_malformed(data, "allowed total of items", max_items=4)
    spread = encode([[0] * 100 for _ in range(41)])  # 41 + 4100 items
    expect_malformed(spread, "allowed total of items")
    assert decode(b"\x00", max_items=0) == 0
    assert decode(b"\x80", max_items=0) == []


def test_decode_argument_validation() -> None:
    with pytest.raises(InvalidArgument):
        decode(b"\x00", max_depth=-1)
    with pytest.raises(InvalidArgument):
        decode(b"\x00", max_depth=cbor.MAX_DEPTH_CEILING + 1)
    with pytest.raises(InvalidArgument):
        decode(b"\x00", max_items=-1)
    with pytest.raises(InvalidArgument):
        decode("00")  # type: ignore[arg-type]


def test_decode_accepts_bytes_likes_and_returns_plain_types() -> None:
    data = encode({"b": b"\x01", "l": (1, 2)})
    for form in (data, bytearray(data), memoryview(data)):
        value = decode(form)  # type: ignore[arg-type]
        assert value == {"b": b"\x01", "l": [1, 2]}
        assert type(value["b"]) is bytes
        assert type(value["l"]) is list


# --------------------------------------------------------------------------- properties


@given(values)
def test_roundtrip(value: Any) -> None:
    data = encode(value)
    assert decode(data, max_depth=64, max_items=10_000) == normalize(value)


@given(values)
def test_encoding_matches_reference_and_is_canonical(value: Any) -> None:
    data = encode(value)
    assert data == reference_encode(value)
    assert encode(decode(data, max_depth=64, max_items=10_000)) == data


@given(values)
def test_every_truncation_is_rejected(value: Any) -> None:
    data = encode(value)
    for cut in range(len(data)):
        with pytest.raises(ProtocolViolation):
            decode(data[:cut], max_depth=64, max_items=10_000)


def check_arbitrary(data: bytes) -> None:
    try:
        value = decode(data)
    except ProtocolViolation as exc:
        assert exc.code is ErrorCode.MALFORMED
    else:
        assert encode(value) == data  # whatever is accepted is canonical


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_protocol_violation(data: bytes) -> None:
    check_arbitrary(data)


@given(
    st.lists(
        st.sampled_from(
            bytes.fromhex("00011718191a1b20384041586061788081989ea0a1b8c0f4f5f6f7f8f9ff")
        ),
        max_size=24,
    ).map(bytes)
)
def test_structured_bytes_only_raise_protocol_violation(data: bytes) -> None:
    # Bytes drawn mostly from interesting initial bytes reach deeper into the decoder.
    check_arbitrary(data)


@given(values, st.data())
def test_mutated_encodings(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        index = data.draw(st.integers(0, max(len(encoded) - 1, 0)))
        if action == "insert" or not encoded:
            encoded.insert(index, data.draw(st.integers(0, 255)))
        elif action == "delete":
            del encoded[index]
        elif action == "flip":
            encoded[index] ^= 1 << data.draw(st.integers(0, 7))
        else:
            encoded[index] = data.draw(st.integers(0, 255))
    check_arbitrary(bytes(encoded))


@given(st.dictionaries(keys, st.integers(0, 5), min_size=2, max_size=8), st.randoms())
def test_map_keys_sorted_by_encoding(mapping: dict[Any, int], rnd: Any) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    data = encode(dict(items))
    assert data == encode(mapping)
    assert list(decode(data)) == sorted(mapping, key=encode)

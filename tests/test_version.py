"""HELLO encoding/validation and version negotiation.

``tests/vectors/hello.json`` holds ``{"hello": [...], "negotiate": [...]}``. Each
``hello`` entry gives the fields and the ``hex`` of a HELLO; ``canonical: true`` means
``Hello(...).encode()`` produces exactly that hex, ``false`` means it only decodes to
those fields (e.g. it carries unknown keys). Each ``negotiate`` entry gives two encoded
HELLOs and the expected ``version`` + ``features``, or the expected ``error`` message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ErrorCode, InvalidArgument, ProtocolViolation, VersionMismatch
from swarmlink.wire import cbor
from swarmlink.wire.version import (
    FEATURES,
    MAX_FEATURE_LENGTH,
    MAX_FEATURES,
    MAX_USER_AGENT_LENGTH,
    MAX_VERSIONS,
    PROTOCOL_VERSIONS,
    Hello,
    Negotiated,
    negotiate,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "hello.json").read_text("utf-8"))

VALID: dict[str | int, Any] = {"v": [1], "f": ["mux"], "ua": "swarmlink/0.1.0"}


def decode_fields(**changes: Any) -> Hello:
    message: dict[Any, Any] = dict(VALID)
    for key, value in changes.items():
        if value is _DROP:
            del message[key]
        else:
            message[key] = value
    return Hello.decode(cbor.encode(message))


_DROP = object()


def expect_malformed(fragment: str, **changes: Any) -> None:
    with pytest.raises(ProtocolViolation, match=fragment) as info:
        decode_fields(**changes)
    assert info.value.code is ErrorCode.MALFORMED


# --------------------------------------------------------------------------- strategies

feature_names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    min_size=1,
    max_size=MAX_FEATURE_LENGTH,
)
hellos = st.builds(
    Hello,
    versions=st.lists(st.integers(1, 0xFFFF), min_size=1, max_size=MAX_VERSIONS, unique=True).map(
        tuple
    ),
    features=st.lists(feature_names, max_size=MAX_FEATURES, unique=True).map(tuple),
    user_agent=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        max_size=MAX_USER_AGENT_LENGTH,
    ),
)
# Small version/feature universes, so that pairs of HELLOs often overlap.
overlapping_hellos = st.builds(
    Hello,
    versions=st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True).map(tuple),
    features=st.lists(st.sampled_from(["mux", "trust", "zstd", "quic"]), unique=True).map(tuple),
    user_agent=st.sampled_from(["a/1", "b/2"]),
)


# --------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert PROTOCOL_VERSIONS == (1,)
    assert frozenset({"mux", "trust"}) == FEATURES
    assert (MAX_VERSIONS, MAX_FEATURES, MAX_FEATURE_LENGTH, MAX_USER_AGENT_LENGTH) == (
        16,
        32,
        64,
        128,
    )


def test_local_hello() -> None:
    hello = Hello.local()
    assert hello == Hello((1,), ("mux", "trust"), "swarmlink/0.1.0")
    assert Hello.local("me/2", versions=[2, 1], features={"b", "a"}) == Hello(
        (2, 1), ("a", "b"), "me/2"
    )
    assert Hello.local().encode() == Hello.local().encode()


def test_constructor_accepts_lists_and_stores_tuples() -> None:
    hello = Hello([1, 2], ["mux"], "x")  # type: ignore[arg-type]
    assert hello.versions == (1, 2)
    assert hello.features == ("mux",)
    with pytest.raises(AttributeError):
        hello.user_agent = "y"  # type: ignore[misc]


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("vector", VECTORS["hello"], ids=lambda v: v["note"])
def test_hello_vectors(vector: dict[str, Any]) -> None:
    hello = Hello(tuple(vector["versions"]), tuple(vector["features"]), vector["user_agent"])
    data = bytes.fromhex(vector["hex"])
    assert Hello.decode(data) == hello
    if vector["canonical"]:
        assert hello.encode() == data
    else:
        assert hello.encode() != data


def test_local_hello_vector() -> None:
    assert Hello.local("swarmlink/0.1.0").encode().hex() == VECTORS["hello"][0]["hex"]


@pytest.mark.parametrize("vector", VECTORS["negotiate"], ids=lambda v: v["note"])
def test_negotiate_vectors(vector: dict[str, Any]) -> None:
    local = Hello.decode(bytes.fromhex(vector["local"]))
    remote = Hello.decode(bytes.fromhex(vector["remote"]))
    if "error" in vector:
        with pytest.raises(VersionMismatch) as info:
            negotiate(local, remote)
        assert info.value.reason == vector["error"]
    else:
        expected = Negotiated(vector["version"], frozenset(vector["features"]))
        assert negotiate(local, remote) == expected
        assert negotiate(remote, local) == expected


# --------------------------------------------------------------------------- decoding


def test_unknown_keys_are_ignored() -> None:
    hello = decode_fields(zz={"nested": [1, {"x": b"\x00"}]}, a=None)
    assert hello == Hello((1,), ("mux",), "swarmlink/0.1.0")
    extended: dict[str | int, Any] = {**VALID, 9: [True], "x": "future"}
    data = cbor.encode(extended)
    assert Hello.decode(data) == hello


@pytest.mark.parametrize(
    ("fragment", "changes"),
    [
        ("lacks the 'v'", {"v": _DROP}),
        ("lacks the 'f'", {"f": _DROP}),
        ("lacks the 'ua'", {"ua": _DROP}),
        ("versions must be a list", {"v": 1}),
        ("versions must be a list", {"v": {"1": 1}}),
        ("must not be empty", {"v": []}),
        ("at most 16", {"v": list(range(1, 18))}),
        ("not an integer in 1..65535", {"v": [0]}),
        ("not an integer in 1..65535", {"v": [65536]}),
        ("not an integer in 1..65535", {"v": [-1]}),
        ("not an integer in 1..65535", {"v": [True]}),
        ("not an integer in 1..65535", {"v": ["1"]}),
        ("not an integer in 1..65535", {"v": [[1]]}),
        ("duplicates", {"v": [1, 2, 1]}),
        ("features must be a list", {"f": "mux"}),
        ("at most 32", {"f": [f"f{i}" for i in range(33)]}),
        ("printable ASCII", {"f": [""]}),
        ("printable ASCII", {"f": ["a" * 65]}),
        ("printable ASCII", {"f": ["a b"]}),
        ("printable ASCII", {"f": ["mux\n"]}),
        ("printable ASCII", {"f": ["\x00"]}),
        ("printable ASCII", {"f": ["caf\u00e9"]}),
        ("printable ASCII", {"f": [1]}),
        ("printable ASCII", {"f": [b"mux"]}),
        ("duplicates", {"f": ["mux", "mux"]}),
        ("user agent must be a text string", {"ua": b"swarmlink"}),
        ("user agent must be a text string", {"ua": None}),
        ("exceeds 128", {"ua": "x" * 129}),
        ("not printable ASCII", {"ua": "evil\x1b[2J"}),
        ("not printable ASCII", {"ua": "line\nbreak"}),
        ("not printable ASCII", {"ua": "\u00fcber"}),
    ],
)
def test_decode_rejects(fragment: str, changes: dict[str, Any]) -> None:
    expect_malformed(fragment, **changes)


def test_limits_are_inclusive() -> None:
    hello = decode_fields(
        v=list(range(1, MAX_VERSIONS + 1)),
        f=["f" * MAX_FEATURE_LENGTH] + [f"g{i}" for i in range(MAX_FEATURES - 1)],
        ua="u" * MAX_USER_AGENT_LENGTH,
    )
    assert len(hello.versions) == MAX_VERSIONS
    assert len(hello.features) == MAX_FEATURES
    assert decode_fields(v=[65535]).versions == (65535,)
    assert decode_fields(f=[], ua="").features == ()


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\xf6", cbor.encode([VALID]), cbor.encode("hello"), cbor.encode(VALID) + b"\0"],
)
def test_decode_rejects_non_maps_and_bad_cbor(data: bytes) -> None:
    with pytest.raises(ProtocolViolation) as info:
        Hello.decode(data)
    assert info.value.code is ErrorCode.MALFORMED


def test_decode_limits_nesting_of_unknown_fields() -> None:
    deep: Any = 0
    for _ in range(4):
        deep = [deep]
    with pytest.raises(ProtocolViolation, match="nesting"):
        Hello.decode(cbor.encode({**VALID, "x": deep}))


@pytest.mark.parametrize(
    ("versions", "features", "user_agent"),
    [
        ((), ("mux",), "x"),
        ((0,), (), "x"),
        ((1, 1), (), "x"),
        ((True,), (), "x"),
        ((1,), ("has space",), "x"),
        ((1,), ("a", "a"), "x"),
        ((1,), (), "x" * 129),
        ((1,), (), "tab\there"),
        ("1", (), "x"),
    ],
)
def test_constructor_rejects(versions: Any, features: Any, user_agent: Any) -> None:
    with pytest.raises(InvalidArgument, match="invalid HELLO"):
        Hello(versions, features, user_agent)


# --------------------------------------------------------------------------- negotiation


def test_negotiate_highest_common_and_feature_intersection() -> None:
    ours = Hello((1, 2, 3), ("mux", "trust", "zstd"), "a/1")
    theirs = Hello((2, 3, 4), ("trust", "zstd", "quic"), "b/1")
    assert negotiate(ours, theirs) == Negotiated(3, frozenset({"trust", "zstd"}))
    assert negotiate(Hello.local(), Hello.local()) == Negotiated(1, FEATURES)


def test_negotiate_mismatch_message_lists_both_sides() -> None:
    ours = Hello((2, 1), ("mux",), "swarmlink/0.1.0")
    theirs = Hello((3,), ("mux",), "swarmlink/9.0")
    with pytest.raises(VersionMismatch) as info:
        negotiate(ours, theirs)
    assert info.value.code is ErrorCode.VERSION_MISMATCH
    assert info.value.reason == (
        "no common protocol version: we speak 1, 2; peer (swarmlink/9.0) speaks 3"
    )


@given(overlapping_hellos, overlapping_hellos)
def test_negotiation_is_symmetric(a: Hello, b: Hello) -> None:
    common = set(a.versions) & set(b.versions)
    if not common:
        with pytest.raises(VersionMismatch):
            negotiate(a, b)
        with pytest.raises(VersionMismatch):
            negotiate(b, a)
        return
    result = negotiate(a, b)
    assert result == negotiate(b, a)
    assert result.version == max(common)
    assert result.version in a.versions and result.version in b.versions
    assert result.features <= set(a.features) and result.features <= set(b.features)
    assert result.features == set(a.features) & set(b.features)


@given(hellos, hellos)
def test_negotiation_over_the_wire(a: Hello, b: Hello) -> None:
    # What each side computes from its own HELLO and the bytes it received is the same.
    a_view = (a, Hello.decode(b.encode()))
    b_view = (b, Hello.decode(a.encode()))
    try:
        result = negotiate(*a_view)
    except VersionMismatch:
        with pytest.raises(VersionMismatch):
            negotiate(*b_view)
    else:
        assert negotiate(*b_view) == result


@given(hellos)
def test_roundtrip(hello: Hello) -> None:
    data = hello.encode()
    assert Hello.decode(data) == hello
    assert Hello.decode(data).encode() == data


@given(st.binary(max_size=80))
def test_arbitrary_bytes_only_raise_protocol_violation(data: bytes) -> None:
    try:
        Hello.decode(data)
    except ProtocolViolation as exc:
        assert exc.code is ErrorCode.MALFORMED


@given(hellos, st.data())
def test_mutated_hellos_only_raise_protocol_violation(hello: Hello, data: st.DataObject) -> None:
    encoded = bytearray(hello.encode())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    try:
        decoded = Hello.decode(bytes(encoded))
    except ProtocolViolation as exc:
        assert exc.code is ErrorCode.MALFORMED
    else:
        assert isinstance(decoded, Hello)
        assert Hello.decode(decoded.encode()) == decoded

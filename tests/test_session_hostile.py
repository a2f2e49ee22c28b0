"""A session facing a hostile or broken peer: every violation ends it with the right GOAWAY.

The peer here is hand-written frames, so nothing about the session under test helps it.
Each case is fed whole and byte by byte: the outcome must be identical.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from session_helpers import drain, frames_of, goaway_of

from swarmlink.errors import ErrorCode
from swarmlink.session import (
    BASE_STREAM_WINDOW,
    ConnectionTerminated,
    Event,
    Session,
    SessionConfig,
    SessionState,
    StreamOpened,
    StreamReset,
)
from swarmlink.wire import cbor
from swarmlink.wire.framing import FrameType, encode_frame
from swarmlink.wire.version import Hello

D, OP, A, R, W, P, G, H = (int(t) for t in FrameType)


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """A frame header + payload, bypassing encode_frame's checks."""
    return struct.pack("!IBBI", len(payload), ftype, flags, sid) + payload


def close_payload(code: int | str | bool = 17, reason: str = "bye") -> bytes:
    return cbor.encode({"c": code, "r": reason})


HELLO = encode_frame(FrameType.HELLO, 0, 0, Hello.local(user_agent="evil/1").encode())
OPEN1 = frame(OP, 0, 1, b"/p/1")
PING = frame(P, 0, 0, bytes(8))


def outcome(
    wire: bytes, *, chunk: int = 0, setup: Callable[[Session], None] | None = None
) -> tuple[Session, list[Event], bytes]:
    """A fresh server fed ``wire`` (whole, or in ``chunk``-byte pieces)."""
    s = Session(is_client=False, config=SessionConfig(max_inbound_streams=4), now=0.0)
    if setup is not None:
        setup(s)
    if chunk:
        for i in range(0, len(wire), chunk):
            s.receive_data(wire[i : i + chunk], 1.0)
    else:
        s.receive_data(wire, 1.0)
    return s, drain(s), s.data_to_send()


def assert_violation(
    wire: bytes,
    code: ErrorCode,
    match: str = "",
    setup: Callable[[Session], None] | None = None,
) -> list[Event]:
    s, events, out = outcome(wire, setup=setup)
    assert s.state is SessionState.CLOSED
    last = events[-1]
    assert isinstance(last, ConnectionTerminated), events
    assert (last.code, last.by_peer) == (code, False), last
    assert match in last.reason
    assert goaway_of(out) == (code, last.reason)
    # Every stream alive at the time is reported reset with that code.
    for event in events:
        if isinstance(event, StreamReset):
            assert (event.code, event.by_peer) == (code, False)
    # Deterministic: byte by byte gives the very same events and bytes.
    _, events_1, out_1 = outcome(wire, chunk=1, setup=setup)
    assert (events_1, out_1) == (events, out)
    # Later input is ignored.
    s.receive_data(PING + HELLO, 2.0)
    assert drain(s) == [] and s.data_to_send() == b""
    return events


# ---- the handshake --------------------------------------------------------------------


def test_data_before_hello() -> None:
    assert_violation(frame(D, 0, 1, b"x") + HELLO, ErrorCode.PROTOCOL_ERROR, "expected HELLO")


def test_ping_before_hello() -> None:
    assert_violation(PING, ErrorCode.PROTOCOL_ERROR, "got PING")


def test_malformed_hello() -> None:
    assert_violation(frame(H, 0, 0, b"\xa0"), ErrorCode.MALFORMED, "HELLO")
    assert_violation(frame(H, 0, 0, b"\xff\xff"), ErrorCode.MALFORMED)


def test_hello_on_a_stream() -> None:
    payload = Hello.local().encode()
    assert_violation(frame(H, 0, 5, payload), ErrorCode.PROTOCOL_ERROR, "HELLO on stream 5")


def test_second_hello() -> None:
    assert_violation(HELLO + HELLO, ErrorCode.PROTOCOL_ERROR, "second HELLO")


def test_version_mismatch_from_raw_hello() -> None:
    hello = frame(H, 0, 0, Hello((7, 9), (), "future/9").encode())
    assert_violation(hello, ErrorCode.VERSION_MISMATCH, "speaks 7, 9")


# ---- frame-level violations after the handshake ------------------------------------------

CASES: list[tuple[str, bytes, ErrorCode, str]] = [
    (
        "oversized DATA",
        struct.pack("!IBBI", 256 * 1024 + 1, D, 0, 1),
        ErrorCode.FRAME_TOO_LARGE,
        "exceeds",
    ),
    ("oversized PING", struct.pack("!IBBI", 4097, P, 0, 0), ErrorCode.FRAME_TOO_LARGE, "exceeds"),
    ("unknown type", frame(8, 0, 0), ErrorCode.MALFORMED, "unknown frame type 8"),
    ("bad DATA flags", frame(D, 2, 1), ErrorCode.MALFORMED, "not allowed"),
    ("bad GOAWAY flags", frame(G, 1, 0, close_payload()), ErrorCode.MALFORMED, "not allowed"),
    ("OPEN wrong parity", frame(OP, 0, 2, b"/p/1"), ErrorCode.PROTOCOL_ERROR, "not a client"),
    ("OPEN stream 0", frame(OP, 0, 0, b"/p/1"), ErrorCode.PROTOCOL_ERROR, "stream 0"),
    ("OPEN reused", OPEN1 + OPEN1, ErrorCode.PROTOCOL_ERROR, "must increase"),
    (
        "OPEN not increasing",
        frame(OP, 0, 5, b"/p/1") + frame(OP, 0, 3, b"/p/1"),
        ErrorCode.PROTOCOL_ERROR,
        "must increase",
    ),
    ("DATA never opened", frame(D, 0, 7, b"x"), ErrorCode.PROTOCOL_ERROR, "never opened"),
    ("DATA on our parity", frame(D, 0, 2, b"x"), ErrorCode.PROTOCOL_ERROR, "never opened"),
    ("DATA on stream 0", frame(D, 0, 0, b"x"), ErrorCode.PROTOCOL_ERROR, "stream 0"),
    ("WINDOW never opened", frame(W, 0, 9, b"\0\0\0\1"), ErrorCode.PROTOCOL_ERROR, "never"),
    (
        "window exceeded",
        OPEN1 + frame(D, 0, 1, bytes(BASE_STREAM_WINDOW)) + frame(D, 0, 1, b"!"),
        ErrorCode.FLOW_CONTROL,
        "exceed the granted window",
    ),
    (
        "window exceeded in one frame",
        OPEN1 + frame(D, 0, 1, bytes(100)) + frame(D, 0, 1, bytes(BASE_STREAM_WINDOW - 99)),
        ErrorCode.FLOW_CONTROL,
        "window of",
    ),
    ("OPEN empty name", frame(OP, 0, 1, b""), ErrorCode.MALFORMED, "1..128"),
    ("OPEN name too long", frame(OP, 0, 1, b"a" * 129), ErrorCode.MALFORMED, "1..128"),
    ("OPEN name with space", frame(OP, 0, 1, b"a b"), ErrorCode.MALFORMED, "printable"),
    ("OPEN name not ASCII", frame(OP, 0, 1, "é".encode()), ErrorCode.MALFORMED, "printable"),
    ("OPEN name control", frame(OP, 0, 1, b"a\x1b"), ErrorCode.MALFORMED, "printable"),
    ("RESET not CBOR", OPEN1 + frame(R, 0, 1, b"\xff"), ErrorCode.MALFORMED, ""),
    ("RESET not a map", OPEN1 + frame(R, 0, 1, cbor.encode([1, "x"])), ErrorCode.MALFORMED, "map"),
    (
        "RESET no reason",
        OPEN1 + frame(R, 0, 1, cbor.encode({"c": 1})),
        ErrorCode.MALFORMED,
        "reason",
    ),
    ("RESET text code", OPEN1 + frame(R, 0, 1, close_payload("x")), ErrorCode.MALFORMED, "code"),
    ("RESET negative code", OPEN1 + frame(R, 0, 1, close_payload(-1)), ErrorCode.MALFORMED, "code"),
    ("RESET bool code", OPEN1 + frame(R, 0, 1, close_payload(True)), ErrorCode.MALFORMED, "code"),
    (
        "RESET long reason",
        OPEN1 + frame(R, 0, 1, close_payload(1, "r" * 1025)),
        ErrorCode.MALFORMED,
        "exceeds 1024",
    ),
    ("RESET never opened", frame(R, 0, 3, close_payload()), ErrorCode.PROTOCOL_ERROR, "never"),
    ("WINDOW short", OPEN1 + frame(W, 0, 1, b"\0\0\1"), ErrorCode.MALFORMED, "not 4"),
    ("WINDOW zero", OPEN1 + frame(W, 0, 1, b"\0\0\0\0"), ErrorCode.MALFORMED, "of 0"),
    (
        "WINDOW overflow",
        OPEN1 + frame(W, 0, 1, struct.pack("!I", 2**31)),
        ErrorCode.FLOW_CONTROL,
        "beyond",
    ),
    ("PING short", frame(P, 0, 0, bytes(7)), ErrorCode.MALFORMED, "not 8"),
    ("PING on a stream", frame(P, 0, 1, bytes(8)), ErrorCode.PROTOCOL_ERROR, "PING on stream 1"),
    ("GOAWAY on a stream", frame(G, 0, 1, close_payload()), ErrorCode.PROTOCOL_ERROR, "stream 1"),
    ("GOAWAY malformed", frame(G, 0, 0, b"\x80"), ErrorCode.MALFORMED, ""),
    (
        "DATA after FIN",
        OPEN1 + frame(D, 1, 1, b"x") + frame(D, 0, 1, b"y"),
        ErrorCode.PROTOCOL_ERROR,
        "after its FIN",
    ),
    (
        "FIN after FIN",
        OPEN1 + frame(D, 1, 1) + frame(D, 1, 1),
        ErrorCode.PROTOCOL_ERROR,
        "after its FIN",
    ),
    ("ACCEPT with payload", OPEN1 + frame(A, 0, 1, b"x"), ErrorCode.MALFORMED, "payload"),
    ("ACCEPT own stream", OPEN1 + frame(A, 0, 1), ErrorCode.PROTOCOL_ERROR, "opened itself"),
    ("ACCEPT never opened", frame(A, 0, 4), ErrorCode.PROTOCOL_ERROR, "never"),
]


@pytest.mark.parametrize(
    ("wire", "code", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_violation_after_handshake(wire: bytes, code: ErrorCode, match: str) -> None:
    events = assert_violation(HELLO + wire, code, match)
    # Peer streams opened before the violation were announced, then reset.
    opened = [e.stream_id for e in events if isinstance(e, StreamOpened)]
    reset = [e.stream_id for e in events if isinstance(e, StreamReset)]
    assert opened == reset


def server_opens_stream(s: Session) -> None:
    assert s.open_stream("/srv/1") == 2


@pytest.mark.parametrize(
    ("wire", "code", "match"),
    [
        (frame(D, 0, 2, b"x"), ErrorCode.PROTOCOL_ERROR, "before the peer accepted"),
        (frame(A, 0, 2) + frame(A, 0, 2), ErrorCode.PROTOCOL_ERROR, "second ACCEPT"),
        (frame(A, 0, 2) + frame(D, 1, 2) + frame(D, 0, 2, b"z"), ErrorCode.PROTOCOL_ERROR, "FIN"),
    ],
)
def test_violation_on_our_stream(wire: bytes, code: ErrorCode, match: str) -> None:
    events = assert_violation(HELLO + wire, code, match, setup=server_opens_stream)
    assert StreamReset(2, code, events[-1].reason, False) in events  # type: ignore[union-attr]


def test_frames_before_the_violation_take_effect() -> None:
    wire = HELLO + OPEN1 + frame(D, 0, 1, b"kept") + frame(9, 0, 0)
    events = assert_violation(wire, ErrorCode.MALFORMED)
    assert [type(e).__name__ for e in events] == [
        "HandshakeCompleted",
        "StreamOpened",
        "DataReceived",
        "StreamReset",
        "ConnectionTerminated",
    ]


def test_stream_limit_is_a_refusal_not_a_violation() -> None:
    opens = b"".join(frame(OP, 0, sid, b"/p/1") for sid in (1, 3, 5, 7, 9, 11))
    data = frame(D, 0, 11, b"ignored")  # data on a refused stream crosses the RESET
    s, events, out = outcome(HELLO + opens + data)
    assert s.state is SessionState.OPEN
    assert [e.stream_id for e in events if isinstance(e, StreamOpened)] == [1, 3, 5, 7]
    resets = [f for f in frames_of(out) if f.type is FrameType.RESET]
    assert [f.stream_id for f in resets] == [9, 11]
    assert cbor.decode(resets[0].payload)["c"] == ErrorCode.STREAM_LIMIT


def test_goaway_reason_is_sanitized_and_unknown_codes_mapped() -> None:
    goaway = frame(G, 0, 0, cbor.encode({"c": 999, "r": "\x1b[31mred\x00", "x": [1]}))
    s, events, out = outcome(HELLO + goaway)
    assert events[-1] == ConnectionTerminated(ErrorCode.PROTOCOL_ERROR, "\ufffd[31mred\ufffd", True)
    assert s.state is SessionState.CLOSED
    assert not any(f.type is FrameType.GOAWAY for f in frames_of(out))


def test_unknown_ping_echo_is_ignored() -> None:
    s, events, _ = outcome(HELLO + frame(P, 2, 0, bytes(8)))
    assert s.state is SessionState.OPEN and len(events) == 1


def test_ping_is_echoed() -> None:
    _, _, out = outcome(HELLO + frame(P, 0, 0, b"12345678"))
    echo = frames_of(out)[-1]
    assert (echo.type, echo.flags, echo.payload) == (FrameType.PING, 2, b"12345678")


# ---- fuzzing ----------------------------------------------------------------------------


def check_no_raise(wire: bytes, chunk: int) -> None:
    whole = outcome(wire)
    chopped = outcome(wire, chunk=chunk)
    assert whole[1:] == chopped[1:]
    events = whole[1]
    terminated = [i for i, e in enumerate(events) if isinstance(e, ConnectionTerminated)]
    assert terminated in ([], [len(events) - 1])


@given(st.binary(max_size=200), st.integers(1, 16))
def test_random_bytes_never_raise(blob: bytes, chunk: int) -> None:
    check_no_raise(blob, chunk)
    check_no_raise(HELLO + blob, chunk)


PAYLOADS = st.one_of(
    st.binary(max_size=24),
    st.sampled_from([b"/p/1", b"", bytes(8), b"\0\0\0\1", b"\x7f\xff\xff\xff"]),
    st.builds(close_payload, st.integers(-2, 30), st.text(max_size=8)),
)


@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 3), st.integers(0, 6), PAYLOADS),
        max_size=25,
    ),
    st.integers(1, 9),
)
def test_random_frames_never_raise(frames: list[tuple[int, int, int, bytes]], chunk: int) -> None:
    wire = HELLO + b"".join(frame(*f) for f in frames)
    check_no_raise(wire, chunk)

"""Hole-punch coordination (sans-I/O): the exchange, timing, a silent peer, a lying
peer, and random message orders that must never crash or hang."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import ProtocolViolation
from swarmlink.nat import (
    MAX_PUNCH_ADDRESSES,
    PUNCH_REPLY_TIMEOUT,
    PUNCH_RETRY,
    PUNCH_WINDOW,
    Dial,
    PunchCoordinator,
    PunchState,
    parse_punch_addresses,
)

ME = ("198.51.100.10:7420", "10.0.0.2:7420")
THEM = ("203.0.113.20:7420",)


def pair() -> tuple[PunchCoordinator, PunchCoordinator]:
    return PunchCoordinator(True, ME), PunchCoordinator(False, THEM)


def test_exchange_schedules_both_sides_to_punch_together() -> None:
    a, b = pair()
    a.begin(0.0)
    (connect,) = a.messages_to_send()
    assert b.receive(connect, 0.05) == []  # one-way latency 50 ms
    (reply,) = b.messages_to_send()
    assert a.receive(reply, 0.10) == []  # RTT 100 ms: a waits RTT/2 before dialing
    assert a.rtt == pytest.approx(0.10) and a.state == PunchState.SCHEDULED
    (sync,) = a.messages_to_send()
    assert a.get_timer() == pytest.approx(0.15)
    dials_b = b.receive(sync, 0.15)  # SYNC arrives when a starts: both dial at 0.15
    start = a.get_timer()
    assert start is not None
    dials_a = a.handle_timer(start)
    assert dials_a == [Dial(t) for t in THEM] and dials_b == [Dial(m) for m in ME]
    assert a.handle_timer(start + 0.01) == []  # not before the retry interval
    assert a.handle_timer(start + PUNCH_RETRY) == dials_a
    a.connected()
    assert a.done and a.state == PunchState.SUCCEEDED and a.get_timer() is None


def test_a_peer_that_never_answers_fails_with_a_reason() -> None:
    a, _ = pair()
    a.begin(0.0)
    assert a.get_timer() == PUNCH_REPLY_TIMEOUT
    assert a.handle_timer(PUNCH_REPLY_TIMEOUT) == []
    assert a.state == PunchState.FAILED and "never answered" in a.reason
    b = PunchCoordinator(False, THEM)
    b.receive({"t": "connect", "a": list(ME)}, 0.0)
    b.handle_timer(PUNCH_REPLY_TIMEOUT)
    assert b.state == PunchState.FAILED and "never answered" in b.reason


def test_punching_gives_up_after_the_window() -> None:
    a, b = pair()
    a.begin(0.0)
    b.receive(a.messages_to_send()[0], 0.0)
    a.receive(b.messages_to_send()[0], 0.0)
    now, dials = 0.0, 0
    while not a.done and now < 10:
        dials += len(a.handle_timer(now))
        now += 0.05
    assert a.state == PunchState.FAILED and "no direct path" in a.reason
    assert 0 < dials <= len(THEM) * (round(PUNCH_WINDOW / PUNCH_RETRY) + 1)  # bounded


def test_lying_addresses_are_filtered_and_capped() -> None:
    lies = ["224.0.0.1:1", "0.0.0.0:5", "127.0.0.1:22", "evil.example:80", "10.0.0.9:0", 7]
    good = [f"192.0.2.{i}:7420" for i in range(1, 20)]
    parsed = parse_punch_addresses([*lies, *good, good[0]])
    assert parsed == tuple(good[:MAX_PUNCH_ADDRESSES])
    with pytest.raises(ProtocolViolation, match="no usable"):
        parse_punch_addresses(lies)
    b = PunchCoordinator(False, THEM)
    with pytest.raises(ProtocolViolation):
        b.receive({"t": "connect", "a": lies}, 0.0)
    assert b.state == PunchState.FAILED


def test_out_of_order_messages_are_protocol_errors() -> None:
    a, b = pair()
    with pytest.raises(ProtocolViolation):
        b.receive({"t": "sync"}, 0.0)
    a.begin(0.0)
    with pytest.raises(ProtocolViolation):
        a.receive({"t": "sync"}, 0.0)
    with pytest.raises(ProtocolViolation):
        PunchCoordinator(False, THEM).receive({"t": "hello"}, 0.0)


messages = st.one_of(
    st.fixed_dictionaries({"t": st.just("connect"), "a": st.lists(st.text(max_size=30))}),
    st.fixed_dictionaries({"t": st.just("connect"), "a": st.just(list(THEM))}),
    st.just({"t": "sync"}),
    st.dictionaries(st.text(max_size=3), st.integers()),
    st.none(),
)


@given(
    initiator=st.booleans(),
    steps=st.lists(st.tuples(messages, st.floats(0, 2)), max_size=12),
)
def test_random_inputs_never_crash_or_hang(
    initiator: bool, steps: list[tuple[object, float]]
) -> None:
    c = PunchCoordinator(initiator, ME)
    now = 0.0
    if initiator:
        c.begin(now)
    for message, dt in steps:
        now += dt
        try:
            dials = c.receive(message, now)
        except ProtocolViolation:
            assert c.state == PunchState.FAILED
            continue
        assert len(dials) <= MAX_PUNCH_ADDRESSES
        c.handle_timer(now)
    # Whatever happened, the attempt ends by itself within its timeouts.
    for _ in range(200):
        timer = c.get_timer()
        if timer is None:
            break
        now = max(now, timer)
        c.handle_timer(now)
    assert c.get_timer() is None
    assert c.done or c.state in (PunchState.IDLE,)

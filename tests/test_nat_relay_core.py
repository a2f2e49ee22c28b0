"""Relay decisions: reservations, circuits, limits, expiry (sans-I/O)."""

from __future__ import annotations

import pytest

from swarmlink.errors import ErrorCode, InvalidArgument
from swarmlink.nat import RelayCore, RelayLimits, RelayRefused

A, B, C = "a" * 52, "b" * 52, "c" * 52


def test_connect_needs_a_reservation() -> None:
    relay = RelayCore()
    with pytest.raises(RelayRefused, match="no reservation") as err:
        relay.connect(A, B, 0.0)
    assert err.value.code == ErrorCode.REFUSED
    relay.reserve(B, 0.0)
    circuit = relay.connect(A, B, 1.0)
    assert (circuit.source, circuit.target) == (A, B)
    with pytest.raises(RelayRefused, match="oneself"):
        relay.connect(B, B, 1.0)


def test_reservations_expire_and_are_released() -> None:
    relay = RelayCore(RelayLimits(reservation_ttl=10.0))
    relay.reserve(B, 0.0)
    assert relay.get_timer() == 10.0
    relay.handle_timer(10.0)
    with pytest.raises(RelayRefused):
        relay.connect(A, B, 10.0)
    relay.reserve(B, 11.0)
    relay.release(B)
    assert B not in relay.reservations


def test_reservation_and_circuit_limits() -> None:
    relay = RelayCore(RelayLimits(max_reservations=1, max_circuits_per_peer=2, max_circuits=3))
    relay.reserve(B, 0.0)
    relay.reserve(B, 1.0)  # renewal is fine
    with pytest.raises(RelayRefused, match="full"):
        relay.reserve(C, 1.0)
    relay.connect(A, B, 1.0)
    relay.connect(C, B, 1.0)
    with pytest.raises(RelayRefused, match="already has 2") as err:
        relay.connect(A, B, 1.0)
    assert err.value.code == ErrorCode.RATE_LIMITED


def test_reservation_rate_limit() -> None:
    relay = RelayCore(RelayLimits(max_reserve_per_minute=3))
    for i in range(3):
        relay.reserve(B, float(i))
    with pytest.raises(RelayRefused, match="slow down"):
        relay.reserve(B, 3.0)
    relay.reserve(B, 61.0)


def test_byte_and_duration_limits() -> None:
    relay = RelayCore(RelayLimits(max_circuit_bytes=100, max_circuit_duration=5.0))
    relay.reserve(B, 0.0)
    circuit = relay.connect(A, B, 0.0)
    assert relay.carried(circuit.circuit_id, 60)
    assert not relay.carried(circuit.circuit_id, 60)
    assert relay.handle_timer(5.0) == [circuit.circuit_id]
    assert not relay.circuits
    assert not relay.carried(circuit.circuit_id, 1)


def test_bad_limits() -> None:
    with pytest.raises(InvalidArgument):
        RelayLimits(max_circuits=0)
    with pytest.raises(InvalidArgument):
        RelayLimits(reservation_ttl=0)


def test_bandwidth_pacing_per_circuit() -> None:
    from swarmlink.nat import RelayCore, RelayLimits

    core = RelayCore(RelayLimits(max_circuit_rate=1000))
    core.reserve("b" * 52, 0.0)
    circuit = core.connect("a" * 52, "b" * 52, 0.0)
    # A one-second burst is free; beyond it, each byte costs 1 ms.
    assert core.pace(circuit.circuit_id, 1000, 100.0) == 0.0
    assert core.pace(circuit.circuit_id, 1000, 100.0) == pytest.approx(1.0)
    assert core.pace(circuit.circuit_id, 500, 100.0) == pytest.approx(1.5)
    # Idle time pays the debt back (but saves up at most one second).
    assert core.pace(circuit.circuit_id, 1000, 200.0) == 0.0
    unlimited = RelayCore(RelayLimits())
    unlimited.reserve("b" * 52, 0.0)
    other = unlimited.connect("a" * 52, "b" * 52, 0.0)
    assert unlimited.pace(other.circuit_id, 10**9, 0.0) == 0.0
    with pytest.raises(InvalidArgument):
        RelayLimits(max_circuit_rate=-1)


def test_relay_limits_from_the_command_line() -> None:
    from swarmlink.daemon import parse_relay_limits

    limits = parse_relay_limits(["max_circuit_rate=1000000", "reservation-ttl=60"])
    assert limits.max_circuit_rate == 1_000_000 and limits.reservation_ttl == 60.0
    with pytest.raises(InvalidArgument, match="NAME=VALUE"):
        parse_relay_limits(["bandwidth=5"])
    with pytest.raises(InvalidArgument, match="not a number"):
        parse_relay_limits(["max_circuits=lots"])
    with pytest.raises(InvalidArgument, match="at least 1"):
        parse_relay_limits(["max_circuits=0"])

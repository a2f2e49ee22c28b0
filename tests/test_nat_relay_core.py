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

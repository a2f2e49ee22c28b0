"""NAT traversal cores (sans-I/O): reflexive addresses and NAT behaviour from what peers
observe; relay reservations and circuits."""

from __future__ import annotations

from ._observed import (
    MAX_OBSERVATIONS,
    MIN_CONFIRMATIONS,
    OBSERVATION_TTL,
    Mapping,
    NatReport,
    Observation,
    ObservedAddresses,
)
from ._relay import Circuit, RelayCore, RelayLimits, RelayRefused, Reservation

__all__ = [
    "MAX_OBSERVATIONS",
    "MIN_CONFIRMATIONS",
    "OBSERVATION_TTL",
    "Circuit",
    "Mapping",
    "NatReport",
    "Observation",
    "ObservedAddresses",
    "RelayCore",
    "RelayLimits",
    "RelayRefused",
    "Reservation",
]

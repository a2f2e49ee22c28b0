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
from ._reachability import DIALBACK_TTL, MIN_DIALBACKS, Reachability, ReachabilityTracker
from ._relay import Circuit, RelayCore, RelayLimits, RelayRefused, Reservation

__all__ = [
    "DIALBACK_TTL",
    "MAX_OBSERVATIONS",
    "MIN_CONFIRMATIONS",
    "MIN_DIALBACKS",
    "OBSERVATION_TTL",
    "Circuit",
    "Mapping",
    "NatReport",
    "Observation",
    "ObservedAddresses",
    "Reachability",
    "ReachabilityTracker",
    "RelayCore",
    "RelayLimits",
    "RelayRefused",
    "Reservation",
]

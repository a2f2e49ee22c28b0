"""NAT traversal cores (sans-I/O): reflexive addresses and NAT behaviour from what peers
observe."""

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

__all__ = [
    "MAX_OBSERVATIONS",
    "MIN_CONFIRMATIONS",
    "OBSERVATION_TTL",
    "Mapping",
    "NatReport",
    "Observation",
    "ObservedAddresses",
]

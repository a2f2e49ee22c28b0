"""NAT traversal cores (sans-I/O): reflexive addresses and NAT behaviour from what peers
observe; relay reservations and circuits; dial-back reachability; hole-punch coordination."""

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
from ._punch import (
    MAX_PUNCH_ADDRESSES,
    PUNCH_REPLY_TIMEOUT,
    PUNCH_RETRY,
    PUNCH_WINDOW,
    Dial,
    PunchCoordinator,
    PunchState,
    parse_punch_addresses,
)
from ._reachability import (
    DIALBACK_TTL,
    MIN_DIALBACKS,
    Filtering,
    Reachability,
    ReachabilityTracker,
    classify_filtering,
)
from ._relay import Circuit, RelayCore, RelayLimits, RelayRefused, Reservation

__all__ = [
    "DIALBACK_TTL",
    "MAX_OBSERVATIONS",
    "MAX_PUNCH_ADDRESSES",
    "MIN_CONFIRMATIONS",
    "MIN_DIALBACKS",
    "OBSERVATION_TTL",
    "PUNCH_REPLY_TIMEOUT",
    "PUNCH_RETRY",
    "PUNCH_WINDOW",
    "Circuit",
    "Dial",
    "Filtering",
    "Mapping",
    "NatReport",
    "Observation",
    "ObservedAddresses",
    "PunchCoordinator",
    "PunchState",
    "Reachability",
    "ReachabilityTracker",
    "RelayCore",
    "RelayLimits",
    "RelayRefused",
    "Reservation",
    "classify_filtering",
    "parse_punch_addresses",
]

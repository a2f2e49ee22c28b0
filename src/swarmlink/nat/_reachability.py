"""Are we publicly reachable? Decided from dial-back results (sans-I/O).

Peers are asked to dial us back at our advertised addresses (a fresh TCP + TLS
connection that must prove our agent ID). One answer proves nothing: we are **public**
once :data:`MIN_DIALBACKS` distinct peers reached us within :data:`DIALBACK_TTL`, and
**private** once that many failed and none succeeded. A private node uses relays.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DIALBACK_TTL",
    "MIN_DIALBACKS",
    "Filtering",
    "Reachability",
    "ReachabilityTracker",
    "classify_filtering",
]

#: Distinct peers whose dial-backs decide reachability.
MIN_DIALBACKS = 2
#: Seconds a dial-back result counts.
DIALBACK_TTL = 1800.0


class Reachability(enum.StrEnum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


class Filtering(enum.StrEnum):
    """What our NAT lets in (RFC 4787 §5), as far as dial-backs can tell: they come from
    a peer we talk to, on a fresh port, to our public address."""

    UNKNOWN = "unknown"
    NONE = "none"  # no NAT and reachable
    ENDPOINT_INDEPENDENT = "endpoint-independent"  # a NAT that lets strangers in
    DEPENDENT = "address-and-port-dependent"  # only the peers we sent to get in


def classify_filtering(mapping: str, reachability: Reachability) -> Filtering:
    """Filtering from the mapping (``ObservedAddresses``) and dial-back reachability."""
    if reachability == Reachability.UNKNOWN:
        return Filtering.UNKNOWN
    if reachability == Reachability.PRIVATE:
        return Filtering.DEPENDENT
    return Filtering.NONE if mapping == "none" else Filtering.ENDPOINT_INDEPENDENT


@dataclass
class _Result:
    reached: bool
    at: float


class ReachabilityTracker:
    def __init__(self, *, needed: int = MIN_DIALBACKS) -> None:
        self.needed = needed
        self._results: dict[str, _Result] = {}

    def record(self, peer: str, reached: bool, now: float) -> None:
        self._results[peer] = _Result(reached, now)
        if len(self._results) > 64:
            oldest = min(self._results, key=lambda p: self._results[p].at)
            del self._results[oldest]

    def state(self, now: float) -> Reachability:
        live = [r for r in self._results.values() if now - r.at <= DIALBACK_TTL]
        if sum(r.reached for r in live) >= self.needed:
            return Reachability.PUBLIC
        if not any(r.reached for r in live) and len(live) >= self.needed:
            return Reachability.PRIVATE
        return Reachability.UNKNOWN

    def asked(self, now: float) -> set[str]:
        return {p for p, r in self._results.items() if now - r.at <= DIALBACK_TTL}

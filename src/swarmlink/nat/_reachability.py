"""Are we publicly reachable? Decided from dial-back results (sans-I/O).

Peers are asked to dial us back at our advertised addresses (a fresh TCP + TLS
connection that must prove our agent ID). One answer proves nothing: we are **public**
once :data:`MIN_DIALBACKS` distinct peers reached us within :data:`DIALBACK_TTL`, and
**private** once that many failed and none succeeded. A private node uses relays.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DIALBACK_TTL", "MIN_DIALBACKS", "Reachability", "ReachabilityTracker"]

#: Distinct peers whose dial-backs decide reachability.
MIN_DIALBACKS = 2
#: Seconds a dial-back result counts.
DIALBACK_TTL = 1800.0


class Reachability(enum.StrEnum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


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

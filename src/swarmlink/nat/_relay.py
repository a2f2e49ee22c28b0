"""Relay decisions (sans-I/O): reservations, circuits and their limits.

A publicly reachable node may serve as a relay. A node behind a NAT *reserves* a slot on
it (and keeps its session to the relay open); another node then asks the relay to
*connect* it to the reserved node, and the relay pipes the bytes of one stream to one
stream of the other. Those bytes are an end-to-end TLS session between the two ends, so
the relay only ever sees ciphertext and cannot impersonate either side.

This module decides, the runtime moves bytes: :class:`RelayCore` answers reservation and
connect requests, accounts circuit bytes, and expires reservations and circuits
(``get_timer`` / ``handle_timer``). Every limit is a :class:`RelayLimits` field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ErrorCode, InvalidArgument, RemoteError

__all__ = ["Circuit", "RelayCore", "RelayLimits", "RelayRefused", "Reservation"]


@dataclass(frozen=True)
class RelayLimits:
    """What a relay grants (all configurable; defaults sized for a small public node)."""

    #: Nodes that may hold a reservation at once.
    max_reservations: int = 128
    #: Seconds a reservation lasts; the holder renews it before then.
    reservation_ttl: float = 3600.0
    #: Circuits open at once, in all.
    max_circuits: int = 256
    #: Circuits open at once to or from one node.
    max_circuits_per_peer: int = 8
    #: Bytes one circuit may carry (both directions together) before it is closed.
    max_circuit_bytes: int = 1 << 30
    #: Seconds one circuit may stay open.
    max_circuit_duration: float = 2 * 3600.0
    #: Reservation requests one node may make per minute.
    max_reserve_per_minute: int = 10
    #: Bandwidth of one circuit, bytes per second in both directions together (0: no
    #: limit); the relay paces the copy, TCP flow control slows the ends.
    max_circuit_rate: int = 0

    def __post_init__(self) -> None:
        for name in (
            "max_reservations",
            "max_circuits",
            "max_circuits_per_peer",
            "max_circuit_bytes",
            "max_reserve_per_minute",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"relay limit {name} must be at least 1")
        if self.reservation_ttl <= 0 or self.max_circuit_duration <= 0:
            raise InvalidArgument("relay durations must be positive")
        if self.max_circuit_rate < 0:
            raise InvalidArgument("relay limit max_circuit_rate must be 0 (none) or positive")


class RelayRefused(RemoteError):
    """The relay said no (no reservation, over a limit, unknown target...)."""


@dataclass
class Reservation:
    agent_id: str
    expires: float


@dataclass
class Circuit:
    circuit_id: int
    source: str
    target: str
    opened: float
    deadline: float
    bytes: int = 0
    paced_until: float = 0.0  # the moment the bytes carried so far are "paid for"


@dataclass
class RelayCore:
    """One relay's state. Call with the authenticated agent IDs of the requesters."""

    limits: RelayLimits = field(default_factory=RelayLimits)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    circuits: dict[int, Circuit] = field(default_factory=dict)
    _next_id: int = 1
    _reserve_log: dict[str, list[float]] = field(default_factory=dict)

    # ---- reservations -----------------------------------------------------------------

    def reserve(self, agent_id: str, now: float) -> Reservation:
        """Grant or renew a reservation for ``agent_id``; RelayRefused if over limits."""
        recent = [t for t in self._reserve_log.get(agent_id, []) if now - t < 60.0]
        if len(recent) >= self.limits.max_reserve_per_minute:
            raise RelayRefused("too many reservation requests; slow down", ErrorCode.RATE_LIMITED)
        recent.append(now)
        self._reserve_log[agent_id] = recent
        if len(self._reserve_log) > 4 * self.limits.max_reservations:
            self._reserve_log = {a: ts for a, ts in self._reserve_log.items() if now - ts[-1] < 60}
        self.expire(now)
        if agent_id not in self.reservations and (
            len(self.reservations) >= self.limits.max_reservations
        ):
            raise RelayRefused(
                f"relay full: {len(self.reservations)} reservations", ErrorCode.REFUSED
            )
        reservation = Reservation(agent_id, now + self.limits.reservation_ttl)
        self.reservations[agent_id] = reservation
        return reservation

    def release(self, agent_id: str) -> None:
        """``agent_id`` left (its session to us closed): its reservation goes."""
        self.reservations.pop(agent_id, None)

    # ---- circuits ---------------------------------------------------------------------

    def _count(self, agent_id: str) -> int:
        return sum(1 for c in self.circuits.values() if agent_id in (c.source, c.target))

    def connect(self, source: str, target: str, now: float) -> Circuit:
        """``source`` asks to reach ``target``: a new circuit, or RelayRefused saying why."""
        if source == target:
            raise RelayRefused("a circuit to oneself", ErrorCode.REFUSED)
        self.expire(now)
        if target not in self.reservations:
            raise RelayRefused(
                f"agent {target[:12]} has no reservation on this relay", ErrorCode.REFUSED
            )
        if len(self.circuits) >= self.limits.max_circuits:
            raise RelayRefused("relay is carrying its maximum of circuits", ErrorCode.REFUSED)
        for agent in (source, target):
            if self._count(agent) >= self.limits.max_circuits_per_peer:
                raise RelayRefused(
                    f"agent {agent[:12]} already has {self.limits.max_circuits_per_peer} "
                    "circuits on this relay",
                    ErrorCode.RATE_LIMITED,
                )
        circuit = Circuit(
            self._next_id, source, target, now, now + self.limits.max_circuit_duration
        )
        self._next_id += 1
        self.circuits[circuit.circuit_id] = circuit
        return circuit

    def carried(self, circuit_id: int, nbytes: int) -> bool:
        """Account ``nbytes`` relayed on a circuit; False once it went over its limit."""
        circuit = self.circuits.get(circuit_id)
        if circuit is None:
            return False
        circuit.bytes += nbytes
        return circuit.bytes <= self.limits.max_circuit_bytes

    def pace(self, circuit_id: int, nbytes: int, now: float) -> float:
        """Seconds to wait before carrying ``nbytes`` more on a circuit so that it stays
        within ``max_circuit_rate`` (0 when unlimited or under the rate)."""
        rate = self.limits.max_circuit_rate
        circuit = self.circuits.get(circuit_id)
        if not rate or circuit is None:
            return 0.0
        start = max(circuit.paced_until, now - 1.0)  # at most a 1 s burst saved up
        circuit.paced_until = start + nbytes / rate
        return max(0.0, circuit.paced_until - now)

    def close(self, circuit_id: int) -> None:
        self.circuits.pop(circuit_id, None)

    # ---- timers -----------------------------------------------------------------------

    def expire(self, now: float) -> list[int]:
        """Drop expired reservations; returns circuits past their duration (to close)."""
        for agent in [a for a, r in self.reservations.items() if r.expires <= now]:
            del self.reservations[agent]
        return [cid for cid, c in self.circuits.items() if c.deadline <= now]

    def get_timer(self) -> float | None:
        times = [r.expires for r in self.reservations.values()]
        times += [c.deadline for c in self.circuits.values()]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[int]:
        overdue = self.expire(now)
        for cid in overdue:
            self.close(cid)
        return overdue

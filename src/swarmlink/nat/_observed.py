"""Reflexive addresses and NAT behaviour, learned from what peers observe (sans-I/O).

Every peer we hold a session with tells us the address it sees our connection come from
(its *observation*). Each observation is recorded with the local address of that
connection and the observer's agent ID. Nothing is believed on one peer's word:

- an address becomes a **reflexive address** only when at least
  :data:`MIN_CONFIRMATIONS` distinct observers, from distinct networks (IPv4 /24 or IPv6
  /48 of the observer), reported it within :data:`OBSERVATION_TTL`; a single liar (or a
  liar with many identities in one network) cannot redirect our traffic;
- the NAT's **mapping behaviour** is inferred from confirmed observations: the observed
  address equal to a local address means no NAT; one local port seen at the same public
  port by different observers means endpoint-independent mapping; at different public
  ports, endpoint-dependent ("symmetric") mapping. When every connection used a fresh
  local port, a NAT that kept the ports is reported as port-preserving (likely
  endpoint-independent) and one that changed them as likely symmetric.

Time is passed in; limits on untrusted input are the constants below.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..wire.address import format_hostport, parse_hostport

__all__ = [
    "MAX_OBSERVATIONS",
    "MIN_CONFIRMATIONS",
    "OBSERVATION_TTL",
    "Mapping",
    "NatReport",
    "Observation",
    "ObservedAddresses",
]

#: Distinct observers (from distinct networks) needed before an address is believed.
MIN_CONFIRMATIONS = 2
#: Seconds an observation counts.
OBSERVATION_TTL = 600.0
#: Observations kept (one per observer and local address; the oldest are forgotten).
MAX_OBSERVATIONS = 512


class Mapping(enum.StrEnum):
    UNKNOWN = "unknown"
    NONE = "none"  # no NAT: peers see our own address
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    PORT_PRESERVING = "port-preserving"  # likely endpoint-independent
    ENDPOINT_DEPENDENT = "endpoint-dependent"  # symmetric
    PORT_RANDOMIZING = "port-randomizing"  # likely symmetric


@dataclass(frozen=True)
class Observation:
    observer: str  # agent ID of the peer that saw us
    observer_address: str  # where that peer is ("host:port")
    local: str  # our local address of that connection ("host:port")
    observed: str  # the address the peer saw ("host:port")
    at: float


@dataclass(frozen=True)
class NatReport:
    """What the observations say: confirmed public addresses and the mapping behaviour."""

    reflexive: tuple[str, ...]
    mapping: Mapping
    observers: int

    @property
    def public(self) -> bool:
        return self.mapping == Mapping.NONE

    def to_json(self) -> dict[str, object]:
        return {
            "reflexive": list(self.reflexive),
            "mapping": str(self.mapping),
            "observers": self.observers,
        }


def _network(address: str) -> str:
    """The observer's network: IPv4 /24 or IPv6 /48 (or the host name)."""
    host, _ = parse_hostport(address)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _canonical(address: str) -> str:
    host, port = parse_hostport(address)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise InvalidArgument(f"observed address {address!r} is not an IP address") from None
    if not 0 < port < 65536:
        raise InvalidArgument(f"observed address {address!r} has no port")
    return format_hostport(host, port)


class ObservedAddresses:
    """Collects observations and reports reflexive addresses and the mapping behaviour."""

    def __init__(self, *, min_confirmations: int = MIN_CONFIRMATIONS) -> None:
        if min_confirmations < 1:
            raise InvalidArgument("min_confirmations must be at least 1")
        self.min_confirmations = min_confirmations
        self._obs: OrderedDict[tuple[str, str], Observation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._obs)

    def record(
        self, observer: str, observer_address: str, local: str, observed: str, now: float
    ) -> None:
        """``observer`` (at ``observer_address``) saw our connection from ``local`` come
        from ``observed``. Raises InvalidArgument for malformed addresses."""
        obs = Observation(
            observer, _canonical(observer_address), _canonical(local), _canonical(observed), now
        )
        key = (observer, obs.local)
        self._obs.pop(key, None)
        self._obs[key] = obs
        while len(self._obs) > MAX_OBSERVATIONS:
            self._obs.popitem(last=False)

    def forget(self, observer: str) -> None:
        for key in [k for k in self._obs if k[0] == observer]:
            del self._obs[key]

    def _live(self, now: float) -> list[Observation]:
        return [o for o in self._obs.values() if now - o.at <= OBSERVATION_TTL]

    def report(self, now: float, local_hosts: set[str] | None = None) -> NatReport:
        """Confirmed reflexive addresses and the mapping behaviour as of ``now``.

        ``local_hosts``: this host's own IP addresses (to recognise "no NAT")."""
        live = self._live(now)
        networks: dict[str, set[str]] = {}
        for o in live:
            networks.setdefault(o.observed, set()).add(_network(o.observer_address))
        confirmed = sorted(a for a, nets in networks.items() if len(nets) >= self.min_confirmations)
        trusted = [o for o in live if o.observed in confirmed]
        # For the mapping, a public IP confirmed by enough networks is enough; ports vary.
        ip_networks: dict[str, set[str]] = {}
        for o in live:
            ip_networks.setdefault(parse_hostport(o.observed)[0], set()).add(
                _network(o.observer_address)
            )
        public_ips = {ip for ip, nets in ip_networks.items() if len(nets) >= self.min_confirmations}
        usable = [o for o in live if parse_hostport(o.observed)[0] in public_ips]
        mapping = self._mapping(usable, local_hosts or set())
        observers = len({o.observer for o in trusted} | {o.observer for o in usable})
        return NatReport(tuple(confirmed), mapping, observers)

    @staticmethod
    def _mapping(usable: list[Observation], local_hosts: set[str]) -> Mapping:
        if not usable:
            return Mapping.UNKNOWN
        hosts = {parse_hostport(o.local)[0] for o in usable} | local_hosts
        if all(parse_hostport(o.observed)[0] in hosts for o in usable):
            return Mapping.NONE
        # Per local address: which public address each network saw it at.
        seen: dict[str, dict[str, set[str]]] = {}
        for o in usable:
            seen.setdefault(o.local, {}).setdefault(o.observed, set()).add(
                _network(o.observer_address)
            )
        if any(len(nets) >= 2 for per in seen.values() for nets in per.values()):
            return Mapping.ENDPOINT_INDEPENDENT  # one socket, one public address, agreed on
        if any(len(per) > 1 for per in seen.values()):
            return Mapping.ENDPOINT_DEPENDENT  # one socket, a public port per destination
        preserved = [parse_hostport(o.local)[1] == parse_hostport(o.observed)[1] for o in usable]
        if len(usable) < 2:
            return Mapping.UNKNOWN
        if all(preserved):
            return Mapping.PORT_PRESERVING
        if not any(preserved):
            return Mapping.PORT_RANDOMIZING
        return Mapping.UNKNOWN

"""Which addresses a node tells the world about (its record, mDNS, DHT requests)."""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from ..dht._records import MAX_RECORD_ADDRESSES
from ..wire.address import format_hostport, parse_hostport

if TYPE_CHECKING:
    from .node import Node

__all__ = ["advertised_addresses", "bound_addresses", "interface_addresses"]

log = logging.getLogger("swarmlink.node")

_WILDCARDS = {"0.0.0.0", "::", ""}


def interface_addresses(*, ipv6: bool) -> list[str]:
    """This host's usable unicast addresses: no loopback, no link-local (they need a zone)."""
    try:
        import ifaddr
    except ImportError:  # pragma: no cover - ifaddr comes with zeroconf
        return []
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                continue
            if addr.is_loopback or addr.is_link_local or addr.is_multicast:
                continue
            if addr.version == 6 and not ipv6:
                continue
            out.append(str(addr))
    return out


def advertised_addresses(node: Node) -> tuple[str, ...]:
    """``--advertise`` if given; else the bound addresses, wildcards expanded to the
    host's interface addresses (loopback only if there is nothing else), after our
    reflexive addresses once dial-backs proved us reachable (a full-cone NAT's mapping
    of the listening port, or a forwarded port)."""
    if node.config.advertise:
        return tuple(node.config.advertise[:MAX_RECORD_ADDRESSES])
    out: list[str] = []
    if str(node.nat.state) == "public":
        out += node.nat.report().reflexive
    out += bound_addresses(node)
    return tuple(dict.fromkeys(out))[:MAX_RECORD_ADDRESSES]


def bound_addresses(node: Node) -> list[str]:
    """The listening addresses, wildcards expanded to the interface addresses."""
    out: list[str] = []
    for bound in node.listen_addresses:
        host, port = parse_hostport(bound)
        if host in _WILDCARDS:
            hosts = interface_addresses(ipv6=host == "::") or ["127.0.0.1"]
            out += [format_hostport(h, port) for h in hosts]
        else:
            out.append(format_hostport(host, port))
    return out

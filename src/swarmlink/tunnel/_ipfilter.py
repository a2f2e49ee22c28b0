"""Which IPv6 packets TUN mode may carry (sans-I/O; ``now`` passed in).

In TUN mode every node has its virtual address (``fd5a:7761:726d::/48`` + 80 bits of its
key hash) on a TUN interface, and IP packets travel between nodes over the overlay
session. Nothing is reachable unless exposed, so a receiver delivers a packet only if:

- its source is the **sender's own** virtual address (no spoofing: the session proves
  who sent it) and its destination is ours;
- it is TCP to a port **exposed to that sender**, or TCP/UDP in a flow already
  admitted: one *we* opened to it (tracked from our outbound packets, like a stateful
  firewall) or one it opened to an exposed port (later packets skip the lookup);
- or ICMPv6 (errors, echo): needed for path MTU and ping, carries no service.

Limits on untrusted input are named below; anything malformed is dropped with a reason.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FLOW_TTL",
    "MAX_FLOWS",
    "MAX_PACKET",
    "Packet",
    "PacketFilter",
    "Verdict",
    "parse_packet",
]

#: Largest IP packet carried (bytes): the TUN MTU can be large to cut per-packet cost.
MAX_PACKET = 65535
#: Seconds an outbound flow lets replies in after its last packet.
FLOW_TTL = 300.0
#: Outbound flows remembered (the least recently used are forgotten).
MAX_FLOWS = 4096

TCP, UDP, ICMPV6 = 6, 17, 58
_IPV6_HEADER = 40


@dataclass(frozen=True)
class Packet:
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    proto: int
    src_port: int  # 0 for ICMPv6
    dst_port: int


@dataclass(frozen=True)
class Verdict:
    deliver: bool
    reason: str = ""


def parse_packet(data: bytes) -> Packet:
    """The fields the filter needs; ValueError for anything it cannot vouch for."""
    if len(data) < _IPV6_HEADER or len(data) > MAX_PACKET:
        raise ValueError(f"packet of {len(data)} bytes")
    if data[0] >> 4 != 6:
        raise ValueError("not IPv6")
    payload = int.from_bytes(data[4:6], "big")
    if _IPV6_HEADER + payload != len(data):
        raise ValueError("payload length does not match the packet")
    proto = data[6]
    src = ipaddress.IPv6Address(data[8:24])
    dst = ipaddress.IPv6Address(data[24:40])
    if proto in (TCP, UDP):
        if payload < (20 if proto == TCP else 8):
            raise ValueError("truncated transport header")
        ports = data[_IPV6_HEADER : _IPV6_HEADER + 4]
        return Packet(
            src, dst, proto, int.from_bytes(ports[:2], "big"), int.from_bytes(ports[2:], "big")
        )
    if proto == ICMPV6:
        return Packet(src, dst, proto, 0, 0)
    raise ValueError(f"next header {proto} not carried (extension headers are not)")


class PacketFilter:
    """Decisions for one node: ``outbound`` for packets it sends (records flows),
    ``inbound`` for packets a peer sent it."""

    def __init__(
        self,
        own: ipaddress.IPv6Address,
        exposed_to: Callable[[ipaddress.IPv6Address, int, int], bool],
    ) -> None:
        """``exposed_to(peer address, proto, port)``: may that peer reach that port?"""
        self.own = own
        self._exposed_to = exposed_to
        self._flows: OrderedDict[tuple[int, int, ipaddress.IPv6Address, int], float] = OrderedDict()

    def outbound(self, data: bytes, now: float) -> Packet | None:
        """A packet from our TUN: the parsed packet to send to ``dst``'s agent, or None
        (not ours to send: wrong source, malformed)."""
        try:
            packet = parse_packet(data)
        except ValueError:
            return None
        if packet.src != self.own:
            return None
        if packet.proto in (TCP, UDP):
            self._touch((packet.proto, packet.src_port, packet.dst, packet.dst_port), now)
        return packet

    def inbound(self, data: bytes, sender: ipaddress.IPv6Address, now: float) -> Verdict:
        """A packet that the peer whose virtual address is ``sender`` sent us."""
        try:
            packet = parse_packet(data)
        except ValueError as exc:
            return Verdict(False, f"malformed: {exc}")
        if packet.src != sender:
            return Verdict(False, "source is not the sending agent's address")
        if packet.dst != self.own:
            return Verdict(False, "not addressed to us")
        if packet.proto == ICMPV6:
            return Verdict(True)
        key = (packet.proto, packet.dst_port, sender, packet.src_port)
        seen = self._flows.get(key)
        if seen is not None and now - seen <= FLOW_TTL:
            self._touch(key, now)
            return Verdict(True)
        if self._exposed_to(sender, packet.proto, packet.dst_port):
            self._touch(key, now)  # the rest of this flow skips the exposure lookup
            return Verdict(True)
        return Verdict(False, f"port {packet.dst_port} is not exposed to this agent")

    def _touch(self, key: tuple[int, int, ipaddress.IPv6Address, int], now: float) -> None:
        self._flows[key] = now
        self._flows.move_to_end(key)
        while len(self._flows) > MAX_FLOWS:
            self._flows.popitem(last=False)

    def forget(self, peer: ipaddress.IPv6Address) -> None:
        """Drop every flow with ``peer`` (its trust or exposure was withdrawn)."""
        for key in [k for k in self._flows if k[2] == peer]:
            del self._flows[key]

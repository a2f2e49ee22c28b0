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


def _fields(data: bytes) -> tuple[int, bytes, bytes, int, int]:
    """(next header, source, destination, source port, destination port) of a packet;
    addresses as 16 bytes (fast path: no address objects per packet)."""
    size = len(data)
    if size < _IPV6_HEADER or size > MAX_PACKET:
        raise ValueError(f"packet of {size} bytes")
    if data[0] >> 4 != 6:
        raise ValueError("not IPv6")
    payload = (data[4] << 8) | data[5]
    if _IPV6_HEADER + payload != size:
        raise ValueError("payload length does not match the packet")
    proto = data[6]
    if proto in (TCP, UDP):
        if payload < (20 if proto == TCP else 8):
            raise ValueError("truncated transport header")
        return (
            proto,
            data[8:24],
            data[24:40],
            (data[40] << 8) | data[41],
            (data[42] << 8) | data[43],
        )
    if proto == ICMPV6:
        return proto, data[8:24], data[24:40], 0, 0
    raise ValueError(f"next header {proto} not carried (extension headers are not)")


def parse_packet(data: bytes) -> Packet:
    """The fields the filter needs; ValueError for anything it cannot vouch for."""
    proto, src, dst, sport, dport = _fields(data)
    return Packet(ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst), proto, sport, dport)


_DELIVER = Verdict(True)
_FlowKey = tuple[int, int, bytes, int]  # (proto, our port, their address, their port)


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
        self._own = own.packed
        self._exposed_to = exposed_to
        self._flows: OrderedDict[_FlowKey, float] = OrderedDict()

    def outbound(self, data: bytes, now: float) -> bytes | None:
        """A packet from our TUN: its destination address (16 bytes) to send it to that
        agent, or None (not ours to send: wrong source, malformed)."""
        try:
            proto, src, dst, sport, dport = _fields(data)
        except ValueError:
            return None
        if src != self._own:
            return None
        if proto != ICMPV6:
            self._touch((proto, sport, dst, dport), now)
        return dst

    def inbound(self, data: bytes, sender: ipaddress.IPv6Address | bytes, now: float) -> Verdict:
        """A packet that the peer whose virtual address is ``sender`` sent us."""
        peer = sender if isinstance(sender, bytes) else sender.packed
        try:
            proto, src, dst, sport, dport = _fields(data)
        except ValueError as exc:
            return Verdict(False, f"malformed: {exc}")
        if src != peer:
            return Verdict(False, "source is not the sending agent's address")
        if dst != self._own:
            return Verdict(False, "not addressed to us")
        if proto == ICMPV6:
            return _DELIVER
        key = (proto, dport, peer, sport)
        seen = self._flows.get(key)
        if seen is not None and now - seen <= FLOW_TTL:
            self._touch(key, now)
            return _DELIVER
        if self._exposed_to(ipaddress.IPv6Address(peer), proto, dport):
            self._touch(key, now)  # the rest of this flow skips the exposure lookup
            return _DELIVER
        return Verdict(False, f"port {dport} is not exposed to this agent")

    def _touch(self, key: _FlowKey, now: float) -> None:
        flows = self._flows
        if key in flows:
            flows.move_to_end(key)
        flows[key] = now
        if len(flows) > MAX_FLOWS:
            flows.popitem(last=False)

    def forget(self, peer: ipaddress.IPv6Address) -> None:
        """Drop every flow with ``peer`` (its trust or exposure was withdrawn)."""
        packed = peer.packed
        for key in [k for k in self._flows if k[2] == packed]:
            del self._flows[key]

"""TUN mode's packet filter (sans-I/O): only packets from the sending agent's own
virtual address, to ours, to a port exposed to it or in a flow we opened."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from swarmlink.tunnel import FLOW_TTL, MAX_FLOWS, PacketFilter, parse_packet

ME = ipaddress.IPv6Address("fd5a:7761:726d::1")
PEER = ipaddress.IPv6Address("fd5a:7761:726d::2")
OTHER = ipaddress.IPv6Address("fd5a:7761:726d::3")


def packet(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, proto: int,
           sport: int = 0, dport: int = 0, body: bytes = b"") -> bytes:  # fmt: skip
    if proto == 6:
        transport = struct.pack("!HH", sport, dport) + bytes(16) + body
    elif proto == 17:
        transport = struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body
    else:
        transport = b"\x80\x00\x00\x00" + body  # ICMPv6 echo request
    header = struct.pack("!IHBB", 6 << 28, len(transport), proto, 64)
    return header + src.packed + dst.packed + transport


def exposed(peer: ipaddress.IPv6Address, proto: int, port: int) -> bool:
    return peer == PEER and proto == 6 and port == 8080


def test_exposed_port_from_the_sender_itself_is_delivered() -> None:
    f = PacketFilter(ME, exposed)
    assert f.inbound(packet(PEER, ME, 6, 40000, 8080), PEER, 0.0).deliver
    # Not exposed, or exposed to someone else, or UDP on that port: dropped with a reason.
    for data, sender in (
        (packet(PEER, ME, 6, 40000, 22), PEER),
        (packet(OTHER, ME, 6, 40000, 8080), OTHER),
        (packet(PEER, ME, 17, 40000, 8080), PEER),
    ):
        verdict = f.inbound(data, sender, 0.0)
        assert not verdict.deliver and "not exposed" in verdict.reason


def test_spoofed_and_misaddressed_packets_are_dropped() -> None:
    f = PacketFilter(ME, exposed)
    spoofed = f.inbound(packet(PEER, ME, 6, 1, 8080), OTHER, 0.0)
    assert not spoofed.deliver and "source" in spoofed.reason
    elsewhere = f.inbound(packet(PEER, OTHER, 6, 1, 8080), PEER, 0.0)
    assert not elsewhere.deliver and "not addressed" in elsewhere.reason


def test_replies_in_flows_we_opened_get_in_until_the_flow_expires() -> None:
    f = PacketFilter(ME, exposed)
    reply = packet(OTHER, ME, 6, 443, 50000)
    assert not f.inbound(reply, OTHER, 0.0).deliver
    assert f.outbound(packet(ME, OTHER, 6, 50000, 443), 10.0) is not None
    assert f.inbound(reply, OTHER, 11.0).deliver
    assert not f.inbound(packet(OTHER, ME, 6, 444, 50000), OTHER, 11.0).deliver  # other port
    assert not f.inbound(reply, OTHER, 11.0 + FLOW_TTL + 1).deliver  # replies refresh it


def test_outbound_needs_our_source_and_flows_are_bounded() -> None:
    f = PacketFilter(ME, exposed)
    assert f.outbound(packet(OTHER, PEER, 6, 1, 2), 0.0) is None
    for port in range(MAX_FLOWS + 10):
        f.outbound(packet(ME, PEER, 17, port % 65535 + 1, 53), 0.0)
    assert len(f._flows) == MAX_FLOWS


def test_icmpv6_passes_and_unknown_headers_do_not() -> None:
    f = PacketFilter(ME, exposed)
    assert f.inbound(packet(PEER, ME, 58), PEER, 0.0).deliver
    assert not f.inbound(packet(PEER, ME, 0), PEER, 0.0).deliver  # hop-by-hop header
    assert parse_packet(packet(PEER, ME, 6, 1, 2)).dst_port == 2


@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    f = PacketFilter(ME, exposed)
    verdict = f.inbound(data, PEER, 0.0)
    assert not verdict.deliver or data[:1] == b"\x60"
    f.outbound(data, 0.0)

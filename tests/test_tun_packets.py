"""TUN mode packet helpers (sans-I/O): the stream framing (fed whole and byte by byte),
the RST and ICMPv6 refusals (checksums checked with an independent implementation),
admitted flows in the filter, and the TUN configuration's validation."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlink.errors import InvalidArgument
from swarmlink.runtime import TunConfig
from swarmlink.tunnel import (
    ICMP_ADMIN_PROHIBITED,
    MAX_PACKET,
    MIN_PACKET,
    PacketDecoder,
    PacketFilter,
    encode_packet,
    icmp6_unreachable,
    refusal_for,
    tcp_reset,
)

ME = ipaddress.IPv6Address("fd5a:7761:726d::1")
PEER = ipaddress.IPv6Address("fd5a:7761:726d::2")
GW = ipaddress.IPv6Address("fd5a:7761:726d::ffff")
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04


def tcp(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, sport: int, dport: int,
        seq: int, ack: int, flags: int, body: bytes = b"") -> bytes:  # fmt: skip
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    segment += body
    header = struct.pack("!IHBB", 6 << 28, len(segment), 6, 64)
    return header + src.packed + dst.packed + segment


def udp(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, body: bytes) -> bytes:
    segment = struct.pack("!HHHH", 5353, 53, 8 + len(body), 0) + body
    return struct.pack("!IHBB", 6 << 28, len(segment), 17, 64) + src.packed + dst.packed + segment


def ones_complement_ok(packet: bytes) -> bool:
    """Verify an upper-layer checksum the slow, obvious way (RFC 8200 §8.1)."""
    payload = packet[40:]
    pseudo = packet[8:40] + len(payload).to_bytes(4, "big") + bytes(3) + packet[6:7]
    data = pseudo + payload + (b"\x00" if len(payload) % 2 else b"")
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


# ---- framing ---------------------------------------------------------------------------


@given(st.lists(st.binary(min_size=MIN_PACKET, max_size=3000), max_size=8), st.data())
def test_decoder_returns_every_packet_whole_or_byte_by_byte(
    packets: list[bytes], data: st.DataObject
) -> None:
    wire = b"".join(encode_packet(p) for p in packets)
    assert PacketDecoder().feed(wire) == packets
    decoder, out = PacketDecoder(), []
    for i in range(len(wire)):
        out += decoder.feed(wire[i : i + 1])
    assert out == packets and decoder.pending == 0
    cut = data.draw(st.integers(0, len(wire)))
    decoder = PacketDecoder()
    assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == packets


def test_decoder_refuses_lengths_below_an_ipv6_header() -> None:
    with pytest.raises(ValueError, match="below"):
        PacketDecoder().feed(b"\x00\x05" + bytes(5))
    with pytest.raises(ValueError):
        encode_packet(bytes(MAX_PACKET + 1))
    with pytest.raises(ValueError):
        encode_packet(bytes(10))
    assert len(encode_packet(bytes(MAX_PACKET))) == MAX_PACKET + 2


# ---- refusals --------------------------------------------------------------------------


def test_rst_for_a_syn_acknowledges_it() -> None:
    syn = tcp(PEER, ME, 40000, 8080, seq=1000, ack=0, flags=SYN)
    rst = tcp_reset(syn)
    assert rst is not None and ones_complement_ok(rst)
    assert rst[8:24] == ME.packed and rst[24:40] == PEER.packed
    sport, dport, seq, ack, _, flags = struct.unpack("!HHIIBB", rst[40:54])
    assert (sport, dport, seq, ack, flags) == (8080, 40000, 0, 1001, RST | ACK)


def test_rst_for_data_with_ack_takes_the_ack_as_its_sequence() -> None:
    seg = tcp(PEER, ME, 40000, 8080, seq=5, ack=77, flags=ACK | FIN, body=b"hello")
    rst = tcp_reset(seg)
    assert rst is not None and ones_complement_ok(rst)
    _, _, seq, ack, _, flags = struct.unpack("!HHIIBB", rst[40:54])
    assert (seq, ack, flags) == (77, 0, RST)
    # RST without ACK on data: ack covers the data and the FIN.
    rst = tcp_reset(tcp(PEER, ME, 1, 2, seq=0xFFFFFFFF, ack=0, flags=FIN, body=b"ab"))
    assert rst is not None and struct.unpack("!I", rst[48:52])[0] == 2  # 2**32 - 1 + 3, wrapped


def test_no_rst_for_a_rst_or_a_truncated_segment() -> None:
    assert tcp_reset(tcp(PEER, ME, 1, 2, 0, 0, RST)) is None
    assert tcp_reset(tcp(PEER, ME, 1, 2, 0, 0, SYN)[:50]) is None
    assert tcp_reset(udp(PEER, ME, b"x")) is None


@given(st.binary(max_size=3000))
def test_icmp_errors_quote_what_fits_in_1280_bytes(body: bytes) -> None:
    original = udp(PEER, ME, body)
    error = icmp6_unreachable(original, ICMP_ADMIN_PROHIBITED, GW)
    assert error is not None and len(error) <= 1280 and ones_complement_ok(error)
    assert error[40:42] == bytes([1, ICMP_ADMIN_PROHIBITED])
    assert error[48:] == original[: 1280 - 48]
    assert error[8:24] == GW.packed and error[24:40] == PEER.packed
    # never an error about an error
    assert icmp6_unreachable(error, ICMP_ADMIN_PROHIBITED, GW) is None


def test_refusal_for_udp_is_port_unreachable_and_nothing_for_echo() -> None:
    reply = refusal_for(udp(PEER, ME, b"query"))
    assert reply is not None and reply[40:42] == b"\x01\x04" and ones_complement_ok(reply)
    echo = struct.pack("!IHBB", 6 << 28, 8, 58, 64) + PEER.packed + ME.packed + bytes(8)
    assert refusal_for(echo) is None


# ---- the filter admits flows ------------------------------------------------------------


def test_an_admitted_flow_skips_the_exposure_lookup_until_forgotten() -> None:
    lookups: list[int] = []

    def exposed(peer: ipaddress.IPv6Address, proto: int, port: int) -> bool:
        lookups.append(port)
        return port == 8080

    f = PacketFilter(ME, exposed)
    for _ in range(5):
        assert f.inbound(tcp(PEER, ME, 40000, 8080, 0, 0, ACK), PEER, 1.0).deliver
    assert lookups == [8080]
    f.forget(PEER)
    assert f.inbound(tcp(PEER, ME, 40000, 8080, 0, 0, ACK), PEER, 2.0).deliver
    assert lookups == [8080, 8080]


# ---- configuration --------------------------------------------------------------------


def test_tun_config_is_validated() -> None:
    assert TunConfig().name == "swarm0" and TunConfig().mtu == MAX_PACKET
    for bad in ("", "x" * 16, "has space", "a/b"):
        with pytest.raises(InvalidArgument, match="interface name"):
            TunConfig(name=bad)
    for mtu in (1279, MAX_PACKET + 1):
        with pytest.raises(InvalidArgument, match="MTU"):
            TunConfig(mtu=mtu)

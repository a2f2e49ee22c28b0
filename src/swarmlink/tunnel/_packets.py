"""IPv6 packets for TUN mode (sans-I/O): the ``/swarmlink/ip/1`` stream framing, and
the packets a node writes to refuse something instead of letting a program hang.

Framing: every IP packet travels as a 2-byte big-endian length followed by the packet
(:data:`MIN_PACKET` … :data:`~swarmlink.tunnel.MAX_PACKET` bytes). One stream per
direction per pair of agents; the session carries it relayed or direct.

Refusals (RFC 4443, RFC 9293):

- a TCP segment to a port that is not exposed to its sender gets a RST back, so
  ``connect()`` fails at once with "connection refused" (a denied agent cannot tell
  "not exposed" from "not allowed");
- a UDP datagram the same way gets an ICMPv6 port unreachable;
- a packet the sending node cannot deliver at all (no known agent at that address, the
  agent does not trust us, it runs no TUN) gets an ICMPv6 destination unreachable with
  the matching code, which the kernel turns into ``EHOSTUNREACH``, ``EACCES`` or
  ``ECONNREFUSED``.
"""

from __future__ import annotations

import ipaddress
import struct

from ._ipfilter import ICMPV6, MAX_PACKET, TCP, UDP

__all__ = [
    "ICMP_ADDRESS_UNREACHABLE",
    "ICMP_ADMIN_PROHIBITED",
    "ICMP_NO_ROUTE",
    "ICMP_PORT_UNREACHABLE",
    "MIN_PACKET",
    "PacketDecoder",
    "encode_packet",
    "icmp6_unreachable",
    "refusal_for",
    "tcp_reset",
]

#: Smallest packet a stream may carry (an IPv6 header).
MIN_PACKET = 40
#: ICMPv6 destination unreachable codes (RFC 4443 §3.1).
ICMP_NO_ROUTE = 0
ICMP_ADMIN_PROHIBITED = 1
ICMP_ADDRESS_UNREACHABLE = 3
ICMP_PORT_UNREACHABLE = 4
#: An ICMPv6 error carries as much of the offending packet as fits in the IPv6
#: minimum MTU (RFC 4443 §2.4 (c)).
_ICMP_ERROR_MAX = 1280
_HOP_LIMIT = 64
_TCP_FIN, _TCP_SYN, _TCP_RST, _TCP_ACK = 0x01, 0x02, 0x04, 0x10


def encode_packet(packet: bytes) -> bytes:
    """One packet as it travels on the stream."""
    if not MIN_PACKET <= len(packet) <= MAX_PACKET:
        raise ValueError(f"packet of {len(packet)} bytes")
    return len(packet).to_bytes(2, "big") + packet


class PacketDecoder:
    """Length-prefixed packets out of a byte stream, fed in any pieces.

    ``feed`` returns the whole packets completed so far and raises ValueError on a
    length outside :data:`MIN_PACKET`..:data:`MAX_PACKET` (the stream is then bad).
    Pieces of an unfinished packet are kept as they came and joined once it is whole.
    """

    __slots__ = ("_have", "_need", "_pieces")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._have = 0  # bytes in _pieces
        self._need = 0  # length prefix + packet of the unfinished packet, 0: not known yet

    @property
    def pending(self) -> int:
        """Bytes of an unfinished packet held."""
        return self._have

    def _hold(self, data: bytes) -> None:
        self._pieces.append(data)
        self._have += len(data)
        if not self._need and self._have >= 2:
            head = data if len(self._pieces) == 1 else b"".join(self._pieces)[:2]
            size = (head[0] << 8) | head[1]
            if size < MIN_PACKET:  # MAX_PACKET is 65535: two bytes cannot exceed it
                self._pieces, self._have = [], 0
                raise ValueError(f"packet length {size} is below {MIN_PACKET}")
            self._need = 2 + size

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._pieces:
            self._hold(data)
            if not self._need or self._have < self._need:
                return out
            data = b"".join(self._pieces)  # the held packet is whole: one copy
            self._pieces, self._have, self._need = [], 0, 0
        pos, end = 0, len(data)
        while end - pos >= 2:
            size = (data[pos] << 8) | data[pos + 1]
            if size < MIN_PACKET:
                raise ValueError(f"packet length {size} is below {MIN_PACKET}")
            if end - pos - 2 < size:
                break
            out.append(data[pos + 2 : pos + 2 + size])
            pos += 2 + size
        if pos < end:
            self._hold(data[pos:] if pos else data)
        return out


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = (
        b"\x60\x00\x00\x00"
        + len(payload).to_bytes(2, "big")
        + bytes([proto, _HOP_LIMIT])
        + src
        + dst
    )
    return header + payload


def _with_checksum(src: bytes, dst: bytes, proto: int, segment: bytearray, at: int) -> bytes:
    pseudo = src + dst + len(segment).to_bytes(4, "big") + b"\x00\x00\x00" + bytes([proto])
    segment[at : at + 2] = b"\x00\x00"
    segment[at : at + 2] = _checksum(pseudo + bytes(segment)).to_bytes(2, "big")
    return bytes(segment)


def tcp_reset(packet: bytes) -> bytes | None:
    """The RST answering a TCP segment (RFC 9293 §3.10.7.1), or None for a RST (never
    answered) or anything that is not a whole TCP segment."""
    if len(packet) < 60 or packet[6] != TCP:
        return None
    tcp = packet[40:]
    offset = (tcp[12] >> 4) * 4
    flags = tcp[13]
    if flags & _TCP_RST or offset < 20 or offset > len(tcp):
        return None
    seq = int.from_bytes(tcp[4:8], "big")
    ack = int.from_bytes(tcp[8:12], "big")
    if flags & _TCP_ACK:
        out_seq, out_ack, out_flags = ack, 0, _TCP_RST
    else:
        length = len(tcp) - offset + (1 if flags & _TCP_SYN else 0) + (1 if flags & _TCP_FIN else 0)
        out_seq, out_ack, out_flags = 0, (seq + length) & 0xFFFFFFFF, _TCP_RST | _TCP_ACK
    src, dst = packet[24:40], packet[8:24]
    segment = bytearray(
        tcp[2:4]  # their destination port is our source port
        + tcp[0:2]
        + out_seq.to_bytes(4, "big")
        + out_ack.to_bytes(4, "big")
        + bytes([5 << 4, out_flags])
        + b"\x00\x00"  # window
        + b"\x00\x00"  # checksum, filled below
        + b"\x00\x00"  # urgent pointer
    )
    return _ipv6(src, dst, TCP, _with_checksum(src, dst, TCP, segment, 16))


def icmp6_unreachable(packet: bytes, code: int, source: ipaddress.IPv6Address) -> bytes | None:
    """An ICMPv6 destination unreachable (``code``) about ``packet``, sent from
    ``source`` back to the packet's source; None when no error may be sent about it
    (RFC 4443 §2.4 (e): not about an ICMPv6 error, nor a packet without a unicast source)."""
    if len(packet) < MIN_PACKET or packet[0] >> 4 != 6:
        return None
    if packet[6] == ICMPV6 and len(packet) > 40 and packet[40] < 128:
        return None  # an error message
    origin = ipaddress.IPv6Address(packet[8:24])
    if origin.is_multicast or origin.is_unspecified:
        return None
    quoted = packet[: _ICMP_ERROR_MAX - 40 - 8]
    src, dst = source.packed, packet[8:24]
    message = bytearray(bytes([1, code]) + b"\x00\x00" + b"\x00\x00\x00\x00" + quoted)
    return _ipv6(src, dst, ICMPV6, _with_checksum(src, dst, ICMPV6, message, 2))


def refusal_for(packet: bytes) -> bytes | None:
    """What the receiver sends back for a packet it may not deliver: a RST for TCP, an
    ICMPv6 port unreachable for UDP, nothing otherwise."""
    if len(packet) < MIN_PACKET:
        return None
    if packet[6] == TCP:
        return tcp_reset(packet)
    if packet[6] == UDP:
        return icmp6_unreachable(
            packet, ICMP_PORT_UNREACHABLE, ipaddress.IPv6Address(packet[24:40])
        )
    return None

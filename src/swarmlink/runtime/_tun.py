"""TUN mode: the node's virtual IPv6 address on a kernel interface, so unmodified
programs reach other agents at ``[fd5a:7761:726d:…]:PORT``.

``up --tun`` (root, or CAP_NET_ADMIN) creates a TUN interface (``swarm0``), sets its MTU
(large: per-packet cost dominates), brings it up and gives it the node's virtual
address with prefix length 48, so the kernel routes the whole overlay prefix
``fd5a:7761:726d::/48`` into it. Packets read from it go to the agent whose virtual
address is the destination, over the ``/swarmlink/ip/1`` stream of the session (relayed
or direct); packets from peers pass :class:`~swarmlink.tunnel.PacketFilter` (source is the
sender's own address, destination ours, TCP to a port exposed to that sender, or a flow
already admitted) before the kernel sees them. Refused packets are answered (RST,
ICMPv6) so programs fail fast instead of hanging; see :mod:`swarmlink.tunnel._packets`.

Only one TUN per network namespace can carry the prefix; a second one is refused with
a clear error. The device disappears when the node stops (it is not persistent).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ErrorCode, NetworkError, RemoteError, StreamRefused
from ..identity import VIRTUAL_NETWORK, virtual_address
from ..tunnel import (
    ICMP_ADDRESS_UNREACHABLE,
    ICMP_ADMIN_PROHIBITED,
    ICMP_PORT_UNREACHABLE,
    MAX_PACKET,
    PacketDecoder,
    PacketFilter,
    encode_packet,
    icmp6_unreachable,
    refusal_for,
)
from ..tunnel._ipfilter import TCP
from ._info import known_agents
from .config import TunConfig

if TYPE_CHECKING:
    from ._stream import Stream
    from .node import Node

__all__ = [
    "IP_PROTOCOL",
    "MAX_PENDING_PACKETS",
    "REFUSAL_HOLD",
    "TUN_QUEUE_BYTES",
    "TunPermissionError",
    "TunService",
    "open_tun",
]

log = logging.getLogger("swarmlink.tun")

#: The stream protocol that carries IP packets (trusted peers only).
IP_PROTOCOL = "/swarmlink/ip/1"
#: Packets held per peer while its session / stream opens (more are dropped).
MAX_PENDING_PACKETS = 256
#: Bytes queued per peer when the session pushes back; past it packets are dropped (like a
#: router's queue: TCP inside slows down).
TUN_QUEUE_BYTES = 4 * 1024 * 1024
#: Seconds a peer's refusal (not trusted, no TUN) is answered locally before asking again.
REFUSAL_HOLD = 5.0
#: A refusal of the packet stream within this many seconds of opening it is also
#: answered for the first :data:`_EARLY_PACKETS` packets already sent on it.
_EARLY_WINDOW = 3.0
_EARLY_PACKETS = 8
#: Packets read from the device per wake-up (then other work runs).
READ_BATCH = 64
#: Least seconds between rebuilds of the address → agent map on a miss.
_AGENT_MAP_REFRESH = 1.0
#: Where ICMPv6 errors about unreachable overlay addresses come from (a "router" address
#: in the overlay prefix no agent can have: agents' addresses have 80 hashed bits).
GATEWAY = VIRTUAL_NETWORK[1]

_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI, _IFF_UP = 0x0001, 0x1000, 0x0001
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _SIOCSIFADDR = 0x8913, 0x8914, 0x8916
_SIOCSIFMTU, _SIOCGIFINDEX = 0x8922, 0x8933


class TunPermissionError(NetworkError):
    """TUN mode needs root (CAP_NET_ADMIN)."""


def _prefix_owner(network: ipaddress.IPv6Network) -> str | None:
    """The interface that already routes ``network`` in this namespace, if any."""
    try:
        lines = Path("/proc/net/ipv6_route").read_text().splitlines()
    except OSError:
        return None
    want = (network.network_address.packed.hex(), f"{network.prefixlen:02x}")
    for line in lines:
        parts = line.split()
        if len(parts) >= 10 and (parts[0], parts[1]) == want and parts[9] != "lo":
            return parts[9]
    return None


def _ifreq(name: str, fmt: str, value: int) -> bytes:
    return struct.pack(fmt, name.encode(), value)


def open_tun(config: TunConfig, address: ipaddress.IPv6Address) -> tuple[int, str]:
    """Create and configure the interface; (non-blocking fd, interface name).

    Raises :class:`TunPermissionError` without CAP_NET_ADMIN and
    :class:`~swarmlink.errors.NetworkError` for anything else, each saying what to do.
    """
    owner = _prefix_owner(VIRTUAL_NETWORK)
    if owner is not None:
        raise NetworkError(
            f"{owner} already routes the overlay prefix {VIRTUAL_NETWORK} in this network "
            "namespace (another swarmlink node in TUN mode?): one TUN per namespace"
        )
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetworkError(
            "TUN mode needs /dev/net/tun (load the tun module; in a container, pass the device in)"
        ) from None
    except PermissionError:
        raise TunPermissionError(
            "TUN mode needs root (or CAP_NET_ADMIN): cannot open /dev/net/tun"
        ) from None
    step = "create the interface"
    try:
        got = fcntl.ioctl(fd, _TUNSETIFF, _ifreq(config.name, "16sH22x", _IFF_TUN | _IFF_NO_PI))
        name = got[:16].split(b"\0", 1)[0].decode()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            step = "set its MTU"
            fcntl.ioctl(s, _SIOCSIFMTU, _ifreq(name, "16si20x", config.mtu))
            with contextlib.suppress(OSError):  # no link-local address: nothing to announce
                Path(f"/proc/sys/net/ipv6/conf/{name}/addr_gen_mode").write_text("1")
            step = "bring it up"
            flags = struct.unpack(
                "16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, _ifreq(name, "16sH22x", 0))
            )[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, _ifreq(name, "16sH22x", flags | _IFF_UP))
            index = struct.unpack(
                "16si20x", fcntl.ioctl(s, _SIOCGIFINDEX, _ifreq(name, "16si20x", 0))
            )[1]
            step = f"give it {address}/{VIRTUAL_NETWORK.prefixlen}"
            fcntl.ioctl(
                s,
                _SIOCSIFADDR,
                struct.pack("16sIi", address.packed, VIRTUAL_NETWORK.prefixlen, index),
            )
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EPERM:
            raise TunPermissionError(
                f"TUN mode needs root (or CAP_NET_ADMIN): cannot {step}"
            ) from None
        if exc.errno == errno.EBUSY:
            raise NetworkError(
                f"TUN interface {config.name} is in use by another process (--tun-name)"
            ) from None
        hint = ""
        if exc.errno == errno.EACCES and "address" not in step:
            hint = " (is IPv6 disabled? sysctl net.ipv6.conf.all.disable_ipv6)"
        raise NetworkError(
            f"cannot {step} for TUN {config.name}: {exc.strerror or exc}{hint}"
        ) from None
    return fd, name


@dataclass
class TunCounters:
    """What TUN mode moved and refused (for ``status``)."""

    packets_out: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    dropped: int = 0  # queue full, write failed
    refused: int = 0  # packets the filter refused (answered with RST / ICMPv6)
    unreachable: int = 0  # packets we could not send (no agent, not trusted, no TUN there)


@dataclass
class _Link:
    """Our outbound packet stream to one agent."""

    stream: Stream | None = None
    pending: collections.deque[bytes] = field(default_factory=collections.deque)
    queued: int = 0  # bytes in ``pending`` (once the stream is open: waiting to drain)
    pumping: bool = False
    # The first packets sent, until the peer had time to refuse the stream: answered
    # with an ICMPv6 error if it does (else a connect() would wait for a retransmission).
    early: list[bytes] = field(default_factory=list)
    opened: float = 0.0


class TunService:
    """The TUN device of one node and the packet streams to its peers."""

    def __init__(self, node: Node, config: TunConfig) -> None:
        self.node = node
        self.config = config
        self.own = node.identity.virtual_address
        self._own_packed = self.own.packed
        self.filter = PacketFilter(self.own, self._exposed_to)
        self.counters = TunCounters()
        self.name = ""
        self._fd = -1
        self._loop = asyncio.get_running_loop()
        self._links: dict[str, _Link] = {}
        self._agents: dict[bytes, str] = {}  # packed virtual address → agent
        self._agents_built = -_AGENT_MAP_REFRESH
        self._refused: dict[str, tuple[float, int]] = {}

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._fd, self.name = open_tun(self.config, self.own)
        self._loop.add_reader(self._fd, self._on_readable)
        self.node.set_handler(IP_PROTOCOL, self._serve)
        log.info(
            "TUN up",
            extra={"interface": self.name, "address": str(self.own), "mtu": self.config.mtu},
        )

    def close(self) -> None:
        if self._fd < 0:
            return
        self.node.set_handler(IP_PROTOCOL, None)
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        for link in self._links.values():
            if link.stream is not None:
                link.stream.reset(ErrorCode.SHUTDOWN, "TUN closed")
        self._links.clear()

    # ---- who is where ---------------------------------------------------------------------

    def _agent_at(self, address: bytes, now: float) -> str | None:
        agent = self._agents.get(address)
        if agent is None and now - self._agents_built >= _AGENT_MAP_REFRESH:
            self._agents_built = now
            known = known_agents(self.node)
            self._agents = {virtual_address(a).packed: a for a in known}
            agent = self._agents.get(address)
        return agent

    def _exposed_to(self, sender: ipaddress.IPv6Address, proto: int, port: int) -> bool:
        """TCP to an exposed port whose allow list admits the sender (empty: every
        trusted agent, and only trusted agents open this stream)."""
        if proto != TCP:
            return False
        agent = self._agents.get(sender.packed)
        if agent is None:
            return False
        found = self.node.services._find_exposure(port)
        return found is not None and (not found[1] or agent in found[1])

    # ---- outbound: device → peers -----------------------------------------------------------

    def _on_readable(self) -> None:
        now = self._loop.time()
        for _ in range(READ_BATCH):
            try:
                data = os.read(self._fd, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("TUN read failed", extra={"error": str(exc)})
                return
            dst = self.filter.outbound(data, now)
            if dst is None:
                continue  # not from our address (link-local chatter) or not IPv6
            agent = self._agent_at(dst, now)
            if agent is None:
                self._unreachable(data, ICMP_ADDRESS_UNREACHABLE)
                continue
            refused = self._refused.get(agent)
            if refused is not None:
                if refused[0] > now:
                    self._unreachable(data, refused[1])
                    continue
                del self._refused[agent]
            self._transmit(agent, data)

    def _unreachable(self, packet: bytes, code: int) -> None:
        self.counters.unreachable += 1
        reply = icmp6_unreachable(packet, code, GATEWAY)
        if reply is not None:
            self._deliver(reply)

    def _transmit(self, agent: str, packet: bytes) -> None:
        """Send one packet to ``agent`` (no filtering: callers decided)."""
        link = self._links.get(agent)
        if link is None:
            link = self._links[agent] = _Link()
            self.node.spawn(self._open(agent, link), name="tun-link")
        if link.stream is None or link.pumping:
            if len(link.pending) >= MAX_PENDING_PACKETS or link.queued > TUN_QUEUE_BYTES:
                self.counters.dropped += 1
                return
            link.pending.append(packet)
            link.queued += len(packet)
            return
        stream = link.stream
        try:
            self._write(link, stream, packet)
        except RemoteError:
            self._drop_link(agent, link)
            return
        if stream.congested:
            link.pumping = True
            self.node.spawn(self._pump(agent, link), name="tun-pump")

    def _write(self, link: _Link, stream: Stream, packet: bytes) -> None:
        stream.write(encode_packet(packet))
        self.counters.packets_out += 1
        self.counters.bytes_out += len(packet)
        if self._loop.time() - link.opened >= _EARLY_WINDOW:
            if link.early:
                link.early.clear()
        elif len(link.early) < _EARLY_PACKETS:
            link.early.append(packet)

    async def _open(self, agent: str, link: _Link) -> None:
        try:
            stream = await self.node.open_stream(agent, IP_PROTOCOL)
        except Exception as exc:
            log.info("TUN: no session", extra={"peer": agent, "error": str(exc)})
            self._refuse(agent, link, ICMP_ADDRESS_UNREACHABLE)
            return
        link.stream = stream
        link.opened = self._loop.time()
        self._agents[virtual_address(agent).packed] = agent
        link.pumping = True
        self.node.spawn(self._pump(agent, link), name="tun-pump")
        # The peer never writes on our stream: a read ends only when it refuses or resets.
        try:
            await stream.read()
        except StreamRefused as exc:
            code = (
                ICMP_ADMIN_PROHIBITED
                if exc.code in (ErrorCode.NOT_TRUSTED, ErrorCode.REFUSED)
                else ICMP_PORT_UNREACHABLE  # no TUN there: "connection refused"
            )
            log.info("TUN: peer refused", extra={"peer": agent, "error": str(exc)})
            self._refuse(agent, link, code)
            return
        except RemoteError:
            pass
        self._drop_link(agent, link)

    def _refuse(self, agent: str, link: _Link, code: int) -> None:
        now = self._loop.time()
        self._refused[agent] = (now + REFUSAL_HOLD, code)
        if now - link.opened < _EARLY_WINDOW:
            for packet in link.early:
                self._unreachable(packet, code)
        for packet in link.pending:
            self._unreachable(packet, code)
        self._drop_link(agent, link)

    def _drop_link(self, agent: str, link: _Link) -> None:
        if self._links.get(agent) is link:
            del self._links[agent]
        link.early.clear()
        link.pending.clear()
        link.queued = 0

    async def _pump(self, agent: str, link: _Link) -> None:
        """Write what queued while the stream opened or pushed back, as it drains."""
        stream = link.stream
        assert stream is not None
        try:
            while True:
                await stream.drain()
                while link.pending and not stream.congested:
                    packet = link.pending.popleft()
                    link.queued -= len(packet)
                    self._write(link, stream, packet)
                if not link.pending:
                    break
        except RemoteError:
            self._drop_link(agent, link)
        finally:
            link.pumping = False

    # ---- inbound: peers → device ------------------------------------------------------

    async def _serve(self, stream: Stream) -> None:
        peer = stream.peer
        address = virtual_address(peer)
        sender = address.packed
        self._agents[sender] = peer
        decoder = PacketDecoder()
        while chunks := await stream.read_chunks():
            if not self.node.trust.is_trusted(peer):  # revoked while the stream was open
                stream.reset(ErrorCode.NOT_TRUSTED, "not trusted any more")
                self.filter.forget(address)
                return
            try:
                packets = [p for chunk in chunks for p in decoder.feed(chunk)]
            except ValueError as exc:
                stream.reset(ErrorCode.MALFORMED, str(exc)[:200])
                return
            now = self._loop.time()
            for packet in packets:
                verdict = self.filter.inbound(packet, sender, now)
                if verdict.deliver:
                    self.counters.packets_in += 1
                    self.counters.bytes_in += len(packet)
                    self._deliver(packet)
                    continue
                self.counters.refused += 1
                log.debug("TUN: refused a packet", extra={"peer": peer, "why": verdict.reason})
                reply = refusal_for(packet)
                if reply is not None and reply[8:40] == self._own_packed + sender:
                    self._transmit(peer, reply)

    def _deliver(self, packet: bytes) -> None:
        if self._fd < 0:
            return
        try:
            os.write(self._fd, packet)
        except OSError as exc:
            self.counters.dropped += 1
            log.debug("TUN write failed", extra={"error": str(exc)})

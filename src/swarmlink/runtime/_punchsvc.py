"""Hole punching: turn a relayed session into a direct one, keep the relay as fallback.

When a relayed session comes up, its dialing side starts a punch over it
(``/swarmlink/punch/1``; :class:`~swarmlink.nat.PunchCoordinator` decides what to send and
when): both sides exchange their addresses, the initiator measures the RTT, and both
dial every address of the other **from their listening ports** at the same moment,
every :data:`~swarmlink.nat.PUNCH_RETRY` seconds for :data:`~swarmlink.nat.PUNCH_WINDOW`.
Each NAT sees the outgoing SYN first and lets the other side's SYN in; the kernel turns
the two crossing SYNs into one connection (TCP simultaneous open) or, when one side is
reachable, the other side's listener accepts it.

TLS roles on a punched socket: the smaller agent ID is the TLS client. The larger one
waits briefly for a ClientHello (:func:`~._sockets.peer_speaks_first`); silence means the
other end is a listener, so it becomes the client itself. TLS then verifies the agent
ID exactly as on any connection: the addresses a peer claims only make us *try*.

Once a direct session is up it carries every new stream; the relayed session stays
open behind it (:meth:`PunchService.second_path`) and takes over if the direct one dies
(a NAT rebinding kills a TCP mapping; keepalive PINGs notice a silent one), and a new
punch is tried after :data:`REPUNCH_DELAYS`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from ..errors import (
    ErrorCode,
    InvalidArgument,
    NetworkError,
    ProtocolViolation,
    StateError,
    SwarmlinkError,
)
from ..nat import MAX_PUNCH_ADDRESSES, Dial, PunchCoordinator
from ..wire.address import parse_hostport
from . import events as ev
from ._addresses import advertised_addresses, bound_addresses
from ._connection import PeerConnection
from ._dialer import dial_from, secure
from ._sockets import connect_tcp, peer_speaks_first
from ._stream import Stream

if TYPE_CHECKING:
    from ._quic import QuicEndpoint
    from .node import Node

__all__ = [
    "MAX_PUNCH_RECORD",
    "PUNCH_PROTOCOL",
    "PUNCH_TRANSPORTS",
    "REPUNCH_DELAYS",
    "PunchService",
    "path_name",
    "path_rank",
]

log = logging.getLogger("swarmlink.punch")

#: Stream protocol of punch coordination.
PUNCH_PROTOCOL = "/swarmlink/punch/1"
#: Largest punch message accepted (bytes; untrusted input).
MAX_PUNCH_RECORD = 1024
#: Seconds before punch attempts number 2, 3, … while the session stays relayed (the
#: last delay repeats).
REPUNCH_DELAYS = (5.0, 30.0, 120.0, 600.0)
#: Punches a peer may ask of us per minute (each sends SYNs and datagrams to up to
#: :data:`~swarmlink.nat.MAX_PUNCH_ADDRESSES` addresses for a few seconds).
MAX_PUNCHES_PER_MINUTE = 12
#: Longest wait for the other end's ClientHello on a punched socket (seconds).
MAX_ROLE_WAIT = 1.0
#: Transports hole punching knows.
PUNCH_TRANSPORTS = ("tcp", "quic")


def _is_quic(conn: PeerConnection) -> bool:
    return getattr(conn.transport, "is_quic", False) is True


def path_rank(conn: PeerConnection) -> int:
    """Which session with a peer carries new streams (lowest first): direct TCP (the
    fastest here), direct QUIC, relayed."""
    if conn.via is not None:
        return 2
    return 1 if _is_quic(conn) else 0


def path_name(conn: PeerConnection) -> str:
    """``direct``, ``direct (QUIC)`` or ``relayed via RELAY``."""
    if conn.via is not None:
        return f"relayed via {conn.via}"
    return "direct (QUIC)" if _is_quic(conn) else "direct"


class PunchService:
    def __init__(self, node: Node) -> None:
        self.node = node
        #: Initiator loops, per peer: (the relayed session, its task).
        self._running: dict[str, tuple[PeerConnection, asyncio.Task[None]]] = {}
        self._served: dict[str, list[float]] = {}  # peer -> its punches in the last minute
        self._direct: dict[str, asyncio.Event] = {}  # set when a direct session is up
        #: Per peer: seconds from the start of the last successful punch to direct.
        self.upgrade_times: dict[str, float] = {}
        transports = node.config.punch_transports
        unknown = set(transports) - set(PUNCH_TRANSPORTS)
        if unknown or not transports:
            raise InvalidArgument(
                f"punch transports must be among {', '.join(PUNCH_TRANSPORTS)} "
                f"(got {', '.join(transports) or 'none'})"
            )
        self.tcp = "tcp" in transports
        #: The UDP endpoint on the listening port number (QUIC sessions, UDP punches).
        #: Opened by the first punch: aioquic (and the pyOpenSSL it loads) costs ~9 MiB
        #: of memory that a node which never punches should not pay.
        self.quic: QuicEndpoint | None = None
        self._quic_wanted = False  # until the one attempt to open it
        self._quic_lock = asyncio.Lock()

    async def start(self) -> None:
        node = self.node
        node.set_handler(PUNCH_PROTOCOL, self.serve)
        if "quic" in node.config.punch_transports and dial_from(node) is not None:
            self._quic_wanted = True

    def warm(self) -> None:
        """Open the QUIC endpoint in the background (a node that holds a relay
        reservation or a relayed session is about to punch)."""
        if self._quic_wanted and not self._quic_lock.locked():
            self.node.spawn(self.open_quic(), name="quic-open")

    async def open_quic(self) -> QuicEndpoint | None:
        """The UDP/QUIC endpoint, opened on first use (None: QUIC is off or failed)."""
        async with self._quic_lock:
            local = dial_from(self.node)
            if not self._quic_wanted or local is None or self.node._closing:
                return self.quic
            self._quic_wanted = False
            from ._quic import QuicEndpoint

            node = self.node
            cert_file, key_file = node.keystore.tls_files
            try:
                self.quic = await QuicEndpoint.bind(
                    local[0],
                    local[1],
                    cert_file=cert_file,
                    key_file=key_file,
                    accept=lambda: node._new_connection(outbound=False),
                )
            except NetworkError as exc:  # TCP still punches; say why QUIC does not
                log.warning("no QUIC: UDP port unavailable", extra={"error": str(exc)})
            return self.quic

    def close(self) -> None:
        if self.quic is not None:
            self.quic.close()

    def load_certificate(self) -> None:
        if self.quic is not None:
            self.quic.load_certificate(*self.node.keystore.tls_files)

    # ---- path bookkeeping (called by the node) -----------------------------------------

    def relayed(self, conn: PeerConnection, delay: float = 0.0) -> None:
        """A relayed session became the session with its peer: its dialer punches."""
        node = self.node
        if conn.via is not None and node.config.hole_punching:
            self.warm()  # either end may punch soon: have the UDP port ready
        if conn.via is None or not conn.outbound or node._closing or not node.config.hole_punching:
            return
        running = self._running.get(conn.agent_id)
        if running is not None and not running[1].done():
            if running[0] is conn:
                return
            running[1].cancel()  # it was for a session that is gone
        task = node.spawn(self._keep_trying(conn, delay), name=f"punch:{conn.agent_id[:12]}")
        self._running[conn.agent_id] = (conn, task)

    def second_path(self, existing: PeerConnection, conn: PeerConnection) -> None:
        """Two sessions with one peer over different paths (see :func:`path_rank`): the
        better one carries new streams; a relayed one stays behind it as fallback, a
        QUIC one behind a TCP one closes (both ends decide alike)."""
        node, peer = self.node, conn.agent_id
        direct, other = sorted((conn, existing), key=path_rank)
        node._conns[peer] = direct
        if other.via is not None:
            old = node._fallback.get(peer)
            if old is not None and old is not other:
                old.close(ErrorCode.DUPLICATE_CONNECTION, "duplicate relayed connection")
            node._fallback[peer] = other
        else:
            if not other.ready.done():
                other.ready.set_result(direct)
            other.close(ErrorCode.DUPLICATE_CONNECTION, "a direct TCP session replaces it")
        if not conn.ready.done():
            conn.ready.set_result(direct)
        if conn is direct:
            node._remember_peer(conn)
            path = path_name(conn)
            node.publish(ev.PeerPathChanged(agent_id=peer, path=path, address=conn.address))
            node.nat.connection_ready(conn)
            self._direct.setdefault(peer, asyncio.Event()).set()
            log.info("direct path", extra={"peer": peer, "address": conn.address, "path": path})

    def fall_back(self, conn: PeerConnection) -> bool:
        """The session in front closed: promote the relayed one behind it, if alive."""
        node, peer = self.node, conn.agent_id
        relayed = node._fallback.pop(peer, None)
        if relayed is None or relayed.closed or node._closing:
            return False
        node._conns[peer] = relayed
        self._direct.pop(peer, None)
        path = f"relayed via {relayed.via}"
        node.publish(ev.PeerPathChanged(agent_id=peer, path=path, address=relayed.address))
        log.info("direct path lost", extra={"peer": peer, "reason": conn.close_reason})
        self.relayed(relayed, REPUNCH_DELAYS[0])
        return True

    # ---- the initiator --------------------------------------------------------------------

    async def _keep_trying(self, conn: PeerConnection, delay: float) -> None:
        for attempt in range(1_000_000):
            if delay:
                await asyncio.sleep(delay)
            if conn.closed or self.node.connected(conn.agent_id) is not conn:
                return  # gone, or direct already
            try:
                if await self.punch(conn):
                    return
            except (SwarmlinkError, TimeoutError) as exc:
                log.info("punch failed", extra={"peer": conn.agent_id, "error": str(exc)})
            delay = REPUNCH_DELAYS[min(attempt, len(REPUNCH_DELAYS) - 1)]

    def _coordinator(self, *, initiator: bool) -> PunchCoordinator:
        node = self.node
        # Where others dial us, plus where we listen (a LAN peer, or a peer behind the
        # same NAT, may reach that; and it is where a punch must land).
        addresses = [
            *node.nat.report().reflexive,
            *advertised_addresses(node),
            *bound_addresses(node),
        ]
        local = dial_from(node)
        loopback = local is not None and _is_loopback(local[0])
        return PunchCoordinator(
            initiator=initiator,
            own_addresses=tuple(dict.fromkeys(addresses))[:MAX_PUNCH_ADDRESSES],
            allow_loopback=loopback,
        )

    async def punch(self, conn: PeerConnection) -> bool:
        """One punch with ``conn``'s peer over ``conn``; True if a direct session is up."""
        loop = asyncio.get_running_loop()
        coordinator = self._coordinator(initiator=True)
        await self.open_quic()
        stream = conn.open_stream(PUNCH_PROTOCOL)
        try:
            coordinator.begin(loop.time())
            self._send(stream, coordinator)
            reply = await self._read(stream, coordinator)
            dials = coordinator.receive(reply, loop.time())
            self._send(stream, coordinator)
            return await self._run(conn.agent_id, coordinator, dials)
        finally:
            stream.reset(ErrorCode.CANCEL)  # nothing more to say either way

    # ---- the responder --------------------------------------------------------------------

    async def serve(self, stream: Stream) -> None:
        conn, loop = stream.connection, asyncio.get_running_loop()
        if not self.node.config.hole_punching:
            raise ProtocolViolation("hole punching is off here", ErrorCode.REFUSED)
        if conn.via is None:
            raise ProtocolViolation("punch over a direct session", ErrorCode.REFUSED)
        now = time.monotonic()
        recent = [t for t in self._served.get(stream.peer, ()) if now - t < 60]
        if len(recent) >= MAX_PUNCHES_PER_MINUTE:
            raise ProtocolViolation("punch requested too often", ErrorCode.RATE_LIMITED)
        self._served[stream.peer] = [*recent, now]
        if len(self._served) > 4096:
            self._served = {p: ts for p, ts in self._served.items() if now - ts[-1] < 60}
        self.warm()  # not awaited here: that would skew the initiator's RTT measurement
        coordinator = self._coordinator(initiator=False)
        first = await self._read(stream, coordinator)
        coordinator.receive(first, loop.time())
        self._send(stream, coordinator)
        sync = await self._read(stream, coordinator)
        dials = coordinator.receive(sync, loop.time())
        await self._run(stream.peer, coordinator, dials)

    # ---- both sides ---------------------------------------------------------------------

    @staticmethod
    def _send(stream: Stream, coordinator: PunchCoordinator) -> None:
        for message in coordinator.messages_to_send():
            stream.write_record(message)  # type: ignore[arg-type]

    @staticmethod
    async def _read(stream: Stream, coordinator: PunchCoordinator) -> object:
        deadline = coordinator.get_timer()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                return await stream.read_record(max_size=MAX_PUNCH_RECORD)
        except TimeoutError:
            coordinator.handle_timer(loop.time())
            raise NetworkError(f"punch: {coordinator.reason or 'no answer'}") from None

    async def _run(self, peer: str, coordinator: PunchCoordinator, dials: list[Dial]) -> bool:
        """Dial what the coordinator says until a direct session is up or time is out."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        direct = self._direct.setdefault(peer, asyncio.Event())
        pending: dict[str, asyncio.Task[None]] = {}
        rtt = coordinator.rtt
        log.debug(
            "punching",
            extra={"peer": peer, "address": list(coordinator.peer_addresses), "seconds": rtt},
        )
        try:
            while not coordinator.done:
                if self.node._closing:
                    raise StateError("node is shutting down")
                conn = self.node.connected(peer)
                if conn is not None and conn.via is None and (path_rank(conn) == 0 or not self.tcp):
                    coordinator.connected()  # the best path there is (QUIC waits for TCP)
                    break
                direct.clear()
                for item in dials:
                    self._udp_punch(item.address)
                    for kind in ("tcp", "quic"):
                        task = pending.get(kind + item.address)
                        if task is None or task.done():
                            dial = self._dial if kind == "tcp" else self._dial_quic
                            pending[kind + item.address] = loop.create_task(
                                dial(peer, item.address, rtt, coordinator.get_timer())
                            )
                wake = coordinator.get_timer()
                waiting = [t for t in pending.values() if not t.done()]
                waiter = loop.create_task(direct.wait())
                timeout = None if wake is None else max(0.0, wake - loop.time())
                await asyncio.wait(
                    [waiter, *waiting], timeout=timeout, return_when="FIRST_COMPLETED"
                )
                waiter.cancel()
                dials = coordinator.handle_timer(loop.time())
        finally:
            for task in pending.values():
                task.cancel()
            if pending:
                await asyncio.gather(*pending.values(), return_exceptions=True)
        conn = self.node.connected(peer)
        ok = conn is not None and conn.via is None  # QUIC, if TCP never came
        if ok:
            self.upgrade_times[peer] = loop.time() - started
        log.info(
            "punch succeeded" if ok else "punch failed",
            extra={
                "peer": peer,
                "seconds": round(loop.time() - started, 3),
                "reason": coordinator.reason,
            },
        )
        return ok

    def _udp_punch(self, address: str) -> None:
        """A datagram from our UDP port to ``address``: our NAT lets its answers in."""
        if self.quic is None:
            return
        try:
            self.quic.punch(*parse_hostport(address))
        except (InvalidArgument, OSError) as exc:
            log.debug("UDP punch not sent", extra={"address": address, "error": str(exc)})

    async def _dial_quic(
        self, peer: str, address: str, rtt: float | None, deadline: float | None
    ) -> None:
        """A QUIC handshake to ``address`` (both ends dial: only one may reach the other;
        if both do, the duplicate is settled like a simultaneous TCP dial). It retries on
        its own until ``deadline``."""
        if self.quic is None:
            return
        loop = asyncio.get_running_loop()
        timeout = max(0.5, (deadline or loop.time() + 3.0) - loop.time())
        host, port = parse_hostport(address)
        try:
            await self.quic.connect(
                host,
                port,
                lambda: self.node._new_connection(outbound=True, expected=peer),
                timeout=timeout,
            )
        except SwarmlinkError as exc:
            log.debug("QUIC punch failed", extra={"address": address, "error": str(exc)})

    async def _dial(
        self, peer: str, address: str, rtt: float | None, deadline: float | None = None
    ) -> None:
        """One TCP dial from the listening port; a verified session registers itself."""
        if not self.tcp:
            return
        host, port = parse_hostport(address)
        log.debug("punch dial", extra={"address": address})
        wait = min(MAX_ROLE_WAIT, 0.25 + 2 * (rtt or 0.1))
        try:
            sock = await connect_tcp(
                host,
                port,
                local=dial_from(self.node),
                timeout=1.0 + 3 * (rtt or 0.1),
                require_local=True,
            )
        except (OSError, TimeoutError) as exc:
            log.debug("punch dial failed", extra={"address": address, "error": str(exc)})
            return
        try:
            client = self.node.agent_id < peer or not await peer_speaks_first(sock, wait)
        except OSError as exc:
            log.debug("punched socket closed", extra={"address": address, "error": str(exc)})
            sock.close()
            return
        log.debug("punched socket", extra={"address": address, "reason": f"client={client}"})
        try:
            await secure(self.node, sock, peer, client=client, what=address)
        except SwarmlinkError as exc:
            log.debug("punched connection failed", extra={"address": address, "error": str(exc)})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

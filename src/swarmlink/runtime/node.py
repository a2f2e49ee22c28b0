"""The in-process node: listener, dialer, connection table, trust, services.

This is the asyncio layer. Protocol decisions live in the sans-I/O cores
(:mod:`swarmlink.session`, :mod:`swarmlink.trust`); this module owns sockets, tasks,
timers and the database, and wires the cores together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ..dht import DHT_PROTOCOL
from ..errors import (
    ErrorCode,
    InvalidArgument,
    NetworkError,
    NotFound,
    RemoteError,
    StateError,
    StreamRefused,
    SwarmlinkError,
    VerificationFailed,
)
from ..identity import KeyStore, PeerIdentity, make_ssl_context, validate_agent_id
from ..session import SessionConfig
from ..storage import Database
from ..trust import TRUST_PROTOCOL, TrustBook
from ..wire.address import format_hostport
from . import _info
from . import events as ev
from ._addresses import advertised_addresses
from ._connection import PeerConnection
from ._dhtsvc import DhtService
from ._dialer import dial, known_addresses, remember_peer
from ._gossipstate import SharedState
from ._gossipsvc import GossipService
from ._mdns import MdnsDiscovery
from ._natsvc import AUTONAT_PROTOCOL, IDENTIFY_PROTOCOL, NatService
from ._punchsvc import PUNCH_PROTOCOL, PunchService, path_rank
from ._relaysvc import RELAY_PROTOCOL, RelayService
from ._services import Services
from ._sockets import REUSE_PORT, check_port_free
from ._stream import Stream
from ._subscription import CLOSED, EventSubscription
from ._trustsvc import TrustService
from ._tun import TunService
from .config import NodeConfig, parse_hostport, parse_target
from .model import (
    BenchResult,
    Exposure,
    FileReceipt,
    Forward,
    InboxMessage,
    NodeStatus,
    PeerInfo,
    PendingTrust,
    PingResult,
    SendReceipt,
    TrustedPeer,
)

__all__ = ["EventSubscription", "Handler", "Node", "NodeConfig", "Stream"]

log = logging.getLogger("swarmlink.node")

Handler = Callable[[Stream], Awaitable[None]]

#: Two connections to one peer established within this many seconds are a simultaneous
#: dial (resolved by agent ID); a later one replaces the older (the peer lost it).
SIMULTANEOUS_DIAL_WINDOW = 2.0
#: Concurrent streams a peer may open on one session (each may buffer up to one window).
MAX_STREAMS_PER_PEER = 256
#: Stream protocols any authenticated agent may open (everything else needs trust).
PUBLIC_PROTOCOLS = frozenset(
    {
        TRUST_PROTOCOL,
        DHT_PROTOCOL,
        IDENTIFY_PROTOCOL,
        AUTONAT_PROTOCOL,
        RELAY_PROTOCOL,
        PUNCH_PROTOCOL,
    }
)
#: Seconds ``close()`` waits for sessions to finish their TLS shutdown before cutting them.
CLOSE_GRACE = 1.0
#: Concurrent TLS sessions (verified or not) a node carries; more are refused at once.
MAX_CONNECTIONS = 1024


class Node:
    """A swarmlink node running inside this process's asyncio loop.

    Start one with ``node = await Node.start(NodeConfig(home=...))`` (or ``async with``),
    stop it with ``await node.close()``.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.home = config.home
        self._started = time.time()
        self._loop = asyncio.get_running_loop()
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.keystore = KeyStore(self.home)
        self.identity, self.operational = self.keystore.load_or_create(
            now=time.time(), lifetime=config.operational_key_lifetime
        )
        self.agent_id: str = self.identity.agent_id
        self.db = Database(self.home / "node.db")
        self.trust = TrustBook(self.identity, self.db)
        cert_file, key_file = self.keystore.tls_files
        self._server_ctx = make_ssl_context(server=True, cert_file=cert_file, key_file=key_file)
        self._client_ctx = make_ssl_context(server=False, cert_file=cert_file, key_file=key_file)
        self._session_config = SessionConfig(
            user_agent=config.user_agent,
            idle_timeout=config.idle_timeout,
            max_inbound_streams=MAX_STREAMS_PER_PEER,
            max_send_frame=256 * 1024,
            initial_window=4 * 1024 * 1024,
        )
        self._servers: list[asyncio.Server] = []
        self._conns: dict[str, PeerConnection] = {}
        #: Relayed sessions kept as fallback while a direct one carries new streams.
        self._fallback: dict[str, PeerConnection] = {}
        self._all_conns: set[PeerConnection] = set()
        self._live_conns: set[PeerConnection] = set()
        self._dialing: dict[str, asyncio.Future[PeerConnection]] = {}
        self._resolving: set[str] = set()  # dials in _dialing that may use the DHT
        self._handlers: dict[str, Handler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: set[asyncio.Queue[ev.NodeEvent]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closing = False
        self._released = asyncio.Event()  # set whenever no session is left
        self.services = Services(self)
        self._trustsvc = TrustService(self)
        self.dht = DhtService(self)
        self.gossip = GossipService(self)
        self.nat = NatService(self)
        self.relay = RelayService(self)
        self.punch = PunchService(self)
        self._mdns: MdnsDiscovery | None = None
        self.tun: TunService | None = None  # up --tun

    # ---- lifecycle --------------------------------------------------------------------

    @classmethod
    async def start(cls, config: NodeConfig) -> Node:
        node = cls(config)
        try:
            await node._listen()
            await node.services.start()
            node.dht.start()
            node.gossip.start()
            node.nat.start()
            node.relay.start()
            await node.punch.start()
            node.relay.start_reservations()
            if config.mdns:
                await node._start_mdns()
            if config.tun is not None:
                node.tun = TunService(node, config.tun)
                node.tun.start()
        except BaseException:
            await node.close()
            raise
        node._resume_deliveries()
        log.info(
            "node started",
            extra={"agent_id": node.agent_id, "listen": list(node.listen_addresses)},
        )
        return node

    async def __aenter__(self) -> Node:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _listen(self) -> None:
        for host, port in self.config.listen:
            try:
                check_port_free(host, port)  # SO_REUSEPORT must not hide a second daemon
                server = await self._loop.create_server(
                    lambda: PeerConnection(
                        self, outbound=False, session_config=self._session_config
                    ),
                    host,
                    port,
                    ssl=self._server_ctx,
                    ssl_handshake_timeout=self.config.connect_timeout,
                    reuse_address=True,
                    reuse_port=REUSE_PORT,  # dials leave from this port (see _sockets)
                )
            except OSError as exc:
                raise NetworkError(
                    f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from exc
            self._servers.append(server)

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        out = []
        for server in self._servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append(format_hostport(host, port))
        return tuple(out)

    @property
    def listen_port(self) -> int:
        """The first bound port (handy with ``--listen 127.0.0.1:0``)."""
        return int(self._servers[0].sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Close every session (GOAWAY), stop listening and services, close the database."""
        if self._closing:
            return
        self._closing = True
        await self.gossip.close()  # gossips our leave while sessions are still up
        for server in self._servers:
            server.close()
        self.punch.close()
        if self.tun is not None:
            self.tun.close()
        if self._mdns is not None:
            await self._mdns.close()
        await self.services.stop()
        for conn in list(self._all_conns):
            conn.close(ErrorCode.SHUTDOWN, "node shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        if self._live_conns:  # TLS close_notify exchanges still running: wait a little,
            with contextlib.suppress(TimeoutError):  # then cut: nothing outlives the node
                await asyncio.wait_for(self._released.wait(), CLOSE_GRACE)
        for conn in list(self._live_conns):
            if conn.transport is not None:
                conn.transport.abort()
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(CLOSED)
        self.dht.close()
        self.db.close()
        log.info("node stopped", extra={"agent_id": self.agent_id})

    async def _start_mdns(self) -> None:
        hosts = [parse_hostport(a)[0] for a in advertised_addresses(self)]
        self._mdns = MdnsDiscovery(
            self.agent_id, self.listen_port, self.dht.observe, addresses=hosts
        )
        try:
            await self._mdns.start()
        except Exception as exc:  # no multicast here: the node works without it
            log.warning("mDNS discovery is off", extra={"error": str(exc)})
            self._mdns = None

    def _resume_deliveries(self) -> None:
        """After a restart, push what we still owe peers (trust answers, messages)."""
        peers = set(self.trust.outbox_peers())
        peers |= {
            r[0]
            for r in self.db.query("SELECT DISTINCT recipient FROM outbox WHERE delivered IS NULL")
        }
        for peer in peers:
            if self._known_addresses(peer):
                self.spawn(self._resume(peer), name=f"resume:{peer[:12]}")

    async def _resume(self, peer: str) -> None:
        await self._trustsvc.deliver(peer, dial=True)
        await self._deliver_messages(peer, dial=True)

    def spawn(self, coro: Awaitable[Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run a background task owned by the node (cancelled on close, errors logged)."""

        async def runner() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except SwarmlinkError as exc:
                log.info("background task failed", extra={"task": name, "error": str(exc)})
            except Exception:
                log.exception("background task crashed", extra={"task": name})

        task = self._loop.create_task(runner(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if asyncio.iscoroutine(coro):
            # Cancelled before its first step (the node closed): close it, never awaited.
            task.add_done_callback(lambda _: coro.close())
        return task

    def _lock(self, kind: str, peer: str) -> asyncio.Lock:
        return self._locks.setdefault((kind, peer), asyncio.Lock())

    # ---- events -------------------------------------------------------------------------

    def publish(self, event: ev.NodeEvent) -> None:
        log.info(event.type, extra={"event": event.to_json()})
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # drop the oldest for a slow subscriber
            queue.put_nowait(event)

    def subscribe(self) -> EventSubscription:
        """Every node event from this call on (``async for event in node.subscribe()``).

        The subscription is registered immediately, so nothing published after this
        call is missed; it ends when the node closes or ``close()`` is called.
        """
        return EventSubscription(self._subscribers)

    # ---- connections --------------------------------------------------------------------

    def _admit(self, conn: PeerConnection) -> None:
        """A TLS session started: count it, refusing past :data:`MAX_CONNECTIONS`."""
        if len(self._live_conns) >= MAX_CONNECTIONS or self._closing:
            raise StreamRefused(
                f"node {self.agent_id[:12]} carries {len(self._live_conns)} sessions already",
                ErrorCode.REFUSED,
            )
        self._live_conns.add(conn)
        self._released.clear()

    def _release(self, conn: PeerConnection) -> None:
        self._live_conns.discard(conn)
        if not self._live_conns:
            self._released.set()

    def _check_peer_certificate(self, identity: PeerIdentity) -> None:
        """Called for every new connection once the TLS certificate verified."""
        if identity.agent_id == self.agent_id:
            raise VerificationFailed("that address is this node itself", ErrorCode.REFUSED)
        row = self.db.query_one(
            "SELECT max_cert_serial FROM peers WHERE agent_id = ?", (identity.agent_id,)
        )
        if row is not None and identity.certificate.serial < int(row[0]):
            raise VerificationFailed(
                f"peer {identity.agent_id[:12]} presented operational key #"
                f"{identity.certificate.serial}, but key #{row[0]} replaced it already "
                "(the old key was rotated out)"
            )

    def _on_connection_ready(self, conn: PeerConnection) -> None:
        """Handshake done and identity verified: register, resolving duplicates."""
        peer = conn.agent_id
        self._all_conns.add(conn)
        existing = self._conns.get(peer)
        winner = conn
        if existing is not None and not existing.closed and existing is not conn:
            if path_rank(existing) != path_rank(conn):
                self.punch.second_path(existing, conn)  # direct in front, relay behind
                return
            simultaneous = abs(conn.established_at - existing.established_at) < (
                SIMULTANEOUS_DIAL_WINDOW
            )
            if simultaneous:
                # Keep the connection dialed by the smaller agent ID: both ends agree.
                def dialer(c: PeerConnection) -> str:
                    return self.agent_id if c.outbound else peer

                winner = min((existing, conn), key=lambda c: (dialer(c), c.outbound))
            loser = existing if winner is conn else conn
            self._conns[peer] = winner
            if not winner.ready.done():
                winner.ready.set_result(winner)
            if not loser.ready.done():
                loser.ready.set_result(winner)
            loser.close(ErrorCode.DUPLICATE_CONNECTION, "duplicate connection")
            if winner is existing:
                return
        else:
            self._conns[peer] = conn
            conn.ready.set_result(conn)
        self._remember_peer(conn)
        self.publish(
            ev.PeerConnected(agent_id=peer, address=conn.address, direction=conn.direction)
        )
        self.nat.connection_ready(conn)
        self.punch.relayed(conn)  # a relayed session tries to become direct
        self.spawn(self._deliver_all(peer), name=f"deliver:{peer[:12]}")

    def _on_connection_closed(self, conn: PeerConnection) -> None:
        self._all_conns.discard(conn)
        if conn.identity is None:
            return
        peer = conn.agent_id
        if self._fallback.get(peer) is conn:
            del self._fallback[peer]
        elif self._conns.get(peer) is conn:
            del self._conns[peer]
            if self.punch.fall_back(conn):
                return  # the relayed session carries on
            self.relay.connection_closed(peer)  # only when no session with it remains
            if conn.close_code != ErrorCode.DUPLICATE_CONNECTION:
                code = conn.close_code or ErrorCode.NO_ERROR
                self.publish(
                    ev.PeerDisconnected(
                        agent_id=peer, code=code.name.lower(), reason=conn.close_reason
                    )
                )

    def _remember_peer(self, conn: PeerConnection, dialed: str | None = None) -> None:
        remember_peer(self, conn, dialed)

    def _known_addresses(self, agent_id: str) -> list[str]:
        return known_addresses(self, agent_id)

    def _new_connection(
        self, *, outbound: bool, expected: str | None = None, via: str | None = None
    ) -> PeerConnection:
        conn = PeerConnection(
            self, outbound=outbound, expected_agent=expected, session_config=self._session_config
        )
        conn.via = via
        return conn

    async def _dial(self, agent_id: str, host: str, port: int) -> PeerConnection:
        return await dial(self, agent_id, host, port)

    async def connect(self, target: str) -> PeerInfo:
        """Dial ``AGENT@HOST:PORT``; the peer must prove it holds AGENT's identity key."""
        agent_id, host, port = parse_target(target)
        conn = self._conns.get(agent_id)
        address = format_hostport(host, port)
        if conn is None or conn.closed:
            conn = await self._dial(agent_id, host, port)
        else:
            self._remember_peer(conn, dialed=address)
        self.dht.observe(agent_id, [address])
        return self._peer_info(agent_id)

    async def connection(
        self, agent_id: str, *, hints: Sequence[str] = (), resolve: bool = True
    ) -> PeerConnection:
        """The live session with ``agent_id``: an open one, else dial ``hints`` and the
        remembered addresses, else (``resolve``) look the agent up in the DHT and dial
        the addresses its signed record lists. TLS proves the identity every time."""
        agent_id = validate_agent_id(agent_id)
        if self._closing:
            raise StateError("node is shutting down")
        conn = self._conns.get(agent_id)
        if conn is not None and not conn.closed:
            return conn
        pending = self._dialing.get(agent_id)
        if pending is not None and resolve:
            thorough = agent_id in self._resolving
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are cancelled ourselves
            except SwarmlinkError:
                if thorough:
                    raise
            # The dial we waited for was abandoned by its caller (a timeout) or did not
            # look in the DHT (a DHT query's dial): our own.
            return await self.connection(agent_id, hints=hints, resolve=resolve)
        if pending is not None:
            # A DHT query to an agent we are resolving right now: dial it directly (a
            # duplicate session, if any, is settled like a simultaneous dial).
            conn = await self._attempt(agent_id, hints, set(), [])
            if conn is None:
                raise NetworkError(f"cannot reach agent {agent_id[:12]} at {list(hints)}")
            return conn
        fut: asyncio.Future[PeerConnection] = self._loop.create_future()
        self._dialing[agent_id] = fut
        if resolve:
            self._resolving.add(agent_id)
        errors: list[str] = []
        tried: set[str] = set()

        async def attempt(addresses: Sequence[str]) -> PeerConnection | None:
            return await self._attempt(agent_id, addresses, tried, errors)

        try:
            conn = await attempt([*hints, *self._known_addresses(agent_id)])
            if conn is None and resolve:
                try:
                    record = await self.dht.resolve(agent_id, fresh=bool(tried))
                except NotFound as exc:
                    if not tried:
                        raise NotFound(
                            f"no known address for agent {agent_id}: {exc}; or connect once "
                            f"with `swarmlink connect {agent_id}@HOST:PORT`"
                        ) from None
                    errors.append(str(exc))
                else:
                    conn = await self.relay.reach(record, attempt, errors)
            if conn is not None:
                fut.set_result(conn)
                return conn
            if not tried:
                raise NotFound(
                    f"no known address for agent {agent_id}; connect once with "
                    f"`swarmlink connect {agent_id}@HOST:PORT`"
                )
            raise NetworkError(f"cannot reach agent {agent_id[:12]}: " + "; ".join(errors))
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # waiters see it; nobody else has to retrieve it
            raise
        finally:
            if not fut.done():
                fut.cancel()
            self._dialing.pop(agent_id, None)
            self._resolving.discard(agent_id)

    async def _attempt(
        self, agent_id: str, addresses: Sequence[str], tried: set[str], errors: list[str]
    ) -> PeerConnection | None:
        """Dial ``addresses`` in order (skipping ``tried``); the first session wins."""
        for address in addresses:
            if address in tried:
                continue
            tried.add(address)
            host, port = parse_hostport(address)
            try:
                return await self._dial(agent_id, host, port)
            except (NetworkError, RemoteError) as exc:
                errors.append(f"{address}: {exc}")
        return None

    async def disconnect(self, agent_id: str) -> int:
        """Close every session with ``agent_id`` (direct and relayed); how many there were.
        A later dial starts afresh (and trust, records, addresses are kept)."""
        agent_id = validate_agent_id(agent_id)
        self._fallback.pop(agent_id, None)  # closing: no path may take over
        conns = [c for c in self._all_conns if c.identity and c.agent_id == agent_id]
        for conn in conns:
            conn.close(ErrorCode.NO_ERROR, "disconnected by the local user")
        for conn in conns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.closed_event.wait(), self.config.connect_timeout)
        return len(conns)

    def connected(self, agent_id: str) -> PeerConnection | None:
        conn = self._conns.get(agent_id)
        return conn if conn is not None and not conn.closed else None

    # ---- streams --------------------------------------------------------------------------

    def set_handler(self, protocol: str, handler: Handler | None) -> None:
        """Serve streams that trusted peers open with ``protocol`` (None removes it)."""
        if not protocol or len(protocol) > 128 or not protocol.isprintable():
            raise InvalidArgument(f"bad protocol name {protocol!r}")
        if handler is None:
            self._handlers.pop(protocol, None)
        else:
            self._handlers[protocol] = handler

    async def open_stream(self, agent_id: str, protocol: str) -> Stream:
        """Open a stream to a peer (dialing if needed). A refusal surfaces on read/drain."""
        conn = await self.connection(agent_id)
        return conn.open_stream(protocol)

    def _on_stream_opened(self, conn: PeerConnection, stream_id: int, protocol: str) -> None:
        session = conn.session
        assert session is not None
        peer = conn.agent_id
        if protocol not in PUBLIC_PROTOCOLS and not self.trust.is_trusted(peer):
            session.reset_stream(
                stream_id,
                ErrorCode.NOT_TRUSTED,
                f"agent {self.agent_id[:12]} does not trust you; ask first with "
                f"`swarmlink trust request {self.agent_id}`",
            )
            log.info(
                "refused stream from untrusted peer", extra={"peer": peer, "protocol": protocol}
            )
            return
        handler = self._handlers.get(protocol)
        if handler is None:
            session.reset_stream(
                stream_id, ErrorCode.UNKNOWN_PROTOCOL, f"no handler for protocol {protocol}"
            )
            return
        session.accept_stream(stream_id)
        stream = Stream(conn, stream_id, protocol, peer, outbound=False)
        conn.streams[stream_id] = stream
        self.spawn(self._run_handler(handler, stream), name=f"handler:{protocol}")

    async def _run_handler(self, handler: Handler, stream: Stream) -> None:
        try:
            await handler(stream)
        except RemoteError as exc:
            log.info(
                "stream handler ended by the peer",
                extra={"protocol": stream.protocol, "peer": stream.peer, "error": str(exc)},
            )
            stream.reset(exc.code, exc.reason[:200])
        except SwarmlinkError as exc:
            log.info(
                "stream handler failed", extra={"protocol": stream.protocol, "error": str(exc)}
            )
            stream.reset(ErrorCode.INTERNAL, str(exc)[:200])
        except Exception:
            log.exception("stream handler crashed", extra={"protocol": stream.protocol})
            stream.reset(ErrorCode.INTERNAL, "handler error")

    # ---- trust ------------------------------------------------------------------------------

    async def request_trust(self, agent_id: str, reason: str = "") -> str:
        """Ask ``agent_id`` for mutual trust; "trusted", "requested" (delivered) or "queued"."""
        peer = validate_agent_id(agent_id)
        state = await self._trustsvc.command(peer, self.trust.request(peer, reason, time.time()))
        return "trusted" if state == "trusted" else ("requested" if state == "sent" else state)

    async def approve_trust(self, agent_id: str) -> str:
        """Approve a pending request: trust holds both ways once the peer hears it."""
        peer = validate_agent_id(agent_id)
        await self._trustsvc.command(peer, self.trust.approve(peer, time.time()))
        return "trusted"

    async def reject_trust(self, agent_id: str) -> str:
        peer = validate_agent_id(agent_id)
        await self._trustsvc.command(peer, self.trust.reject(peer, time.time()))
        return "rejected"

    async def revoke_trust(self, agent_id: str) -> str:
        """Drop trust both ways; open streams with the peer are reset at once."""
        peer = validate_agent_id(agent_id)
        await self._trustsvc.command(peer, self.trust.revoke(peer, time.time()))
        return "revoked"

    def pending_trust(self) -> list[PendingTrust]:
        return list(self.trust.pending())

    def trusted_peers(self) -> list[TrustedPeer]:
        return list(self.trust.trusted())

    async def _deliver_all(self, peer: str) -> None:
        """A session came up: push queued trust messages, then queued chat messages."""
        await self._trustsvc.deliver(peer)
        await self._deliver_messages(peer)

    # ---- messages ----------------------------------------------------------------------------

    async def send_message(self, agent_id: str, text: str) -> SendReceipt:
        """Store a message in the durable outbox and push it if the peer is reachable."""
        peer = validate_agent_id(agent_id)
        size = len(text.encode("utf-8"))
        if size > self.config.max_message_size:
            raise InvalidArgument(
                f"message is {size} bytes; the limit is {self.config.max_message_size}"
            )
        if not self.trust.is_trusted(peer):
            raise StateError(
                f"no trust with {peer}; messages need mutual trust: "
                f"`swarmlink trust request {peer}`"
            )
        with self.db.transaction():
            row = self.db.query_one(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox WHERE recipient = ?", (peer,)
            )
            seq = int(row[0]) if row is not None else 1
            self.db.execute(
                "INSERT INTO outbox (recipient, seq, created, body) VALUES (?, ?, ?, ?)",
                (peer, seq, time.time(), text),
            )
        await self._deliver_messages(peer, dial=True)
        row = self.db.query_one(
            "SELECT delivered FROM outbox WHERE recipient = ? AND seq = ?", (peer, seq)
        )
        return SendReceipt(
            recipient=peer, seq=seq, delivered=row is not None and row[0] is not None
        )

    async def _deliver_messages(self, peer: str, *, dial: bool = False) -> None:
        await self.services.deliver_messages(peer, dial=dial)

    def inbox(
        self, *, sender: str | None = None, after: int = 0, limit: int = 100
    ) -> list[InboxMessage]:
        if limit < 1 or limit > 10_000:
            raise InvalidArgument("limit must be between 1 and 10000")
        sql = "SELECT id, sender, seq, sent_at, received_at, body FROM inbox WHERE id > ?"
        params: list[Any] = [after]
        if sender:
            sql += " AND sender = ?"
            params.append(validate_agent_id(sender))
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [
            InboxMessage(id=r[0], sender=r[1], seq=r[2], sent_at=r[3], received_at=r[4], text=r[5])
            for r in self.db.query(sql, params)
        ]

    # ---- files, tunnels, bench (see _services) -----------------------------------------------

    async def send_file(
        self, agent_id: str, path: str, on_progress: Callable[[int, int], None] | None = None
    ) -> FileReceipt:
        return await self.services.send_file(validate_agent_id(agent_id), Path(path), on_progress)

    def received_files(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.db.query(
                "SELECT id, sender, name, path, size, sha256, received_at FROM files ORDER BY id"
            )
        ]

    def expose(self, port: int, *, name: str | None = None, allow: Sequence[str] = ()) -> Exposure:
        return self.services.expose(port, name=name, allow=[validate_agent_id(a) for a in allow])

    def unexpose(self, port: int) -> None:
        self.services.unexpose(port)

    def exposures(self) -> list[Exposure]:
        return self.services.exposures()

    async def forward(
        self, local_port: int, agent_id: str, remote: int | str, *, bind_host: str = "127.0.0.1"
    ) -> Forward:
        return await self.services.add_forward(
            bind_host, local_port, validate_agent_id(agent_id), remote
        )

    async def unforward(self, forward_id: int) -> None:
        await self.services.remove_forward(forward_id)

    def forwards(self) -> list[Forward]:
        return self.services.forwards()

    async def bench(self, agent_id: str, *, size: int = 64 * 1024 * 1024) -> BenchResult:
        return await self.services.bench(validate_agent_id(agent_id), size)

    # ---- ping, status, peers, keys -------------------------------------------------------------

    async def ping(
        self,
        agent_id: str,
        count: int = 1,
        interval: float = 1.0,
        on_reply: Callable[[int, float | None], None] | None = None,
        *,
        timeout: float = 5.0,
    ) -> PingResult:
        """Session-level PING round trips (works before trust: it is keepalive traffic)."""
        return await _info.ping(self, agent_id, count, interval, on_reply, timeout=timeout)

    def status(self) -> NodeStatus:
        return _info.node_status(self)

    def identity_info(self) -> dict[str, Any]:
        return _info.identity_info(self)

    def _peer_info(self, agent_id: str) -> PeerInfo:
        return _info.peer_info(self, agent_id)

    def peers(self) -> list[PeerInfo]:
        """Connected, trusted and remembered peers."""
        return _info.peers(self)

    def state(self, name: str) -> SharedState:
        """The replicated state ``name`` (CRDTs kept in sync by gossip; see docs)."""
        return self.gossip.state(name)

    def rotate_key(self) -> dict[str, Any]:
        """Replace the operational key; the agent ID, address and trust stay the same."""
        self.operational = self.keystore.rotate(
            now=time.time(), lifetime=self.config.operational_key_lifetime
        )
        cert_file, key_file = self.keystore.tls_files
        # New handshakes on these contexts present the new certificate.
        self._server_ctx.load_cert_chain(cert_file, key_file)
        self._client_ctx.load_cert_chain(cert_file, key_file)
        self.punch.load_certificate()
        log.info("operational key rotated", extra={"serial": self.operational.certificate.serial})
        self.dht.schedule_publish()  # our record carries the operational certificate
        return self.identity_info()

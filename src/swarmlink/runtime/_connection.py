"""asyncio glue for one TLS connection: feed bytes into the Session core, drain events,
write what it produced, keep its timer armed. No protocol logic lives here."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, cast

from ..errors import (
    CertificateExpired,
    ConnectionClosed,
    ErrorCode,
    RemoteError,
    VerificationFailed,
    VersionMismatch,
)
from ..identity import PeerIdentity, verify_peer_certificate
from ..session import (
    ConnectionTerminated,
    DataReceived,
    HandshakeCompleted,
    PingAcknowledged,
    Session,
    SessionConfig,
    StreamAccepted,
    StreamClosed,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from ..wire.address import format_hostport
from ._stream import Stream

if TYPE_CHECKING:
    from .node import Node

__all__ = ["HIGH_WATER", "PeerConnection", "error_for_code"]

log = logging.getLogger("swarmlink.connection")

#: Bytes kept from before ``connection_made`` (see ``PeerConnection._early``).
MAX_EARLY_BYTES = 1024 * 1024
#: A stream counts as congested (``drain`` waits) above this many queued bytes.
HIGH_WATER = 256 * 1024

#: Bytes a session may hold received-but-unread across all its streams. Flow control bounds
#: each stream by its window; this bounds their sum (a handler that never reads cannot make
#: a peer park 256 windows here). Past it, the stream holding the most is reset.
MAX_SESSION_UNREAD = 64 * 1024 * 1024

#: asyncio's TLS transport (CPython 3.11) preallocates a 256 KiB socket read buffer per
#: connection (``SSLProtocol.max_size``): 25 MiB for 100 idle peers. Each connection starts
#: with :data:`SSL_IDLE_BUFFER` and gets :data:`SSL_BULK_BUFFER` back once it carries bulk
#: data (big reads are what make TLS fast in Python). Best effort: other Pythons that lack
#: these attributes keep their own behaviour.
SSL_IDLE_BUFFER = 32 * 1024
SSL_BULK_BUFFER = 256 * 1024

#: Plaintext read buffer of an idle connection (bytes). The TLS layer decrypts straight
#: into it (:class:`asyncio.BufferedProtocol`): no per-record bytes object (asyncio's
#: copying path allocates ``max_size`` bytes for every 16 KiB record, which halved the
#: decryption rate). It grows to :data:`SSL_BULK_BUFFER` together with the socket buffer.
READ_IDLE_BUFFER = 4 * 1024


def _ssl_protocol(transport: asyncio.BaseTransport) -> Any:
    proto = getattr(transport, "_ssl_protocol", None)
    if proto is None or not hasattr(proto, "max_size") or not hasattr(proto, "_ssl_buffer"):
        return None
    return proto


def _set_ssl_buffer(proto: Any, size: int) -> None:
    proto.max_size = size
    proto._ssl_buffer = bytearray(size)
    proto._ssl_buffer_view = memoryview(proto._ssl_buffer)


def error_for_code(code: ErrorCode, reason: str) -> RemoteError:
    """The exception that best describes a session ended with ``code``."""
    if code in (ErrorCode.AUTH_FAILED, ErrorCode.AGENT_MISMATCH):
        return VerificationFailed(reason, code)
    if code == ErrorCode.CERT_EXPIRED:
        return CertificateExpired(reason, code)
    if code == ErrorCode.VERSION_MISMATCH:
        return VersionMismatch(reason, code)
    return ConnectionClosed(reason, code)


class PeerConnection(asyncio.Protocol, asyncio.BufferedProtocol):
    """One verified TLS connection to a peer, carrying a multiplexed :class:`Session`.

    Both kinds of protocol: TLS transports fill :meth:`get_buffer` (no copy per record),
    transports that only know :meth:`data_received` (QUIC) call that.
    """

    def __init__(
        self,
        node: Node,
        *,
        outbound: bool,
        expected_agent: str | None = None,
        session_config: SessionConfig,
    ) -> None:
        self.node = node
        self.outbound = outbound
        self.expected_agent = expected_agent
        self._session_config = session_config
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._ssl_proto: Any = None
        self._rview = memoryview(bytearray(READ_IDLE_BUFFER))
        self.session: Session | None = None
        self.identity: PeerIdentity | None = None
        self.address = ""  # the peer's address as we see it
        self.local_address = ""  # our end of the connection
        self.via: str | None = None  # the relay carrying this session, if relayed
        self.streams: dict[int, Stream] = {}
        self.ready: asyncio.Future[PeerConnection] = self._loop.create_future()
        self.closed = False
        self.rtt: float | None = None
        self.user_agent: str | None = None
        self.established_at = 0.0
        self.last_activity = 0.0
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._unread = 0
        self.closed_event = asyncio.Event()  # set once the session ended
        # Bytes that arrived before connection_made (a TLS started with start_tls delivers
        # the peer's first records before our code resumes): replayed once it runs.
        self._early: list[bytes] = []
        self.close_code: ErrorCode | None = None
        self.close_reason = ""

    # ---- identity -----------------------------------------------------------------

    @property
    def agent_id(self) -> str:
        assert self.identity is not None
        return self.identity.agent_id

    @property
    def direction(self) -> str:
        return "outbound" if self.outbound else "inbound"

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport, so no isinstance).
        transport = self.transport = cast(asyncio.Transport, base)
        self._ssl_proto = _ssl_protocol(transport)
        if self._ssl_proto is not None:
            _set_ssl_buffer(self._ssl_proto, SSL_IDLE_BUFFER)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self.address = format_hostport(peername[0], peername[1])
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple):
            self.local_address = format_hostport(sockname[0], sockname[1])
        now = self._loop.time()
        self.last_activity = now
        self.session = Session(is_client=self.outbound, config=self._session_config, now=now)
        try:
            self.node._admit(self)
            self.identity = self._verify_peer(transport)
            self.node._check_peer_certificate(self.identity)
        except RemoteError as exc:
            log.warning(
                "rejected peer certificate",
                extra={"address": self.address, "code": exc.code.name, "reason": exc.reason},
            )
            self._fail_ready(exc)
            self.session.close(
                exc.code, f"certificate rejected by {self.node.agent_id}: {exc.reason}"
            )
            self._flush()
            self._process_events()
            self._close_transport()
            return
        self._flush()
        self._process_events()
        early, self._early = self._early, []
        for chunk in early:
            self.data_received(chunk)

    def _verify_peer(self, transport: asyncio.Transport) -> PeerIdentity:
        peercert = transport.get_extra_info("peercert")
        if isinstance(peercert, bytes):  # QUIC: its TLS handshake proved the key (DER)
            der: bytes | None = peercert
        else:  # TLS over TCP ("peercert" is ssl's dict there)
            ssl_object = transport.get_extra_info("ssl_object")
            if not isinstance(ssl_object, ssl.SSLObject):
                raise VerificationFailed("connection is not TLS")
            der = ssl_object.getpeercert(binary_form=True)
        if not der:
            raise VerificationFailed("peer presented no certificate")
        return verify_peer_certificate(der, now=time.time(), expected_agent_id=self.expected_agent)

    def get_buffer(self, sizehint: int) -> memoryview:
        if sizehint >= SSL_IDLE_BUFFER // 2 and len(self._rview) < SSL_BULK_BUFFER:
            self._go_bulk()
        return self._rview

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._rview[:nbytes])

    def _go_bulk(self) -> None:
        """Bulk traffic: read big (TLS socket reads and our plaintext reads)."""
        if len(self._rview) < SSL_BULK_BUFFER:
            self._rview = memoryview(bytearray(SSL_BULK_BUFFER))
        if self._ssl_proto is not None:
            _set_ssl_buffer(self._ssl_proto, SSL_BULK_BUFFER)
            self._ssl_proto = None

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from the peer (``data`` is only valid during the call)."""
        session = self.session
        if session is None:
            if sum(map(len, self._early)) < MAX_EARLY_BYTES:
                self._early.append(bytes(data))
            return
        if len(data) >= SSL_IDLE_BUFFER // 2 and self._ssl_proto is not None:
            self._go_bulk()
        now = self._loop.time()
        self.last_activity = now
        session.receive_data(data, now)
        self._process_events()
        self._flush()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.node._release(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.session is not None:
            self.session.connection_lost(self._loop.time())
            self._process_events()
        self._finish(
            ErrorCode.NO_ERROR, "connection lost" if exc is None else f"connection lost: {exc}"
        )

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    # ---- commands used by streams and the node ---------------------------------------

    def _flush(self) -> None:
        session, transport = self.session, self.transport
        if session is None or transport is None:
            return
        pieces = session.data_to_send_pieces()
        if pieces and not transport.is_closing():
            if len(pieces) == 1:
                transport.write(pieces[0])
            else:
                transport.writelines(pieces)  # TLS encrypts each piece, no join
        self._arm_timer()

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        assert self.session is not None
        self.session.send_data(stream_id, data, end_stream)
        self._flush()

    def acknowledge(self, stream_id: int, n: int) -> None:
        self._unread = max(0, self._unread - n)
        if self.session is None or self.closed:
            return
        self.session.acknowledge_received(stream_id, n)
        self._flush()

    def reset_stream(self, stream_id: int, code: ErrorCode, reason: str) -> None:
        if self.session is None or self.closed:
            return
        self.session.reset_stream(stream_id, code, reason)
        self.streams.pop(stream_id, None)
        self._flush()

    def is_congested(self, stream_id: int) -> bool:
        if self._paused:
            return True
        assert self.session is not None
        return self.session.buffered_amount(stream_id) > HIGH_WATER

    def _shed_unread(self) -> None:
        """Over :data:`MAX_SESSION_UNREAD`: reset the streams whose readers lag the most."""
        # The running count is an upper bound (reset streams leave it); recount exactly.
        self._unread = sum(st.unread for st in self.streams.values())
        while self._unread > MAX_SESSION_UNREAD and self.streams:
            victim = max(self.streams.values(), key=lambda st: st.unread)
            self._unread -= victim.unread
            log.warning(
                "resetting a stream nobody reads",
                extra={"peer": self.address, "protocol": victim.protocol, "unread": victim.unread},
            )
            victim.discard_unread()
            victim.reset(ErrorCode.FLOW_CONTROL, "the receiving application is not reading")

    def add_drain_waiter(self, fut: asyncio.Future[None]) -> None:
        self._drain_waiters.append(fut)

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def open_stream(self, protocol: str) -> Stream:
        """Open a stream (optimistically: data may follow before the peer accepts)."""
        if self.closed or self.session is None:
            raise ConnectionClosed(f"session with {self.agent_id[:12]} is closed")
        stream_id = self.session.open_stream(protocol)
        stream = Stream(self, stream_id, protocol, self.agent_id, outbound=True)
        self.streams[stream_id] = stream
        self._flush()
        return stream

    async def ping(self, timeout: float) -> float | None:
        """Session-level PING; the RTT in seconds, or None on timeout."""
        if self.closed or self.session is None:
            raise ConnectionClosed(f"session with {self.agent_id[:12]} is closed")
        ping_id = self.session.send_ping(self._loop.time())
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[ping_id] = fut
        self._flush()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            self._pings.pop(ping_id, None)

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Send GOAWAY, end every stream, and close the transport once flushed."""
        if self.session is not None and not self.closed:
            self.session.close(code, reason)
            self._process_events()
            self._flush()
        self._close_transport()

    # ---- events ---------------------------------------------------------------------

    def _process_events(self) -> None:
        session = self.session
        assert session is not None
        while (event := session.next_event()) is not None:
            if isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_data(event.data, event.end_stream)
                    self._unread += len(event.data)
                    if self._unread > MAX_SESSION_UNREAD:
                        self._shed_unread()
            elif isinstance(event, StreamWritable):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_writable()
                self._wake_drainers()
            elif isinstance(event, StreamOpened):
                self.node._on_stream_opened(self, event.stream_id, event.protocol)
            elif isinstance(event, StreamAccepted):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_accepted()
            elif isinstance(event, StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    stream._on_reset(event.code, event.reason, event.by_peer)
                self._wake_drainers()
            elif isinstance(event, StreamClosed):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, PingAcknowledged):
                self.rtt = event.rtt
                fut = self._pings.get(event.ping_id)
                if fut is not None and not fut.done():
                    fut.set_result(event.rtt)
            elif isinstance(event, HandshakeCompleted):
                self.user_agent = event.user_agent
                self.established_at = time.time()
                if self.identity is not None and not self.ready.done():
                    self.node._on_connection_ready(self)
            elif isinstance(event, ConnectionTerminated):
                reason = event.reason
                if event.by_peer:
                    reason = f"closed by peer: {reason}" if reason else "closed by peer"
                self._finish(event.code, reason)
                self._flush()
                self._close_transport()

    def _close_transport(self) -> None:
        """Close two loop turns from now: a dialer's ``create_connection`` resumes one turn
        after ``connection_made`` and still reads the transport (in debug mode)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._loop.call_soon(self._loop.call_soon, transport.close)

    def _fail_ready(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # mark retrieved: nobody may be waiting (inbound)

    def _finish(self, code: ErrorCode, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.closed_event.set()
        self.close_code, self.close_reason = code, reason
        self._fail_ready(error_for_code(code, reason or "connection closed"))
        err = error_for_code(code, reason or "connection closed")
        for stream in list(self.streams.values()):
            stream._on_reset(code, reason, True)
        self.streams.clear()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(err)
        self._wake_drainers()
        self.node._on_connection_closed(self)

    # ---- timers ---------------------------------------------------------------------

    def _arm_timer(self) -> None:
        session = self.session
        if session is None or self.closed:
            return
        when = session.get_timer()
        if when is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        # Only re-arm when the deadline moved earlier: a late wake-up is re-armed below.
        if self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        session = self.session
        if session is None or self.closed:
            return
        session.handle_timer(self._loop.time())
        self._process_events()
        self._flush()

    def info(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "direction": self.direction,
            "rtt": self.rtt,
            "streams": len(self.streams),
        }

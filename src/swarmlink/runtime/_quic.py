"""QUIC transport: swarmlink sessions over UDP, for NAT hole punching.

* A :class:`QuicEndpoint` owns one UDP socket (ours: hole punching sends its punches from
  the port QUIC uses) and drives aioquic's *sans-I/O* ``QuicConnection`` objects on it.
  Datagrams are demultiplexed by destination connection ID (every CID a connection
  issues is registered), then, for connections we dialed, by peer address. An unknown CID
  in an Initial (>= 1200 bytes) starts an inbound connection only if the endpoint accepts
  them and holds fewer than :data:`MAX_QUIC_CONNECTIONS`, and is forgotten at once if it
  does not decrypt. Other unknown datagrams (punches, noise, late packets) are dropped.
* A connection carries ONE bidirectional stream (:data:`QUIC_STREAM_ID`, opened by the
  client): a byte pipe that :class:`QuicStreamTransport` presents as an asyncio transport,
  so ``PeerConnection`` runs the session over it unchanged. Other streams are refused.
* I/O: datagrams are read in batches; each connection sends once per loop turn and keeps
  one ``call_at`` timer at ``get_timer()``. aioquic buffers stream data without limit, so
  the protocol is paused above :data:`SEND_HIGH_WATER` unacknowledged bytes. Receiving is
  bounded by QUIC flow control and, above it, by the session's own windows.
* TLS 1.3 is mutual. aioquic checks the peer's CertificateVerify against the key of the
  certificate presented on BOTH sides whatever ``verify_mode`` says (aioquic 1.7.2
  ``tls.py``: ``_check_certificate_verify_signature`` l.1525-1567, called by
  ``_client_handle_certificate_verify`` l.1803-1807 and ``_server_handle_certificate_verify``
  l.2179-2185); ``CERT_NONE`` skips only the X.509 chain check, a formality here (see
  :mod:`swarmlink.identity._tls`). So ``get_extra_info("peercert")`` is a proven DER
  certificate that ``PeerConnection._verify_peer`` binds to the agent ID as over TCP. A
  server refuses clients without certificate; a client counts as connected only once the
  handshake is confirmed (HANDSHAKE_DONE): only then did the server accept *its* certificate.
* ``close()`` sends FIN and closes the connection once all is acknowledged (at most after
  :data:`QUIC_CLOSE_LINGER`); ``abort()`` closes at once; ``connection_lost`` follows.

Not implemented: Retry (address validation beyond aioquic's anti-amplification limit),
version negotiation (unknown versions are dropped), stateless resets, PMTU discovery.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import InvalidArgument, LocalError, NetworkError
from ..identity import ALPN_PROTOCOL
from ..wire.address import format_hostport

__all__ = ["MAX_QUIC_CONNECTIONS", "PUNCH_PAYLOAD", "QuicEndpoint", "QuicStreamTransport"]

log = logging.getLogger("swarmlink.quic")

#: What :meth:`QuicEndpoint.punch` sends: a zero first byte is never QUIC (fixed bit).
PUNCH_PAYLOAD = b"\x00swarmlink-punch"
#: QUIC connections per endpoint, handshaking or not; beyond it Initials are dropped.
MAX_QUIC_CONNECTIONS = 256
#: The one stream a connection carries (the client's first bidirectional stream).
QUIC_STREAM_ID = 0
#: Length of the connection IDs we issue (bytes); short headers are parsed with it.
QUIC_CID_LENGTH = 8
#: Smallest datagram that may carry a client's Initial (RFC 9000 §14.1, bytes).
MIN_INITIAL_DATAGRAM = 1200
#: Largest UDP payload we send (bytes): Chromium's default, fits nearly every path
#: (aioquic has no PMTU discovery) and carries 12% more than the guaranteed 1200 bytes:
#: aioquic's cost is per packet.
QUIC_MAX_DATAGRAM_SIZE = 1350
#: Datagrams read per socket wake-up before the sends they cause run.
READ_BATCH = 64
#: Receive buffer per datagram: the largest UDP payload (bytes).
MAX_UDP_PAYLOAD = 65535
#: QUIC idle timeout (s); the session's keepalive PINGs (15 s) keep it and the NAT open.
QUIC_IDLE_TIMEOUT = 60.0
#: An inbound handshake must complete within this (s): spoofed Initials cannot hold slots.
QUIC_HANDSHAKE_TIMEOUT = 10.0
#: How long ``close()`` waits for the peer to acknowledge our last bytes (s).
QUIC_CLOSE_LINGER = 5.0
#: QUIC flow-control window granted to the peer per stream, and per connection (bytes).
QUIC_MAX_STREAM_DATA = QUIC_MAX_DATA = 2 * 1024 * 1024
#: Pause the protocol above this many unacknowledged stream bytes...
SEND_HIGH_WATER = 1024 * 1024
#: ...and resume it once no more than this many remain.
SEND_LOW_WATER = 256 * 1024

Factory = Callable[[], asyncio.Protocol]
Address = tuple[Any, ...]


class _MutualQuicConnection(QuicConnection):
    """A QuicConnection whose server side requests the client's certificate.

    aioquic sends a CertificateRequest only if its TLS context's private
    ``_request_client_certificate`` is set, and has no setting for it. A server creates
    that context in ``_initialize`` while handling the client's first Initial, *before*
    the ClientHello in it reaches TLS (``receive_datagram``): setting the flag right after
    it is in time for every handshake. Without the attribute we fail loudly."""

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            if not hasattr(self.tls, "_request_client_certificate"):
                raise RuntimeError("this aioquic version cannot request client certificates")
            self.tls._request_client_certificate = True


def _configuration(is_client: bool, cert_file: Path, key_file: Path) -> QuicConfiguration:
    config = QuicConfiguration(
        alpn_protocols=[ALPN_PROTOCOL],
        is_client=is_client,
        verify_mode=ssl.CERT_NONE,  # the chain check is a formality: see the docstring
        connection_id_length=QUIC_CID_LENGTH,
        idle_timeout=QUIC_IDLE_TIMEOUT,
        max_data=QUIC_MAX_DATA,
        max_stream_data=QUIC_MAX_STREAM_DATA,
        max_datagram_size=QUIC_MAX_DATAGRAM_SIZE,
    )
    try:
        config.load_cert_chain(cert_file, key_file)
    except (OSError, ValueError) as exc:
        raise LocalError(f"cannot load TLS files {cert_file}, {key_file}: {exc}") from exc
    return config


def _unmapped(addr: Address) -> Address:
    """An IPv4-mapped IPv6 socket address as the plain IPv4 ``(host, port)``."""
    host = str(addr[0])
    return (host[7:], addr[1]) if host.startswith("::ffff:") and "." in host else addr


def _ended(event: events.ConnectionTerminated) -> tuple[Exception | None, str]:
    """What ``connection_lost`` gets for a terminated connection, and a description."""
    code, what = event.error_code, f"error 0x{event.error_code:x}"
    if QuicErrorCode.CRYPTO_ERROR <= code < QuicErrorCode.CRYPTO_ERROR + 256:
        alert = code - QuicErrorCode.CRYPTO_ERROR
        name = tls.AlertDescription(alert).name if alert in {*tls.AlertDescription} else "?"
        what = f"TLS alert {alert} {name}"
    detail = f"{event.reason_phrase or 'no reason given'} ({what})"
    if code == QuicErrorCode.NO_ERROR:
        return None, detail
    if event.reason_phrase == "Idle timeout":
        return TimeoutError("QUIC connection timed out (no packets from the peer)"), detail
    return ConnectionError(f"QUIC connection closed: {detail}"), detail


class QuicStreamTransport(asyncio.Transport):
    """One QUIC connection, presented to its protocol as a byte-stream transport."""

    is_quic = True  # how path ranking tells it apart without importing this module

    def __init__(
        self, endpoint: QuicEndpoint, quic: QuicConnection, addr: Address, factory: Factory
    ) -> None:
        super().__init__()
        self._endpoint, self._quic, self._addr, self._factory = endpoint, quic, addr, factory
        self._loop = endpoint._loop
        self._is_client = quic.configuration.is_client
        self._protocol: asyncio.Protocol | None = None
        self._stream_open = self._is_client  # a server may send once the client opened it
        self._pending: list[bytes] = []  # a server's writes before the stream opened
        self._pending_size = 0
        self._eof_written = self._closing = self._lost = self._paused = False
        self._flush_scheduled = self._established = False  # established: protocol made
        self._alpn: str | None = None  # set once TLS completed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._deadline: asyncio.TimerHandle | None = None  # handshake, or close linger
        self.cids: set[bytes] = set()
        self.handshake: asyncio.Future[asyncio.Protocol] = self._loop.create_future()
        if not self._is_client:
            self._deadline = self._loop.call_later(
                QUIC_HANDSHAKE_TIMEOUT, self._kill, "handshake timed out"
            )

    # ---- asyncio.Transport -----------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return _unmapped(self._addr)
        if name == "sockname":
            return _unmapped(self._endpoint.sockname)
        if name == "peercert":  # only once established: CertificateVerify was checked
            peer = getattr(getattr(self._quic, "tls", None), "_peer_certificate", None)
            if not self._established or not isinstance(peer, x509.Certificate):
                return b""
            return peer.public_bytes(Encoding.DER)  # the DER as received
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def pause_reading(self) -> None:
        """No-op: QUIC flow control and the session's own windows bound what arrives."""

    def resume_reading(self) -> None:
        """No-op (see :meth:`pause_reading`)."""

    def get_write_buffer_size(self) -> int:
        stream = self._quic._streams.get(QUIC_STREAM_ID)  # private: no public API for it
        return self._pending_size + (len(stream.sender._buffer) if stream is not None else 0)

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or self._eof_written or not data:
            return
        if self._stream_open:
            self._quic.send_stream_data(QUIC_STREAM_ID, bytes(data))
        else:
            self._pending.append(bytes(data))
            self._pending_size += len(data)
        self._schedule_flush()

    def write_eof(self) -> None:
        if not self._eof_written and not self._lost:
            self._eof_written = True
            if self._stream_open:
                self._quic.send_stream_data(QUIC_STREAM_ID, b"", end_stream=True)
                self._schedule_flush()

    def close(self) -> None:
        """Send FIN; close the connection once the peer acknowledged everything."""
        if self._closing or self._lost:
            return
        self._closing = True
        self.write_eof()
        if self._deadline is None:  # a server also waits (that long) for the stream
            self._deadline = self._loop.call_later(QUIC_CLOSE_LINGER, self._close_now)
        self._schedule_flush()

    def abort(self) -> None:
        self._abort(QuicErrorCode.APPLICATION_ERROR, "aborted")

    # ---- internals -------------------------------------------------------------------

    def _abort(self, code: int, reason: str) -> None:
        if not self._lost:
            self._closing = True
            self._quic.close(code, reason_phrase=reason)
            self._schedule_flush()

    def _close_now(self) -> None:
        self._deadline = None
        self._quic.close(QuicErrorCode.NO_ERROR, reason_phrase="closed")
        self._flush()

    def _kill(self, reason: str, exc: Exception | None = None) -> None:
        """Send CONNECTION_CLOSE and forget the connection now (no closing period)."""
        if not self._lost:
            self._quic.close(QuicErrorCode.NO_ERROR, reason_phrase=reason)
            self._flush()
            self._terminated(exc, reason)

    def _receive(self, data: bytes, addr: Address) -> None:
        self._quic.receive_datagram(data, addr, self._loop.time())
        self._process_events()
        self._schedule_flush()

    def _on_timer(self) -> None:
        now = max(self._loop.time(), self._timer_at or 0.0)  # never early: no busy loop
        self._timer = self._timer_at = None
        self._quic.handle_timer(now)
        self._process_events()
        self._flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._lost:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send what aioquic has, re-arm the timer, apply back-pressure, finish a close."""
        self._flush_scheduled = False
        if self._lost:
            return
        if self._closing and self._stream_open and self._deadline is not None:
            stream = self._quic._streams.get(QUIC_STREAM_ID)
            if stream is None or stream.sender.is_finished:  # FIN and all data acked
                self._deadline.cancel()
                return self._close_now()
        for data, addr in self._quic.datagrams_to_send(self._loop.time()):
            self._endpoint._sendto(data, addr)
        self._process_events()
        if self._lost:
            return
        when = self._quic.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = None if when is None else self._loop.call_at(when, self._on_timer)
        if self._protocol is not None and not self._closing:
            size = self.get_write_buffer_size()
            if not self._paused and size > SEND_HIGH_WATER:
                self._paused = True
                self._call(self._protocol.pause_writing)
            elif self._paused and size <= SEND_LOW_WATER:
                self._paused = False
                self._call(self._protocol.resume_writing)

    def _call(self, fn: Callable[..., object], *args: Any) -> object:
        """Run a protocol callback; a crash aborts this connection, never the endpoint."""
        try:
            return fn(*args)
        except Exception:
            log.exception("QUIC protocol callback failed", extra={"peer": str(self._addr)})
            self._abort(QuicErrorCode.INTERNAL_ERROR, "internal error")
            return None

    def _process_events(self) -> None:
        while not self._lost:
            # TLS 1.3 client authentication ends after the client's own handshake did: a
            # client is connected once the handshake is confirmed (HANDSHAKE_DONE).
            if (
                self._alpn is not None
                and not self._established
                and not self._closing
                and (not self._is_client or self._quic._handshake_confirmed)
            ):
                self._on_established()
            event = self._quic.next_event()
            if event is None:
                return
            if isinstance(event, events.ConnectionIdIssued):
                self._endpoint._add_cid(self, event.connection_id)
            elif isinstance(event, events.ConnectionIdRetired):
                self._endpoint._remove_cid(self, event.connection_id)
            elif isinstance(event, events.HandshakeCompleted):
                self._alpn = event.alpn_protocol or ""
            elif isinstance(event, events.StreamDataReceived):
                self._on_stream_data(event)
            elif isinstance(event, events.StreamReset | events.StopSendingReceived):
                if event.stream_id == QUIC_STREAM_ID:
                    self._kill("stream reset", ConnectionResetError("QUIC stream reset by peer"))
            elif isinstance(event, events.ConnectionTerminated):
                self._terminated(*_ended(event))

    def _on_established(self) -> None:
        self._established = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._alpn != ALPN_PROTOCOL:
            return self._abort(QuicErrorCode.CONNECTION_REFUSED, "wrong ALPN protocol")
        if not self._is_client and not self.get_extra_info("peercert"):
            # Like CERT_REQUIRED over TCP: refused before HANDSHAKE_DONE is ever sent.
            return self._abort(QuicErrorCode.CONNECTION_REFUSED, "client certificate required")
        try:
            self._protocol = self._factory()
        except Exception as exc:
            log.exception("QUIC protocol factory failed")
            if not self.handshake.done():
                self.handshake.set_exception(exc)
            return self._abort(QuicErrorCode.INTERNAL_ERROR, "internal error")
        self._call(self._protocol.connection_made, self)
        if not self.handshake.done():
            self.handshake.set_result(self._protocol)

    def _on_stream_data(self, event: events.StreamDataReceived) -> None:
        if event.stream_id != QUIC_STREAM_ID or self._protocol is None:
            return self._abort(QuicErrorCode.PROTOCOL_VIOLATION, "swarmlink uses one stream")
        if not self._stream_open:  # the client opened it: release what we queued
            self._stream_open = True
            for chunk in self._pending:
                self._quic.send_stream_data(QUIC_STREAM_ID, chunk)
            self._pending, self._pending_size = [], 0
            if self._eof_written:
                self._quic.send_stream_data(QUIC_STREAM_ID, b"", end_stream=True)
        if self._closing:
            return
        if event.data:
            self._call(self._protocol.data_received, event.data)
        if event.end_stream and not self._closing and not self._call(self._protocol.eof_received):
            self.close()

    def _terminated(self, exc: Exception | None, detail: str) -> None:
        if self._lost:
            return
        self._lost = self._closing = True
        for handle in (self._timer, self._deadline):
            if handle is not None:
                handle.cancel()
        self._timer = self._deadline = None
        self._endpoint._forget(self)
        if not self.handshake.done():
            where = format_hostport(*_unmapped(self._addr)[:2])
            self.handshake.set_exception(
                NetworkError(f"QUIC handshake with {where} failed: {detail}")
            )
            self.handshake.exception()  # retrieved: an inbound one has no waiter
        elif self._protocol is not None:
            self._call(self._protocol.connection_lost, exc)


class QuicEndpoint:
    """One UDP socket carrying QUIC connections that each carry one swarmlink session."""

    def __init__(
        self, sock: socket.socket, configs: tuple[QuicConfiguration, ...], accept: Factory | None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock, self._accept = sock, accept
        self._client_config, self._server_config = configs
        self.sockname: Address = sock.getsockname()
        self._conns: set[QuicStreamTransport] = set()
        self._by_cid: dict[bytes, QuicStreamTransport] = {}
        self._by_addr: dict[Address, QuicStreamTransport] = {}  # connections we dialed
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def bind(
        cls, host: str, port: int, *, cert_file: Path, key_file: Path, accept: Factory | None
    ) -> QuicEndpoint:
        """Bind UDP ``host:port`` presenting our certificate; ``accept`` makes the protocol
        of each inbound connection (None: inbound connections are ignored)."""
        configs = tuple(_configuration(c, cert_file, key_file) for c in (True, False))
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
            )
            sock = socket.socket(infos[0][0], socket.SOCK_DGRAM)
            try:
                # UDP ports are a space of their own: the node's TCP port number is free
                # here. No SO_REUSEPORT: a second process must not share our datagrams.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setblocking(False)
                sock.bind(infos[0][4])
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise NetworkError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from exc
        return cls(sock, configs, accept)

    def load_certificate(self, cert_file: Path, key_file: Path) -> None:
        """Present a new certificate (after a key rotation) on new connections."""
        self._client_config, self._server_config = (
            _configuration(c, cert_file, key_file) for c in (True, False)
        )

    @property
    def port(self) -> int:
        return int(self.sockname[1])

    @property
    def connections(self) -> int:
        """QUIC connections currently held (handshaking or established)."""
        return len(self._conns)

    def punch(self, host: str, port: int) -> None:
        """Send one small non-QUIC datagram to ``host`` (an IP address) to open our NAT
        mapping towards it; punch datagrams we receive are ignored silently."""
        addr = self._sockaddr(host, port)
        if addr is None:
            raise InvalidArgument(f"cannot punch towards {host!r}: not an IP address we reach")
        self._sendto(PUNCH_PAYLOAD, addr)

    async def connect(
        self, host: str, port: int, protocol_factory: Factory, *, timeout: float
    ) -> asyncio.Protocol:
        """We are the QUIC client; returns the protocol once the QUIC+TLS handshake is
        confirmed (its ``connection_made`` ran), else raises NetworkError."""
        if self._closed:
            raise NetworkError("QUIC endpoint is closed")
        if len(self._conns) >= MAX_QUIC_CONNECTIONS:
            raise NetworkError(f"QUIC endpoint holds {len(self._conns)} connections already")
        addr = self._sockaddr(host, port)
        if addr is None:
            try:
                infos = await self._loop.getaddrinfo(
                    host, port, family=self._sock.family, type=socket.SOCK_DGRAM, flags=self._ai
                )
            except OSError as exc:
                raise NetworkError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
            addr = infos[0][4]
        quic = _MutualQuicConnection(configuration=self._client_config)
        conn = QuicStreamTransport(self, quic, addr, protocol_factory)
        self._conns.add(conn)
        self._add_cid(conn, quic.host_cid)
        self._by_addr[addr] = conn
        quic.connect(addr, now=self._loop.time())
        conn._flush()
        try:
            return await asyncio.wait_for(asyncio.shield(conn.handshake), timeout)
        except TimeoutError:
            conn.handshake.cancel()
            conn._kill("handshake timed out")
            raise NetworkError(
                f"QUIC handshake with {host}:{port} timed out after {timeout:g}s; "
                "is a swarmlink node listening there (UDP)?"
            ) from None
        except BaseException:
            conn.handshake.cancel()
            conn._kill("connect cancelled")
            raise

    def close(self) -> None:
        """Close every connection (their protocols see ``connection_lost``) and the socket."""
        if not self._closed:
            self._closed = True
            for conn in list(self._conns):
                conn._kill("endpoint closed")
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    # ---- internals -------------------------------------------------------------------

    @property
    def _ai(self) -> int:
        return socket.AI_V4MAPPED if self._sock.family == socket.AF_INET6 else 0

    def _sockaddr(self, host: str, port: int) -> Address | None:
        """``host`` as this socket's address if it is an IP address (no DNS), else None."""
        flags = socket.AI_NUMERICHOST | self._ai
        try:
            infos = socket.getaddrinfo(
                host.strip("[]"), port, self._sock.family, socket.SOCK_DGRAM, 0, flags
            )
        except socket.gaierror:
            return None
        return infos[0][4]

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self._sock.fileno() < 0:  # closed
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass  # socket buffer full: a lost datagram, which QUIC recovers from
        except OSError as exc:
            log.debug("UDP send failed", extra={"peer": str(addr), "error": str(exc)})

    def _read_ready(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, addr = self._sock.recvfrom(MAX_UDP_PAYLOAD)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("UDP receive failed", extra={"error": str(exc)})
                return
            try:
                self._datagram_received(data, addr)
            except Exception:  # one bad datagram must never take the socket down
                log.exception("QUIC datagram handling failed", extra={"peer": str(addr)})

    def _datagram_received(self, data: bytes, addr: Address) -> None:
        if self._closed or data.startswith(PUNCH_PAYLOAD):
            return
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=QUIC_CID_LENGTH)
        except ValueError:  # BufferReadError too: not QUIC
            return
        conn = self._by_cid.get(header.destination_cid)
        if conn is None and header.packet_type == QuicPacketType.INITIAL:
            conn = self._new_inbound(header.destination_cid, header.version, len(data), addr)
            if conn is not None:
                conn._receive(data, addr)
                if not len(conn._quic._spaces[tls.Epoch.INITIAL].ack_queue):
                    conn._terminated(None, "undecryptable Initial")  # noise: free the slot
            return
        conn = conn or self._by_addr.get(addr)
        if conn is not None:
            conn._receive(data, addr)

    def _new_inbound(
        self, dcid: bytes, version: int | None, size: int, addr: Address
    ) -> QuicStreamTransport | None:
        config = self._server_config
        if self._accept is None or size < MIN_INITIAL_DATAGRAM:
            return None
        if version not in config.supported_versions:
            return None
        if len(self._conns) >= MAX_QUIC_CONNECTIONS:
            log.info("QUIC connection limit reached: Initial dropped", extra={"peer": str(addr)})
            return None
        quic = _MutualQuicConnection(configuration=config, original_destination_connection_id=dcid)
        conn = QuicStreamTransport(self, quic, addr, self._accept)
        self._conns.add(conn)
        self._add_cid(conn, dcid)
        self._add_cid(conn, quic.host_cid)
        return conn

    def _add_cid(self, conn: QuicStreamTransport, cid: bytes) -> None:
        conn.cids.add(cid)
        self._by_cid[cid] = conn

    def _remove_cid(self, conn: QuicStreamTransport, cid: bytes) -> None:
        conn.cids.discard(cid)
        if self._by_cid.get(cid) is conn:
            del self._by_cid[cid]

    def _forget(self, conn: QuicStreamTransport) -> None:
        self._conns.discard(conn)
        for cid in list(conn.cids):
            self._remove_cid(conn, cid)
        if self._by_addr.get(conn._addr) is conn:
            del self._by_addr[conn._addr]

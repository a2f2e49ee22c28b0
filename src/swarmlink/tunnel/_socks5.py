"""The server side of a SOCKS5 handshake (RFC 1928), sans-I/O.

Only what unmodified local programs need to reach agents through the overlay
(``curl --socks5-hostname``, ``ssh -o ProxyCommand``, gRPC's ``grpc_proxy``): the
"no authentication" method and the CONNECT command.

.. code-block:: text

    client                                         Socks5Server
      05 NMETHODS METHODS...        ──────────▶    needs 00 among METHODS
                                    ◀──────────    05 00          (or 05 FF, closed)
      05 01 00 ATYP DST.ADDR DST.PORT ─────────▶   ConnectRequested(host, port, type)
      [early application data]      ──────────▶    kept until accept()
                                                   the caller dials the overlay, then
                                    ◀──────────    accept(): 05 00 00 ATYP BND.ADDR BND.PORT
                                                   refuse(rep): 05 REP 00 01 0.0.0.0 0

One :class:`Socks5Server` serves one client TCP connection. Feed it what the socket
reads with :meth:`~Socks5Server.receive_data` (in any chunking), write out
:meth:`~Socks5Server.data_to_send` and drain :meth:`~Socks5Server.next_event`:

* :class:`ConnectRequested`: dial the target, then call :meth:`~Socks5Server.accept` or
  :meth:`~Socks5Server.refuse`.
* :class:`ProtocolError`: the client broke the protocol or a limit; the error reply (if
  the handshake reached the request stage) is queued: send it, then close the socket.

**Application payload** is not an event: bytes the client sends after its request (before
or after :meth:`~Socks5Server.accept`) accumulate in the server and
:meth:`~Socks5Server.take_payload` returns them. Pipelining clients send early data right
after the request; the glue calls ``take_payload()`` once after ``accept()`` and then
either keeps feeding ``receive_data`` + ``take_payload`` or, simpler, pipes the socket
directly and stops using the server.

Untrusted input is bounded: the version byte must be 5, the greeting must offer 1 to 255
methods, the reserved byte must be 0, a domain name is 1 to 255 bytes of visible ASCII
(``!`` to ``~``, no space or control bytes), port 0 is refused with
:data:`NOT_ALLOWED`, the greeting and request together may not exceed
:data:`MAX_HANDSHAKE_BYTES`, and early data waiting for ``accept()`` may not exceed
:data:`MAX_EARLY_DATA` (the glue should pause reading once it sees
:class:`ConnectRequested`). Violations end the connection with a :class:`ProtocolError`;
``receive_data`` never raises.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ..errors import InvalidArgument, StateError

__all__ = [
    "ADDRESS_TYPE_NOT_SUPPORTED",
    "ATYP_DOMAIN",
    "ATYP_IPV4",
    "ATYP_IPV6",
    "CMD_BIND",
    "CMD_CONNECT",
    "CMD_UDP_ASSOCIATE",
    "COMMAND_NOT_SUPPORTED",
    "CONNECTION_REFUSED",
    "GENERAL_FAILURE",
    "HOST_UNREACHABLE",
    "MAX_DOMAIN_LENGTH",
    "MAX_EARLY_DATA",
    "MAX_HANDSHAKE_BYTES",
    "METHOD_NO_ACCEPTABLE",
    "METHOD_NO_AUTH",
    "NETWORK_UNREACHABLE",
    "NOT_ALLOWED",
    "SOCKS_VERSION",
    "SUCCEEDED",
    "TTL_EXPIRED",
    "AddressType",
    "ConnectRequested",
    "ProtocolError",
    "Socks5Event",
    "Socks5Server",
    "Socks5State",
]

#: The only protocol version accepted (first byte of the greeting and of the request).
SOCKS_VERSION = 5

# Authentication methods (RFC 1928 §3).
#: "No authentication required": the only method this server selects.
METHOD_NO_AUTH = 0x00
#: "No acceptable methods": the reply when the client does not offer METHOD_NO_AUTH.
METHOD_NO_ACCEPTABLE = 0xFF

# Commands (RFC 1928 §4). Only CONNECT is served.
CMD_CONNECT = 0x01
CMD_BIND = 0x02
CMD_UDP_ASSOCIATE = 0x03

# Address types (RFC 1928 §5).
ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04

# Reply codes (RFC 1928 §6).
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02  # "connection not allowed by ruleset"
NETWORK_UNREACHABLE = 0x03
HOST_UNREACHABLE = 0x04
CONNECTION_REFUSED = 0x05
TTL_EXPIRED = 0x06
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08

#: The failure codes :meth:`Socks5Server.refuse` accepts.
_FAILURE_REPLIES = frozenset(range(GENERAL_FAILURE, ADDRESS_TYPE_NOT_SUPPORTED + 1))

#: Longest domain name in a request (its length is one byte; 0 is refused).
MAX_DOMAIN_LENGTH = 255
#: Most bytes the greeting and the request may take together. The largest well-formed
#: pair is 257 + 262 = 519 bytes (255 methods, a 255-byte domain name), so this never
#: refuses a valid client; a smaller limit can be given to :class:`Socks5Server`.
MAX_HANDSHAKE_BYTES = 600
#: Most application bytes kept between the request and accept() / refuse(); beyond it
#: the connection fails with GENERAL_FAILURE (the glue should pause reading meanwhile).
MAX_EARLY_DATA = 256 * 1024

_GREETING_HEADER = 2  # VER NMETHODS
_REQUEST_HEADER = 4  # VER CMD RSV ATYP
_PORT_SIZE = 2
_ADDRESS_SIZES = {ATYP_IPV4: 4, ATYP_IPV6: 16}
_VISIBLE_ASCII = frozenset(range(0x21, 0x7F))

AddressType: TypeAlias = Literal["ipv4", "ipv6", "domain"]


class Socks5State(enum.StrEnum):
    GREETING = "greeting"  # waiting for VER NMETHODS METHODS
    REQUEST = "request"  # method selected; waiting for the request
    CONNECTING = "connecting"  # ConnectRequested raised; waiting for accept() / refuse()
    OPEN = "open"  # accepted: everything received is application payload
    CLOSED = "closed"  # refused or failed; send data_to_send() then close the socket


@dataclass(frozen=True)
class ConnectRequested:
    """The client asks to CONNECT to ``host``:``port``.

    ``host`` is a dotted IPv4 address, a compressed IPv6 address or, for
    ``address_type == "domain"``, the name exactly as sent (visible ASCII, case kept).
    """

    host: str
    port: int
    address_type: AddressType


@dataclass(frozen=True)
class ProtocolError:
    """The handshake failed and the server is closed.

    ``reply`` is the RFC 1928 §6 code describing the failure. It was queued on the wire
    (``05 REP 00 01 0.0.0.0 0``) only if the handshake had reached the request stage;
    during the greeting the client gets ``05 FF`` when it offers no acceptable method
    (``reply`` is then :data:`NOT_ALLOWED`) and nothing otherwise.
    """

    reply: int
    reason: str


Socks5Event: TypeAlias = ConnectRequested | ProtocolError


def _reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """VER REP RSV ATYP BND.ADDR BND.PORT."""
    address = ipaddress.ip_address(host)
    atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    return bytes((SOCKS_VERSION, code, 0, atyp)) + address.packed + port.to_bytes(2, "big")


class Socks5Server:
    """The server side of one SOCKS5 client connection (see the module docstring)."""

    def __init__(self, *, max_handshake_bytes: int = MAX_HANDSHAKE_BYTES) -> None:
        if max_handshake_bytes < 1:
            raise InvalidArgument("max_handshake_bytes must be positive")
        self.max_handshake_bytes = max_handshake_bytes
        self.state = Socks5State.GREETING
        #: Why the server closed (a protocol error, or the reason given to refuse()).
        self.close_reason = ""
        self._buffer = bytearray()  # handshake bytes not parsed yet
        self._consumed = 0  # handshake bytes already parsed
        self._payload = bytearray()
        self._outgoing = bytearray()
        self._events: deque[Socks5Event] = deque()

    # ---- outputs ----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the client (replies), emptied by the call."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def next_event(self) -> Socks5Event | None:
        return self._events.popleft() if self._events else None

    def take_payload(self) -> bytes:
        """Application bytes received after the request (early data included), emptied by
        the call. Only meaningful after :meth:`accept`; before it they are kept."""
        out = bytes(self._payload)
        self._payload.clear()
        return out

    @property
    def closed(self) -> bool:
        return self.state == Socks5State.CLOSED

    @property
    def buffered_handshake(self) -> int:
        """Handshake bytes held while waiting for the rest (at most the handshake limit)."""
        return len(self._buffer)

    @property
    def buffered_payload(self) -> int:
        """Application bytes held until :meth:`take_payload`."""
        return len(self._payload)

    # ---- inputs -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the client. Never raises; ignored once closed."""
        if self.state == Socks5State.CLOSED or not data:
            return
        if self.state in (Socks5State.CONNECTING, Socks5State.OPEN):
            self._add_payload(data)
            return
        self._buffer += data
        if self.state == Socks5State.REQUEST or self._parse_greeting():
            self._parse_request()

    # ---- commands ---------------------------------------------------------------------

    def accept(self, bound_host: str = "0.0.0.0", bound_port: int = 0) -> None:
        """The target is connected: queue the success reply. ``bound_host`` must be an IPv4
        or IPv6 literal (most clients ignore BND.ADDR and BND.PORT)."""
        if self.state != Socks5State.CONNECTING:
            raise StateError(f"accept() needs a pending CONNECT (state is {self.state})")
        try:
            ipaddress.ip_address(bound_host)
        except ValueError:
            raise InvalidArgument(f"bound_host {bound_host!r} is not an IP address") from None
        if not 0 <= bound_port <= 0xFFFF:
            raise InvalidArgument(f"bound_port {bound_port} is out of range")
        self._outgoing += _reply(SUCCEEDED, bound_host, bound_port)
        self.state = Socks5State.OPEN

    def refuse(self, reply: int, reason: str) -> None:
        """The target cannot be reached: queue failure reply ``reply`` (GENERAL_FAILURE to
        ADDRESS_TYPE_NOT_SUPPORTED) and close. Early data is discarded."""
        if self.state != Socks5State.CONNECTING:
            raise StateError(f"refuse() needs a pending CONNECT (state is {self.state})")
        if reply not in _FAILURE_REPLIES:
            raise InvalidArgument(f"{reply} is not a SOCKS5 failure reply code (1 to 8)")
        self._outgoing += _reply(reply)
        self._close(reason)

    # ---- parsing ----------------------------------------------------------------------
    # Each check runs as soon as the bytes it needs are there, in byte order, so the
    # outcome never depends on how the input was chunked.

    def _parse_greeting(self) -> bool:
        buf = self._buffer
        if not buf:
            return False
        if buf[0] != SOCKS_VERSION:
            self._fail(GENERAL_FAILURE, f"not a SOCKS5 client (version byte {buf[0]:#04x})")
            return False
        if len(buf) < _GREETING_HEADER:
            return False
        size = _GREETING_HEADER + buf[1]
        if buf[1] == 0:
            self._outgoing += bytes((SOCKS_VERSION, METHOD_NO_ACCEPTABLE))
            self._fail(NOT_ALLOWED, "the greeting offers no authentication method")
            return False
        if not self._within_limit(size) or len(buf) < size:
            return False
        methods = buf[_GREETING_HEADER:size]
        self._take(size)
        if METHOD_NO_AUTH not in methods:
            self._outgoing += bytes((SOCKS_VERSION, METHOD_NO_ACCEPTABLE))
            self._fail(NOT_ALLOWED, "the client does not offer 'no authentication' (00)")
            return False
        self._outgoing += bytes((SOCKS_VERSION, METHOD_NO_AUTH))
        self.state = Socks5State.REQUEST
        return True

    def _parse_request(self) -> None:
        buf = self._buffer
        if len(buf) >= 1 and buf[0] != SOCKS_VERSION:
            self._fail(GENERAL_FAILURE, f"bad request version byte {buf[0]:#04x}")
            return
        if len(buf) >= 2 and buf[1] != CMD_CONNECT:
            name = {CMD_BIND: "BIND", CMD_UDP_ASSOCIATE: "UDP ASSOCIATE"}.get(buf[1])
            shown = name or f"unknown command {buf[1]:#04x}"
            self._fail(COMMAND_NOT_SUPPORTED, f"{shown} is not supported (only CONNECT)")
            return
        if len(buf) >= 3 and buf[2] != 0:
            self._fail(GENERAL_FAILURE, f"reserved byte is {buf[2]:#04x}, not 0")
            return
        if len(buf) < _REQUEST_HEADER:
            return
        atyp = buf[3]
        if atyp in _ADDRESS_SIZES:
            start, length = _REQUEST_HEADER, _ADDRESS_SIZES[atyp]
        elif atyp == ATYP_DOMAIN:
            if len(buf) < _REQUEST_HEADER + 1:
                return
            start, length = _REQUEST_HEADER + 1, buf[_REQUEST_HEADER]
            if length == 0:
                self._fail(GENERAL_FAILURE, "empty domain name")
                return
        else:
            self._fail(ADDRESS_TYPE_NOT_SUPPORTED, f"unknown address type {atyp:#04x}")
            return
        size = start + length + _PORT_SIZE
        if not self._within_limit(size) or len(buf) < size:
            return
        raw = bytes(buf[start : start + length])
        port = int.from_bytes(buf[start + length : size], "big")
        address_type: AddressType
        if atyp == ATYP_DOMAIN:
            if not set(raw) <= _VISIBLE_ASCII:
                self._fail(GENERAL_FAILURE, "domain name is not visible ASCII")
                return
            host, address_type = raw.decode("ascii"), "domain"
        elif atyp == ATYP_IPV4:
            host, address_type = str(ipaddress.IPv4Address(raw)), "ipv4"
        else:
            host, address_type = str(ipaddress.IPv6Address(raw)), "ipv6"
        if port == 0:
            self._fail(NOT_ALLOWED, "port 0 is not allowed")
            return
        self._take(size)
        self.state = Socks5State.CONNECTING
        self._events.append(ConnectRequested(host, port, address_type))
        early = bytes(buf)  # pipelined application data
        buf.clear()
        if early:
            self._add_payload(early)

    def _within_limit(self, size: int) -> bool:
        """Fail once the message being parsed (``size`` bytes) would pass the limit."""
        if self._consumed + size <= self.max_handshake_bytes:
            return True
        self._fail(GENERAL_FAILURE, f"handshake longer than {self.max_handshake_bytes} bytes")
        return False

    def _take(self, size: int) -> None:
        del self._buffer[:size]
        self._consumed += size

    def _add_payload(self, data: bytes) -> None:
        self._payload += data
        if self.state == Socks5State.CONNECTING and len(self._payload) > MAX_EARLY_DATA:
            self._payload.clear()
            self._fail(GENERAL_FAILURE, f"more than {MAX_EARLY_DATA} bytes before accept()")

    def _fail(self, reply: int, reason: str) -> None:
        if self.state in (Socks5State.REQUEST, Socks5State.CONNECTING):
            self._outgoing += _reply(reply)
        self._events.append(ProtocolError(reply, reason))
        self._close(reason)

    def _close(self, reason: str) -> None:
        self.state = Socks5State.CLOSED
        self.close_reason = reason
        self._payload.clear()
        self._buffer.clear()

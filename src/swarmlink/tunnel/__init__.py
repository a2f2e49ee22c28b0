"""Tunnels into the overlay for unmodified programs (sans-I/O cores).

``_socks5``: the server side of a SOCKS5 handshake (RFC 1928; no authentication,
CONNECT only), one :class:`Socks5Server` per client connection. ``_names``: what a SOCKS
target means in the overlay (``AGENT_ID.swarm``, ``NAME.AGENT_ID.swarm``, ``NAME.swarm``,
virtual addresses), :func:`resolve_overlay_name`. ``_httpconnect``: HTTP CONNECT on the
same proxy port. ``_ipfilter``: which IPv6 packets TUN mode may deliver. The asyncio glue
lives in ``runtime/``.
"""

from __future__ import annotations

from ._httpconnect import MAX_CONNECT_HEAD, connect_reply, parse_connect
from ._ipfilter import (
    FLOW_TTL,
    MAX_FLOWS,
    MAX_PACKET,
    Packet,
    PacketFilter,
    Verdict,
    parse_packet,
)
from ._names import (
    MAX_HOST_LENGTH,
    OVERLAY_DOMAIN,
    OverlayKind,
    OverlayTarget,
    resolve_overlay_name,
)
from ._socks5 import (
    ADDRESS_TYPE_NOT_SUPPORTED,
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    CMD_BIND,
    CMD_CONNECT,
    CMD_UDP_ASSOCIATE,
    COMMAND_NOT_SUPPORTED,
    CONNECTION_REFUSED,
    GENERAL_FAILURE,
    HOST_UNREACHABLE,
    MAX_DOMAIN_LENGTH,
    MAX_EARLY_DATA,
    MAX_HANDSHAKE_BYTES,
    METHOD_NO_ACCEPTABLE,
    METHOD_NO_AUTH,
    NETWORK_UNREACHABLE,
    NOT_ALLOWED,
    SOCKS_VERSION,
    SUCCEEDED,
    TTL_EXPIRED,
    AddressType,
    ConnectRequested,
    ProtocolError,
    Socks5Event,
    Socks5Server,
    Socks5State,
)

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
    "FLOW_TTL",
    "GENERAL_FAILURE",
    "HOST_UNREACHABLE",
    "MAX_CONNECT_HEAD",
    "MAX_DOMAIN_LENGTH",
    "MAX_EARLY_DATA",
    "MAX_FLOWS",
    "MAX_HANDSHAKE_BYTES",
    "MAX_HOST_LENGTH",
    "MAX_PACKET",
    "METHOD_NO_ACCEPTABLE",
    "METHOD_NO_AUTH",
    "NETWORK_UNREACHABLE",
    "NOT_ALLOWED",
    "OVERLAY_DOMAIN",
    "SOCKS_VERSION",
    "SUCCEEDED",
    "TTL_EXPIRED",
    "AddressType",
    "ConnectRequested",
    "OverlayKind",
    "OverlayTarget",
    "Packet",
    "PacketFilter",
    "ProtocolError",
    "Socks5Event",
    "Socks5Server",
    "Socks5State",
    "Verdict",
    "connect_reply",
    "parse_connect",
    "parse_packet",
    "resolve_overlay_name",
]

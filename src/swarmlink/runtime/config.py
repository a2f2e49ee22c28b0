"""Node configuration: small dataclasses, sane defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgument
from ..identity import validate_agent_id
from ..nat import RelayLimits
from ..wire.address import parse_hostport

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_PORT",
    "NodeConfig",
    "parse_hostport",
    "parse_target",
    "resolve_home",
]

#: Port a node listens on when ``--listen`` gives none.
DEFAULT_PORT = 7420
#: Node home when neither ``--home`` nor ``SWARMLINK_HOME`` is given.
DEFAULT_HOME = Path("~/.swarmlink")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The node home: the argument, else ``$SWARMLINK_HOME``, else ``~/.swarmlink``."""
    if home is None or str(home) == "":
        home = os.environ.get("SWARMLINK_HOME") or DEFAULT_HOME
    return Path(home).expanduser().absolute()


@dataclass(frozen=True)
class NodeConfig:
    """Everything needed to start a node.

    ``listen`` is a list of ``(host, port)``; port 0 picks a free port (``status`` shows it).
    """

    home: Path
    listen: tuple[tuple[str, int], ...] = (("0.0.0.0", DEFAULT_PORT),)
    #: Lifetime of a freshly issued operational key certificate (seconds).
    operational_key_lifetime: float = 30 * 24 * 3600.0
    #: Seconds to wait for a TCP connect + TLS handshake + HELLO when dialing.
    connect_timeout: float = 10.0
    #: Close sessions that carried no stream for this long (seconds; None keeps them).
    idle_timeout: float | None = 600.0
    #: Largest file ``send-file`` accepts from a peer (bytes).
    max_file_size: int = 16 * 1024**3
    #: Largest message ``send`` accepts (UTF-8 bytes).
    max_message_size: int = 16 * 1024
    user_agent: str = field(default="swarmlink/0.1.0")
    #: DHT peers to join through, as ``AGENT@HOST:PORT`` (none: the first node of a network).
    bootstrap: tuple[str, ...] = ()
    #: Addresses to publish in our record instead of the bound ones (``HOST:PORT``).
    advertise: tuple[str, ...] = ()
    #: Find and announce nodes on the LAN with mDNS (multicast on every interface).
    mdns: bool = False
    #: Serve as a relay for nodes that are not publicly reachable.
    relay: bool = False
    #: What this node grants as a relay.
    relay_limits: RelayLimits = field(default_factory=RelayLimits)
    #: Relays to hold reservations on, as ``AGENT@HOST:PORT`` (published in our record).
    relays: tuple[str, ...] = ()
    #: Upgrade relayed sessions to direct ones by hole punching (the relay stays as
    #: fallback). Off: relayed sessions stay relayed.
    hole_punching: bool = True
    #: What hole punching opens: TCP simultaneous open and/or QUIC over UDP, both from
    #: the listening port number. A direct TCP session is preferred to a QUIC one.
    punch_transports: tuple[str, ...] = ("tcp", "quic")
    #: Serve a SOCKS5 proxy into the overlay on this (host, port) (None: no proxy).
    socks5: tuple[str, int] | None = None


def parse_target(target: str) -> tuple[str, str, int]:
    """``AGENT@HOST:PORT`` → (agent ID, host, port), with clear errors."""
    agent, sep, address = target.partition("@")
    if not sep or not address:
        raise InvalidArgument(f"bad target {target!r}: expected AGENT@HOST:PORT")
    host, port = parse_hostport(address)
    if port == 0:
        raise InvalidArgument(f"bad target {target!r}: port 0")
    return validate_agent_id(agent), host, port

"""Node configuration: small dataclasses, sane defaults."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgument
from ..gossip import PubSubConfig, ReplicaConfig, SwimConfig
from ..identity import validate_agent_id
from ..nat import RelayLimits
from ..tunnel._ipfilter import MAX_PACKET
from ..wire.address import parse_hostport

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_PORT",
    "DEFAULT_TUN_MTU",
    "DEFAULT_TUN_NAME",
    "NodeConfig",
    "TunConfig",
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


#: TUN interface ``up --tun`` creates unless told otherwise.
DEFAULT_TUN_NAME = "swarm0"
#: TUN MTU: as large as a TUN allows; every packet costs a read, a frame and a write,
#: so bigger packets mean fewer of them (TCP's MSS follows the MTU).
DEFAULT_TUN_MTU = MAX_PACKET
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class TunConfig:
    """``up --tun``: the interface name and MTU."""

    name: str = DEFAULT_TUN_NAME
    mtu: int = DEFAULT_TUN_MTU

    def __post_init__(self) -> None:
        if not _IFNAME.match(self.name):
            raise InvalidArgument(
                f"bad TUN interface name {self.name!r}: 1-15 of A-Z a-z 0-9 _ . -"
            )
        if not 1280 <= self.mtu <= MAX_PACKET:
            raise InvalidArgument(f"TUN MTU must be 1280..{MAX_PACKET} (IPv6), not {self.mtu}")


#: Membership timing for real daemons: memberlist's LAN profile (probe every second,
#: 0.5 s for an ack, suspicion 3-9 s, gossip to 3 members every 200 ms). The cores'
#: defaults (4 probes/s, 0.2 s timeouts) are tuned for the simulator's 20 ms links; a
#: daemon shares its CPU with agents and its event loop can answer late, so it gets more
#: slack (detection in about 5-11 s).
DAEMON_SWIM = SwimConfig(
    probe_interval=1.0,
    probe_timeout=0.5,
    indirect_timeout=0.75,
    suspicion_min=3.0,
    suspicion_max=9.0,
    gossip_interval=0.2,
    gossip_fanout=3,
)


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
    #: TUN mode (root): the virtual address on a kernel interface (None: off).
    tun: TunConfig | None = None
    #: Region label gossiped with membership; pub/sub keeps traffic inside a region and
    #: crosses to others through a few bridge links ("" = no region).
    region: str = ""
    #: Gossip: membership (SWIM + Lifeguard), pub/sub mesh and replicated-state settings.
    swim: SwimConfig = field(default_factory=lambda: DAEMON_SWIM)
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)


def parse_target(target: str) -> tuple[str, str, int]:
    """``AGENT@HOST:PORT`` → (agent ID, host, port), with clear errors."""
    agent, sep, address = target.partition("@")
    if not sep or not address:
        raise InvalidArgument(f"bad target {target!r}: expected AGENT@HOST:PORT")
    host, port = parse_hostport(address)
    if port == 0:
        raise InvalidArgument(f"bad target {target!r}: port 0")
    return validate_agent_id(agent), host, port

"""``python -m swarmlink.daemon``: command-line entry of the daemon."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import InvalidArgument
from ..gossip import validate_region
from ..runtime.config import (
    DEFAULT_PORT,
    DEFAULT_TUN_MTU,
    DEFAULT_TUN_NAME,
    TunConfig,
    parse_hostport,
    resolve_home,
)
from ._run import (
    LOG_LEVELS,
    DaemonConfig,
    parse_advertise,
    parse_bootstrap_peers,
    parse_relay_limits,
    run_daemon,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swarmlink.daemon",
        description="Run a swarmlink node with its control socket <home>/control.sock "
        "(normally started by `swarmlink up`).",
    )
    parser.add_argument(
        "--home", default=None, help="node home (default: $SWARMLINK_HOME or ~/.swarmlink)"
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help=f"peer-to-peer listen address, repeatable (default: 0.0.0.0:{DEFAULT_PORT}; "
        "port 0 picks a free port)",
    )
    parser.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="AGENT@HOST:PORT",
        help="DHT node to join the network through, repeatable (none: this node starts "
        "its own network, or finds one on the LAN with mDNS)",
    )
    parser.add_argument(
        "--advertise",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="address to publish in this agent's DHT record instead of the listen "
        "addresses, repeatable (e.g. the public address in front of a NAT)",
    )
    parser.add_argument(
        "--no-mdns",
        dest="mdns",
        action="store_false",
        help="do not discover or announce nodes on the LAN with mDNS (multicast)",
    )
    parser.add_argument(
        "--relay",
        action="store_true",
        help="serve as a relay for nodes that cannot be dialed (end-to-end encrypted)",
    )
    parser.add_argument(
        "--relay-limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a relay limit, repeatable: max_reservations, reservation_ttl, max_circuits, "
        "max_circuits_per_peer, max_circuit_bytes, max_circuit_duration, "
        "max_reserve_per_minute, max_circuit_rate (bytes/s)",
    )
    parser.add_argument(
        "--relay-via",
        action="append",
        default=[],
        metavar="AGENT@HOST:PORT",
        help="hold a reservation on this relay and publish it in our record, repeatable",
    )
    parser.add_argument(
        "--no-hole-punching",
        dest="hole_punching",
        action="store_false",
        help="keep relayed sessions relayed (no direct upgrade by hole punching)",
    )
    parser.add_argument(
        "--punch-transport",
        action="append",
        choices=("tcp", "quic"),
        default=[],
        help="what hole punching opens: tcp (simultaneous open) or quic (UDP), "
        "repeatable; default both",
    )
    parser.add_argument(
        "--socks5",
        metavar="HOST:PORT",
        help="serve a SOCKS5 proxy into the overlay (AGENT.swarm:PORT, NAME.AGENT.swarm, …)",
    )
    parser.add_argument(
        "--tun",
        action="store_true",
        help="TUN mode (root): the virtual address on a kernel interface, so programs "
        "reach agents at [fd5a:7761:726d:…]:PORT",
    )
    parser.add_argument(
        "--tun-name", default=DEFAULT_TUN_NAME, help="TUN interface name (default %(default)s)"
    )
    parser.add_argument(
        "--tun-mtu", type=int, default=DEFAULT_TUN_MTU, help="TUN MTU (default %(default)s)"
    )
    parser.add_argument(
        "--region",
        default="",
        help="region label for gossip (pub/sub keeps traffic inside a region when it can)",
    )
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the daemon; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        listen = tuple(
            parse_hostport(text, default_port=DEFAULT_PORT)
            for text in (args.listen or [f"0.0.0.0:{DEFAULT_PORT}"])
        )
        bootstrap = parse_bootstrap_peers(args.bootstrap)
        advertise = parse_advertise(args.advertise)
        relays = parse_bootstrap_peers(args.relay_via)
        socks5 = parse_hostport(args.socks5) if args.socks5 else None
        relay_limits = parse_relay_limits(args.relay_limit)
        tun = TunConfig(args.tun_name, args.tun_mtu) if args.tun else None
        region = validate_region(args.region)
    except InvalidArgument as exc:
        parser.error(str(exc))
    config = DaemonConfig(
        home=resolve_home(args.home),
        listen=listen,
        log_level=args.log_level,
        bootstrap=bootstrap,
        advertise=advertise,
        mdns=args.mdns,
        relay=args.relay,
        relays=relays,
        hole_punching=args.hole_punching,
        punch_transports=tuple(args.punch_transport) or ("tcp", "quic"),
        socks5=socks5,
        relay_limits=relay_limits,
        tun=tun,
        region=region,
    )
    return run_daemon(config)

"""A NAT lab of real network namespaces, veth links and nftables NATs (see
``../shared/notes/netlab.md``). Used by the NAT tests; needs root, iproute2 and nft.

Topology: an ``inet`` namespace routes between point-to-point links, one per attached
box, numbered from the documentation ranges (each link a /30, so boxes in 198.51.100/24,
203.0.113/24 and 192.0.2/24 are in different networks). A *public* box sits directly on
a link; a NATed box sits behind a NAT namespace (or two, for double NAT) whose public
side is on a link. Every name carries a per-run prefix and everything is deleted on
exit, even after a failure.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers import daemon_env

__all__ = ["KINDS", "Box", "NatLab", "lab_available"]

KINDS = ("public", "fullcone", "restricted", "symmetric", "double")
_POOLS = ("198.51.100", "203.0.113", "192.0.2")


def lab_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "the NAT lab needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return False, f"the NAT lab needs {tool} (make sysdeps installs it)"
    return True, ""


def _run(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")


def _nft_rules(kind: str, pub_if: str) -> str:
    if kind == "fullcone":
        maps, pre, post = "", "", ""
        for proto in ("udp", "tcp"):
            maps += (
                f"  map fc{proto} {{ type inet_service : ipv4_addr . inet_service; "
                "flags dynamic,timeout; timeout 300s; }\n"
            )
            pre += (
                f'   iifname "{pub_if}" meta l4proto {proto} '
                f"dnat ip to {proto} dport map @fc{proto}\n"
            )
            post += (
                f'   oifname "{pub_if}" meta l4proto {proto} '
                f"update @fc{proto} {{ {proto} sport : ip saddr . {proto} sport }}\n"
            )
        return (
            "table ip nat {\n"
            + maps
            + "  chain prerouting { type nat hook prerouting priority dstnat;\n"
            + pre
            + "  }\n"
            + "  chain postrouting { type nat hook postrouting priority srcnat;\n"
            + post
            + f'   oifname "{pub_if}" masquerade\n  }}\n}}\n'
        )
    random = " random" if kind == "symmetric" else ""
    return (
        "table ip nat {\n"
        "  chain prerouting { type nat hook prerouting priority dstnat; }\n"
        "  chain postrouting { type nat hook postrouting priority srcnat;\n"
        f'   oifname "{pub_if}" masquerade{random}\n  }}\n}}\n'
    )


def _wan_firewall(pub_if: str) -> str:
    """Like a home router: unsolicited connections to the router itself are dropped
    silently. Without it the router's own kernel answers a SYN that matches no mapping
    with a RST, which kills the peer's half of a hole punch."""
    return (
        "table ip wan {\n"
        "  chain input { type filter hook input priority filter; policy accept;\n"
        f'   iifname "{pub_if}" ct state new drop\n  }}\n}}\n'
    )


@dataclass
class Box:
    """One machine of the lab: runs commands in its namespace."""

    name: str
    kind: str
    ns: str
    ip: str  # its own address
    public_ip: str  # where the internet sees it (its outermost NAT, or itself)

    def popen(self, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *args], **kw)  # type: ignore[call-overload,no-any-return]

    def daemon(self, home: Path, *extra: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "swarmlink.daemon", "--home", str(home)]
        level = os.environ.get("SWARMLINK_LAB_LOG_LEVEL", "info")
        args += ["--listen", f"{self.ip}:7420", "--no-mdns", "--log-level", level, *extra]
        # Daemons run as users run them: asyncio's debug mode (make test turns it on for
        # the test process) slows every callback and skews the timing of hole punches.
        return self.popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=daemon_env()
        )


@dataclass
class NatLab:
    prefix: str = field(default_factory=lambda: f"sl{os.getpid() % 100000}")
    namespaces: list[str] = field(default_factory=list)
    _links: int = 0
    _private: int = 0

    def __enter__(self) -> NatLab:
        atexit.register(self.close)
        self.inet = self._ns("inet")
        _run("ip", "netns", "exec", self.inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()

    def _ns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def _veth(self, a_ns: str, b_ns: str) -> tuple[str, str]:
        self._links += 1
        a, b = f"{self.prefix}a{self._links}", f"{self.prefix}b{self._links}"
        _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        _run("ip", "link", "set", a, "netns", a_ns)
        _run("ip", "link", "set", b, "netns", b_ns)
        _run("ip", "-n", a_ns, "link", "set", a, "up")
        _run("ip", "-n", b_ns, "link", "set", b, "up")
        return a, b

    def _uplink(self, ns: str, pool: int) -> tuple[str, str]:
        """A /30 from ``_POOLS[pool]`` between inet and ``ns``; (ns side ip, ns iface)."""
        inet_if, ns_if = self._veth(self.inet, ns)
        base = 4 * (self._links % 60)
        net = _POOLS[pool % len(_POOLS)]
        _run("ip", "-n", self.inet, "addr", "add", f"{net}.{base + 1}/30", "dev", inet_if)
        _run("ip", "-n", ns, "addr", "add", f"{net}.{base + 2}/30", "dev", ns_if)
        _run("ip", "-n", ns, "route", "add", "default", "via", f"{net}.{base + 1}")
        return f"{net}.{base + 2}", ns_if

    def _nat(self, name: str, kind: str, upstream: str | None, pool: int) -> tuple[str, str]:
        """A NAT box; returns (its public ip, its namespace). ``upstream``: a NAT's ns to
        sit behind (double NAT), else the internet."""
        ns = self._ns(name)
        _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if upstream is None:
            public, pub_if = self._uplink(ns, pool)
        else:
            public, pub_if = self._inside(upstream, ns)
        rules = _nft_rules(kind, pub_if) + _wan_firewall(pub_if)
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=rules,
            text=True,
            capture_output=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nft failed for {kind}: {proc.stderr}\n{rules}")
        return public, ns

    def _inside(self, nat_ns: str, ns: str) -> tuple[str, str]:
        """Link ``ns`` to ``nat_ns`` on a private /24; (ns side ip, ns iface)."""
        self._private += 1
        nat_if, ns_if = self._veth(nat_ns, ns)
        net = f"10.{self._private}.0"
        _run("ip", "-n", nat_ns, "addr", "add", f"{net}.1/24", "dev", nat_if)
        _run("ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", ns_if)
        _run("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
        return f"{net}.2", ns_if

    def add(self, name: str, kind: str, *, pool: int = 2) -> Box:
        """A box of ``kind`` (see :data:`KINDS`); ``pool`` picks the public /24."""
        if kind not in KINDS:
            raise ValueError(f"unknown NAT kind {kind!r}")
        if kind == "public":
            ns = self._ns(name)
            ip, _ = self._uplink(ns, pool)
            return Box(name, kind, ns, ip, ip)
        inner = "restricted" if kind == "double" else kind
        public, nat_ns = self._nat(f"{name}-nat", inner, None, pool)
        if kind == "double":
            _, nat_ns = self._nat(f"{name}-cgn", "restricted", nat_ns, pool)
        ns = self._ns(name)
        ip, _ = self._inside(nat_ns, ns)
        return Box(name, kind, ns, ip, public)

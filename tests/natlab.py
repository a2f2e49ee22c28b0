"""A reusable NAT lab for tests: hosts of each NAT kind in network namespaces.

A thin, host-oriented front end to :mod:`netns_lab` (which builds the namespaces, veth
links and nftables NATs, see ``/work/shared/notes/netlab.md``), so there is one set of
NAT rules: the ones ``tests/test_natlab.py`` proves are the ones the daemon lab uses.

    with NatLab() as lab:
        server = lab.add_public_server()
        host = lab.add_host("symmetric")
        host.exec(["ip", "-br", "addr"])

Kinds (:data:`KINDS`):

- ``public``: the host sits directly on the internet, no NAT;
- ``fullcone``: endpoint-independent mapping and filtering (UDP and TCP);
- ``restricted``: port-restricted cone, plain masquerade (endpoint-independent mapping,
  address-and-port-dependent filtering);
- ``symmetric``: ``masquerade random`` (a new public port per destination);
- ``double``: behind two ``restricted`` NATs in a row (carrier-grade style).

Each NAT router also gets what a real home router has, a WAN firewall: new connections
*to the router itself* arriving on its public side are dropped (``ct state new drop`` in
the filter input hook). Without it, Linux confirms a conntrack entry for an unsolicited
datagram to the router's own address, and when the inside host later sends to that
peer, masquerade sees a clash and picks a *new* source port: port-restricted cones
then fail to hole punch whenever one side's first datagram arrives before the other
side has sent (always, at namespace latencies). ``NatLab(wan_firewall=False)`` gives the
bare :mod:`netns_lab` rules.

Needs root, ``ip`` and ``nft``; :func:`natlab_available` says why not, and
:func:`require_natlab` turns that into ``pytest.skip``. Every namespace gets a per-run
prefix and is deleted on exit (veths go with them), even after an exception; an
``atexit`` hook is the safety net for aborted runs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import netns_lab

__all__ = ["KINDS", "Host", "NatLab", "natlab_available", "require_natlab"]

KINDS = netns_lab.KINDS


def natlab_available() -> tuple[bool, str]:
    """(True, "") when the lab can be built here, else (False, why not)."""
    return netns_lab.lab_available()


def require_natlab() -> None:
    """Skip the calling test (or fixture) when the lab cannot be built here."""
    ok, why = natlab_available()
    if not ok:
        import pytest

        pytest.skip(why)


@dataclass(frozen=True)
class Host:
    """One machine of the lab; commands run inside its namespace."""

    name: str
    kind: str
    ns: str  # namespace name
    ip: str  # its own address (private behind a NAT)
    public_ip: str  # its outermost NAT's public address, or ``ip`` when public

    def argv(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, args: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` inside the namespace (``subprocess.Popen`` keywords apply)."""
        return subprocess.Popen(self.argv(args), **popen_kwargs)

    def exec(
        self, args: list[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside the namespace to completion; output captured as text."""
        return subprocess.run(
            self.argv(args), capture_output=True, text=True, timeout=timeout, check=check
        )


_instances = itertools.count()


def _run(args: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _add_wan_firewall(nat_ns: str) -> None:
    """Drop new inbound connections to the NAT router itself (see the module doc)."""
    routes = json.loads(_run(["ip", "-j", "-n", nat_ns, "route", "show", "default"]))
    pub_if = routes[0]["dev"]
    rules = (
        "table ip wan {\n"
        "  chain input { type filter hook input priority filter; policy accept;\n"
        f'   iifname "{pub_if}" ct state new drop\n  }}\n}}\n'
    )
    _run(["ip", "netns", "exec", nat_ns, "nft", "-f", "-"], stdin=rules)


class NatLab:
    """Context manager: an ``inet`` namespace plus hosts added with :meth:`add_host`."""

    def __init__(self, prefix: str | None = None, *, wan_firewall: bool = True) -> None:
        # Unique per run and per instance (veth names "<prefix>a<n>" must fit 15 chars).
        prefix = prefix or f"nl{os.getpid() % 100000}x{next(_instances) % 10}"
        self._lab = netns_lab.NatLab(prefix=prefix)
        self.wan_firewall = wan_firewall
        self._count = 0
        self.hosts: list[Host] = []

    @property
    def prefix(self) -> str:
        return self._lab.prefix

    @property
    def inet(self) -> str:
        """The name of the "public internet" namespace."""
        return str(self._lab.inet)

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab created and has not deleted yet."""
        return list(self._lab.namespaces)

    def __enter__(self) -> NatLab:
        try:
            self._lab.__enter__()  # registers the atexit safety net first
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete every namespace (idempotent). Stop processes inside them first: a
        namespace with a live process survives ``ip netns del`` until that exits."""
        self._lab.close()

    def _name(self, tag: str) -> str:
        self._count += 1
        return f"{tag}{self._count}"

    def add_host(self, kind: str, name: str | None = None) -> Host:
        """A host of ``kind`` (see :data:`KINDS`), behind its own NAT(s) unless public."""
        if kind not in KINDS:
            raise ValueError(f"unknown NAT kind {kind!r}; one of {KINDS}")
        before = len(self._lab.namespaces)
        box = self._lab.add(name or self._name(kind[:4]), kind, pool=2)
        if self.wan_firewall:
            for nat_ns in self._lab.namespaces[before:-1]:  # the last one is the host's
                _add_wan_firewall(nat_ns)
        host = Host(box.name, kind, box.ns, box.ip, box.public_ip)
        self.hosts.append(host)
        return host

    def add_public_server(self, name: str | None = None) -> Host:
        """A host directly on the internet (its own /30 in 203.0.113.0/24)."""
        box = self._lab.add(name or self._name("srv"), "public", pool=1)
        host = Host(box.name, "public", box.ns, box.ip, box.public_ip)
        self.hosts.append(host)
        return host

"""mDNS LAN discovery: announcement validation, and two real daemons in their own network
namespaces (joined by a veth pair) that find each other with no configuration."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import stop_all

from swarmlink.client import Client
from swarmlink.identity import IdentityKey
from swarmlink.runtime._mdns import (
    MAX_MDNS_ADDRESSES,
    MDNS_SERVICE_TYPE,
    MdnsDiscovery,
    peer_from_service,
)

ME = IdentityKey.generate().agent_id
PEER = IdentityKey.generate().agent_id


def name(agent: str) -> str:
    return f"{agent}.{MDNS_SERVICE_TYPE}"


def test_good_announcement_is_accepted() -> None:
    found = peer_from_service(
        name(PEER),
        {b"id": PEER.encode(), b"v": b"1"},
        7420,
        ["10.0.0.2", "fd00::2"],
        local_agent_id=ME,
    )
    assert found == (PEER, ("10.0.0.2:7420", "[fd00::2]:7420"))


@pytest.mark.parametrize(
    ("instance", "props", "port", "addresses"),
    [
        (PEER, {b"id": ME.encode()}, 7420, ["10.0.0.2"]),  # TXT id differs from the name
        (PEER, {}, 7420, ["10.0.0.2"]),  # no TXT id
        ("not-an-agent", {b"id": b"not-an-agent"}, 7420, ["10.0.0.2"]),
        (PEER, {b"id": PEER.encode()}, 0, ["10.0.0.2"]),  # bad port
        (PEER, {b"id": PEER.encode()}, None, ["10.0.0.2"]),
        (PEER, {b"id": PEER.encode()}, 7420, []),  # nowhere to dial
        (PEER, {b"id": PEER.encode()}, 7420, ["fe80::1", "junk", "224.0.0.251"]),
        (ME, {b"id": ME.encode()}, 7420, ["10.0.0.1"]),  # ourselves
    ],
)
def test_bad_announcements_are_ignored(
    instance: str, props: dict[bytes, bytes | None], port: int | None, addresses: list[str]
) -> None:
    assert peer_from_service(name(instance), props, port, addresses, local_agent_id=ME) is None


def test_announcement_addresses_are_capped() -> None:
    many = [f"10.0.0.{i}" for i in range(1, 40)]
    found = peer_from_service(name(PEER), {b"id": PEER.encode()}, 1, many, local_agent_id=ME)
    assert found is not None and len(found[1]) == MAX_MDNS_ADDRESSES


async def test_close_before_start_and_twice() -> None:
    mdns = MdnsDiscovery(ME, 7420, lambda a, b: None)
    assert not mdns.running
    await mdns.close()
    await mdns.close()


# ---- two daemons on a private LAN -----------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def lan() -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    """Two namespaces joined by a veth pair: ((ns, address), (ns, address))."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to build network namespaces")
    tag = f"{os.getpid() % 100000}{int(time.time() * 1000) % 1000}"
    ns = (f"slm{tag}a", f"slm{tag}b")
    veth = (f"slm{tag}x", f"slm{tag}y")
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    addr = (f"{subnet}.1", f"{subnet}.2")
    try:
        for n in ns:
            _ip("netns", "add", n)
        _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for n, v, a in zip(ns, veth, addr, strict=True):
            _ip("link", "set", v, "netns", n)
            _ip("-n", n, "addr", "add", f"{a}/24", "dev", v)
            _ip("-n", n, "link", "set", v, "up", "multicast", "on")
            _ip("-n", n, "link", "set", "lo", "up")
        yield (ns[0], addr[0]), (ns[1], addr[1])
    finally:
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


def _daemon(netns: str, home: Path, address: str) -> subprocess.Popen[bytes]:
    args = ["ip", "netns", "exec", netns, sys.executable, "-m", "swarmlink.daemon"]
    args += ["--home", str(home), "--listen", f"{address}:7420", "--log-level", "debug"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _poll(fn: object, what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await fn()  # type: ignore[operator]
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_daemons_find_each_other_on_the_lan_with_no_configuration(
    tmp_path: Path, lan: tuple[tuple[str, str], tuple[str, str]]
) -> None:
    (ns_a, addr_a), (ns_b, addr_b) = lan
    procs = [_daemon(ns_a, tmp_path / "a", addr_a), _daemon(ns_b, tmp_path / "b", addr_b)]
    a, b = Client(tmp_path / "a"), Client(tmp_path / "b")
    try:
        sa = await _poll(a.status, "daemon a")
        sb = await _poll(b.status, "daemon b")
        assert sa.mdns and sb.mdns  # type: ignore[attr-defined]

        async def contacts(c: Client) -> bool:
            return (await c.status()).dht_contacts >= 1

        await _poll(lambda: contacts(a), "a hears b over mDNS")
        await _poll(lambda: contacts(b), "b hears a over mDNS")
        record = await b.lookup(sa.agent_id)  # type: ignore[attr-defined]
        assert record["addresses"] == [f"{addr_a}:7420"]
        result = await b.ping_result(sa.agent_id, interval=0)  # type: ignore[attr-defined]
        assert result.received == 1
    finally:
        stop_all(procs)

"""mDNS LAN discovery: announcement validation and limits (no network); then, in two
private network namespaces joined by a veth pair (never touching the root namespace's
network), two bare MdnsDiscovery processes, and two real daemons, find each other."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import stop_all, wait_until

from swarmlink.client import Client
from swarmlink.identity import IdentityKey, agent_id_from_public_key
from swarmlink.runtime._mdns import (
    MAX_MDNS_ADDRESSES,
    MAX_MDNS_PEERS,
    MDNS_SERVICE_TYPE,
    MIN_REPORT_INTERVAL,
    MdnsDiscovery,
    peer_from_service,
)

# Fixed IDs (any 32 bytes hash to an agent ID): parametrized test names must be the same
# in every pytest-xdist worker.
ME = agent_id_from_public_key(b"\x01" * 32)
PEER = agent_id_from_public_key(b"\x02" * 32)


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
        (PEER, {b"id": PEER.encode()}, 70000, ["10.0.0.2"]),
        (PEER, {b"id": PEER.encode()}, 7420, ["fe80::1", "junk", "224.0.0.251"]),
        (PEER, {b"id": PEER.encode()}, 7420, ["127.0.0.1", "::1", "0.0.0.0"]),
        (PEER, {b"id": b"\xff" + PEER.encode()[1:]}, 7420, ["10.0.0.2"]),  # not ASCII
        (PEER.upper(), {b"id": PEER.upper().encode()}, 7420, ["10.0.0.2"]),  # not canonical
        (PEER[:-1] + "b", {b"id": PEER[:-1].encode() + b"b"}, 7420, ["10.0.0.2"]),
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


def test_other_service_types_and_foreign_names() -> None:
    props: dict[bytes, bytes | None] = {b"id": PEER.encode()}
    other = "_test-sl._tcp.local."
    found = peer_from_service(
        f"{PEER}.{other}", props, 1, ["10.0.0.2"], local_agent_id=ME, service_type=other
    )
    assert found == (PEER, ("10.0.0.2:1",))
    assert peer_from_service(f"{PEER}.{other}", props, 1, ["10.0.0.2"], local_agent_id=ME) is None


async def test_close_before_start_and_twice() -> None:
    mdns = MdnsDiscovery(ME, 7420, lambda a, b: None)
    assert not mdns.running
    await mdns.close()
    await mdns.close()
    assert not mdns.running


class _Recorder(MdnsDiscovery):
    """MdnsDiscovery whose resolver only records names (no network)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, tuple[str, ...]]] = []
        super().__init__(ME, 7420, lambda a, addrs: self.found.append((a, addrs)))
        self.resolved: list[str] = []
        self.gate = asyncio.Event()

    async def _resolve_once(self, zeroconf: Any, service_type: str, name: str) -> None:
        self.resolved.append(name)
        await self.gate.wait()


async def test_browse_events_are_bounded_before_any_resolve() -> None:
    from zeroconf import ServiceStateChange

    added = ServiceStateChange.Added
    mdns = _Recorder()
    mdns._on_change(None, MDNS_SERVICE_TYPE, "junk." + MDNS_SERVICE_TYPE, added)  # type: ignore[arg-type]
    mdns._on_change(None, MDNS_SERVICE_TYPE, name(ME), added)  # type: ignore[arg-type]
    mdns._on_change(None, MDNS_SERVICE_TYPE, "elsewhere.local.", added)  # type: ignore[arg-type]
    peers = [IdentityKey.generate().agent_id for _ in range(MAX_MDNS_PEERS + 5)]
    for agent in peers:
        mdns._on_change(None, MDNS_SERVICE_TYPE, name(agent), added)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    # junk, ourselves and foreign names cost nothing; one resolve per name, at most the cap
    assert mdns.resolved == [name(a) for a in peers[:MAX_MDNS_PEERS]]
    updated = ServiceStateChange.Updated
    for _ in range(3):  # updates during a resolve: one more resolve afterwards, not three
        mdns._on_change(None, MDNS_SERVICE_TYPE, name(peers[0]), updated)  # type: ignore[arg-type]
    assert len(mdns._tasks) == MAX_MDNS_PEERS
    mdns.gate.set()
    await asyncio.wait_for(asyncio.gather(*list(mdns._tasks)), 5)
    assert mdns.resolved.count(name(peers[0])) == 2
    assert len(mdns.resolved) == MAX_MDNS_PEERS + 1
    assert not mdns._tasks and not mdns._resolving
    mdns.gate.clear()  # close() cancels resolves in flight
    mdns._on_change(None, MDNS_SERVICE_TYPE, name(PEER), added)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert mdns.resolved[-1] == name(PEER) and mdns._tasks
    await mdns.close()
    assert not mdns._tasks and not mdns._resolving


def test_reports_are_rate_limited_unless_addresses_change() -> None:
    mdns = _Recorder()
    a1, a2 = ("10.0.0.2:7420",), ("10.0.0.3:7420",)
    assert mdns._report(PEER, a1, now=100.0)
    assert not mdns._report(PEER, a1, now=101.0)
    assert mdns._report(PEER, a2, now=102.0)
    assert mdns._report(PEER, a2, now=102.0 + MIN_REPORT_INTERVAL)
    assert mdns.found == [(PEER, a1), (PEER, a2), (PEER, a2)]


def test_a_failing_callback_does_not_escape() -> None:
    def boom(agent: str, addresses: tuple[str, ...]) -> None:
        raise RuntimeError("boom")

    mdns = MdnsDiscovery(ME, 7420, boom)
    assert mdns._report(PEER, ("10.0.0.2:7420",), now=1.0)


# ---- two daemons on a private LAN -----------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


_lan_numbers = itertools.count()


@pytest.fixture
def lan() -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    """Two namespaces joined by a veth pair: ((ns, address), (ns, address)). Everything
    is deleted afterwards, even after a failure."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip) to build network namespaces")
    pid, n = os.getpid(), next(_lan_numbers)
    ns = (f"sl-mdns-{pid}-{n}a", f"sl-mdns-{pid}-{n}b")
    tag = f"{pid % 1000000}{n % 100}"  # interface names: at most 15 characters
    veth = (f"slm{tag}x", f"slm{tag}y")
    subnet = f"10.{200 + pid % 50}.{(pid + n) % 250}"
    addr = (f"{subnet}.1", f"{subnet}.2")
    made: list[str] = []
    try:
        for name_ in ns:
            _ip("netns", "add", name_)
            made.append(name_)
        _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for n_, v, a in zip(ns, veth, addr, strict=True):
            _ip("link", "set", v, "netns", n_)
            _ip("-n", n_, "addr", "add", f"{a}/24", "dev", v)
            _ip("-n", n_, "link", "set", v, "up", "multicast", "on")
            _ip("-n", n_, "link", "set", "lo", "up")
        yield (ns[0], addr[0]), (ns[1], addr[1])
    finally:
        for name_ in made:
            subprocess.run(["ip", "netns", "del", name_], capture_output=True)
        # a veth not yet moved into a namespace would be left in the root namespace
        subprocess.run(["ip", "link", "del", veth[0]], capture_output=True)


async def _child(netns: str, agent: str, port: int, address: str) -> asyncio.subprocess.Process:
    script = Path(__file__).with_name("mdns_child.py")
    return await asyncio.create_subprocess_exec(
        *["ip", "netns", "exec", netns, sys.executable, str(script), agent, str(port), address],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _read_until(
    proc: asyncio.subprocess.Process, want: Any, deadline: float, what: str
) -> dict[str, Any]:
    """The first JSON line from ``proc`` for which ``want(line)`` holds, before ``deadline``."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), left)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None
        if not raw:
            raise AssertionError(f"child exited ({await proc.wait()}) before {what}")
        line: dict[str, Any] = json.loads(raw)
        if want(line):
            return line


def _poll(fn: Any, what: str) -> Any:
    """Wait for a daemon answer (errors while it starts count as "not yet")."""
    return wait_until(fn, what, 30.0, interval=0.1, tolerate=(Exception,))


@pytest.mark.timeout(60)
async def test_two_discoveries_find_each_other_in_private_namespaces(
    lan: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    (ns_a, addr_a), (ns_b, addr_b) = lan
    id_a, id_b = IdentityKey.generate().agent_id, IdentityKey.generate().agent_id
    a = await _child(ns_a, id_a, 7420, addr_a)
    b = await _child(ns_b, id_b, 7421, addr_b)
    try:
        deadline = time.monotonic() + 30
        for proc, agent in ((a, id_a), (b, id_b)):
            ready = await _read_until(proc, lambda j: "ready" in j, deadline, f"{agent} ready")
            assert ready == {"ready": agent, "running": True}
        found_a, found_b = await asyncio.gather(
            _read_until(a, lambda j: j.get("found") == id_b, deadline, "a finds b"),
            _read_until(b, lambda j: j.get("found") == id_a, deadline, "b finds a"),
        )
        assert found_a["addresses"] == [f"{addr_b}:7421"]
        assert found_b["addresses"] == [f"{addr_a}:7420"]
        for proc in (a, b):  # stdin EOF: close() twice, then exit
            assert proc.stdin is not None
            proc.stdin.close()
        for proc, who in ((a, "a"), (b, "b")):
            line = await _read_until(proc, lambda j: "closed" in j, deadline, f"{who} closed")
            assert line == {"closed": True, "running": False}
            assert await asyncio.wait_for(proc.wait(), max(deadline - time.monotonic(), 1)) == 0
    finally:
        for proc in (a, b):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _daemon(netns: str, home: Path, address: str) -> subprocess.Popen[bytes]:
    args = ["ip", "netns", "exec", netns, sys.executable, "-m", "swarmlink.daemon"]
    args += ["--home", str(home), "--listen", f"{address}:7420", "--log-level", "debug"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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

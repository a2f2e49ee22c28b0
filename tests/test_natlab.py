"""Each NAT preset of the lab behaves as its name says (mapping and filtering).

Every host and server runs a small agent (a ``python -c`` script driven by JSON lines on
stdin/stdout) inside its namespace. Public servers answer each UDP datagram and TCP
connection with the source ``ip:port`` they observed. For each kind we check:

- mapping: the address observed by two different servers from one local port is the
  same (endpoint-independent) for public/fullcone/restricted/double, different for
  symmetric; for a public host it is its own ``ip:port``. Over UDP and TCP.
- filtering: datagrams to the mapped port from a stranger (another public host), and
  from a known server's address but another port, reach the host only for public and
  fullcone.
- hole punching: two restricted hosts reach each other; two symmetric ones do not.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from natlab import KINDS, Host, NatLab, natlab_available, require_natlab

ok, why = natlab_available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

SEED = int(os.environ.get("SWARMLINK_TEST_SEED", "20261122"))
SERVICE_PORT = 3478
STRANGE_PORT = 3479  # a server's second port (same address, another port)
QUIET = 1.0  # how long "nothing arrives" is watched for, seconds

# The agent: one command per stdin line, one JSON answer per stdout line.
AGENT = r"""
import json, socket, sys, threading, time

def addr(a):
    return f"{a[0]}:{a[1]}"

def udp_echo(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(addr(peer).encode(), peer)

def tcp_echo(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(16)
    while True:
        c, peer = ls.accept()
        c.sendall(addr(peer).encode())
        c.close()

socks, conns = {}, []

def handle(cmd):
    op = cmd["op"]
    if op == "serve":
        for fn in (udp_echo, tcp_echo):
            threading.Thread(target=fn, args=(cmd["port"],), daemon=True).start()
        return {}
    if op == "udp_bind":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", cmd["port"]))
        socks[cmd["sock"]] = s
        return {"port": s.getsockname()[1]}
    if op == "udp_ask":  # ask a server for our observed address, retrying
        s, to = socks[cmd["sock"]], tuple(cmd["to"])
        deadline = time.monotonic() + cmd.get("wait", 3.0)
        while time.monotonic() < deadline:
            s.sendto(b"?", to)
            s.settimeout(0.2)
            try:
                while True:
                    data, peer = s.recvfrom(2048)
                    if peer == to:
                        return {"observed": data.decode()}
            except socket.timeout:
                pass
        return {"error": "no answer from " + addr(to)}
    if op == "udp_send":
        s, to = socks[cmd["sock"]], tuple(cmd["to"])
        for i in range(cmd.get("count", 1)):
            if i:
                time.sleep(cmd.get("interval", 0.05))
            s.sendto(cmd["data"].encode(), to)
        return {}
    if op == "udp_recv":  # the first datagram within the wait (skip others than "match")
        s = socks[cmd["sock"]]
        deadline = time.monotonic() + cmd["wait"]
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, peer = s.recvfrom(2048)
            except socket.timeout:
                break
            if cmd.get("match") in (None, data.decode()):
                return {"data": data.decode(), "from": addr(peer)}
        return {"data": None}
    if op == "tcp_ask":  # connect from a fixed local port; the connection stays open
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        c.bind(("0.0.0.0", cmd["port"]))
        c.settimeout(3.0)
        c.connect(tuple(cmd["to"]))
        data = b""
        while True:
            chunk = c.recv(256)
            if not chunk:
                break
            data += chunk
        conns.append(c)
        return {"observed": data.decode()}
    if op == "punch":  # send every interval until the peer's datagram arrives
        s, to = socks[cmd["sock"]], tuple(cmd["to"])
        start = time.monotonic()
        deadline, got, extra = start + cmd["duration"], None, 0
        s.settimeout(cmd["interval"])
        while time.monotonic() < deadline and extra < 3:
            s.sendto(b"punch", to)
            if got is not None:
                extra += 1  # a few more, so the peer's NAT sees an established flow
            try:
                while True:
                    data, peer = s.recvfrom(2048)
                    if data == b"punch" and got is None:
                        got = {"from": addr(peer), "after": time.monotonic() - start}
            except socket.timeout:
                pass
        return {"received": got is not None, **(got or {})}
    raise ValueError("unknown op " + op)

for line in sys.stdin:
    try:
        out = handle(json.loads(line))
    except Exception as exc:
        out = {"error": repr(exc)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class Agent:
    """The agent process of one host; :meth:`call` sends a command, returns the answer."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.proc = host.run(
            [sys.executable, "-u", "-c", AGENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._answers: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            out: dict[str, Any] = json.loads(self._answers.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"agent in {self.host.ns} did not answer") from None
        if "error" in out:
            raise AssertionError(f"agent in {self.host.ns}: {out['error']}")
        return out

    def call(self, timeout: float = 10.0, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.answer(timeout)

    def stop(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=3)
        self.proc.stdout.close()


@dataclass
class Lab:
    lab: NatLab
    servers: list[Agent]  # two echo servers and a stranger, all public
    hosts: dict[str, Agent]  # one per kind
    peers: dict[str, tuple[Agent, Agent]]  # hole punching pairs
    ports: Iterator[int]  # fresh local ports, reproducible from SEED


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_natlab()
    agents: list[Agent] = []
    rng = random.Random(SEED)
    ports = iter(rng.sample(range(20000, 40000), 200))
    with NatLab() as natlab:
        try:

            def agent(host: Host) -> Agent:
                agents.append(Agent(host))
                return agents[-1]

            servers = [agent(natlab.add_public_server(n)) for n in ("srv1", "srv2", "strngr")]
            hosts = {kind: agent(natlab.add_host(kind)) for kind in KINDS}
            peers = {
                kind: (agent(natlab.add_host(kind)), agent(natlab.add_host(kind)))
                for kind in ("restricted", "symmetric")
            }
            for srv in servers:
                srv.call(op="serve", port=SERVICE_PORT)
                srv.call(op="udp_bind", sock="alt", port=STRANGE_PORT)
            print(f"\nNAT lab prefix {natlab.prefix}, seed {SEED}, namespaces:")
            for h in natlab.hosts:
                print(f"  {h.ns:16} {h.kind:10} ip {h.ip:15} public {h.public_ip}")
            yield Lab(natlab, servers, hosts, peers, ports)
        finally:
            for a in agents:
                a.stop()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{natlab.prefix}-" not in left, left


def _ip_port(text: str) -> tuple[str, int]:
    ip, port = text.rsplit(":", 1)
    return ip, int(port)


EIM = {"public", "fullcone", "restricted", "double"}  # endpoint-independent mapping
OPEN = {"public", "fullcone"}  # endpoint-independent filtering


def _check_mapping(kind: str, host: Host, port: int, seen: list[str]) -> None:
    """Both servers saw the NAT's public IP; the same port iff the mapping is
    endpoint-independent; a public host is seen at its own address."""
    (ip1, p1), (ip2, p2) = map(_ip_port, seen)
    assert ip1 == ip2 == host.public_ip
    if kind in EIM:
        assert p1 == p2, seen
    else:
        assert p1 != p2, seen
    if kind == "public":
        assert (ip1, p1) == (host.ip, port)


@pytest.mark.parametrize("kind", KINDS)
def test_udp_mapping(lab: Lab, kind: str) -> None:
    host, (s1, s2, _) = lab.hosts[kind], lab.servers
    port = next(lab.ports)
    sock = f"map{port}"
    host.call(op="udp_bind", sock=sock, port=port)
    seen = [
        host.call(op="udp_ask", sock=sock, to=[s.host.ip, SERVICE_PORT])["observed"]
        for s in (s1, s2)
    ]
    print(f"{kind}: udp local {host.host.ip}:{port} observed {seen}")
    _check_mapping(kind, host.host, port, seen)


@pytest.mark.parametrize("kind", KINDS)
def test_tcp_mapping(lab: Lab, kind: str) -> None:
    host, (s1, s2, _) = lab.hosts[kind], lab.servers
    port = next(lab.ports)
    seen = [
        host.call(op="tcp_ask", port=port, to=[s.host.ip, SERVICE_PORT])["observed"]
        for s in (s1, s2)
    ]
    print(f"{kind}: tcp local {host.host.ip}:{port} observed {seen}")
    _check_mapping(kind, host.host, port, seen)


@pytest.mark.parametrize("kind", KINDS)
def test_udp_filtering(lab: Lab, kind: str) -> None:
    """After talking to srv1 and srv2, does the mapped port accept a stranger's datagram
    (other address) and one from srv1's address but another port?"""
    host, (s1, s2, stranger) = lab.hosts[kind], lab.servers
    port = next(lab.ports)
    sock = f"filt{port}"
    host.call(op="udp_bind", sock=sock, port=port)
    mapped = [
        _ip_port(host.call(op="udp_ask", sock=sock, to=[s.host.ip, SERVICE_PORT])["observed"])
        for s in (s1, s2)
    ]
    results = {}
    for label, sender in (("stranger", stranger), ("srv1:other-port", s1)):
        # The mapping towards srv1 is the one a peer would have learned.
        sender.call(op="udp_send", sock="alt", to=list(mapped[0]), data=label, count=5)
        got = host.call(timeout=QUIET + 5, op="udp_recv", sock=sock, wait=QUIET, match=label)
        results[label] = got["data"]
        if kind in OPEN:
            assert got["data"] == label, (label, got)
            assert _ip_port(got["from"]) == (sender.host.ip, STRANGE_PORT)
        else:
            assert got["data"] is None, (label, got)
    print(f"{kind}: mapped {mapped[0]}, unsolicited delivered: {results}")


@pytest.mark.parametrize(("kind", "expect"), [("restricted", True), ("symmetric", False)])
def test_udp_hole_punching(lab: Lab, kind: str, expect: bool) -> None:
    a, b = lab.peers[kind]
    s1 = lab.servers[0]
    mapped = {}
    for peer in (a, b):
        port = next(lab.ports)
        peer.call(op="udp_bind", sock="punch", port=port)
        mapped[peer] = peer.call(op="udp_ask", sock="punch", to=[s1.host.ip, SERVICE_PORT])[
            "observed"
        ]
    # Both start at once: each sends every 50 ms for up to 2 s.
    a.send(op="punch", sock="punch", to=list(_ip_port(mapped[b])), interval=0.05, duration=2.0)
    b.send(op="punch", sock="punch", to=list(_ip_port(mapped[a])), interval=0.05, duration=2.0)
    ra, rb = a.answer(), b.answer()
    print(f"{kind} pair: mapped {mapped[a]} <-> {mapped[b]}; a got {ra}, b got {rb}")
    assert ra["received"] is expect, ra
    assert rb["received"] is expect, rb
    if expect:
        assert ra["from"] == mapped[b]
        assert rb["from"] == mapped[a]


def test_lab_cleans_up_after_an_exception() -> None:
    require_natlab()
    with pytest.raises(RuntimeError, match="boom"), NatLab() as natlab:
        host = natlab.add_host("restricted")
        assert host.exec(["ip", "-br", "addr"]).stdout
        assert len(natlab.namespaces) == 3  # inet, the NAT, the host
        prefix = natlab.prefix
        raise RuntimeError("boom")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{prefix}-" not in left, left
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert prefix not in links, links

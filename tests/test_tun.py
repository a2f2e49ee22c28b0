"""TUN mode with real software: each agent in its own network namespace (one TUN per
namespace can carry the overlay prefix), daemons started with the real CLI
(``up --tun``), and unmodified programs talking to ``[virtual address]:PORT``:

- HTTP: ``python -m http.server`` and ``curl``, a 64 MiB download (sha256 checked) and
  100 requests, 20 at a time;
- gRPC: grpcio unary, server-streaming and bidirectional calls (``grpc_child.py``);
- SSH: a real OpenSSH server with its own host key and config, ``ssh`` running a
  command, ``scp`` and ``sftp`` copying files;
- refusals that come back at once instead of hanging: a port not exposed, a port exposed
  to someone else, an agent that is not trusted, an address no agent has;
- clear errors: without CAP_NET_ADMIN, and for a second TUN in one namespace.

Needs root, iproute2, nftables and /dev/net/tun (``make test`` installs the tools in CI).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ssh_server
from helpers import CLI, daemon_env, run, run_json, wait_for
from netns_lab import Box, NatLab, lab_available

SEED = 5150
_ENV = daemon_env()


def _tun_available() -> tuple[bool, str]:
    ok, why = lab_available()
    if ok and not os.path.exists("/dev/net/tun"):
        return False, "TUN mode needs /dev/net/tun"
    return ok, why


_ok, _why = _tun_available()
pytestmark = pytest.mark.skipif(not _ok, reason=_why)


@dataclass
class Agent:
    box: Box
    home: Path
    agent_id: str = ""
    vaddr: str = ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.home, *args, check=check)

    def sh(
        self, args: list[str], *, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a program inside this agent's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.box.ns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_ENV,
            **kw,
        )

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """``swarmlink up`` inside the namespace (the daemon it starts stays there)."""
        args = [*CLI, "--home", str(self.home), "up", "--no-mdns", *extra]
        return self.sh(args)

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.box.ns, *args], text=True, **kw)


@pytest.fixture(scope="module")
def lab() -> Iterator[NatLab]:
    """One lab for the module (its names carry the process ID: one at a time)."""
    with NatLab() as lab:
        yield lab


@pytest.fixture(scope="module")
def tunlab(lab: NatLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Agent]]:
    """Agents a, b, c in three namespaces, TUN on each; a and b trust each other, c is
    connected to b but not trusted."""
    tmp = tmp_path_factory.mktemp("tun")
    if True:
        agents = {n: Agent(lab.add(n, "public", pool=i), tmp / n) for i, n in enumerate("abc")}
        try:
            for agent in agents.values():
                out = agent.up("--listen", f"{agent.box.ip}:7420", "--tun", "--json")
                assert out.returncode == 0, out.stderr
                status = json.loads(out.stdout)
                agent.agent_id, agent.vaddr = status["agent_id"], status["virtual_address"]
            a, b, c = agents["a"], agents["b"], agents["c"]
            a.cli("connect", f"{b.agent_id}@{b.box.ip}:7420")
            c.cli("connect", f"{b.agent_id}@{b.box.ip}:7420")
            a.cli("trust", "request", b.agent_id)
            wait_for(lambda: run_json(b.home, "trust", "pending"), "a's trust request at b")
            b.cli("trust", "approve", a.agent_id)
            wait_for(
                lambda: any(t["agent_id"] == b.agent_id for t in run_json(a.home, "trust", "list")),
                "trust at a",
            )
            yield agents
        finally:
            for agent in agents.values():
                if (agent.home / "control.sock").exists():
                    agent.cli("down", check=False)


def test_tun_interface_carries_the_virtual_address(tunlab: dict[str, Agent]) -> None:
    a = tunlab["a"]
    status = run_json(a.home, "status")
    assert status["tun"] == "swarm0" and status["tun_mtu"] == 65535
    shown = a.sh(["ip", "-6", "addr", "show", "dev", "swarm0"]).stdout
    assert f"{a.vaddr}/48" in shown
    routes = a.sh(["ip", "-6", "route", "show", "fd5a:7761:726d::/48"]).stdout
    assert "dev swarm0" in routes
    assert "TUN" in a.cli("status").stdout and "swarm0 mtu 65535" in a.cli("status").stdout


@pytest.fixture
def http_server(tunlab: dict[str, Agent], tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """python -m http.server in b's namespace on [::]:PORT, serving a directory, exposed."""
    b = tunlab["b"]
    tmp_path = tmp_path / "served"
    tmp_path.mkdir()
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    (tmp_path / "big.bin").write_bytes(rng.randbytes(64 * 1024 * 1024))
    for i in range(100):
        (tmp_path / f"small{i}.txt").write_text(f"file {i} " * (i + 1))
    port = 18000 + os.getpid() % 1000
    proc = b.popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "::", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (
                b.sh(
                    ["curl", "-sf", "-o", "/dev/null", f"http://[::1]:{port}/small0.txt"]
                ).returncode
                == 0
            ),
            "http.server",
        )
        b.cli("expose", str(port), "--name", "web")
        yield port, tmp_path
    finally:
        b.cli("unexpose", str(port), check=False)
        proc.terminate()
        proc.wait(10)


def test_http_large_download_and_concurrent_requests(
    tunlab: dict[str, Agent], http_server: tuple[int, Path], tmp_path: Path
) -> None:
    a, b = tunlab["a"], tunlab["b"]
    port, root = http_server
    base = f"http://[{b.vaddr}]:{port}"
    started = time.monotonic()
    got = tmp_path / "downloaded.bin"
    out = a.sh(["curl", "-sS", "--max-time", "120", "-o", str(got), f"{base}/big.bin"], timeout=130)
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    want = hashlib.sha256(root.joinpath("big.bin").read_bytes()).hexdigest()
    assert hashlib.sha256(got.read_bytes()).hexdigest() == want
    print(f"64 MiB over TUN in {seconds:.2f}s ({64 / seconds:.0f} MiB/s, includes curl start)")

    dest = tmp_path / "got"
    dest.mkdir()
    args = ["curl", "-sS", "--max-time", "60", "--parallel", "--parallel-max", "20"]
    for i in range(100):
        args += [f"{base}/small{i}.txt", "-o", str(dest / f"small{i}.txt")]
    out = a.sh(args, timeout=90)
    assert out.returncode == 0, out.stderr
    for i in range(100):
        assert (dest / f"small{i}.txt").read_text() == f"file {i} " * (i + 1)
    counters = run_json(a.home, "status")["tun_counters"]
    assert counters["packets_in"] > 1000 and counters["bytes_in"] > 64 * 1024 * 1024


def test_grpc_unary_streaming_and_bidirectional(tunlab: dict[str, Agent]) -> None:
    pytest.importorskip("grpc")
    a, b = tunlab["a"], tunlab["b"]
    child = str(Path(__file__).with_name("grpc_child.py"))
    server = b.popen(
        [sys.executable, child, "server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        b.cli("expose", str(port), "--allow", a.agent_id)
        out = a.sh([sys.executable, child, "client", f"[{b.vaddr}]:{port}"], timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {
            "ping": "pong:hi",
            "many": 50,
            "many_ok": True,
            "chat_ok": True,
            "chat": 200,
        }
    finally:
        b.cli("unexpose", str(port), check=False)
        assert server.stdin is not None and server.stdout is not None
        server.stdin.close()
        server.wait(10)
        server.stdout.close()


def test_ssh_scp_and_sftp(tunlab: dict[str, Agent], tmp_path: Path) -> None:
    a, b = tunlab["a"], tunlab["b"]
    d = tmp_path
    port = 19000 + os.getpid() % 1000
    b.cli("expose", str(port), "--name", "ssh")
    prefix = ("ip", "netns", "exec", b.box.ns)
    try:
        with ssh_server.sshd(d, port, listen="::", prefix=prefix) as opts:
            wait_for(
                lambda: (
                    a.sh(["ssh", "-p", str(port), *opts, f"root@{b.vaddr}", "true"]).returncode == 0
                ),
                "sshd answering over TUN",
            )
            out = a.sh(["ssh", "-p", str(port), *opts, f"root@{b.vaddr}", "echo", "over-tun"])
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "over-tun"
            payload = d / "payload.bin"
            payload.write_bytes(random.Random(SEED).randbytes(4 * 1024 * 1024))
            out = a.sh(
                ["scp", "-P", str(port), *opts, str(payload), f"root@[{b.vaddr}]:{d / 'scp.bin'}"]
            )
            assert out.returncode == 0, out.stderr
            assert (d / "scp.bin").read_bytes() == payload.read_bytes()
            (d / "batch").write_text(f"get {payload} {d / 'sftp.bin'}\n")
            out = a.sh(
                ["sftp", "-P", str(port), *opts, "-b", str(d / "batch"), f"root@[{b.vaddr}]"]
            )
            assert out.returncode == 0, out.stderr
            assert (d / "sftp.bin").read_bytes() == payload.read_bytes()
    finally:
        b.cli("unexpose", str(port), check=False)


_CONNECT = """
import errno, socket, sys, time
started = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20).close()
    print("connected")
except OSError as exc:
    name = "timeout" if isinstance(exc, TimeoutError) else errno.errorcode.get(exc.errno, "?")
    print(name, round((time.monotonic() - started) * 1000))
"""


def _refused_fast(agent: Agent, address: str, port: int) -> str:
    """A TCP connect from ``agent``'s namespace fails at once (not by timing out); the
    errno name."""
    out = agent.sh([sys.executable, "-c", _CONNECT, address, str(port)], timeout=30)
    assert out.returncode == 0, out.stderr
    name, *took = out.stdout.split()
    print(f"[{address}]:{port} from {agent.box.name}: {name} after {took} ms")
    assert name not in ("timeout", "connected"), out.stdout
    return name


def test_refusals_come_back_at_once(
    tunlab: dict[str, Agent], http_server: tuple[int, Path]
) -> None:
    a, b, c = tunlab["a"], tunlab["b"], tunlab["c"]
    port, _ = http_server
    # A port b does not expose: "connection refused" (b answers with a RST).
    assert _refused_fast(a, b.vaddr, port + 1) == "ECONNREFUSED"
    # Exposed, but only to c: the same answer (a cannot tell "not allowed" apart).
    b.cli("expose", str(port + 2), "--allow", c.agent_id)
    try:
        assert _refused_fast(a, b.vaddr, port + 2) == "ECONNREFUSED"
    finally:
        b.cli("unexpose", str(port + 2))
    # c is not trusted by b: b refuses the packet stream, c's node answers locally
    # (ICMPv6 administratively prohibited: "permission denied").
    assert _refused_fast(c, b.vaddr, port) == "EACCES"
    # An address no agent known to a has: ICMPv6 address unreachable.
    assert _refused_fast(a, "fd5a:7761:726d:1:2:3:4:5", port) == "EHOSTUNREACH"
    # And a, allowed, still gets through: nothing was broken by the refusals.
    out = a.sh(["curl", "-sS", "--max-time", "20", f"http://[{b.vaddr}]:{port}/small3.txt"])
    assert out.returncode == 0 and out.stdout == "file 3 " * 4
    assert run_json(b.home, "status")["tun_counters"]["refused"] >= 2


def test_tun_between_two_agents_behind_symmetric_nats_found_by_id(
    lab: NatLab, tmp_path: Path
) -> None:
    """Neither can be dialed nor punched: the packets ride the relayed session, and the
    agents found each other by ID alone (DHT, relay from their records)."""
    boot = Agent(lab.add("boot", "public", pool=0), tmp_path / "boot")
    relay = Agent(lab.add("relay", "public", pool=1), tmp_path / "relay")
    d = Agent(lab.add("d", "symmetric", pool=2), tmp_path / "d")
    e = Agent(lab.add("e", "symmetric", pool=2), tmp_path / "e")
    agents = (boot, relay, d, e)
    served = tmp_path / "served"
    served.mkdir()
    (served / "hello.txt").write_text("hello through the relay\n")
    web = None
    try:
        out = boot.up("--listen", f"{boot.box.ip}:7420", "--relay", "--json")
        assert out.returncode == 0, out.stderr
        bootstrap = f"{json.loads(out.stdout)['agent_id']}@{boot.box.ip}:7420"
        # A second public node in another network: a private verdict needs two views.
        out = relay.up("--listen", f"{relay.box.ip}:7420", "--relay", "-b", bootstrap)
        assert out.returncode == 0, out.stderr
        for agent in (d, e):
            out = agent.up("--listen", f"{agent.box.ip}:7420", "--tun", "--json", "-b", bootstrap)
            assert out.returncode == 0, out.stderr
            status = json.loads(out.stdout)
            agent.agent_id, agent.vaddr = status["agent_id"], status["virtual_address"]
        for agent in (d, e):  # each finds out it is private and reserves on the relay
            wait_for(lambda a=agent: run_json(a.home, "status")["relays"], "a relay", 60)
        d.cli("trust", "request", e.agent_id)  # by ID alone
        wait_for(lambda: run_json(e.home, "trust", "pending"), "d's request at e", 60)
        e.cli("trust", "approve", d.agent_id)
        wait_for(lambda: run_json(d.home, "trust", "list"), "trust at d", 60)
        web = e.popen(
            [sys.executable, "-m", "http.server", "18100", "--bind", "::", "-d", str(served)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        e.cli("expose", "18100")
        url = f"http://[{e.vaddr}]:18100/hello.txt"
        got = wait_for(
            lambda: d.sh(["curl", "-sf", "--max-time", "10", url]).stdout, "curl over TUN", 60
        )
        assert got == "hello through the relay\n"
        peers = {p["agent_id"]: p for p in run_json(d.home, "peers")}
        assert peers[e.agent_id]["path"].startswith("relayed"), peers[e.agent_id]
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        for agent in agents:
            if (agent.home / "control.sock").exists():
                agent.cli("down", check=False)


def test_a_second_tun_in_one_namespace_is_a_clear_error(
    tunlab: dict[str, Agent], tmp_path: Path
) -> None:
    a = tunlab["a"]
    other = Agent(a.box, tmp_path / "second")
    out = other.up("--listen", f"{a.box.ip}:7421", "--tun", "--tun-name", "swarm1")
    assert out.returncode != 0
    assert "swarm0 already routes the overlay prefix" in out.stderr, out.stderr
    # The first node is untouched.
    assert run_json(a.home, "status")["tun"] == "swarm0"


def test_without_cap_net_admin_tun_mode_is_a_clear_error(tmp_path: Path) -> None:
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("needs capsh (libcap2-bin) to drop CAP_NET_ADMIN")
    home = tmp_path / "nocap"
    command = " ".join(
        [*CLI, "--home", str(home), "up", "--listen", "127.0.0.1:0", "--no-mdns", "--tun"]
    )
    out = subprocess.run(
        [capsh, "--drop=cap_net_admin", "--", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=_ENV,
    )
    assert out.returncode != 0
    assert "TUN mode needs root (or CAP_NET_ADMIN)" in out.stderr, out.stderr
    assert not (home / "control.sock").exists()

"""SOCKS5 into the overlay with real daemons, the real CLI and real curl: a large
download and many concurrent requests from an unmodified HTTP server, by agent ID, by
service name and by virtual IPv6 address; a refused agent and an unknown name get the
proper SOCKS5 reply codes at once, not a hang."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run, run_json
from test_e2e_cli import Daemon, establish_trust, free_port

from swarmlink.identity import virtual_address
from swarmlink.tunnel import CONNECTION_REFUSED, HOST_UNREACHABLE, NOT_ALLOWED

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="needs curl")
BIG = 24 * 1024 * 1024


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon, Daemon]]:
    daemons = [Daemon(tmp_path / n, free_port()) for n in ("a", "b", "c")]
    try:
        for d in daemons:
            d.up()
        yield daemons[0], daemons[1], daemons[2]
    finally:
        for d in daemons:
            d.down()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """``python -m http.server`` serving a 24 MiB file (unmodified software)."""
    root = tmp_path / "www"
    root.mkdir()
    blob = hashlib.sha256(b"seed").digest() * (BIG // 32)
    (root / "big.bin").write_bytes(blob)
    (root / "hello.txt").write_text("hello through the overlay\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import socket

        from helpers import wait_for

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, "http.server listening")
        yield port, blob
    finally:
        proc.terminate()
        proc.wait()


def curl(
    proxy: str, url: str, *extra: str, out: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    args = [CURL or "curl", "-sS", "--max-time", "60", *extra]
    if out is not None:
        args += ["-o", str(out)]
    return subprocess.run([*args, url, "--noproxy", "", "--proxy", proxy], capture_output=True)


async def socks_reply(proxy: str, host: str, port: int) -> int:
    """The REP byte a SOCKS5 CONNECT to ``host:port`` gets (hand-written client)."""
    phost, pport = proxy.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(phost, int(pport))
    try:
        name = host.encode()
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name)
        writer.write(port.to_bytes(2, "big"))
        assert await reader.readexactly(2) == b"\x05\x00"
        async with asyncio.timeout(40):
            head = await reader.readexactly(4)
        return head[1]
    finally:
        writer.close()


def test_curl_through_socks5_by_id_name_and_virtual_address(
    trio: tuple[Daemon, Daemon, Daemon], web: tuple[int, bytes], tmp_path: Path
) -> None:
    a, b, c = trio
    port, blob = web
    establish_trust(a, b)
    run(b.home, "expose", str(port), "--name", "web")
    # a asks b what b exposes to it.
    assert run_json(a.home, "services", b.agent_id)["services"] == [{"port": port, "name": "web"}]
    proxy = run_json(a.home, "proxy", "--socks5", "127.0.0.1:0")["socks5"]
    assert run_json(a.home, "proxy")["socks5"] == [proxy]
    socks = f"socks5h://{proxy}"

    # A large download by agent ID, checked byte for byte.
    out = tmp_path / "big.out"
    done = curl(socks, f"http://{b.agent_id}.swarm:{port}/big.bin", out=out)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()
    # By service name, and by virtual IPv6 address (curl resolves nothing: socks5h).
    for url in (
        f"http://web.{b.agent_id}.swarm/hello.txt",
        f"http://[{virtual_address(b.agent_id)}]:{port}/hello.txt",
    ):
        got = curl(socks, url)
        assert got.returncode == 0 and got.stdout == b"hello through the overlay\n", got.stderr
    # A port forward to the service by name.
    fwd = run_json(a.home, "forward", "0", f"{b.agent_id}:web")
    assert fwd["remote_name"] == "web"
    got = subprocess.run(
        [
            CURL or "curl",
            "-sS",
            "--noproxy",
            "*",
            f"http://127.0.0.1:{fwd['local_port']}/hello.txt",
        ],
        capture_output=True,
    )
    assert got.stdout == b"hello through the overlay\n", got.stderr
    # Many concurrent requests.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda i: curl(socks, f"http://{b.agent_id}.swarm:{port}/hello.txt?{i}"),
                range(32),
            )
        )
    assert all(r.returncode == 0 and r.stdout.startswith(b"hello") for r in results)

    # The same port answers HTTP CONNECT (curl -p: tunnel through an HTTP proxy).
    via_http = curl(f"http://{proxy}", f"http://{b.agent_id}.swarm:{port}/hello.txt", "-p")
    assert via_http.returncode == 0 and via_http.stdout.startswith(b"hello"), via_http.stderr
    unknown = curl(f"http://{proxy}", "http://nobody-advertises-this.swarm:80/", "-p")
    assert unknown.returncode != 0 and b"404" in unknown.stderr
    # Refusals are SOCKS5 reply codes, at once.
    assert asyncio.run(socks_reply(proxy, f"{b.agent_id}.swarm", 1)) == CONNECTION_REFUSED
    assert asyncio.run(socks_reply(proxy, "nobody-advertises-this.swarm", 80)) == HOST_UNREACHABLE
    assert asyncio.run(socks_reply(proxy, "example.com", 80)) == HOST_UNREACHABLE
    run(a.home, "connect", c.target)
    assert asyncio.run(socks_reply(proxy, f"{c.agent_id}.swarm", port)) == NOT_ALLOWED
    failed = curl(socks, f"http://{c.agent_id}.swarm:{port}/hello.txt")
    assert failed.returncode != 0
    # The daemon carries on.
    assert curl(socks, f"http://{b.agent_id}.swarm:{port}/hello.txt").returncode == 0

"""TUN mode benchmark (root): HTTP through two agents' TUN interfaces vs. the same client
and server on loopback, in the same run.

Two network namespaces joined by a veth pair (one TUN per namespace can carry the
overlay prefix), a daemon with ``--tun`` in each, ``python -m http.server`` on ``[::]``
in one, ``curl`` in the other at ``[virtual address]:PORT``. Everything is deleted
afterwards. Run alone: ``python bench/tun.py [--quick]`` (JSON on stdout).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import curl  # bench/curl.py

CLI = [sys.executable, "-m", "swarmlink"]
#: Extra ``up`` options (SWARMLINK_BENCH_TUN_MTU tries another MTU).
_TUN_ARGS = ["--no-mdns", "--tun", "--json"] + (
    ["--tun-mtu", os.environ["SWARMLINK_BENCH_TUN_MTU"]]
    if os.environ.get("SWARMLINK_BENCH_TUN_MTU")
    else []
)
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _ns(ns: str | None, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *args] if ns else args


def _wait(fn: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
        except (subprocess.CalledProcessError, OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline


def _cli(home: Path, *args: str) -> Any:
    out = subprocess.run(
        [*CLI, "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def bench_tun(workdir: Path, total: int, requests: int) -> dict[str, Any]:
    """Download throughput and request rate through TUN mode vs. loopback."""
    if os.geteuid() != 0 or shutil.which("ip") is None or not Path("/dev/net/tun").exists():
        return {"skipped": "needs root, iproute2 and /dev/net/tun"}
    _log(f"HTTP through TUN: {total >> 20} MiB download, {requests} requests")
    www = workdir / "tunmode-www"
    www.mkdir()
    (www / "big.bin").write_bytes(os.urandom(1 << 20) * (total >> 20))
    (www / "small.txt").write_text("hello\n")
    tag = f"{os.getpid() % 100000}"
    ns = (f"slb{tag}a", f"slb{tag}b")
    veth = (f"slb{tag}x", f"slb{tag}y")
    addr = ("10.231.7.1", "10.231.7.2")
    procs: list[subprocess.Popen[bytes]] = []
    homes = (workdir / "tunmode-a", workdir / "tunmode-b")  # not bench_tunnel's homes
    made: list[str] = []
    try:
        for name in ns:
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for n, v, a in zip(ns, veth, addr, strict=True):
            _ip("link", "set", v, "netns", n)
            _ip("-n", n, "addr", "add", f"{a}/24", "dev", v)
            _ip("-n", n, "link", "set", v, "up")
        status = []
        for n, home, a in zip(ns, homes, addr, strict=True):
            out = subprocess.run(
                _ns(n, [*CLI, "--home", str(home), "up", "--listen", f"{a}:7420", *_TUN_ARGS]),
                capture_output=True,
                text=True,
                env=_ENV,
                timeout=60,
            )
            if out.returncode != 0:
                raise RuntimeError(f"daemon with --tun did not start: {out.stderr}")
            status.append(json.loads(out.stdout))
        sa, sb = status
        _cli(homes[0], "connect", f"{sb['agent_id']}@{addr[1]}:7420")
        _cli(homes[0], "trust", "request", sb["agent_id"])
        _wait(lambda: _cli(homes[1], "trust", "pending"), "trust request")
        _cli(homes[1], "trust", "approve", sa["agent_id"])
        port = 18080
        for n in (None, ns[1]):  # loopback baseline in this namespace, the server in b
            procs.append(
                subprocess.Popen(
                    _ns(n, [sys.executable, "-m", "http.server", str(port), "--bind", "::"]),
                    cwd=www,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        _cli(homes[1], "expose", str(port))
        tun_url = f"http://[{sb['virtual_address']}]:{port}"
        paths: dict[str, curl.Path] = {
            "direct": (None, f"http://[::1]:{port}", ()),
            "tun": (ns[0], tun_url, ()),
            "veth_plain": (ns[0], f"http://{addr[1]}:{port}", ()),
        }
        _wait(lambda: curl.curl_speed(f"http://[::1]:{port}/small.txt"), "http.server")
        _wait(lambda: curl.curl_speed(f"{tun_url}/small.txt", ns=ns[0]), "http over TUN")
        results: dict[str, Any] = {"bytes": total, "requests": requests}
        results.update(curl.measure(paths, requests))
        results["tun"]["counters"] = _cli(homes[1], "status")["tun_counters"]
        results["target"] = {"tun": 0.25}
        return results
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        for home in homes:
            if (home / "control.sock").exists():
                subprocess.run([*CLI, "--home", str(home), "down"], capture_output=True)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", veth[0]], capture_output=True)


async def run(workdir: Path, big: bool) -> dict[str, Any]:
    return await asyncio.to_thread(
        bench_tun, workdir, (256 if big else 32) << 20, 300 if big else 50
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="swarmlink-bench-") as tmp:
        print(json.dumps(asyncio.run(run(Path(tmp), "--quick" not in sys.argv)), indent=2))

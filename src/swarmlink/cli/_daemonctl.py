"""``swarmlink up`` / ``down``: start the daemon in the background and wait until it answers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import NodeNotRunning, SwarmlinkError
from ..runtime.config import DEFAULT_PORT, TunConfig, parse_hostport
from ..runtime.model import NodeStatus
from ..wire.address import format_hostport

__all__ = ["UP_TIMEOUT", "parse_listen", "start_background", "stop", "wait_gone"]

#: Seconds ``up`` waits for a new daemon to answer on its control socket.
UP_TIMEOUT = 20.0
#: Seconds ``down`` waits for the daemon to exit.
DOWN_TIMEOUT = 20.0


def parse_listen(values: list[str] | None) -> tuple[tuple[str, int], ...]:
    if not values:
        return (("0.0.0.0", DEFAULT_PORT),)
    return tuple(parse_hostport(v, default_port=DEFAULT_PORT) for v in values)


async def _status(home: Path) -> NodeStatus:
    from ..client import Client

    async with Client(home, timeout=5.0) as client:
        return await client.status()


async def running_status(home: Path) -> NodeStatus | None:
    try:
        return await _status(home)
    except NodeNotRunning:
        return None


def _log_tail(home: Path, lines: int = 15) -> str:
    log = home / "swarmlink.log"
    if not log.exists():
        return "(no log written)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _spawn(args: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    """Start the daemon detached from this terminal (own session, no stdin/stdout)."""
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def start_background(
    home: Path,
    listen: tuple[tuple[str, int], ...],
    log_level: str,
    *,
    bootstrap: Sequence[str] = (),
    advertise: Sequence[str] = (),
    mdns: bool = True,
    relay: bool = False,
    relays: Sequence[str] = (),
    hole_punching: bool = True,
    punch_transports: Sequence[str] = (),
    socks5: str | None = None,
    relay_limits: Sequence[str] = (),
    tun: TunConfig | None = None,
    region: str = "",
) -> NodeStatus:
    """Spawn ``python -m swarmlink.daemon`` detached; return its status once it answers."""
    if await running_status(home) is not None:
        raise SwarmlinkError(f"a swarmlink daemon is already running in {home}")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    args = [sys.executable, "-m", "swarmlink.daemon", "--home", str(home), "--log-level", log_level]
    for host, port in listen:
        args += ["--listen", format_hostport(host, port)]
    for peer in bootstrap:
        args += ["--bootstrap", peer]
    for address in advertise:
        args += ["--advertise", address]
    if not mdns:
        args.append("--no-mdns")
    if relay:
        args.append("--relay")
    for text in relays:
        args += ["--relay-via", text]
    if not hole_punching:
        args.append("--no-hole-punching")
    for kind in punch_transports:
        args += ["--punch-transport", kind]
    if socks5:
        args += ["--socks5", socks5]
    for text in relay_limits:
        args += ["--relay-limit", text]
    if tun is not None:
        args += ["--tun", "--tun-name", tun.name, "--tun-mtu", str(tun.mtu)]
    if region:
        args += ["--region", region]
    stderr_path = home / "daemon.stderr"
    proc = _spawn(args, stderr_path)
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        code = proc.poll()
        if code is not None:
            detail = stderr_path.read_text(errors="replace").strip() or _log_tail(home)
            raise SwarmlinkError(f"the daemon exited with code {code}:\n{detail}")
        try:
            return await _status(home)
        except NodeNotRunning:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise SwarmlinkError(
                f"the daemon did not answer within {UP_TIMEOUT:.0f}s; log:\n{_log_tail(home)}"
            )
        await asyncio.sleep(0.05)


async def stop(home: Path) -> int:
    """Ask the daemon to shut down and wait until it is gone; returns its pid."""
    from ..client import Client

    status = await _status(home)
    async with Client(home, timeout=10.0) as client:
        await client.shutdown()
    await wait_gone(home, status.pid)
    return status.pid


async def wait_gone(home: Path, pid: int) -> None:
    deadline = time.monotonic() + DOWN_TIMEOUT
    while _alive(pid) or (home / "control.sock").exists():
        if time.monotonic() > deadline:
            raise SwarmlinkError(f"the daemon (pid {pid}) did not stop within {DOWN_TIMEOUT:.0f}s")
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child in tests) counts as gone
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except OSError:
        return False

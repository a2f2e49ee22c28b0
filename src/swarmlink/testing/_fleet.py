"""A fleet of real swarmlink daemons on loopback, for tests, benchmarks and demos.

Each member is a separate ``python -m swarmlink.daemon`` process with its own home under
``root``, listening on 127.0.0.1 on a free port; members after the first bootstrap their
DHT from the first. :meth:`Fleet.trust_all` makes every pair trust each other through the
real protocol (request, then approval), which is what a team of agents sharing a gossip
network looks like.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..client import Client
from ..errors import NetworkError, SwarmlinkError

__all__ = ["Fleet", "FleetMember"]

#: Seconds a daemon gets to answer on its control socket after it was started.
START_TIMEOUT = 120.0
#: Pairs whose trust is being set up at once.
TRUST_CONCURRENCY = 8
#: Seconds one trust request may take to arrive.
TRUST_TIMEOUT = 30.0
#: Connection attempts per pair: on a box running 100 daemons a handshake can outlast
#: its timeout (seen once in ~3,700 connects); a person would simply try again.
CONNECT_ATTEMPTS = 3


@dataclass
class FleetMember:
    """One daemon of a fleet."""

    index: int
    home: Path
    proc: subprocess.Popen[bytes]
    client: Client
    agent_id: str = ""
    address: str = ""  # "127.0.0.1:PORT"

    @property
    def target(self) -> str:
        """``AGENT@HOST:PORT``, for ``connect`` and ``--bootstrap``."""
        return f"{self.agent_id}@{self.address}"


class Fleet:
    """``size`` local daemons (see the module docstring). Use ``async with``."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        regions: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        log_level: str = "warning",
        progress: Callable[[str], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a fleet has at least one daemon")
        self.root = root
        self.size = size
        self.regions = tuple(regions)
        self.extra_args = tuple(extra_args)
        self.log_level = log_level
        self.members: list[FleetMember] = []
        #: The daemons' environment (default: ours).
        self.env = dict(os.environ if env is None else env)
        self._progress = progress or (lambda _: None)

    async def __aenter__(self) -> Fleet:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    @property
    def clients(self) -> list[Client]:
        return [m.client for m in self.members]

    def _spawn(self, index: int, bootstrap: str | None) -> FleetMember:
        home = self.root / f"node{index:03d}"
        args = [sys.executable, "-m", "swarmlink.daemon", "--home", str(home)]
        args += ["--listen", "127.0.0.1:0", "--log-level", self.log_level, "--no-mdns"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        if self.regions:
            args += ["--region", self.regions[index % len(self.regions)]]
        args += self.extra_args
        home.mkdir(parents=True, exist_ok=True)
        with open(home / "daemon.stderr", "wb") as err:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=self.env)
        return FleetMember(index, home, proc, Client(home))

    async def _ready(self, member: FleetMember) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                status = await member.client.status()
            except SwarmlinkError:
                if member.proc.poll() is not None:
                    tail = (member.home / "daemon.stderr").read_text(errors="replace")[-2000:]
                    raise SwarmlinkError(
                        f"daemon {member.index} exited with {member.proc.returncode}: {tail}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            member.agent_id = status.agent_id
            member.address = status.listen[0]
            return

    async def start(self) -> None:
        """Start every daemon and wait until each answers."""
        first = self._spawn(0, None)
        self.members.append(first)
        await self._ready(first)
        for i in range(1, self.size):
            self.members.append(self._spawn(i, first.target))
        for done, member in enumerate(self.members[1:], start=2):
            await self._ready(member)
            if done % 10 == 0 or done == self.size:
                self._progress(f"{done}/{self.size} daemons up")

    async def trust_all(self, pairs: Sequence[tuple[int, int]] | None = None) -> None:
        """Make the given member pairs (default: every pair) trust each other."""
        todo = list(pairs if pairs is not None else itertools.combinations(range(self.size), 2))
        gate = asyncio.Semaphore(TRUST_CONCURRENCY)
        done = 0

        async def pair(i: int, j: int) -> None:
            nonlocal done
            a, b = self.members[i], self.members[j]
            async with gate:
                for attempt in range(1, CONNECT_ATTEMPTS + 1):
                    try:
                        await a.client.connect(b.target)
                        break
                    except NetworkError as exc:
                        if attempt == CONNECT_ATTEMPTS:
                            raise
                        self._progress(f"connect {i} -> {j} failed ({exc}); trying again")
                await a.client.trust_request(b.agent_id, "fleet")
                deadline = time.monotonic() + TRUST_TIMEOUT
                while not any(p.agent_id == a.agent_id for p in await b.client.trust_pending()):
                    if time.monotonic() > deadline:
                        raise SwarmlinkError(f"trust request {i} -> {j} did not arrive")
                    await asyncio.sleep(0.02)
                await b.client.trust_approve(a.agent_id)
            done += 1
            if done % 200 == 0 or done == len(todo):
                self._progress(f"{done}/{len(todo)} trusted pairs")

        await asyncio.gather(*(pair(i, j) for i, j in todo))

    def stop(self) -> None:
        """SIGTERM every daemon (they leave the gossip network), SIGKILL after 10 s."""
        for m in self.members:
            if m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for m in self.members:
            try:
                m.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()

    def kill(self, index: int) -> None:
        """Crash one daemon (SIGKILL: no goodbye)."""
        proc = self.members[index].proc
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def __repr__(self) -> str:
        return f"Fleet({self.root}, size={self.size})"

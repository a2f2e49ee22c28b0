"""Real-network check: 30 daemons on loopback, bootstrapped from one, and every agent
resolves every other by agent ID alone (fresh DHT lookups, records verified)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_env, stop_all

from swarmlink.client import Client

pytestmark = pytest.mark.serial  # 30 daemons: alone, after the parallel phase of make test

NODES = int(os.environ.get("SWARMLINK_E2E_DHT_NODES", "30"))
SEED = 30


def start(home: Path, *bootstrap: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "swarmlink.daemon", "--home", str(home)]
    args += ["--listen", "127.0.0.1:0", "--log-level", "warning", "--no-mdns"]
    for b in bootstrap:
        args += ["--bootstrap", b]
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env()
    )


async def ready(client: Client, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.status()
        except Exception:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.timeout(300)
async def test_thirty_daemons_resolve_each_other_by_id(tmp_path: Path) -> None:
    print(f"seed {SEED}, {NODES} daemons")
    rng = random.Random(SEED)
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[Client] = []
    try:
        procs.append(start(tmp_path / "d0"))
        clients.append(Client(tmp_path / "d0"))
        first = await ready(clients[0], procs[0])
        port = first.listen[0].rsplit(":", 1)[1]  # type: ignore[attr-defined]
        boot = f"{first.agent_id}@127.0.0.1:{port}"  # type: ignore[attr-defined]
        for i in range(1, NODES):
            procs.append(start(tmp_path / f"d{i}", boot))
            clients.append(Client(tmp_path / f"d{i}"))
        statuses = [first] + [
            await ready(c, p) for c, p in zip(clients[1:], procs[1:], strict=True)
        ]
        agents = [s.agent_id for s in statuses]  # type: ignore[attr-defined]
        ports = [s.listen[0].rsplit(":", 1)[1] for s in statuses]  # type: ignore[attr-defined]

        async def published(c: Client) -> bool:
            info = await c.dht_info()
            return bool(info["published_at"]) and (info["joined"] or c is clients[0])

        deadline = time.monotonic() + 120
        for c in clients:
            while not await published(c):
                assert time.monotonic() < deadline, "daemons did not join and publish"
                await asyncio.sleep(0.05)

        failures: list[str] = []
        latencies: list[float] = []

        async def resolve_all(i: int) -> None:
            order = list(range(NODES))
            rng.shuffle(order)
            for j in order:
                if j == i:
                    continue
                started = time.perf_counter()
                try:
                    record = await clients[i].lookup(agents[j])
                except Exception as exc:
                    failures.append(f"{i}->{j}: {exc}")
                    continue
                latencies.append(time.perf_counter() - started)
                if record["agent_id"] != agents[j] or record["addresses"] != [
                    f"127.0.0.1:{ports[j]}"
                ]:
                    failures.append(f"{i}->{j}: wrong record {record}")

        await asyncio.gather(*(resolve_all(i) for i in range(NODES)))
        latencies.sort()
        print(
            f"{len(latencies)} lookups, median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms (all concurrent)"
        )
        assert not failures, failures[:5]
        assert len(latencies) == NODES * (NODES - 1)
        for p in procs:
            assert p.poll() is None, "a daemon died"
    finally:
        stop_all(procs)

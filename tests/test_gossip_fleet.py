"""Real-network check of the gossip layer: 50 daemons on loopback that trust each other.

Every node receives every publication (through the real CLI for one subscriber, the SDK
for the rest); then the fleet is cut in two with nftables (loopback traffic between the
two groups' ports is dropped), both halves write the same replicated state, and after the
cut heals every replica agrees.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, daemon_env, wait_until

from swarmlink.client import Client
from swarmlink.testing import Fleet

pytestmark = pytest.mark.serial  # 50 daemons: alone, after the parallel phase of make test

NODES = int(os.environ.get("SWARMLINK_GOSSIP_NODES", "50"))
PUBLICATIONS = 10
SEED = 50


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)


def _nft_delete(table: str) -> None:
    subprocess.run(["nft", "delete", "table", "inet", table], check=False)


def _cli_subscriber(home: Path, topic: str, out: Path) -> subprocess.Popen[bytes]:
    """``swarmlink subscribe TOPIC --json`` writing its lines to ``out``."""
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [*CLI, "--home", str(home), "subscribe", topic, "--json"],
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )


async def _alive_counts(clients: list[Client]) -> list[int]:
    out = []
    for c in clients:
        members = await c.members()
        out.append(sum(1 for m in members if m["state"] == "alive" and not m["local"]))
    return out


async def _collect(client: Client, topic: str, got: set[str], ready: asyncio.Event) -> None:
    feed = client.subscribe(topic)
    first = asyncio.ensure_future(anext(feed))
    ready.set()
    msg: Any = await first
    got.add(msg.id)
    async for msg in feed:
        got.add(msg.id)


@pytest.mark.timeout(900)
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root + nft")
async def test_fifty_daemons_deliver_every_publication_and_heal_a_partition(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}, {NODES} daemons")
    table = f"swarmlink_gossip_{os.getpid()}"
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"{time.monotonic() - t0:6.1f}s {msg}")

    # The daemons run without asyncio debug mode (make test sets it for the test process):
    # its per-callback bookkeeping, times 50 processes on 2 cores, only slows the run.
    async with Fleet(tmp_path, NODES, progress=progress, env=daemon_env()) as fleet:
        clients = fleet.clients
        await fleet.trust_all()

        async def everyone_alive() -> bool:
            return min(await _alive_counts(clients)) == NODES - 1

        await wait_until(everyone_alive, "every member alive everywhere", 120, interval=0.5)
        progress("every member alive everywhere")

        # ---- pub/sub: every node receives every publication --------------------------
        got: list[set[str]] = [set() for _ in range(NODES)]
        ready = [asyncio.Event() for _ in range(NODES)]
        cli_out = tmp_path / "cli-subscriber.out"
        cli_proc = _cli_subscriber(fleet.members[0].home, "fleet", cli_out)
        tasks = [
            asyncio.create_task(_collect(c, "fleet", got[i], ready[i]))
            for i, c in enumerate(clients)
            if i != 0
        ]
        try:
            for i in range(1, NODES):
                await ready[i].wait()

            async def meshed() -> bool:
                infos = [await c.gossip_info() for c in clients]
                return all("fleet" in info["topics"] for info in infos)

            await wait_until(meshed, "every node subscribed", 60, interval=0.2)
            ids = []
            for n in range(PUBLICATIONS):
                publisher = clients[rng.randrange(NODES)]
                ids.append((await publisher.publish("fleet", f"message {n}"))["id"])
            want = set(ids)

            def delivered() -> bool:
                cli_ids = {
                    line.split('"id": "')[1].split('"')[0]
                    for line in cli_out.read_text().splitlines()
                    if '"id": "' in line
                }
                got[0] = cli_ids
                return all(want <= g for g in got[1:]) and want <= cli_ids

            await wait_until(delivered, "every publication everywhere", 60, interval=0.2)
        finally:
            for t in tasks:
                t.cancel()
            cli_proc.terminate()
            cli_proc.wait(10)
        missing = [i for i in range(NODES) if not want <= got[i]]
        assert not missing
        progress(f"{PUBLICATIONS} publications delivered to all {NODES} nodes")

        # ---- replicated state across a partition -------------------------------------
        half = NODES // 2
        ports = [m.address.rsplit(":", 1)[1] for m in fleet.members]
        left, right = ", ".join(ports[:half]), ", ".join(ports[half:])
        for c in clients:  # every node holds (and so replicates) the state
            await c.state("shared").set("created", True)
        _nft(
            f"table inet {table} {{\n"
            f"  chain out {{ type filter hook output priority 0; policy accept;\n"
            f"    ip saddr 127.0.0.1 tcp sport {{ {left} }} tcp dport {{ {right} }} drop\n"
            f"    ip saddr 127.0.0.1 tcp sport {{ {right} }} tcp dport {{ {left} }} drop\n"
            f"    ip saddr 127.0.0.1 udp sport {{ {left} }} udp dport {{ {right} }} drop\n"
            f"    ip saddr 127.0.0.1 udp sport {{ {right} }} udp dport {{ {left} }} drop\n"
            f"  }}\n}}\n"
        )
        try:

            async def write(i: int, c: Client) -> None:
                st = c.state("shared")
                await st.increment("writes")
                await st.add("writers", i)
                if i in (0, half):
                    await st.set("last", f"side {i // max(1, half)}")

            await asyncio.gather(*(write(i, c) for i, c in enumerate(clients)))
        finally:
            _nft_delete(table)
        progress("partition healed after the writes")

        async def agreed() -> bool:
            views = [await c.state("shared").to_dict() for c in clients]
            return all(v == views[0] for v in views) and views[0].get("writes") == NODES

        await wait_until(agreed, "every replica agrees after the partition", 180, interval=1)
        final = await clients[0].state("shared").to_dict()
        assert final["writers"] == sorted(range(NODES))
        assert final["last"] in ("side 0", "side 1")
        progress(f"replicas agree: writes={final['writes']}, last={final['last']}")

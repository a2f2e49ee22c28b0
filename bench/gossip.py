"""Gossip benchmark: publish-to-all latency and message rate among N real daemons.

N daemons on loopback (a :class:`~swarmlink.testing.Fleet`); each trusts about
:data:`DEGREE` others (a ring plus random links: a large swarm is not a clique), so
membership and the pub/sub mesh run over those links, and the topic's policy is "any"
(any verified author) so that every publication may reach every daemon. Every daemon
subscribes to the topic through its control API. Latency: publications one at a time from
random daemons, each timed from the publish call to the moment the last daemon received it
(the ``received_at`` its daemon stamps on delivery; all daemons share this machine's clock),
p50 / p99 over publications, and per delivery; beside it the same up to the moment the
benchmark's own subscriber client had parsed it (the client path adds its queueing: one
process reading 100 NDJSON streams). Rate: a burst of publications from
several daemons at once, timed until every daemon has every one. Baseline in the same run:
the control-API round trip (``status``) on the same daemons, the floor under any of this.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from swarmlink.client import Client
from swarmlink.testing import Fleet

TOPIC = "bench"
SEED = 100
#: Agents each daemon trusts (about).
DEGREE = 10


def trust_graph(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """A ring plus random chords: connected, about ``degree`` links per node."""
    pairs = {(i, (i + 1) % n) if i < (i + 1) % n else ((i + 1) % n, i) for i in range(n)}
    while len(pairs) < min(n * degree // 2, n * (n - 1) // 2):
        a, b = rng.sample(range(n), 2)
        pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def log(msg: str) -> None:
    print(f"[gossip] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Arrivals = dict[str, dict[int, tuple[float, float]]]  # id -> {daemon: (received_at, client)}


async def _subscriber(client: Client, index: int, arrivals: Arrivals, ready: asyncio.Event) -> None:
    feed = client.subscribe(TOPIC)
    first = asyncio.ensure_future(anext(feed))
    ready.set()
    msg = await first
    arrivals.setdefault(msg.id, {})[index] = (msg.received_at, time.time())
    async for msg in feed:
        arrivals.setdefault(msg.id, {})[index] = (msg.received_at, time.time())


async def _wait_all(arrivals: Arrivals, ids: list[str], n: int) -> None:
    deadline = time.monotonic() + 60
    while not all(len(arrivals.get(i, {})) >= n for i in ids):
        if time.monotonic() > deadline:
            short = {i[:8]: len(arrivals.get(i, {})) for i in ids if len(arrivals.get(i, {})) < n}
            raise RuntimeError(f"publications not delivered everywhere: {short}")
        await asyncio.sleep(0.005)


async def run(work: Path, nodes: int, publications: int, burst: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    log(f"seed {SEED}: starting {nodes} daemons")
    started = time.perf_counter()
    async with Fleet(work / "gossip", nodes, progress=log) as fleet:
        clients = fleet.clients
        pairs = trust_graph(nodes, DEGREE, rng)
        await fleet.trust_all(pairs)
        for c in clients:
            await c.set_topic_policy(TOPIC, "any")
        setup = time.perf_counter() - started
        degree = [0] * nodes
        for a, b in pairs:
            degree[a] += 1
            degree[b] += 1

        async def alive(c: Client) -> int:
            return sum(1 for m in await c.members() if m["state"] == "alive" and not m["local"])

        deadline = time.monotonic() + 180
        while any([await alive(c) < degree[i] for i, c in enumerate(clients)]):
            if time.monotonic() > deadline:
                raise RuntimeError("membership did not converge")
            await asyncio.sleep(0.5)
        log(f"{nodes} daemons up, trusted and alive in {setup:.0f} s")

        arrivals: Arrivals = {}
        ready = [asyncio.Event() for _ in clients]
        tasks = [
            asyncio.create_task(_subscriber(c, i, arrivals, ready[i]))
            for i, c in enumerate(clients)
        ]
        try:
            for e in ready:
                await e.wait()
            deadline = time.monotonic() + 60
            while not all([TOPIC in (await c.gossip_info())["topics"] for c in clients]):
                if time.monotonic() > deadline:
                    raise RuntimeError("subscriptions did not register")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # let the mesh settle over a few heartbeats

            # Baseline: control-API round trips on the same daemons.
            base = []
            for _ in range(50):
                t0 = time.perf_counter()
                await clients[rng.randrange(nodes)].status()
                base.append(time.perf_counter() - t0)

            to_all, per_delivery, client_to_all = [], [], []
            for n in range(publications):
                publisher = rng.randrange(nodes)
                t0 = time.time()
                msg_id = (await clients[publisher].publish(TOPIC, f"lat {n}"))["id"]
                await _wait_all(arrivals, [msg_id], nodes - 1)
                got = [t for i, t in arrivals[msg_id].items() if i != publisher]
                to_all.append(max(daemon for daemon, _ in got) - t0)
                per_delivery += [daemon - t0 for daemon, _ in got]
                client_to_all.append(max(client for _, client in got) - t0)
            log(
                f"latency: p50 {pct(to_all, 0.5) * 1e3:.1f} ms, "
                f"p99 {pct(to_all, 0.99) * 1e3:.1f} ms to all"
            )

            publishers = [clients[i] for i in rng.sample(range(nodes), min(5, nodes))]
            t0 = time.perf_counter()
            ids = await asyncio.gather(
                *(
                    publishers[k % len(publishers)].publish(TOPIC, f"burst {k}")
                    for k in range(burst)
                )
            )
            burst_ids = [r["id"] for r in ids]
            await _wait_all(arrivals, burst_ids, nodes - 1)
            elapsed = time.perf_counter() - t0
        finally:
            for t in tasks:
                t.cancel()
        info = await clients[0].gossip_info()
    return {
        "nodes": nodes,
        "trusted_links": len(pairs),
        "publications": publications,
        "publish_to_all_ms": {
            "p50": round(pct(to_all, 0.5) * 1e3, 1),
            "p99": round(pct(to_all, 0.99) * 1e3, 1),
            "max": round(max(to_all) * 1e3, 1),
        },
        "client_publish_to_all_ms": {
            "p50": round(pct(client_to_all, 0.5) * 1e3, 1),
            "p99": round(pct(client_to_all, 0.99) * 1e3, 1),
        },
        "per_delivery_ms": {
            "p50": round(pct(per_delivery, 0.5) * 1e3, 1),
            "p99": round(pct(per_delivery, 0.99) * 1e3, 1),
        },
        "burst": {
            "publications": burst,
            "seconds": round(elapsed, 3),
            "publications_per_s": round(burst / elapsed, 1),
            "deliveries_per_s": round(burst * (nodes - 1) / elapsed, 1),
        },
        "baseline_control_rtt_ms": round(statistics.median(base) * 1e3, 2),
        "p50_over_baseline": round(pct(to_all, 0.5) / statistics.median(base), 1),
        "pubsub_peers_node0": info["pubsub_peers"],
        "setup_seconds": round(setup, 1),
    }

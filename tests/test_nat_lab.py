"""The NAT lab: real daemons in network namespaces behind real nftables NATs.

A public bootstrap node and a second relay live on the "internet"; one agent of each
kind (public, full cone, port-restricted cone, symmetric, double NAT) joins through the
bootstrap. Each agent must learn its public address and reachability from its peers,
the NATed ones must get relay reservations by themselves, and then every agent must
reach every other **by agent ID alone**. Prints the matrix (direct or relayed, time).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import stop_all, wait_until
from netns_lab import KINDS, NatLab, lab_available

from swarmlink.client import Client

ok, why = lab_available()
# Part of `make test`; `make natlab` runs it alone with its matrix printed.
pytestmark = [pytest.mark.natlab, pytest.mark.skipif(not ok, reason=why)]


def _poll(fn: Any, what: str) -> Any:
    """Wait for a daemon answer (errors while it starts count as "not yet")."""
    return wait_until(fn, what, 90.0, interval=0.2, tolerate=(Exception,))


@pytest.mark.timeout(400)
async def test_every_kind_reaches_every_kind_by_agent_id(tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    with NatLab() as lab:
        print(f"lab prefix {lab.prefix}")
        boot_box = lab.add("boot", "public", pool=0)
        relay_box = lab.add("relay2", "public", pool=1)
        boxes = {kind: lab.add(kind[:6], kind, pool=2) for kind in KINDS}
        try:
            procs.append(boot_box.daemon(tmp_path / "boot", "--relay"))
            boot = Client(tmp_path / "boot")
            first = await _poll(boot.status, "bootstrap daemon")
            bootstrap = f"{first.agent_id}@{boot_box.ip}:7420"
            procs.append(relay_box.daemon(tmp_path / "relay2", "--relay", "--bootstrap", bootstrap))
            await _poll(Client(tmp_path / "relay2").status, "second relay")
            clients: dict[str, Client] = {}
            for kind, box in boxes.items():
                procs.append(box.daemon(tmp_path / kind, "--bootstrap", bootstrap))
                clients[kind] = Client(tmp_path / kind)
            agents = {
                k: (await _poll(c.status, f"{k} daemon")).agent_id for k, c in clients.items()
            }

            # Reachability from dial-backs; NATed agents reserve relays by themselves.
            for kind, client in clients.items():

                async def settled(client: Client = client, kind: str = kind) -> bool:
                    st = await client.status()
                    if kind == "public":
                        return st.reachability == "public"
                    return st.reachability == "private" and len(st.relays) >= 1

                await _poll(settled, f"{kind}: reachability and relays")
            rows = []
            for kind, client in clients.items():
                st = await client.status()
                rows.append(
                    f"{kind:10} reachability {st.reachability:8} mapping {st.nat_mapping:20} "
                    f"public {','.join(st.reflexive_addresses) or '-':22} relays {len(st.relays)}"
                )
                if kind != "public":
                    assert st.reachability == "private"
            print("\n".join(rows))

            # Every ordered pair, by agent ID alone.
            matrix: dict[tuple[str, str], str] = {}
            for a, ca in clients.items():
                for b in clients:
                    if a == b:
                        continue
                    started = time.perf_counter()
                    result = await ca.ping_result(agents[b], interval=0)
                    ms = (time.perf_counter() - started) * 1000
                    peer = next(p for p in await ca.peers() if p.agent_id == agents[b])
                    path = "direct" if peer.path == "direct" else "relayed"
                    ok_ = "ok" if result.received == 1 else "FAIL"
                    matrix[(a, b)] = f"{ok_} {path} {ms:.0f}ms"
            width = 18
            print("from \\ to".ljust(11) + "".join(k.ljust(width) for k in clients))
            for a in clients:
                cells = (matrix.get((a, b), "-").ljust(width) for b in clients)
                print(a.ljust(11) + "".join(cells))
            assert all(v.startswith("ok") for v in matrix.values()), matrix
            for a in clients:
                # Reaching the public agent needs no relay.
                if a != "public":
                    assert "direct" in matrix[(a, "public")], matrix
        finally:
            stop_all(procs)

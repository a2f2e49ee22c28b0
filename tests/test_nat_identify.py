"""Peers tell each other where they see them (identify); the node believes what enough
observers agree on and shows it in `status`. Hostile identify input is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import running_nodes, target, wait_until

from swarmlink.errors import StreamReset
from swarmlink.runtime._natsvc import IDENTIFY_PROTOCOL


async def test_identify_reports_the_observed_address(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        a.nat.observed.min_confirmations = 1  # one loopback "network" here
        await b.connect(target(a))
        await wait_until(lambda: len(a.nat.observed) == 1, "a hears where b sees it")
        status = a.status()
        assert status.reflexive_addresses == (f"127.0.0.1:{a.listen_port}",)
        assert status.nat_mapping == "none"  # peers see our own address: no NAT
        await wait_until(lambda: len(b.nat.observed) == 1, "b hears where a sees it")


async def test_hostile_identify_is_refused_and_the_node_keeps_going(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, "a", "b") as (a, b):
        await b.connect(target(a))
        await wait_until(lambda: len(a.nat.observed) == 1, "first identify")
        conn = b.connected(a.agent_id)
        assert conn is not None
        for record in ({"oa": "127.0.0.1:1"}, {"oa": "not an address"}, {"x": 1}):
            stream = conn.open_stream(IDENTIFY_PROTOCOL)
            stream.write_record(record)
            stream.write_eof()
            with pytest.raises(StreamReset):
                await stream.read()
        assert len(a.nat.observed) == 1  # the second opinion from one session is ignored
        assert (await b.ping(a.agent_id, interval=0)).received == 1

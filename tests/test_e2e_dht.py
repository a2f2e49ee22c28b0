"""End to end: finding agents through the DHT with the real CLI and real daemons.

Three daemons on loopback (``up --no-mdns``: never multicast in tests); the second and
third join through the first (``--bootstrap``). Then, by agent ID or capability alone:
``lookup`` shows the third's verified record, ``find --capability`` lists it once it
advertises the capability, and ``ping`` reaches it without any prior ``connect``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import run, run_json, wait_for


class Daemon:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.agent_id = ""
        self.address = ""

    def up(self, *bootstrap: str) -> None:
        args = ["up", "--listen", "127.0.0.1:0", "--no-mdns", "--log-level", "debug"]
        for peer in bootstrap:
            args += ["--bootstrap", peer]
        status = run_json(self.home, *args)
        self.agent_id = status["agent_id"]
        self.address = status["listen"][0]
        assert status["mdns"] is False

    @property
    def target(self) -> str:
        return f"{self.agent_id}@{self.address}"

    def status(self) -> dict[str, Any]:
        value: dict[str, Any] = run_json(self.home, "status")
        return value

    def down(self) -> None:
        if (self.home / "control.sock").exists():
            run(self.home, "down", check=False)


@pytest.mark.timeout(180)
def test_lookup_find_and_dial_by_id_through_the_dht(tmp_path: Path) -> None:
    first, second, third = (Daemon(tmp_path / name) for name in ("d1", "d2", "d3"))
    daemons = [first, second, third]
    try:
        first.up()
        second.up(first.target)
        third.up(first.target)

        # Joined: both found the network through the first; the first was found by them.
        for d in daemons:
            wait_for(lambda d=d: d.status()["dht_joined"], f"{d.home.name} to join the DHT")
        for d in (second, third):
            st = d.status()
            assert st["dht_contacts"] >= 1 and st["mdns"] is False
        assert third.status()["dht_contacts"] >= 1

        # Nobody ever ran `connect`: the second knows the third by agent ID only.
        def looked_up() -> str:
            proc = run(second.home, "lookup", third.agent_id, check=False)
            return proc.stdout if proc.returncode == 0 else ""

        human = wait_for(looked_up, "the third's record to be found")
        assert third.agent_id in human and third.address in human and "verified" in human
        record = run_json(second.home, "lookup", third.agent_id)
        assert record["agent_id"] == third.agent_id
        assert record["addresses"] == [third.address]
        assert record["capabilities"] == []

        # A capability advertised by the third is found from the second.
        run(
            third.home,
            "capability",
            "add",
            "translate",
            "--name",
            "Translator",
            "--description",
            "English to French",
        )
        assert [c["tag"] for c in run_json(third.home, "capability", "list")] == ["translate"]

        def found() -> list[dict[str, Any]]:
            agents: list[dict[str, Any]] = run_json(
                second.home, "find", "--capability", "translate"
            )
            return [a for a in agents if a["agent_id"] == third.agent_id]

        (agent,) = wait_for(found, "the second to find the third's capability")
        assert agent["addresses"] == [third.address]
        assert agent["capabilities"] == [
            {
                "tag": "translate",
                "name": "Translator",
                "description": "English to French",
                "protocol": "",
            }
        ]
        table = run(second.home, "find", "--capability", "translate").stdout
        assert third.agent_id in table and "English to French" in table
        none = run(second.home, "find", "--capability", "nobody-does-this").stdout
        assert "no agent advertises capability 'nobody-does-this'" in none

        # Dial by ID: ping the third with nothing but its agent ID.
        ping = run(second.home, "ping", third.agent_id, "-c", "2", "-i", "0.1")
        assert "2 received" in ping.stdout

        # Removing the capability is visible to the agent itself at once.
        run(third.home, "capability", "remove", "translate")
        assert run_json(third.home, "capability", "list") == []
        missing = run(third.home, "capability", "remove", "translate", check=False)
        assert missing.returncode == 1 and "does not advertise" in missing.stderr

        # An agent nobody published is a clear NotFound.
        unknown = "a" * 52
        proc = run(second.home, "lookup", unknown, check=False)
        assert proc.returncode == 1 and "was not found in the DHT" in proc.stderr
    finally:
        for d in daemons:
            d.down()
        for d in daemons:
            log = d.home / "swarmlink.log"
            if log.exists():
                print(
                    f"--- {d.home.name} log tail ---\n"
                    + "\n".join(log.read_text().splitlines()[-20:])
                )

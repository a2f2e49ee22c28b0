"""Shared test configuration.

Hypothesis runs derandomized (a fixed seed derived from each test), so every run of the
suite is reproducible; the seed is printed in the header. Set ``SWARMLINK_TEST_SEED`` to
explore other seeds.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

SEED = int(os.environ.get("SWARMLINK_TEST_SEED", "20261122"))

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci")


def pytest_report_header(config: pytest.Config) -> str:
    return f"swarmlink test seed: {SEED} (hypothesis derandomized; set SWARMLINK_TEST_SEED)"


# ---- a fake DHT for the control API, client and CLI tests (attached to FakeNode.dht) -----


class FakeRecord:
    """What the control API needs of an agent record: ``agent_id`` and ``to_json()``."""

    def __init__(
        self, agent_id: str, addresses: tuple[str, ...], capabilities: tuple[Any, ...] = ()
    ) -> None:
        self.agent_id = agent_id
        self.addresses = addresses
        self.capabilities = capabilities
        self.sequence = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "addresses": list(self.addresses),
            "relays": [],
            "versions": [1],
            "capabilities": [c.to_json() for c in self.capabilities],
            "sequence": self.sequence,
            "issued": 1_800_000_000,
            "expires": 1_800_014_400,
            "key_serial": 1,
            "key_expires": 1_802_592_000,
        }


class FakeDht:
    """In-memory :class:`swarmlink.daemon.DhtAPI`: ``records`` are the other agents "in the
    network"; ``fail(method, exc)`` makes the next call of ``method`` raise ``exc``."""

    def __init__(self, agent_id: str, address: str = "127.0.0.1:7420") -> None:
        self.agent_id = agent_id
        self.address = address
        self.records: dict[str, FakeRecord] = {}
        self.caps: dict[str, Any] = {}
        self.resolved: list[tuple[str, bool]] = []
        self.failures: dict[str, BaseException] = {}

    def add_agent(self, agent_id: str, *addresses: str, capabilities: Any = ()) -> None:
        self.records[agent_id] = FakeRecord(agent_id, addresses, tuple(capabilities))

    def fail(self, method: str, exc: BaseException) -> None:
        self.failures[method] = exc

    def _maybe_fail(self, method: str) -> None:
        exc = self.failures.pop(method, None)
        if exc is not None:
            raise exc

    def _own(self) -> FakeRecord:
        return FakeRecord(self.agent_id, (self.address,), tuple(self.capabilities()))

    async def resolve(self, agent_id: str, *, fresh: bool = False) -> FakeRecord:
        from swarmlink.errors import NotFound
        from swarmlink.identity import validate_agent_id

        self._maybe_fail("resolve")
        agent_id = validate_agent_id(agent_id)
        self.resolved.append((agent_id, fresh))
        if agent_id == self.agent_id:
            return self._own()
        record = self.records.get(agent_id)
        if record is None:
            raise NotFound(
                f"agent {agent_id} was not found in the DHT (3 nodes answered, 0 failed)"
            )
        return record

    async def find(self, tag: str) -> list[FakeRecord]:
        from swarmlink.dht import capability_key

        self._maybe_fail("find")
        capability_key(tag)
        records = [*self.records.values(), self._own()]
        found = [r for r in records if tag in {c.tag for c in r.capabilities}]
        return sorted(found, key=lambda r: r.agent_id)

    async def add_capability(
        self, tag: str, *, name: str = "", description: str = "", protocol: str = ""
    ) -> Any:
        from swarmlink.dht._records import Capability

        self._maybe_fail("add_capability")
        cap = Capability(tag, name, description, protocol)
        self.caps[tag] = cap
        return cap

    async def remove_capability(self, tag: str) -> None:
        from swarmlink.errors import NotFound

        self._maybe_fail("remove_capability")
        if self.caps.pop(tag, None) is None:
            raise NotFound(f"this agent does not advertise capability {tag!r}")

    def capabilities(self) -> list[Any]:
        return [self.caps[t] for t in sorted(self.caps)]

    def info(self) -> dict[str, Any]:
        self._maybe_fail("info")
        return {
            "contacts": len(self.records),
            "records": len(self.records) + 1,
            "provider_records": len(self.caps),
            "joined": bool(self.records),
            "bootstrap": [],
            "published_at": 1_800_000_000.0,
            "advertised": [self.address],
            "last_error": None,
        }

"""The deterministic DHT simulator drives the real DHT cores. CI runs 1,000-node networks
with churn, joins, partitions, loss and adversaries and asserts the issue's targets (the
10,000-node runs are for `swarmlink sim dht` and the closing notes)."""

from __future__ import annotations

import pytest

from swarmlink.errors import InvalidArgument
from swarmlink.sim import SimConfig, run_simulation

TIMING = {"join_seconds", "lookup_seconds"}
SEED = 3


def summary(nodes: int = 1000, lookups: int = 300, **kw: float) -> dict[str, object]:
    print(f"seed {SEED}: {nodes} nodes, {lookups} lookups, {kw}")
    result = run_simulation(SimConfig(nodes=nodes, lookups=lookups, seed=SEED, **kw))  # type: ignore[arg-type]
    return {k: v for k, v in result.summary().items() if k not in TIMING}


def test_same_seed_same_run() -> None:
    a = summary(200, 50, churn=0.1, adversarial=0.1)
    assert a == summary(200, 50, churn=0.1, adversarial=0.1)
    other = run_simulation(SimConfig(nodes=200, lookups=50, seed=SEED + 1, churn=0.1))
    assert other.summary()["latency_ms_p50"] != a["latency_ms_p50"]


@pytest.mark.parametrize(
    ("kw", "minimum"),
    [
        ({}, 1.0),
        ({"churn": 0.3}, 1.0),
        ({"churn": 0.2, "joining": 0.1}, 1.0),
        ({"partition": 0.3}, 1.0),
        ({"loss": 0.05}, 1.0),
        ({"adversarial": 0.2}, 0.999),
    ],
)
def test_lookups_find_live_targets(kw: dict[str, float], minimum: float) -> None:
    s = summary(**kw)
    print(s)
    assert s["success_rate"] >= minimum, s
    assert s["hops_median"] <= 3 and s["hops_p99"] <= 5, s
    assert s["forged_accepted"] == 0, s  # forged records are never stored...
    if kw.get("adversarial"):
        assert s["forge_attempts"] > 0, s  # ...though the adversaries tried
    assert s["records_resolved"] == "20/20", s


def test_bad_configs() -> None:
    with pytest.raises(InvalidArgument):
        SimConfig(nodes=1)
    with pytest.raises(InvalidArgument):
        SimConfig(churn=1.0)
    with pytest.raises(InvalidArgument):
        SimConfig(churn=0.5, adversarial=0.5)

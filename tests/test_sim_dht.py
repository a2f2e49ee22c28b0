"""The deterministic DHT simulator drives the real DHT cores (small networks here; the
large runs are for `swarmlink sim dht` and the closing notes)."""

from __future__ import annotations

import pytest

from swarmlink.errors import InvalidArgument
from swarmlink.sim import SimConfig, run_simulation

TIMING = {"join_seconds", "lookup_seconds"}


def summary(**kw: float) -> dict[str, object]:
    result = run_simulation(SimConfig(nodes=200, lookups=100, seed=3, **kw))  # type: ignore[arg-type]
    return {k: v for k, v in result.summary().items() if k not in TIMING}


def test_same_seed_same_run() -> None:
    assert summary() == summary()
    assert summary() != {**summary(), "seed": 4}


@pytest.mark.parametrize(
    "kw,minimum",
    [({}, 1.0), ({"churn": 0.3}, 1.0), ({"adversarial": 0.2}, 0.99), ({"loss": 0.05}, 0.99)],
)
def test_lookups_find_live_targets(kw: dict[str, float], minimum: float) -> None:
    s = summary(**kw)
    assert s["success_rate"] >= minimum, s
    assert s["hops_median"] <= 3 and s["hops_p99"] <= 5, s


def test_bad_configs() -> None:
    with pytest.raises(InvalidArgument):
        SimConfig(nodes=1)
    with pytest.raises(InvalidArgument):
        SimConfig(churn=1.0)

"""Pub/sub simulator at 1,000 nodes: full delivery, Byzantine resistance, regions,
faults, determinism. Runs are shortened (10 publications, short warm-up) to stay fast."""

from __future__ import annotations

from typing import Any

import pytest

from swarmlink.errors import InvalidArgument
from swarmlink.sim._pubsub_sim import PubSubSimConfig, PubSubSimResult, run_pubsub_sim

SEED = 11
FAST: dict[str, Any] = {"publications": 10, "warmup": 6.0, "settle": 3.0}


def run(**kw: Any) -> tuple[PubSubSimResult, dict[str, Any]]:
    cfg = PubSubSimConfig(seed=SEED, **{**FAST, **kw})
    result = run_pubsub_sim(cfg)
    summary = result.summary()
    print(f"seed {SEED}: {kw} -> {summary}")
    return result, summary


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "peak_rss_mib")}


def test_honest_1000_nodes_full_delivery_fast_and_deterministic() -> None:
    result, summary = run(nodes=1000)
    assert summary["delivery_ratio"] == 1.0 and summary["never_100%"] == 0
    assert result.expected == 999 * 10
    assert summary["ms_to_100%_max"] < 500
    assert summary["hops_to_100%_max"] <= 10
    assert summary["forged_delivered"] == 0
    assert 2 <= summary["redundancy"] <= 12
    assert 4 <= summary["mesh_size_mean"] <= 12


def test_same_seed_same_run() -> None:
    kw: dict[str, Any] = {"nodes": 200, "byzantine": 0.1, "regions": 3, "churn": 0.05}
    _, first = run(**kw)
    _, again = run(**kw)
    assert stable(again) == stable(first)
    other = run_pubsub_sim(PubSubSimConfig(seed=SEED + 1, **FAST, **kw)).summary()
    assert stable(other) != stable(first)


def test_byzantine_20_percent() -> None:
    _, summary = run(nodes=1000, byzantine=0.2)
    assert summary["delivery_ratio"] >= 0.999
    assert summary["forged_sent"] > 0 and summary["forged_delivered"] == 0
    negative = summary["byzantine_negative"]
    for kind in ("forger", "flooder"):  # honest nodes score them below zero
        neg, total = map(int, negative[kind].split("/"))
        assert total > 0 and neg >= 0.9 * total


def test_regions_cut_cross_region_traffic() -> None:
    _, preferred = run(nodes=400, regions=4)
    _, baseline = run(nodes=400, regions=4, region_preference=False)
    assert preferred["delivery_ratio"] == baseline["delivery_ratio"] == 1.0
    assert preferred["ms_to_100%_max"] < 500
    assert preferred["cross_region_per_publication"] * 10 < baseline["cross_region_per_publication"]
    assert 8 <= preferred["bridges"] <= 60  # ~2 per region (more for detached components)


def test_crashes_churn_and_loss() -> None:
    _, summary = run(nodes=400, crashed=0.05, churn=0.05, loss=0.02)
    assert summary["delivery_ratio"] == 1.0
    assert summary["forged_delivered"] == 0


def test_config_validation() -> None:
    with pytest.raises(InvalidArgument):
        PubSubSimConfig(nodes=2)
    with pytest.raises(InvalidArgument):
        PubSubSimConfig(byzantine=0.5, churn=0.3, crashed=0.2)
    with pytest.raises(InvalidArgument):
        PubSubSimConfig(loss=1.0)


def test_partition_delivers_within_each_side_then_to_everyone_after_the_heal() -> None:
    result, summary = run(nodes=500, partition=0.3, partition_duration=10.0)
    assert summary["partition_side_b"] == 150
    # 5 publications during the cut, each counted on its publisher's side only
    assert 0 < result.expected_during_partition < 5 * 499
    assert summary["delivery_ratio_during_partition"] == 1.0
    # 5 after the heal, against everyone: the meshes re-formed across the old cut
    assert result.expected == 5 * 499
    assert summary["delivery_ratio"] == 1.0 and summary["never_100%"] == 0
    assert summary["forged_delivered"] == 0
    with pytest.raises(InvalidArgument):
        PubSubSimConfig(partition=0.3, partition_duration=3.0)

"""SWIM simulator: 1,000 nodes, 1 % loss, crashes detected everywhere within 5 s, no false
positives, leaves and joins, determinism."""

from __future__ import annotations

from typing import Any

import pytest

from swarmlink.errors import InvalidArgument
from swarmlink.sim._swim_sim import SwimSimConfig, run_swim_sim

SEED = 1


@pytest.fixture(scope="module")
def thousand() -> dict[str, Any]:
    cfg = SwimSimConfig(nodes=1000, seed=SEED, loss=0.01, crashes=10, duration=16.0, settle=6.0)
    print(f"seed {SEED}: {cfg.nodes} nodes, loss {cfg.loss}, {cfg.crashes} crashes")
    summary = run_swim_sim(cfg).summary()
    print(summary)
    return summary


def test_every_crash_is_detected_by_every_live_node_within_five_seconds(
    thousand: dict[str, Any],
) -> None:
    assert thousand["crashes_detected_by_all"] == 10
    assert thousand["detect_all_max"] < 5.0
    assert 0 < thousand["detect_first_p50"] <= thousand["detect_all_p50"]


def test_no_false_positives_at_one_percent_loss(thousand: dict[str, Any]) -> None:
    assert thousand["false_positives"] == 0
    assert thousand["false_positive_declarations"] == 0


def test_leaves_are_leaves_and_joiners_become_known(thousand: dict[str, Any]) -> None:
    live = thousand["live_nodes"]
    assert live == 1000 - 10 - 1
    assert thousand["leaves_seen_by"] == [live]
    assert thousand["leaves_declared_dead_by"] == [0]
    assert thousand["joins_known_by"] == [live]
    assert all(t is not None and t < 5.0 for t in thousand["join_all_seconds"])


def test_traffic_is_modest(thousand: dict[str, Any]) -> None:
    assert thousand["bytes_per_node_per_s"] < 20_000
    assert thousand["messages_per_node_per_s"] < 60


def test_same_seed_same_summary() -> None:
    cfg = SwimSimConfig(nodes=120, seed=SEED + 1, crashes=4, duration=12.0, loss=0.02)
    print(f"seed {cfg.seed}: determinism at {cfg.nodes} nodes")
    first = run_swim_sim(cfg).summary()
    second = run_swim_sim(cfg).summary()
    first.pop("wall_seconds")
    second.pop("wall_seconds")
    assert first == second
    other = run_swim_sim(SwimSimConfig(nodes=120, seed=SEED + 2, crashes=4, duration=12.0))
    assert other.summary()["bytes_per_node_per_s"] != first["bytes_per_node_per_s"]


def test_progress_is_reported() -> None:
    seen: list[float] = []
    run_swim_sim(
        SwimSimConfig(nodes=20, crashes=1, duration=10.0, leaves=0, joins=0),
        lambda now, total: seen.append(now),
    )
    assert seen[-1] == 10.0 and len(seen) == 10


def test_config_is_validated() -> None:
    with pytest.raises(InvalidArgument):
        SwimSimConfig(nodes=2)
    with pytest.raises(InvalidArgument):
        SwimSimConfig(nodes=10, crashes=9)
    with pytest.raises(InvalidArgument):
        SwimSimConfig(duration=5.0, warmup=2.0, settle=7.0)
    with pytest.raises(InvalidArgument):
        SwimSimConfig(loss=1.0)


def test_partition_heals_without_same_side_false_positives() -> None:
    cfg = SwimSimConfig(
        nodes=200,
        seed=6,
        loss=0.01,
        crashes=3,
        joins=0,
        duration=18.0,
        settle=5.0,
        partition=0.2,
        partition_at=2.0,
        partition_duration=6.0,
    )
    print(f"seed {cfg.seed}: {cfg.nodes} nodes, {cfg.partition:.0%} cut off for 6 s")
    summary = run_swim_sim(cfg).summary()
    print(summary)
    assert summary["partition_side_b"] == 40
    assert summary["cross_side_declarations"] > 0
    # the larger side declares the whole smaller side dead within the cut
    assert summary["partition_split_seen_by"] >= summary["partition_live_nodes"] - 40
    assert summary["heal_seconds"] is not None and summary["heal_seconds"] < 10.0
    assert summary["false_positives"] == 0
    assert summary["crashes_detected_by_all"] == 3
    assert summary["leaves_declared_dead_by"] == [0]
    with pytest.raises(InvalidArgument):
        SwimSimConfig(partition=0.2, partition_at=5.0, partition_duration=20.0)

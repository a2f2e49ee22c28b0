"""The gossip simulators' network model: ordering, latency, loss, partitions, timers."""

from __future__ import annotations

import random

from swarmlink.sim._net import SimNet


def test_messages_arrive_in_time_order_after_latency() -> None:
    net = SimNet(random.Random(1), latency=0.02)
    got: list[tuple[float, str, str, object]] = []
    net.send("a", "b", "first", 10)
    net.call_at(0.005, lambda: net.send("b", "a", "second", 5))
    net.run(1.0, lambda s, d, m: got.append((net.now, s, d, m)))
    assert [(round(t, 6), s, d, m) for t, s, d, m in got] == [
        (0.02, "a", "b", "first"),
        (0.025, "b", "a", "second"),
    ]
    assert net.now == 1.0
    assert net.bytes_sent == {"a": 10, "b": 5}
    assert net.bytes_received == {"b": 10, "a": 5}


def test_partitions_and_crashes_drop_messages_even_in_flight() -> None:
    net = SimNet(random.Random(1), latency=0.02)
    got: list[object] = []
    net.send("a", "b", 1, 1)
    net.partition([{"a"}, {"b"}])
    net.send("a", "b", 2, 1)
    net.run(0.1, lambda s, d, m: got.append(m))
    assert got == []
    net.partition(None)
    net.crashed.add("b")
    net.send("a", "b", 3, 1)
    net.crashed.clear()
    net.send("a", "b", 4, 1)
    net.run(0.2, lambda s, d, m: got.append(m))
    assert got == [4]
    assert net.messages_lost == 3


def test_loss_is_seeded_and_roughly_the_configured_rate() -> None:
    def lost(seed: int) -> int:
        net = SimNet(random.Random(seed), loss=0.1)
        for _ in range(10_000):
            net.send("a", "b", None, 1)
        return net.messages_lost

    assert lost(7) == lost(7)
    assert 800 < lost(7) < 1200


def test_a_rearmed_timer_fires_once_at_its_new_time() -> None:
    net = SimNet(random.Random(1))
    fired: list[float] = []
    net.set_timer("n1", 0.5, lambda: fired.append(net.now))
    net.set_timer("n1", 0.2, lambda: fired.append(net.now))
    net.set_timer("n2", 0.3, lambda: fired.append(-net.now))
    net.set_timer("n2", None, lambda: None)
    net.run(1.0, lambda s, d, m: None)
    assert fired == [0.2]
    assert net.pending_timer("n1") is None


def test_run_until_stops_when_the_condition_holds() -> None:
    net = SimNet(random.Random(1), latency=0.05)
    got: list[object] = []
    for i in range(5):
        net.call_at(i * 0.1, lambda i=i: net.send("a", "b", i, 1))
    assert net.run_until(lambda: len(got) >= 3, 10.0, lambda s, d, m: got.append(m))
    assert 0.25 <= net.now <= 0.26
    assert not net.run_until(lambda: len(got) >= 99, 1.0, lambda s, d, m: got.append(m))

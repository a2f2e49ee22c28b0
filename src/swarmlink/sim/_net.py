"""The simulated network shared by the gossip simulators: virtual time, link latency with
jitter, message loss, partitions and crashed nodes.

One seeded :class:`random.Random` drives everything, so the same seed replays the same
run. Events live in one heap ordered by (time, sequence number); the sequence number keeps
the order of events due at the same instant deterministic. Timers are keyed: a node has one
pending timer per key, and re-arming it leaves the old heap entry behind as a stale entry
that is skipped when it surfaces (cheaper than deleting from the heap).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Any

__all__ = ["Deliver", "SimNet"]

#: ``deliver(src, dst, message)``: hands a message that arrived to the simulation.
Deliver = Callable[[str, str, object], None]

_MESSAGE = 0
_CALL = 1
_TIMER = 2


class SimNet:
    """Virtual-time message network (see the module docstring)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        latency: float = 0.020,
        jitter: float = 0.0,
        loss: float = 0.0,
    ) -> None:
        if latency < 0 or jitter < 0 or not 0.0 <= loss < 1.0:
            raise ValueError("latency and jitter must be >= 0 and loss in [0, 1)")
        self.rng = rng
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.now = 0.0
        #: Nodes that neither send nor receive.
        self.crashed: set[str] = set()
        #: Extra one-way latency between two nodes, if the simulation sets it (regions).
        self.extra_latency: Callable[[str, str], float] | None = None
        self.bytes_sent: Counter[str] = Counter()
        self.bytes_received: Counter[str] = Counter()
        self.messages_sent = 0
        self.messages_lost = 0
        self._group: dict[str, int] | None = None
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._timers: dict[str, tuple[float, int]] = {}

    # ---- faults ------------------------------------------------------------------------

    def partition(self, groups: Sequence[Collection[str]] | None) -> None:
        """Cut the network into ``groups`` (nodes in no group form one more group);
        ``None`` heals it. Messages already in flight across the cut are dropped."""
        if groups is None:
            self._group = None
            return
        self._group = {}
        for index, group in enumerate(groups):
            for node in group:
                self._group[node] = index

    def connected(self, a: str, b: str) -> bool:
        """Whether a message from ``a`` to ``b`` can arrive now (ignoring loss)."""
        if a in self.crashed or b in self.crashed:
            return False
        if self._group is None:
            return True
        return self._group.get(a, -1) == self._group.get(b, -1)

    # ---- scheduling --------------------------------------------------------------------

    def _push(self, when: float, kind: int, item: Any) -> int:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, item))
        return self._seq

    def send(self, src: str, dst: str, message: object, size: int) -> None:
        """Send ``message`` (``size`` bytes on the wire) from ``src`` to ``dst``."""
        if src in self.crashed:
            return
        self.messages_sent += 1
        self.bytes_sent[src] += size
        if (self.loss and self.rng.random() < self.loss) or not self.connected(src, dst):
            self.messages_lost += 1
            return
        delay = self.latency
        if self.jitter:
            delay += self.rng.random() * self.jitter
        if self.extra_latency is not None:
            delay += self.extra_latency(src, dst)
        self._push(self.now + delay, _MESSAGE, (src, dst, message, size))

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when`` (at once if it is in the past)."""
        self._push(max(when, self.now), _CALL, fn)

    def set_timer(self, key: str, when: float | None, fn: Callable[[], None]) -> None:
        """Arm the one timer named ``key`` (replacing any pending one); None cancels it."""
        if when is None:
            self._timers.pop(key, None)
            return
        when = max(when, self.now)
        current = self._timers.get(key)
        if current is not None and current[0] == when:
            return
        seq = self._push(when, _TIMER, (key, fn))
        self._timers[key] = (when, seq)

    def pending_timer(self, key: str) -> float | None:
        entry = self._timers.get(key)
        return None if entry is None else entry[0]

    # ---- running -----------------------------------------------------------------------

    def _step(self, deliver: Deliver) -> None:
        when, seq, kind, item = heapq.heappop(self._heap)
        self.now = when
        if kind == _MESSAGE:
            src, dst, message, size = item
            if not self.connected(src, dst):
                self.messages_lost += 1
                return
            self.bytes_received[dst] += size
            deliver(src, dst, message)
        elif kind == _CALL:
            item()
        else:
            key, fn = item
            entry = self._timers.get(key)
            if entry is None or entry[1] != seq:
                return  # re-armed or cancelled since
            del self._timers[key]
            fn()

    def run(self, until: float, deliver: Deliver) -> None:
        """Process events in time order up to ``until``; afterwards ``now == until``."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            self._step(deliver)
        self.now = max(self.now, until)

    def run_until(
        self,
        cond: Callable[[], bool],
        limit: float,
        deliver: Deliver,
        check_every: float = 0.005,
    ) -> bool:
        """Run until ``cond()`` holds (checked every ``check_every`` virtual seconds) or
        virtual time reaches ``limit``; True if the condition held."""
        while True:
            if cond():
                return True
            if self.now >= limit or not self._heap:
                return cond()
            self.run(min(limit, self.now + check_every), deliver)

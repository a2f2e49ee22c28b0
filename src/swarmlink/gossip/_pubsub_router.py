"""State and bookkeeping shared by the pub/sub core's parts (private).

:class:`Router` holds every piece of state of one node's router and the small operations
on it (queueing output, joining and leaving meshes, GRAFT and PRUNE); the heartbeat
(:mod:`._pubsub_heartbeat`) and the public core (:mod:`._pubsub`) build on it.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Callable

from ._pubsub_config import PubSubConfig, PubSubStats
from ._pubsub_events import PeerGrafted, PeerPruned, PubSubEvent
from ._pubsub_messages import MAX_BACKOFF, Message, verify_message
from ._pubsub_regions import BridgeElection
from ._pubsub_state import MAX_QUEUED_MESSAGES, Cached, Outbox, PeerState
from ._score import PeerScore

__all__ = ["Router", "allow_any"]


def allow_any(topic: str, author: str) -> bool:
    """Topic policy that allows every author (the runtime passes a trust-based one)."""
    return True


class Router:
    """One node's router state (see the module docstring)."""

    def __init__(
        self,
        local: str,
        config: PubSubConfig,
        rng: random.Random,
        *,
        region: str = "",
        allowed: Callable[[str, str], bool] = allow_any,
        verify: Callable[[Message], bool] = verify_message,
    ) -> None:
        self.local = local
        self.config = config
        self.region = region
        self.stats = PubSubStats()
        self._rng = rng
        self._allowed = allowed
        self._verify = verify
        self._params = config.score
        self._regional = bool(region) and config.region_preference
        self._peers: dict[str, PeerState] = {}
        self._retained: dict[str, tuple[PeerScore, float]] = {}
        # Ordered sets are dicts (str -> None): iteration order must not depend on hashing.
        self._topics: dict[str, None] = {}
        self._topic_peers: dict[str, dict[str, None]] = {}
        self._mesh: dict[str, dict[str, None]] = {}
        self._owned: dict[str, dict[str, None]] = {}
        self._fanout: dict[str, dict[str, None]] = {}
        self._fanout_last: dict[str, float] = {}
        self._elections: dict[str, BridgeElection] = {}
        self._dirty: dict[str, None] = {}
        self._election_due: float | None = None
        self._scores: dict[str, float] = {}
        self._msgs: dict[bytes, Cached] = {}
        self._windows: list[list[bytes]] = [[]]
        self._seen: OrderedDict[bytes, tuple[float, str, int]] = OrderedDict()
        self._rejected: OrderedDict[bytes, float] = OrderedDict()
        self._floors: OrderedDict[str, int] = OrderedDict()
        self._promises: dict[bytes, dict[str, float]] = {}
        self._promise_queue: deque[tuple[float, bytes, str]] = deque()
        self._hinted: set[tuple[str, str]] = set()
        self._outbox: dict[str, Outbox] = {}
        self._events: list[PubSubEvent] = []
        self._next_heartbeat: float | None = None
        self._ticks = 0

    # ---- internals: bookkeeping ----------------------------------------------------------

    def _clock(self, now: float) -> None:
        if self._next_heartbeat is None:
            self._next_heartbeat = now + self.config.heartbeat_interval * self._rng.random()

    def _mark_dirty(self, topic: str, now: float) -> None:
        """The bridge election of ``topic`` needs a recount: batch it (updates within
        ``bridge_advert_delay`` go out together, which damps the startup flood)."""
        self._dirty[topic] = None
        if self._election_due is None:
            self._election_due = now + self.config.bridge_advert_delay

    def _box(self, peer: str) -> Outbox:
        box = self._outbox.get(peer)
        if box is None:
            box = self._outbox[peer] = Outbox()
        return box

    def _queue_message(self, peer: str, msg: Message) -> None:
        box = self._box(peer)
        if len(box.msgs) >= MAX_QUEUED_MESSAGES:
            self.stats.queue_full += 1
            return
        box.msgs.append(msg)
        self.stats.messages_sent += 1

    def _remember(self, mid: bytes, msg: Message, now: float, sender: str | None) -> Cached:
        self._seen[mid] = (now + self.config.seen_ttl, msg.author, msg.seqno)
        entry = self._msgs[mid] = Cached(msg, now, sender)
        self._windows[0].append(mid)
        return entry

    def _join_mesh(self, topic: str, peer: str, state: PeerState, now: float) -> None:
        self._mesh[topic][peer] = None
        state.score.grafted(topic, now)
        self._events.append(PeerGrafted(topic, peer))

    def _leave_mesh(self, topic: str, peer: str, state: PeerState, now: float) -> None:
        del self._mesh[topic][peer]
        owned = self._owned.get(topic)
        if owned is not None:
            owned.pop(peer, None)
        state.score.pruned(topic, now)
        self._events.append(PeerPruned(topic, peer))

    def _graft(self, topic: str, peer: str, now: float, *, owned: bool = False) -> None:
        self._join_mesh(topic, peer, self._peers[peer], now)
        if owned:
            self._owned[topic][peer] = None
        self._box(peer).graft.append(topic)
        self.stats.graft_sent += 1

    def _prune(self, topic: str, peer: str, now: float, backoff: float) -> None:
        state = self._peers[peer]
        self._leave_mesh(topic, peer, state, now)
        self._send_prune(peer, state, topic, now, backoff)

    def _send_prune(
        self,
        peer: str,
        state: PeerState,
        topic: str,
        now: float,
        backoff: float,
        *,
        record: bool = True,
    ) -> None:
        seconds = min(MAX_BACKOFF, int(backoff))
        self._box(peer).prune.append((topic, seconds))
        self.stats.prune_sent += 1
        if record and seconds:
            state.backoff[topic] = max(state.backoff.get(topic, 0.0), now + seconds)

"""Per-peer state, cached messages and outbound queues of the pub/sub core (private)."""

from __future__ import annotations

from typing import TypeVar

from ._pubsub_messages import (
    MAX_BRIDGE_TOPICS,
    MAX_CONTROL_TOPICS,
    MAX_IHAVE_IDS,
    MAX_IWANT_IDS,
    MAX_MESSAGES_PER_RPC,
    MAX_RPC_SIZE,
    MAX_SUBSCRIPTIONS_PER_RPC,
    BridgeView,
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Rpc,
    SubOpt,
)
from ._score import PeerScore, ScoreParams

__all__ = ["MAX_QUEUED_MESSAGES", "Cached", "Outbox", "PeerState"]

_T = TypeVar("_T")

#: Message copies queued for one peer between two flushes (more are dropped).
MAX_QUEUED_MESSAGES = 4096
#: Bytes of message bodies per RPC (the rest of MAX_RPC_SIZE is room for control).
_MESSAGE_BUDGET = MAX_RPC_SIZE - 320 * 1024
#: Encoding overhead of one message besides its data and topic (author, key, sig, heads).
_MESSAGE_OVERHEAD = 180
#: IHAVE, GRAFT and PRUNE entries per RPC (each kind gets a third of the shared limit).
_CONTROL_SHARE = MAX_CONTROL_TOPICS // 3


class PeerState:
    """What we know about one connected peer."""

    __slots__ = (
        "asked",
        "backoff",
        "ihaves",
        "region",
        "score",
        "topics",
    )

    def __init__(self, region: str, score: PeerScore | None, params: ScoreParams) -> None:
        self.region = region
        #: Topics the peer told us it subscribes to.
        self.topics: dict[str, None] = {}
        self.score = score if score is not None else PeerScore(params)
        #: topic -> time until which we must not GRAFT it (and it must not GRAFT us).
        self.backoff: dict[str, float] = {}
        #: IHAVE entries received and message IDs asked from it in this heartbeat.
        self.ihaves = 0
        self.asked = 0


class Cached:
    """A recent valid message (in the message cache)."""

    __slots__ = ("asked", "first", "msg", "senders", "served")

    def __init__(self, msg: Message, first: float, sender: str | None) -> None:
        self.msg = msg
        #: When we first had it.
        self.first = first
        #: Peers that sent it to us.
        self.senders: set[str] = set() if sender is None else {sender}
        #: peer -> times we answered its IWANT for this message.
        self.served: dict[str, int] | None = None
        #: The peers we had asked for it with IWANT when it arrived.
        self.asked: tuple[str, ...] | None = None


class Outbox:
    """Everything queued for one peer until the next flush."""

    __slots__ = ("bridges", "graft", "ihave", "iwant", "msgs", "prune", "subs")

    def __init__(self) -> None:
        self.subs: list[SubOpt] = []
        self.msgs: list[Message] = []
        self.ihave: dict[str, list[bytes]] = {}
        self.iwant: list[bytes] = []
        self.graft: list[str] = []
        self.prune: list[tuple[str, int]] = []
        self.bridges: dict[str, tuple[tuple[str, int], ...]] = {}

    def build(self) -> list[Rpc]:
        """The RPCs carrying all of it, each within the wire limits."""
        msgs: list[Message] = self.msgs
        ihave: dict[str, list[bytes]] = self.ihave
        if (
            len(msgs) <= MAX_MESSAGES_PER_RPC
            and len(self.subs) <= MAX_SUBSCRIPTIONS_PER_RPC
            and len(ihave) <= _CONTROL_SHARE
            and len(self.graft) <= _CONTROL_SHARE
            and len(self.prune) <= _CONTROL_SHARE
            and len(self.iwant) <= MAX_IWANT_IDS
            and len(self.bridges) <= MAX_BRIDGE_TOPICS
            and (len(msgs) <= 1 or sum(len(m.data) for m in msgs) <= _MESSAGE_BUDGET // 2)
            and (not ihave or sum(map(len, ihave.values())) <= MAX_IHAVE_IDS)
        ):  # the usual case: one RPC
            return [
                Rpc(
                    tuple(self.subs) if self.subs else (),
                    tuple(msgs) if msgs else (),
                    tuple([IHave(t, tuple(ids)) for t, ids in ihave.items()]) if ihave else (),
                    (IWant(tuple(self.iwant)),) if self.iwant else (),
                    tuple([Graft(t) for t in self.graft]) if self.graft else (),
                    tuple([Prune(t, b) for t, b in self.prune]) if self.prune else (),
                    tuple([BridgeView(t, e) for t, e in self.bridges.items()])
                    if self.bridges
                    else (),
                )
            ]
        subs = _chunks(self.subs, MAX_SUBSCRIPTIONS_PER_RPC)
        msg_chunks = _message_chunks(msgs)
        ihave_chunks = _ihave_chunks(ihave)
        iwant: list[tuple[IWant, ...]] = [
            (IWant(c),) for c in _chunks(self.iwant, min(MAX_IWANT_IDS, MAX_IHAVE_IDS))
        ]
        graft = _chunks([Graft(t) for t in self.graft], _CONTROL_SHARE)
        prune = _chunks([Prune(t, b) for t, b in self.prune], _CONTROL_SHARE)
        views = [BridgeView(t, e) for t, e in self.bridges.items()]
        bridges = _chunks(views, MAX_BRIDGE_TOPICS)
        count = max(
            len(subs),
            len(msg_chunks),
            len(ihave_chunks),
            len(iwant),
            len(graft),
            len(prune),
            len(bridges),
        )
        out = []
        for i in range(count):
            out.append(
                Rpc(
                    subscriptions=_at(subs, i),
                    messages=_at(msg_chunks, i),
                    ihave=_at(ihave_chunks, i),
                    iwant=_at(iwant, i),
                    graft=_at(graft, i),
                    prune=_at(prune, i),
                    bridges=_at(bridges, i),
                )
            )
        return out


def _at(chunks: list[tuple[_T, ...]], i: int) -> tuple[_T, ...]:
    return chunks[i] if i < len(chunks) else ()


def _chunks(items: list[_T], size: int) -> list[tuple[_T, ...]]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def _message_chunks(msgs: list[Message]) -> list[tuple[Message, ...]]:
    out: list[tuple[Message, ...]] = []
    current: list[Message] = []
    size = 0
    for m in msgs:
        cost = len(m.data) + len(m.topic) * 4 + _MESSAGE_OVERHEAD
        if current and (len(current) >= MAX_MESSAGES_PER_RPC or size + cost > _MESSAGE_BUDGET):
            out.append(tuple(current))
            current, size = [], 0
        current.append(m)
        size += cost
    if current:
        out.append(tuple(current))
    return out


def _ihave_chunks(ihave: dict[str, list[bytes]]) -> list[tuple[IHave, ...]]:
    out: list[tuple[IHave, ...]] = []
    current: list[IHave] = []
    room = MAX_IHAVE_IDS
    for topic, ids in ihave.items():
        start = 0
        while start < len(ids):
            if room == 0 or len(current) >= _CONTROL_SHARE:
                out.append(tuple(current))
                current, room = [], MAX_IHAVE_IDS
            part = ids[start : start + room]
            current.append(IHave(topic, tuple(part)))
            room -= len(part)
            start += len(part)
    if current:
        out.append(tuple(current))
    return out

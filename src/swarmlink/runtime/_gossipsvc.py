"""Gossip glue: carries the membership, pub/sub and replicated-state cores over overlay
streams, drives their timers, delivers messages to local subscribers and keeps replicated
state in the node's database.

The protocol decisions live in :mod:`swarmlink.gossip` (sans-I/O); this module only moves
bytes and time. Every peer pair uses up to two :data:`GOSSIP_PROTOCOL` streams, one per
direction: a node writes its messages for a peer on the stream it opened, and reads what
the peer sends on the stream the peer opened. Each record on a stream is a deterministic
CBOR pair ``[channel, payload]`` (:data:`CHANNEL_SWIM`, :data:`CHANNEL_PUBSUB`,
:data:`CHANNEL_STATE`), the payload being the core's own encoding.

Gossip runs between agents that trust each other: the stream protocol is trusted-only, and
only trusted agents become members, pub/sub peers and replicas. Replicated-state deltas
travel as signed pub/sub messages on the topic ``$state/NAME``, so the topic policy (by
default: trusted authors) decides who may write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import (
    InvalidArgument,
    NotFound,
    ProtocolViolation,
    SwarmlinkError,
)
from ..gossip import (
    MAX_REPLICA_MESSAGE,
    MAX_RPC_SIZE,
    MAX_SWIM_MESSAGE,
    STATE_TOPIC_PREFIX,
    Membership,
    PubSub,
    Replicas,
    SwimMessage,
    decode_replica_message,
    decode_swim,
    encode_replica_message,
    encode_rpc,
    encode_swim,
    sign_message,
    validate_state_name,
    validate_topic,
)
from ..gossip import events as gev
from ..gossip._swim_messages import PushPull
from ..identity import validate_agent_id
from ..wire import cbor
from . import events as ev
from ._gossipstate import SharedState, TopicSubscription
from ._gossipwire import CHANNEL_PUBSUB, CHANNEL_STATE, CHANNEL_SWIM, RpcCache, split_record
from ._stream import Stream
from .model import GossipMessage

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "CHANNEL_PUBSUB",
    "CHANNEL_STATE",
    "CHANNEL_SWIM",
    "GOSSIP_PROTOCOL",
    "GossipService",
]

log = logging.getLogger("swarmlink.gossip")

GOSSIP_PROTOCOL = "/swarmlink/gossip/1"

#: Largest gossip record a peer may send (bytes of CBOR after the 4-byte length): room
#: for the largest pub/sub RPC or membership push-pull the cores accept.
MAX_GOSSIP_RECORD = max(MAX_RPC_SIZE, MAX_SWIM_MESSAGE, MAX_REPLICA_MESSAGE) + 64
#: Bytes queued towards one peer before the oldest records are dropped (gossip repairs
#: losses; a stuck peer must not make us buffer without bound).
MAX_OUTBOX_BYTES = 2 * 1024 * 1024
#: Seconds to open a gossip stream to a peer (dial included) before calling it unreachable.
OPEN_TIMEOUT = 5.0
#: Pub/sub peers at most: alive trusted members beyond this are members, not mesh candidates.
MAX_PUBSUB_PEERS = 64
#: Messages buffered for one local subscriber before the oldest are dropped.
MAX_SUBSCRIBER_BACKLOG = 4096
#: Seconds between writes of changed replicated state to the database.
PERSIST_INTERVAL = 1.0
#: Seconds before a peer whose gossip stream failed is added to pub/sub again.
READD_DELAY = 1.0
#: Seconds between attempts to rejoin trusted agents membership does not see alive (after
#: a partition each side thinks the other dead; SWIM alone never probes the dead again).
REJOIN_INTERVAL = 10.0
#: Trusted agents tried per rejoin round.
REJOIN_PER_ROUND = 3
#: Topic policies: trusted authors (default), any verified author, or a list of agents.
POLICY_TRUSTED = "trusted"
POLICY_ANY = "any"
#: Agents an explicit topic policy lists at most.
MAX_POLICY_AGENTS = 1024


class _Outbox:
    """Records waiting for one peer, and the task that writes them."""

    __slots__ = ("bytes", "idle", "queue", "stream", "task", "wake")

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.bytes = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        #: The open stream, and whether the writer task is waiting for work with nothing
        #: queued and nothing to drain: then a record is written at once, not handed over.
        self.stream: Stream | None = None
        self.idle = False


class GossipService:
    """The node's gossip layer (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.local = node.agent_id
        self.region = node.config.region
        rng = random.Random()
        self._mono = time.monotonic
        now = self._mono()
        self.membership = Membership(self.local, node.config.swim, rng, now, region=self.region)
        self.pubsub = PubSub(
            self.local, node.config.pubsub, rng, region=self.region, allowed=self._allowed
        )
        self.replicas = Replicas(self.local, node.config.replica, rng)
        self._outboxes: dict[str, _Outbox] = {}
        self._peer_regions: dict[str, str] = {}  # pub/sub peers and the region given
        self._subs: dict[str, set[TopicSubscription]] = {}
        self._states: dict[str, SharedState] = {}
        self._policies: dict[str, str | frozenset[str]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._seqno = 0
        self._started = False
        self._closed = False
        self._persist_handle: asyncio.TimerHandle | None = None
        self._rejoin_handle: asyncio.TimerHandle | None = None
        self._rng = rng
        self._flushing = False
        self._arm_pending = False
        self._rpcs = RpcCache()
        self._leaving = False
        self.stats = {"invalid_records": 0, "dropped_outbox": 0, "unreachable": 0}

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._load()
        self.node.set_handler(GOSSIP_PROTOCOL, self._serve)
        self._started = True
        seeds = [p.agent_id for p in self.node.trust.trusted()]
        if seeds:
            self.membership.join(seeds, self._mono())
        for name in self.replicas.state_names():
            self._subscribe_core(STATE_TOPIC_PREFIX + name)
        self._flush()
        self._schedule_rejoin()

    def _schedule_rejoin(self) -> None:
        delay = REJOIN_INTERVAL * (0.5 + self._rng.random())
        self._rejoin_handle = asyncio.get_running_loop().call_later(delay, self._rejoin)

    def _rejoin(self) -> None:
        """Push-pull with a few trusted agents that membership does not see alive."""
        if self._closed:
            return
        alive = {m.agent for m in self.membership.members() if m.state in ("alive", "suspect")}
        missing = [p.agent_id for p in self.node.trust.trusted() if p.agent_id not in alive]
        if missing:
            picks = self._rng.sample(missing, min(REJOIN_PER_ROUND, len(missing)))
            self.membership.join(picks, self._mono())
            self._flush()
        self._schedule_rejoin()

    async def close(self) -> None:
        """Say goodbye (a gossiped leave), persist state and stop the writers."""
        if not self._started or self._closed:
            return
        with contextlib.suppress(SwarmlinkError):
            self.membership.leave(self._mono())
            self._flush()
            await self._drain_outboxes(0.5)
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        for pending in (self._persist_handle, self._rejoin_handle):
            if pending is not None:
                pending.cancel()
        self._persist()
        for box in self._outboxes.values():
            if box.task is not None:
                box.task.cancel()
        for subs in self._subs.values():
            for sub in subs:
                sub.end()

    async def _drain_outboxes(self, timeout: float) -> None:
        """Let the writers send what is queued (our leave), then end, for ``timeout`` s."""
        self._leaving = True
        tasks = []
        for box in self._outboxes.values():
            box.wake.set()
            if box.task is not None and not box.task.done():
                tasks.append(box.task)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # ---- trust hooks (called by the node) ---------------------------------------------

    def peer_trusted(self, agent_id: str) -> None:
        """A newly trusted agent: a seed for membership."""
        if self._started and not self._closed:
            self.membership.join([agent_id], self._mono())
            self._flush()

    def peer_untrusted(self, agent_id: str) -> None:
        """Trust revoked: no more gossip with that agent."""
        if self._started and not self._closed:
            self._remove_pubsub_peer(agent_id)
            self._drop_outbox(agent_id)
            self._refresh_replica_peers()
            self._flush()

    def _trusted(self, agent_id: str) -> bool:
        return self.node.trust.is_trusted(agent_id)

    # ---- policies ----------------------------------------------------------------------

    def _allowed(self, topic: str, author: str) -> bool:
        if author == self.local:
            return True
        policy = self._policies.get(topic, POLICY_TRUSTED)
        if policy == POLICY_ANY:
            return True
        if policy == POLICY_TRUSTED:
            return self._trusted(author)
        return author in policy

    def set_policy(self, topic: str, policy: str | Iterable[str]) -> dict[str, Any]:
        """Who may publish on ``topic``: "trusted" (default), "any", or agent IDs."""
        topic = validate_topic(topic)
        value: str | frozenset[str]
        if isinstance(policy, str) and policy in (POLICY_TRUSTED, POLICY_ANY):
            value = policy
        elif isinstance(policy, str):
            raise InvalidArgument(f"bad topic policy {policy!r}: 'trusted', 'any' or agents")
        else:
            agents = frozenset(validate_agent_id(a) for a in policy)
            if not agents or len(agents) > MAX_POLICY_AGENTS:
                raise InvalidArgument(f"a topic policy lists 1..{MAX_POLICY_AGENTS} agents")
            value = agents
        self._policies[topic] = value
        stored = value if isinstance(value, str) else sorted(value)
        self.node.db.execute(
            "INSERT OR REPLACE INTO gossip_policies (topic, policy) VALUES (?, ?)",
            (topic, json.dumps(stored)),
        )
        return {"topic": topic, "policy": stored}

    def policies(self) -> list[dict[str, Any]]:
        return [
            {"topic": t, "policy": p if isinstance(p, str) else sorted(p)}
            for t, p in sorted(self._policies.items())
        ]

    # ---- members -----------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Every member this node knows, itself first, with state and age (seconds)."""
        now = self._mono()
        out = []
        for m in self.membership.members():
            out.append(
                {
                    "agent_id": m.agent,
                    "state": m.state,
                    "incarnation": m.incarnation,
                    "region": m.region,
                    "age": round(max(0.0, now - m.since), 3),
                    "local": m.agent == self.local,
                }
            )
        out.sort(key=lambda m: (not m["local"], m["state"], m["agent_id"]))
        return out

    def info(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for m in self.membership.members():
            counts[m.state] = counts.get(m.state, 0) + 1
        return {
            "region": self.region,
            "members": counts,
            "topics": sorted(t for t in self._subs if not t.startswith(STATE_TOPIC_PREFIX)),
            "pubsub_peers": len(self.pubsub.peers()),
            "states": sorted(self.replicas.state_names()),
            "local_health": self.membership.local_health,
            **self.stats,
        }

    # ---- pub/sub -----------------------------------------------------------------------

    def _next_seqno(self) -> int:
        # Unique across restarts without storing anything: wall-clock nanoseconds.
        self._seqno = max(self._seqno + 1, time.time_ns())
        return self._seqno

    def publish(self, topic: str, data: bytes) -> dict[str, Any]:
        """Sign and publish ``data`` on ``topic``; returns the message ID and fan-out."""
        topic = validate_topic(topic)
        if topic.startswith(STATE_TOPIC_PREFIX):
            raise InvalidArgument(f"topics starting with {STATE_TOPIC_PREFIX!r} are reserved")
        return self._publish(topic, data)

    def _publish(self, topic: str, data: bytes) -> dict[str, Any]:
        msg = sign_message(self.node.identity, topic, self._next_seqno(), data)
        msg_id = self.pubsub.publish(msg, self._mono())
        if not topic.startswith(STATE_TOPIC_PREFIX):
            self._deliver_local(msg, msg_id, self.local)  # our own subscribers get it too
        out = self.pubsub.messages_to_send()
        self._send_rpcs(out)
        self._flush()
        return {"id": msg_id.hex(), "topic": topic, "size": len(data), "peers": len(out)}

    def _send_rpcs(self, out: list[tuple[str, Any]]) -> None:
        for peer, rpc in out:
            self._send(peer, CHANNEL_PUBSUB, encode_rpc(rpc))

    def subscribe(self, topic: str) -> TopicSubscription:
        """An async iterator of the messages on ``topic`` (until closed)."""
        topic = validate_topic(topic)
        sub = TopicSubscription(topic, MAX_SUBSCRIBER_BACKLOG, self._unsubscribe)
        subs = self._subs.setdefault(topic, set())
        subs.add(sub)
        if len(subs) == 1:
            self._subscribe_core(topic)
            self._flush()
        return sub

    def _subscribe_core(self, topic: str) -> None:
        self.pubsub.subscribe(topic, self._mono())

    def _unsubscribe(self, sub: TopicSubscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.topic]
            if not self._closed:
                self.pubsub.unsubscribe(sub.topic, self._mono())
                self._flush()

    def _deliver(self, event: Any) -> None:
        self._deliver_local(event.message, event.msg_id, event.from_peer)

    def _deliver_local(self, msg: Any, msg_id: bytes, from_peer: str) -> None:
        if msg.topic.startswith(STATE_TOPIC_PREFIX):
            name = msg.topic[len(STATE_TOPIC_PREFIX) :]
            if name in self.replicas.state_names():
                try:
                    self.replicas.receive_delta(name, msg.data, time.time(), msg.author)
                except ProtocolViolation as exc:
                    log.info("bad state delta", extra={"author": msg.author, "error": str(exc)})
            return
        subs = self._subs.get(msg.topic)
        if not subs:
            return
        item = GossipMessage(
            id=msg_id.hex(),
            topic=msg.topic,
            author=msg.author,
            seqno=msg.seqno,
            data=msg.data,
            received_from=from_peer,
            received_at=time.time(),
        )
        for sub in subs:
            sub.put(item)

    # ---- replicated state --------------------------------------------------------------

    def state(self, name: str) -> SharedState:
        """The replicated state ``name`` (created empty, and replicated from now on)."""
        name = validate_state_name(name)
        shared = self._states.get(name)
        if shared is None:
            fresh = name not in self.replicas.state_names()
            self.replicas.get_state(name)
            shared = SharedState(self, name)
            self._states[name] = shared
            if fresh:
                self._subscribe_core(STATE_TOPIC_PREFIX + name)
                self._refresh_replica_peers()
                self._flush()
        return shared

    def state_names(self) -> list[str]:
        return sorted(self.replicas.state_names())

    def state_op(self, name: str, op: str, key: str, value: Any = None) -> list[Any]:
        """Apply one local operation (set, delete, add, remove, increment)."""
        self.state(name)
        changes = self.replicas.apply_local(name, op, key, value, time.time())
        # Persist before the delta leaves: after a crash the node must not reuse the
        # operation numbers (dots) it already published.
        self._persist()
        self._flush()
        return changes

    def state_get(self, name: str, key: str | None = None) -> Any:
        if validate_state_name(name) not in self.replicas.state_names():
            raise NotFound(f"no state named {name!r} on this node")
        doc = self.replicas.get_state(name)
        if key is None:
            return doc.to_dict()
        return doc.get(key)

    # ---- persistence -------------------------------------------------------------------

    def _load(self) -> None:
        db = self.node.db
        for name, data in db.query("SELECT name, data FROM gossip_state"):
            try:
                self.replicas.restore(name, bytes(data))
            except SwarmlinkError as exc:
                log.warning("dropped stored state", extra={"state": name, "error": str(exc)})
        for topic, policy in db.query("SELECT topic, policy FROM gossip_policies"):
            with contextlib.suppress(ValueError, SwarmlinkError):
                value = json.loads(policy)
                self._policies[topic] = value if isinstance(value, str) else frozenset(value)
        self.replicas.take_dirty()

    def _persist_later(self) -> None:
        self._persist_handle = None
        self._persist()

    def _persist(self) -> None:
        dirty = self.replicas.take_dirty()
        if not dirty:
            return
        now = time.time()
        db = self.node.db
        with db.transaction():
            for name in dirty:
                db.execute(
                    "INSERT OR REPLACE INTO gossip_state (name, data, updated) VALUES (?, ?, ?)",
                    (name, self.replicas.snapshot(name), now),
                )

    def _schedule_persist(self) -> None:
        if self._persist_handle is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._persist_handle = loop.call_later(PERSIST_INTERVAL, self._persist_later)

    # ---- the engine: input, output, timers --------------------------------------------

    async def _serve(self, stream: Stream) -> None:
        """Read a peer's gossip records until its stream ends: every record already
        received is handled before the cores' output goes out (one flush per wake-up)."""
        peer = stream.peer
        while not await stream.at_end():
            body: bytes | None = await stream.read_frame(max_size=MAX_GOSSIP_RECORD)
            if self._closed:
                return
            try:
                while body is not None:
                    self._dispatch(peer, body)
                    body = stream.read_frame_nowait(max_size=MAX_GOSSIP_RECORD)
            except ProtocolViolation as exc:
                self.stats["invalid_records"] += 1
                log.info("bad gossip record", extra={"peer": peer, "error": str(exc)})
                raise
            finally:
                self._flush()

    def _dispatch(self, peer: str, body: bytes) -> None:
        channel, payload = split_record(body)
        if not self.pubsub.has_peer(peer) and self._trusted(peer):
            self._add_pubsub_peer(peer, self._region_of(peer))
        if channel == CHANNEL_SWIM:
            self.membership.receive(peer, self._trusted_only(decode_swim(payload)), self._mono())
        elif channel == CHANNEL_PUBSUB:
            self.pubsub.receive(peer, self._rpcs.decode(payload), self._mono())
        else:
            self.replicas.receive(peer, decode_replica_message(payload), time.time())

    def _add_pubsub_peer(self, peer: str, region: str) -> None:
        if peer == self.local or not self._trusted(peer):
            return
        if self.pubsub.has_peer(peer):
            if self._peer_regions.get(peer) == region:
                return
            self.pubsub.remove_peer(peer, self._mono())  # its region label changed
        elif len(self._peer_regions) >= MAX_PUBSUB_PEERS:
            return
        self.pubsub.add_peer(peer, self._mono(), region=region)
        self._peer_regions[peer] = region

    def _remove_pubsub_peer(self, peer: str) -> None:
        self.pubsub.remove_peer(peer, self._mono())
        self._peer_regions.pop(peer, None)

    def _trusted_only(self, msg: SwimMessage) -> SwimMessage:
        """Drop membership updates about agents we do not trust: we could not probe them
        (they refuse our gossip streams), so tracking them would only breed false
        suspicions. With mutual trust across the swarm nothing is dropped."""
        updates = msg.members if isinstance(msg, PushPull) else msg.updates
        kept = tuple(u for u in updates if u.agent == self.local or self._trusted(u.agent))
        if len(kept) == len(updates):
            return msg
        if isinstance(msg, PushPull):
            return dataclasses.replace(msg, members=kept)
        return dataclasses.replace(msg, updates=kept)

    def _region_of(self, agent: str) -> str:
        member = self.membership.member(agent)
        return member.region if member is not None else ""

    def _readd(self, peer: str) -> None:
        """Add a peer whose stream failed back to pub/sub, if it is still a live member."""
        if self._closed or self.pubsub.has_peer(peer):
            return
        member = self.membership.member(peer)
        if member is not None and member.state in ("alive", "suspect"):
            self._add_pubsub_peer(peer, member.region)
            self._flush()

    def _refresh_replica_peers(self) -> None:
        alive = [
            m.agent
            for m in self.membership.members()
            if m.state == "alive" and m.agent != self.local and self._trusted(m.agent)
        ]
        self.replicas.set_peers(alive)

    def _on_timer(self, core: str) -> None:
        self._timers.pop(core, None)
        if self._closed:
            return
        if core == "swim":
            self.membership.handle_timer(self._mono())
        elif core == "pubsub":
            self.pubsub.handle_timer(self._mono())
        else:
            self.replicas.handle_timer(time.time())
        self._flush()

    def _arm_soon(self) -> None:
        """Re-arm the timers once per event-loop turn, however many records it handled."""
        if not self._arm_pending:
            self._arm_pending = True
            asyncio.get_running_loop().call_soon(self._arm)

    def _arm(self) -> None:
        self._arm_pending = False
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        mono_now, wall_now = self._mono(), time.time()
        wanted: dict[str, float | None] = {
            "swim": self.membership.get_timer(),
            "pubsub": self.pubsub.get_timer(),
            "state": self.replicas.get_timer(),
        }
        for core, when in wanted.items():
            handle = self._timers.get(core)
            if when is None:
                if handle is not None:
                    handle.cancel()
                    del self._timers[core]
                continue
            delay = max(0.0, when - (wall_now if core == "state" else mono_now))
            due = loop.time() + delay
            if handle is not None:
                if abs(handle.when() - due) < 0.001:
                    continue
                handle.cancel()
            self._timers[core] = loop.call_at(due, self._on_timer, core)

    def _flush(self) -> None:
        """Drain the cores: events first (they may produce messages), then messages."""
        if self._closed or self._flushing:
            return  # a flush in progress sends what this one would
        self._flushing = True
        try:
            self._flush_once()
        finally:
            self._flushing = False

    def _flush_once(self) -> None:
        for _ in range(8):  # events can cascade (a delta makes a change makes a delta)
            progressed = self._drain_events()
            if not progressed:
                break
        for peer, msg in self.membership.messages_to_send():
            self._send(peer, CHANNEL_SWIM, encode_swim(msg))
        self._send_rpcs(self.pubsub.messages_to_send())
        for peer, rmsg in self.replicas.messages_to_send():
            self._send(peer, CHANNEL_STATE, encode_replica_message(rmsg))
        self._arm_soon()

    def _drain_events(self) -> bool:
        progressed = False
        for mev in self.membership.events():
            progressed = True
            self._on_member_event(mev)
        for pev in self.pubsub.events():
            progressed = True
            if isinstance(pev, gev.MessageReceived):
                self._deliver(pev)
        for name, delta in self.replicas.deltas_to_broadcast():
            progressed = True
            self._publish(STATE_TOPIC_PREFIX + name, delta)
        changes = self.replicas.events()
        if changes:
            progressed = True
            self._schedule_persist()
            for change in changes:
                if isinstance(change, gev.StateCreated):
                    # Anti-entropy brought a state we did not hold: replicate it from now on.
                    self._subscribe_core(STATE_TOPIC_PREFIX + change.name)
                    continue
                shared = self._states.get(change.name)
                if shared is not None:
                    shared.notify(change)
                self.node.publish(
                    ev.StateChanged(
                        name=change.name,
                        key=change.key,
                        value=change.value,
                        deleted=change.deleted,
                        origin=change.origin,
                    )
                )
        return progressed

    def _on_member_event(self, mev: Any) -> None:
        agent = mev.agent
        if agent == self.local:
            return
        kind = type(mev).__name__
        if kind in ("MemberJoined", "MemberRecovered", "MemberUpdated"):
            member = self.membership.member(agent)
            region = member.region if member is not None else ""
            self._add_pubsub_peer(agent, region)  # re-adds it if its region changed
            self._refresh_replica_peers()
            if kind != "MemberUpdated" and self._trusted(agent):
                self.replicas.sync_with(agent)  # catch up at once, not at the next round
            if kind == "MemberJoined":
                self.node.publish(ev.MemberJoined(agent_id=agent, region=region))
        elif kind in ("MemberFailed", "MemberLeft"):
            self._remove_pubsub_peer(agent)
            self._refresh_replica_peers()
            self._drop_outbox(agent)
            if kind == "MemberFailed":
                self.node.publish(ev.MemberFailed(agent_id=agent))
            else:
                self.node.publish(ev.MemberLeft(agent_id=agent))
        elif kind == "MemberSuspected":
            self.node.publish(ev.MemberSuspected(agent_id=agent))

    # ---- writers -----------------------------------------------------------------------

    def _send(self, peer: str, channel: int, payload: bytes) -> None:
        if peer == self.local:
            return
        if not self._trusted(peer):
            # Never gossip with agents we do not trust; tell membership at once.
            self.membership.unreachable(peer, self._mono())
            return
        body = cbor.encode([channel, payload])
        record = len(body).to_bytes(4, "big") + body
        box = self._outboxes.get(peer)
        if box is None:
            box = self._outboxes[peer] = _Outbox()
        elif box.idle and box.stream is not None:
            with contextlib.suppress(SwarmlinkError):  # the writer meets the error itself
                box.stream.write(record)
                if box.stream.congested:
                    box.idle = False
                    box.wake.set()  # the writer drains before anything else goes out
                return
        box.queue.append(record)
        box.bytes += len(record)
        while box.bytes > MAX_OUTBOX_BYTES and len(box.queue) > 1:
            box.bytes -= len(box.queue.popleft())
            self.stats["dropped_outbox"] += 1
        box.wake.set()
        if box.task is None or box.task.done():
            box.task = self.node.spawn(self._writer(peer, box), name=f"gossip:{peer[:12]}")

    def _drop_outbox(self, peer: str) -> None:
        box = self._outboxes.pop(peer, None)
        if box is not None and box.task is not None:
            box.task.cancel()

    async def _writer(self, peer: str, box: _Outbox) -> None:
        stream: Stream | None = None
        try:
            stream = await asyncio.wait_for(
                self.node.open_stream(peer, GOSSIP_PROTOCOL), OPEN_TIMEOUT
            )
            box.stream = stream
            while not self._closed:
                box.wake.clear()
                while box.queue:
                    record = box.queue.popleft()
                    box.bytes -= len(record)
                    stream.write(record)
                await stream.drain()
                if not box.queue:
                    if self._leaving:
                        return
                    box.idle = True
                    try:
                        await box.wake.wait()
                    finally:
                        box.idle = False
        except (SwarmlinkError, OSError, TimeoutError) as exc:
            self.stats["unreachable"] += 1
            log.debug("gossip peer unreachable", extra={"peer": peer, "error": str(exc)})
            if self._outboxes.get(peer) is box:
                del self._outboxes[peer]
            if not self._closed:
                self.membership.unreachable(peer, self._mono())
                # What was queued is lost (subscriptions, grafts): forget the peer in
                # pub/sub and add it again shortly, which announces everything anew.
                if self.pubsub.has_peer(peer):
                    self._remove_pubsub_peer(peer)
                    loop = asyncio.get_running_loop()
                    loop.call_later(READD_DELAY, self._readd, peer)
                self._flush()
        finally:
            if stream is not None and self._closed:
                stream.reset()

"""Topic pub/sub: a GossipSub-v1.1-style mesh with peer scoring and regional clusters.

Sans-I/O: the runtime (or the simulator) reports peers with :meth:`PubSub.add_peer` /
:meth:`PubSub.remove_peer`, hands in every decoded :class:`~._pubsub_messages.Rpc` with
:meth:`PubSub.receive`, sends what :meth:`PubSub.messages_to_send` returns, delivers
:meth:`PubSub.events` to the application and calls :meth:`PubSub.handle_timer` at
:meth:`PubSub.get_timer`. Time is the ``now`` argument; randomness comes from ``rng``.

How a message travels: its author signs it (:func:`~._pubsub_messages.sign_message`) and
publishes it to its mesh peers for the topic (and, with flood publishing, to every topic
peer scoring above the publish threshold). Each receiver checks it (subscribed topic,
author allowed by the topic policy, not a replay, signature and key), delivers it once and
forwards it to its own mesh peers. The heartbeat keeps every topic mesh between ``d_low``
and ``d_high`` peers (by score, negative peers out), and sends IHAVE gossip of recent
message IDs to ``d_lazy`` non-mesh peers, who fetch what they missed with IWANT: lost
forwards are repaired within a heartbeat or two.

Peer scores (:mod:`._score`) make misbehaving peers lose their mesh places, their gossip,
and finally their voice (graylisted RPCs are ignored). Regions (:mod:`._pubsub_regions`)
keep the mesh inside each region and cross region boundaries through a few bridges.
The router's state lives in :mod:`._pubsub_router`, the heartbeat in
:mod:`._pubsub_heartbeat`; this module holds the public API and the input handling.

Not implemented from GossipSub v1.1: peer exchange on PRUNE (the overlay has its own
discovery), outbound mesh quotas (every peer is an authenticated, trusted session), IP
colocation scores (no IPs here) and the application-specific score.

Sequence numbers: a message whose seqno is not above the highest seqno of that author's
messages that already expired from the seen cache is dropped as a replay, so an author
must keep seqnos growing across restarts (start from a clock, e.g. ``time.time_ns()``).
"""

from __future__ import annotations

from ..errors import InvalidArgument, StateError
from ._pubsub_events import (
    MessageReceived,
    MessageRejected,
    PubSubEvent,
)
from ._pubsub_heartbeat import MAX_TRACKED_AUTHORS, Maintenance
from ._pubsub_messages import (
    MAX_BACKOFF,
    MAX_MESSAGE_DATA,
    IWant,
    Message,
    Prune,
    Rpc,
    SubOpt,
    message_id,
    validate_topic,
)
from ._pubsub_regions import BridgeElection
from ._pubsub_router import allow_any
from ._pubsub_state import PeerState

__all__ = [
    "MAX_PEER_TOPICS",
    "MAX_REJECTED",
    "MAX_TRACKED_AUTHORS",
    "PubSub",
    "allow_any",
]

#: Topics we remember per peer (more subscriptions from it are ignored; untrusted input).
MAX_PEER_TOPICS = 1024
#: Rejected (message ID, signature) pairs remembered, so a repeated forgery is cheap.
MAX_REJECTED = 8192


class PubSub(Maintenance):
    """One node's pub/sub router (see the module docstring).

    ``local`` is our agent ID, ``region`` our region label ("" for none); ``allowed(topic,
    author)`` is the topic policy; ``verify(msg)`` checks a message's key and signature
    (the simulator passes a memoizing one).
    """

    # ---- queries ---------------------------------------------------------------------------

    def peers(self) -> list[str]:
        """Connected peers, in the order they were added."""
        return list(self._peers)

    def has_peer(self, peer: str) -> bool:
        """Whether ``peer`` is a connected peer (added and not removed)."""
        return peer in self._peers

    def topics(self) -> list[str]:
        """Topics we subscribe to."""
        return list(self._topics)

    def mesh(self, topic: str) -> frozenset[str]:
        """Our mesh peers for ``topic`` (empty if we don't subscribe to it)."""
        return frozenset(self._mesh.get(topic, ()))

    def fanout(self, topic: str) -> frozenset[str]:
        """Peers we publish ``topic`` to while not subscribed to it."""
        return frozenset(self._fanout.get(topic, ()))

    def topic_peers(self, topic: str) -> frozenset[str]:
        """Connected peers that told us they subscribe to ``topic``."""
        return frozenset(self._topic_peers.get(topic, ()))

    def score(self, peer: str) -> float:
        """The peer's current score (:class:`~swarmlink.errors.InvalidArgument` if unknown)."""
        state = self._peers.get(peer)
        if state is None:
            raise InvalidArgument(f"unknown peer {peer!r}")
        return state.score.value()

    def is_bridge(self, topic: str) -> bool:
        """Whether we bridge ``topic`` out of our region: we are among its best-ranked
        members and have same-region peers to bridge for (always False without regions)."""
        election = self._elections.get(topic)
        return election is not None and election.is_bridge() and bool(election.neighbours)

    def bridges(self, topic: str) -> list[str]:
        """Our view of our region's bridges for ``topic`` (best-ranked first)."""
        election = self._elections.get(topic)
        return [] if election is None else [agent for agent, _, _ in election.best]

    # ---- peers and topics ----------------------------------------------------------------

    def add_peer(self, peer: str, now: float, *, region: str = "") -> None:
        """A trusted peer connected (idempotent); ``region`` is its region label."""
        self._clock(now)
        if peer == self.local or not peer:
            raise InvalidArgument("a peer is a non-empty ID other than our own")
        if peer in self._peers:
            return
        retained = self._retained.pop(peer, None)
        state = PeerState(region, None if retained is None else retained[0], self._params)
        self._peers[peer] = state
        self._scores[peer] = state.score.value()
        if self._topics:
            self._box(peer).subs.extend(SubOpt(True, t) for t in self._topics)

    def remove_peer(self, peer: str, now: float) -> None:
        """The peer disconnected; its penalties are kept for ``retain_score`` seconds."""
        state = self._peers.pop(peer, None)
        if state is None:
            return
        for topic in list(state.topics):
            self._drop_peer_topic(peer, state, topic, now)
        self._outbox.pop(peer, None)
        self._scores.pop(peer, None)
        if state.score.value() < 0:
            self._retained[peer] = (state.score, now + self.config.retain_score)

    def subscribe(self, topic: str, now: float) -> None:
        """Join ``topic``: announce it and graft mesh peers (fanout peers first)."""
        validate_topic(topic)
        self._clock(now)
        if topic in self._topics:
            return
        self._topics[topic] = None
        for peer in self._peers:
            self._box(peer).subs.append(SubOpt(True, topic))
        mesh: dict[str, None] = {}
        self._mesh[topic] = mesh
        self._owned[topic] = {}
        if self._regional:
            self._elections[topic] = BridgeElection(
                topic, self.local, self.config.bridges_per_region, self.config.bridge_max_distance
            )
            self._mark_dirty(topic, now)
        fanout = self._fanout.pop(topic, {})
        self._fanout_last.pop(topic, None)
        for peer in fanout:
            if len(mesh) < self.config.d and self._scores.get(peer, 0.0) >= 0:
                self._graft(topic, peer, now)
        self._maintain(topic, now, self._scores)

    def unsubscribe(self, topic: str, now: float) -> None:
        """Leave ``topic``: announce it and PRUNE our mesh peers (short backoff)."""
        self._clock(now)
        if topic not in self._topics:
            return
        del self._topics[topic]
        for peer in self._peers:
            self._box(peer).subs.append(SubOpt(False, topic))
        for peer in list(self._mesh.get(topic, ())):
            self._prune(topic, peer, now, self.config.unsubscribe_backoff)
        del self._mesh[topic]
        self._owned.pop(topic, None)
        self._elections.pop(topic, None)
        self._dirty.pop(topic, None)

    # ---- publishing ----------------------------------------------------------------------

    def publish(self, msg: Message, now: float) -> bytes:
        """Send our signed ``msg``; returns its ID. Goes to the topic mesh (or to fanout
        peers if we don't subscribe) and, with flood publishing, to every topic peer
        above the publish threshold (same-region ones only, with region preference)."""
        self._clock(now)
        validate_topic(msg.topic)
        if len(msg.data) > MAX_MESSAGE_DATA:
            raise InvalidArgument(f"message data larger than {MAX_MESSAGE_DATA} bytes")
        if not self._verify(msg):
            raise InvalidArgument("message does not verify (sign it with sign_message)")
        mid = message_id(msg)
        if mid in self._seen:
            raise StateError("this message was already published or received")
        self._remember(mid, msg, now, None)
        topic = msg.topic
        targets: dict[str, None] = {}
        if topic in self._topics:
            targets.update(self._mesh[topic])
        else:
            fanout = self._fanout.get(topic)
            if fanout is None:
                fanout = self._fanout[topic] = {}
                self._fill_fanout(topic, fanout, self._scores)
            self._fanout_last[topic] = now
            targets.update(fanout)
        if self.config.flood_publish:
            threshold = self._params.publish_threshold
            peers = self._peers
            for peer in self._topic_peers.get(topic, ()):
                if self._regional and peers[peer].region != self.region:
                    continue
                if peers[peer].score.value() >= threshold:
                    targets[peer] = None
        for peer in targets:
            self._queue_message(peer, msg)
        self.stats.published += 1
        return mid

    # ---- input ---------------------------------------------------------------------------

    def receive(self, peer: str, rpc: Rpc, now: float) -> None:
        """Handle one decoded RPC from ``peer``."""
        self._clock(now)
        state = self._peers.get(peer)
        if state is None:
            self.stats.unknown_peer += 1
            return
        score = state.score.value()
        if score < self._params.graylist_threshold:
            self.stats.graylisted += 1
            return
        for sub in rpc.subscriptions:
            self._on_subscription(peer, state, sub, now)
        for graft in rpc.graft:
            self._on_graft(peer, state, graft.topic, now, score)
        for prune in rpc.prune:
            self._on_prune(peer, state, prune, now)
        for msg in rpc.messages:
            self._on_message(peer, state, msg, now)
        if (rpc.ihave or rpc.iwant) and score >= self._params.gossip_threshold:
            for ihave in rpc.ihave:
                self._on_ihave(peer, state, ihave.topic, ihave.ids, now)
            if rpc.iwant:
                self._on_iwant(peer, state, rpc.iwant)
        for view in rpc.bridges:
            election = self._elections.get(view.topic)
            if election is not None and state.region == self.region:
                election.views[peer] = view.entries[: self.config.bridges_per_region]
                self._mark_dirty(view.topic, now)

    def _on_subscription(self, peer: str, state: PeerState, sub: SubOpt, now: float) -> None:
        topic = sub.topic
        if sub.subscribe:
            if topic in state.topics or len(state.topics) >= MAX_PEER_TOPICS:
                return
            state.topics[topic] = None
            self._topic_peers.setdefault(topic, {})[peer] = None
        elif topic in state.topics:
            self._drop_peer_topic(peer, state, topic, now)
            state.score.forget_topic(topic)
        else:
            return
        if topic in self._elections and state.region == self.region:
            self._mark_dirty(topic, now)

    def _drop_peer_topic(self, peer: str, state: PeerState, topic: str, now: float) -> None:
        del state.topics[topic]
        members = self._topic_peers.get(topic)
        if members is not None:
            members.pop(peer, None)
            if not members:
                del self._topic_peers[topic]
        mesh = self._mesh.get(topic)
        if mesh is not None and peer in mesh:
            self._leave_mesh(topic, peer, state, now)
        fanout = self._fanout.get(topic)
        if fanout is not None:
            fanout.pop(peer, None)
        election = self._elections.get(topic)
        if election is not None:
            election.forget(peer)
            self._mark_dirty(topic, now)

    def _on_graft(self, peer: str, state: PeerState, topic: str, now: float, score: float) -> None:
        cfg = self.config
        mesh = self._mesh.get(topic)
        if mesh is None:  # we don't subscribe: say so, without penalty
            self._send_prune(peer, state, topic, now, cfg.unsubscribe_backoff, record=False)
            return
        if peer in mesh:
            return
        until = state.backoff.get(topic)
        if until is not None and until > now:
            self.stats.graft_backoff += 1
            state.score.penalize(1.0)
            if until - now > cfg.prune_backoff - cfg.graft_flood_threshold:
                state.score.penalize(1.0)
            self._send_prune(peer, state, topic, now, cfg.prune_backoff)
            return
        if score < 0:
            self._send_prune(peer, state, topic, now, cfg.prune_backoff)
            return
        if topic not in state.topics and len(state.topics) < MAX_PEER_TOPICS:
            state.topics[topic] = None  # a GRAFT implies the subscription
            self._topic_peers.setdefault(topic, {})[peer] = None
        self._join_mesh(topic, peer, state, now)

    def _on_prune(self, peer: str, state: PeerState, prune: Prune, now: float) -> None:
        topic = prune.topic
        mesh = self._mesh.get(topic)
        if mesh is not None and peer in mesh:
            self._leave_mesh(topic, peer, state, now)
        if prune.backoff:
            until = now + min(prune.backoff, MAX_BACKOFF)
            state.backoff[topic] = max(state.backoff.get(topic, 0.0), until)

    def _on_message(self, peer: str, state: PeerState, msg: Message, now: float) -> None:
        topic = msg.topic
        if topic not in self._topics:
            self.stats.ignored += 1
            return
        mid = message_id(msg)
        if mid in self._seen:
            self.stats.duplicates += 1
            self._on_duplicate(peer, state, mid, topic, now)
            return
        rejected_key = mid + msg.sig
        if rejected_key in self._rejected:
            self.stats.invalid += 1
            state.score.invalid_message(topic)
            return
        if not self._allowed(topic, msg.author):
            self.stats.not_allowed += 1
            state.score.not_allowed()
            self._events.append(MessageRejected("not-allowed", topic, mid, peer))
            return
        floor = self._floors.get(msg.author)
        if floor is not None and msg.seqno <= floor:
            self.stats.stale += 1
            self._events.append(MessageRejected("stale", topic, mid, peer))
            return
        if not self._verify(msg):
            self.stats.invalid += 1
            state.score.invalid_message(topic)
            self._rejected[rejected_key] = now + self.config.seen_ttl
            if len(self._rejected) > MAX_REJECTED:
                self._rejected.popitem(last=False)
            self._events.append(MessageRejected("invalid", topic, mid, peer))
            return
        entry = self._remember(mid, msg, now, peer)
        mesh = self._mesh[topic]
        state.score.first_delivery(topic, peer in mesh)
        asked = self._promises.pop(mid, None)
        if asked is not None:
            entry.asked = tuple(asked)
        self.stats.delivered += 1
        self._events.append(MessageReceived(topic, msg, mid, peer, now))
        author = msg.author
        if peer not in mesh and peer != author and (asked is None or peer not in asked):
            self._hint_prune(peer, state, topic, now)
        for other in mesh:
            if other != peer and other != author:
                self._queue_message(other, msg)

    def _on_duplicate(
        self, peer: str, state: PeerState, mid: bytes, topic: str, now: float
    ) -> None:
        entry = self._msgs.get(mid)
        if entry is None:
            return
        requested = entry.asked is not None and peer in entry.asked
        if peer in entry.senders:
            if not requested:
                self.stats.repeats += 1
                state.score.penalize(1.0)
            return
        entry.senders.add(peer)
        mesh = self._mesh.get(topic)
        if mesh is not None and peer in mesh:
            if now - entry.first <= self._params.mesh_delivery_window:
                state.score.near_first_delivery(topic)
        elif peer != entry.msg.author and not requested:
            self.stats.unrequested += 1
            state.score.penalize(0.25)
            self._hint_prune(peer, state, topic, now)

    def _hint_prune(self, peer: str, state: PeerState, topic: str, now: float) -> None:
        """A peer forwards ``topic`` to us as if we were in its mesh, and we are not (its
        GRAFT got lost, or our PRUNE did): tell it, at most once per heartbeat."""
        key = (peer, topic)
        if key not in self._hinted:
            self._hinted.add(key)
            self._send_prune(peer, state, topic, now, self.config.prune_backoff)

    def _on_ihave(
        self, peer: str, state: PeerState, topic: str, ids: tuple[bytes, ...], now: float
    ) -> None:
        self.stats.ihave_received += 1
        state.ihaves += 1
        if state.ihaves > self.config.max_ihave_messages:
            self.stats.ihave_flood += 1
            state.score.penalize(1.0)
            return
        if topic not in self._topics:
            return
        budget = self.config.max_ihave_length - state.asked
        retry = self.config.iwant_retry
        seen = self._seen
        promises = self._promises
        want: list[bytes] = []
        for mid in ids:
            if budget <= 0:
                break
            if mid in seen:
                continue
            asked = promises.get(mid)
            if asked is None:
                asked = promises[mid] = {}
            elif peer in asked or now - min(asked.values()) < retry:
                continue
            asked[peer] = now
            self._promise_queue.append((now, mid, peer))
            want.append(mid)
            budget -= 1
        if want:
            state.asked += len(want)
            self._box(peer).iwant.extend(want)
            self.stats.iwant_sent += len(want)

    def _on_iwant(self, peer: str, state: PeerState, iwants: tuple[IWant, ...]) -> None:
        unknown = 0
        limit = self.config.gossip_retransmission
        for iwant in iwants:
            for mid in iwant.ids:
                self.stats.iwant_received += 1
                entry = self._msgs.get(mid)
                if entry is None:
                    unknown += 1
                    continue
                served = entry.served
                if served is None:
                    served = entry.served = {}
                count = served.get(peer, 0)
                if count >= limit:
                    continue
                served[peer] = count + 1
                self.stats.iwant_served += 1
                self._queue_message(peer, entry.msg)
        if unknown:
            state.score.penalize(min(2.0, 0.2 * unknown))

    # ---- output --------------------------------------------------------------------------

    def messages_to_send(self) -> list[tuple[str, Rpc]]:
        """Drain the RPCs to send: (peer, RPC), coalesced per peer since the last call."""
        if not self._outbox:
            return []
        out = [(peer, rpc) for peer, box in self._outbox.items() for rpc in box.build()]
        self._outbox = {}
        return out

    def events(self) -> list[PubSubEvent]:
        """Drain the events since the last call."""
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is due next (None before the first input): the next
        heartbeat, or sooner the next batch of region-election updates."""
        heartbeat = self._next_heartbeat
        election = self._election_due
        if election is None or (heartbeat is not None and heartbeat <= election):
            return heartbeat
        return election

    def handle_timer(self, now: float) -> None:
        """Run what is due: region-election updates, the heartbeat."""
        election = self._election_due
        if election is not None and now >= election:
            self._run_elections()
        due = self._next_heartbeat
        if due is None or now < due:
            return
        self._heartbeat(now)
        interval = self.config.heartbeat_interval
        self._next_heartbeat = due + interval if due + interval > now else now + interval

"""Pub/sub core: mesh, delivery, gossip repair, validation, scoring, backoff, regions, codec.

The cores are wired in memory: every RPC goes through ``encode_rpc``/``decode_rpc`` on its
way, and a filter can drop or rewrite RPCs to simulate losses and attackers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlink.errors import InvalidArgument, ProtocolViolation, StateError
from swarmlink.gossip._pubsub import MAX_PEER_TOPICS, PubSub, allow_any
from swarmlink.gossip._pubsub_config import PubSubConfig
from swarmlink.gossip._pubsub_events import (
    MessageReceived,
    MessageRejected,
    PeerGrafted,
    PeerPruned,
    PubSubEvent,
)
from swarmlink.gossip._pubsub_messages import (
    MAX_BACKOFF,
    MAX_IHAVE_IDS,
    MAX_IWANT_IDS,
    MAX_MESSAGE_DATA,
    MAX_MESSAGES_PER_RPC,
    MAX_RPC_SIZE,
    MAX_SUBSCRIPTIONS_PER_RPC,
    MAX_TOPIC_LENGTH,
    BridgeView,
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Rpc,
    SubOpt,
    decode_rpc,
    encode_rpc,
    encoded_size,
    message_id,
    sign_message,
    verify_message,
)
from swarmlink.gossip._pubsub_regions import bridge_rank
from swarmlink.gossip._pubsub_state import Outbox
from swarmlink.gossip._score import ScoreParams
from swarmlink.identity import IdentityKey
from swarmlink.wire import cbor

TOPIC = "swarm/news"
KEYS = [IdentityKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(64)]
AGENTS = [k.agent_id for k in KEYS]
KEY_OF = {k.agent_id: k for k in KEYS}
OUTSIDER = IdentityKey.from_private_bytes(b"\xee" * 32)

Filter = Callable[[str, str, Rpc], Rpc | None]


class Swarm:
    """In-memory cores and a transfer loop (every RPC is encoded and decoded)."""

    def __init__(
        self,
        n: int,
        *,
        degree: int | None = None,
        seed: int = 7,
        config: PubSubConfig | None = None,
        regions: list[str] | None = None,
        allowed: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.config = config or PubSubConfig()
        self.ids = AGENTS[:n]
        self.region = dict(zip(self.ids, regions or [""] * n, strict=True))
        policy = allowed or allow_any
        self.nodes = {
            a: PubSub(
                a,
                self.config,
                random.Random(seed * 1000 + i),
                region=self.region[a],
                allowed=policy,
            )
            for i, a in enumerate(self.ids)
        }
        self.received: dict[str, list[MessageReceived]] = {a: [] for a in self.ids}
        self.other: dict[str, list[PubSubEvent]] = {a: [] for a in self.ids}
        self.now = 0.0
        self.filter: Filter | None = None
        self.sent: list[tuple[str, str, Rpc]] = []
        if degree is None or degree >= n - 1:
            pairs = [(a, b) for i, a in enumerate(self.ids) for b in self.ids[i + 1 :]]
        else:
            chosen: set[tuple[int, int]] = {(i, (i + 1) % n) for i in range(n)}
            while len(chosen) < n * degree // 2:
                i, j = self.rng.randrange(n), self.rng.randrange(n)
                if i != j and (j, i) not in chosen:
                    chosen.add((i, j))
            pairs = [(self.ids[i], self.ids[j]) for i, j in sorted(chosen)]
        for a, b in pairs:
            self.link(a, b)

    def link(self, a: str, b: str) -> None:
        self.nodes[a].add_peer(b, self.now, region=self.region[b])
        self.nodes[b].add_peer(a, self.now, region=self.region[a])

    def subscribe_all(self, topic: str = TOPIC) -> None:
        for node in self.nodes.values():
            node.subscribe(topic, self.now)
        self.pump()

    def pump(self, rounds: int = 200) -> None:
        """Deliver everything queued (at the current time) until the swarm is quiet."""
        for _ in range(rounds):
            moved = False
            for a, node in self.nodes.items():
                for peer, rpc in node.messages_to_send():
                    self.sent.append((a, peer, rpc))
                    if self.filter is not None:
                        kept = self.filter(a, peer, rpc)
                        if kept is None:
                            continue
                        rpc = kept
                    data = encode_rpc(rpc)
                    assert len(data) <= MAX_RPC_SIZE and encoded_size(rpc) == len(data)
                    decoded = decode_rpc(data)
                    assert decoded == rpc
                    if peer in self.nodes:
                        self.nodes[peer].receive(a, decoded, self.now)
                    moved = True
                self.drain(a)
            if not moved:
                return
        raise AssertionError("the swarm did not go quiet")

    def drain(self, a: str) -> None:
        for event in self.nodes[a].events():
            if isinstance(event, MessageReceived):
                self.received[a].append(event)
            else:
                self.other[a].append(event)

    def tick(self, seconds: float = 1.0) -> None:
        """Advance time by ``seconds``, running every timer that falls due on the way
        (heartbeats, batched election updates) and pumping after each."""
        end = self.now + seconds
        while True:
            timers = [t for node in self.nodes.values() if (t := node.get_timer()) is not None]
            due = min(timers, default=None)
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            for node in self.nodes.values():
                node.handle_timer(self.now)
            self.pump()
        self.now = end

    def run(self, heartbeats: int) -> None:
        for _ in range(heartbeats):
            self.tick(self.config.heartbeat_interval)

    def publish(self, author: str, data: bytes = b"hello", seqno: int = 1) -> bytes:
        msg = sign_message(KEY_OF[author], TOPIC, seqno, data)
        mid = self.nodes[author].publish(msg, self.now)
        self.pump()
        return mid

    def got(self, mid: bytes) -> set[str]:
        return {a for a, evs in self.received.items() for e in evs if e.msg_id == mid}


def drop_messages(to: Iterable[str]) -> Filter:
    victims = set(to)

    def rule(src: str, dst: str, rpc: Rpc) -> Rpc | None:
        if dst in victims and rpc.messages:
            rpc = dataclasses.replace(rpc, messages=())
            return rpc if rpc else None
        return rpc

    return rule


def wired_pair(config: PubSubConfig | None = None) -> tuple[PubSub, str]:
    """A core for AGENTS[0] with AGENTS[1] as a grafted mesh peer."""
    node = PubSub(AGENTS[0], config or PubSubConfig(), random.Random(1))
    peer = AGENTS[1]
    node.add_peer(peer, 0.0)
    node.subscribe(TOPIC, 0.0)
    node.receive(peer, Rpc(subscriptions=(SubOpt(True, TOPIC),), graft=(Graft(TOPIC),)), 0.0)
    assert peer in node.mesh(TOPIC)
    node.messages_to_send()
    node.events()
    return node, peer


# --------------------------------------------------------------------------- mesh


def test_mesh_forms_within_bounds() -> None:
    swarm = Swarm(40, degree=12)
    swarm.subscribe_all()
    swarm.run(6)
    cfg = swarm.config
    for agent, node in swarm.nodes.items():
        size = len(node.mesh(TOPIC))
        assert cfg.d_low <= size <= cfg.d_high, (agent, size)
        for peer in node.mesh(TOPIC):  # symmetric: GRAFT/PRUNE agree at both ends
            assert agent in swarm.nodes[peer].mesh(TOPIC)
    events = [e for evs in swarm.other.values() for e in evs]
    assert any(isinstance(e, PeerGrafted) for e in events)


def test_oversubscribed_mesh_is_pruned_to_d() -> None:
    cfg = PubSubConfig()
    node = PubSub(AGENTS[0], cfg, random.Random(3))
    node.subscribe(TOPIC, 0.0)
    for peer in AGENTS[1:20]:
        node.add_peer(peer, 0.0)
        node.receive(peer, Rpc(subscriptions=(SubOpt(True, TOPIC),), graft=(Graft(TOPIC),)), 0.0)
    assert len(node.mesh(TOPIC)) == 19  # GRAFTs are accepted; the heartbeat trims
    node.handle_timer(5.0)
    assert len(node.mesh(TOPIC)) == cfg.d
    prunes = [p for _, rpc in node.messages_to_send() for p in rpc.prune]
    assert len(prunes) == 19 - cfg.d and all(p.backoff == cfg.prune_backoff for p in prunes)


def test_publish_reaches_every_subscriber_once() -> None:
    swarm = Swarm(40, degree=10)
    swarm.subscribe_all()
    swarm.run(5)
    author = AGENTS[3]
    mid = swarm.publish(author)
    assert swarm.got(mid) == set(swarm.ids) - {author}
    for agent, events in swarm.received.items():
        assert len(events) == (0 if agent == author else 1)
        for event in events:
            assert event.message.author == author and event.topic == TOPIC
            assert event.received_at == swarm.now and event.from_peer in swarm.ids
    duplicates = sum(n.stats.duplicates for n in swarm.nodes.values())
    assert duplicates > 0  # several mesh peers offered it; one delivery each
    assert sum(n.stats.delivered for n in swarm.nodes.values()) == len(swarm.ids) - 1
    with pytest.raises(StateError):
        swarm.nodes[author].publish(swarm.received[AGENTS[4]][0].message, swarm.now)


def test_unsubscribed_node_publishes_through_fanout() -> None:
    swarm = Swarm(20, degree=8)
    outsider = AGENTS[0]
    for agent, node in swarm.nodes.items():
        if agent != outsider:
            node.subscribe(TOPIC, 0.0)
    swarm.pump()
    swarm.run(3)
    node = swarm.nodes[outsider]
    mid = swarm.publish(outsider)
    assert swarm.got(mid) == set(swarm.ids) - {outsider}
    assert node.fanout(TOPIC) and not node.mesh(TOPIC)
    swarm.run(int(swarm.config.fanout_ttl) + 2)
    assert not node.fanout(TOPIC)  # expired


def test_unsubscribe_prunes_with_short_backoff() -> None:
    swarm = Swarm(10)
    swarm.subscribe_all()
    swarm.run(3)
    leaver = swarm.nodes[AGENTS[0]]
    mesh = leaver.mesh(TOPIC)
    assert mesh
    leaver.unsubscribe(TOPIC, swarm.now)
    rpcs = leaver.messages_to_send()
    assert all(SubOpt(False, TOPIC) in rpc.subscriptions for _, rpc in rpcs)
    prunes = {peer: rpc.prune for peer, rpc in rpcs if rpc.prune}
    assert set(prunes) == set(mesh)
    assert all(p == (Prune(TOPIC, 10),) for p in prunes.values())
    for peer, rpc in rpcs:
        swarm.nodes[peer].receive(AGENTS[0], rpc, swarm.now)
    assert all(AGENTS[0] not in swarm.nodes[p].mesh(TOPIC) for p in mesh)
    assert all(AGENTS[0] not in swarm.nodes[p].topic_peers(TOPIC) for p in mesh)


# --------------------------------------------------------------------------- repair


def test_ihave_iwant_repairs_a_missed_message() -> None:
    cfg = PubSubConfig(d=3, d_low=2, d_high=4, d_score=2, d_lazy=6, flood_publish=False)
    swarm = Swarm(16, config=cfg)
    swarm.subscribe_all()
    swarm.run(4)
    victim = AGENTS[9]
    swarm.filter = drop_messages([victim])  # every forward to the victim is lost
    mid = swarm.publish(AGENTS[0])
    assert victim not in swarm.got(mid)
    swarm.filter = None
    for _ in range(cfg.history_gossip):
        swarm.tick()
        if victim in swarm.got(mid):
            break
    assert swarm.got(mid) == set(swarm.ids) - {AGENTS[0]}
    node = swarm.nodes[victim]
    assert node.stats.iwant_sent >= 1 and node.stats.ihave_received >= 1
    (event,) = swarm.received[victim]
    assert event.from_peer not in node.mesh(TOPIC)  # it came by gossip, not the mesh
    assert sum(n.stats.iwant_served for n in swarm.nodes.values()) >= 1


def test_dropped_mesh_link_message_is_repaired_within_gossip_windows() -> None:
    swarm = Swarm(30, degree=10, seed=11)
    swarm.subscribe_all()
    swarm.run(5)
    a = AGENTS[0]
    b = next(iter(sorted(swarm.nodes[a].mesh(TOPIC))))

    def lose_link(src: str, dst: str, rpc: Rpc) -> Rpc | None:
        if {src, dst} == {a, b} and rpc.messages:
            return dataclasses.replace(rpc, messages=()) or None
        return rpc

    swarm.filter = lose_link
    mid = swarm.publish(a)
    swarm.filter = None
    swarm.run(3)
    assert swarm.got(mid) == set(swarm.ids) - {a}


# --------------------------------------------------------------------------- validation


def forgeries(msg: Message, forger: IdentityKey) -> list[Message]:
    own = sign_message(forger, msg.topic, msg.seqno, msg.data)
    return [
        dataclasses.replace(msg, sig=bytes(64)),  # bad signature, same ID
        dataclasses.replace(msg, data=msg.data + b"!"),  # altered data
        dataclasses.replace(msg, key=forger.public_key, sig=own.sig),  # someone else's key
        dataclasses.replace(msg, author=forger.agent_id),  # author not matching the key
    ]


def test_verify_and_message_id() -> None:
    msg = sign_message(KEYS[0], TOPIC, 5, b"payload")
    assert verify_message(msg)
    bad = forgeries(msg, KEYS[1])
    assert not any(verify_message(m) for m in bad)
    # Neither the signature nor the key is part of the ID (the author's ID binds the key):
    assert message_id(bad[0]) == message_id(bad[2]) == message_id(msg)
    assert len({message_id(m) for m in [msg, bad[1], bad[3]]}) == 3
    other = [
        sign_message(KEYS[0], TOPIC, 6, b"payload"),
        sign_message(KEYS[0], "other", 5, b"payload"),
        sign_message(KEYS[1], TOPIC, 5, b"payload"),
    ]
    assert len({message_id(m) for m in [msg, *other]}) == 4


def test_forged_messages_are_never_delivered_or_forwarded() -> None:
    node, peer = wired_pair()
    node.add_peer(AGENTS[2], 0.0)
    node.receive(AGENTS[2], Rpc(subscriptions=(SubOpt(True, TOPIC),), graft=(Graft(TOPIC),)), 0.0)
    node.messages_to_send()
    msg = sign_message(KEYS[5], TOPIC, 1, b"real")
    node.receive(peer, Rpc(messages=tuple(forgeries(msg, KEYS[1]))), 0.1)
    events = node.events()
    assert not [e for e in events if isinstance(e, MessageReceived)]
    assert [e.reason for e in events if isinstance(e, MessageRejected)] == ["invalid"] * 4
    assert not [rpc for _, rpc in node.messages_to_send() if rpc.messages]
    assert node.stats.invalid == 4
    assert node.score(peer) < ScoreParams().graylist_threshold
    # The honest copy still gets through from another peer: the bad-signature copy with
    # the same ID did not poison the seen cache.
    node.receive(AGENTS[2], Rpc(messages=(msg,)), 0.2)
    assert [e.msg_id for e in node.events() if isinstance(e, MessageReceived)] == [message_id(msg)]


def test_forgery_first_then_honest_copy_through_the_swarm() -> None:
    swarm = Swarm(12, degree=6)
    swarm.subscribe_all()
    swarm.run(4)
    msg = sign_message(KEY_OF[AGENTS[0]], TOPIC, 9, b"x")
    fake = dataclasses.replace(msg, sig=bytes(64))
    target = swarm.nodes[AGENTS[5]]
    target.receive(AGENTS[6], Rpc(messages=(fake,)), swarm.now)
    swarm.pump()
    swarm.nodes[AGENTS[0]].publish(msg, swarm.now)
    swarm.pump()
    assert swarm.got(message_id(msg)) == set(swarm.ids) - {AGENTS[0]}


def test_non_allowed_author_is_ignored_and_forwarder_only_mildly_penalized() -> None:
    node = PubSub(
        AGENTS[0],
        PubSubConfig(),
        random.Random(1),
        allowed=lambda topic, author: author != OUTSIDER.agent_id,
    )
    peer = AGENTS[1]
    node.add_peer(peer, 0.0)
    node.add_peer(AGENTS[2], 0.0)
    node.subscribe(TOPIC, 0.0)
    for p in (peer, AGENTS[2]):
        node.receive(p, Rpc(subscriptions=(SubOpt(True, TOPIC),), graft=(Graft(TOPIC),)), 0.0)
    node.messages_to_send()
    node.events()
    msg = sign_message(OUTSIDER, TOPIC, 1, b"spam")
    node.receive(peer, Rpc(messages=(msg,)), 0.1)
    events = node.events()
    assert [type(e) for e in events] == [MessageRejected]
    assert isinstance(events[0], MessageRejected) and events[0].reason == "not-allowed"
    assert not [rpc for _, rpc in node.messages_to_send() if rpc.messages]
    assert node.score(peer) >= 0  # one such message is free
    for seqno in range(2, 40):
        node.receive(peer, Rpc(messages=(sign_message(OUTSIDER, TOPIC, seqno, b"s"),)), 0.2)
    score = node.score(peer)
    assert ScoreParams().graylist_threshold < score < 0  # mild: negative, not graylisted


def test_unsubscribed_topics_and_unknown_peers_are_ignored() -> None:
    node, peer = wired_pair()
    msg = sign_message(KEYS[4], "elsewhere", 1, b"x")
    node.receive(peer, Rpc(messages=(msg,)), 0.1)
    node.receive("stranger", Rpc(messages=(msg,)), 0.1)
    assert not node.events()
    assert node.stats.ignored == 1 and node.stats.unknown_peer == 1


def test_replays_after_the_seen_cache_expire_are_stale() -> None:
    cfg = PubSubConfig(seen_ttl=5.0)
    node, peer = wired_pair(cfg)
    old = sign_message(KEYS[4], TOPIC, 10, b"old")
    node.receive(peer, Rpc(messages=(old,)), 0.5)
    assert len(node.events()) == 1
    for t in range(1, 9):
        node.handle_timer(float(t))
    node.receive(peer, Rpc(messages=(old,)), 9.0)
    node.receive(peer, Rpc(messages=(sign_message(KEYS[4], TOPIC, 3, b"older"),)), 9.0)
    events = node.events()
    assert [e.reason for e in events if isinstance(e, MessageRejected)] == ["stale", "stale"]
    node.receive(peer, Rpc(messages=(sign_message(KEYS[4], TOPIC, 11, b"new"),)), 9.0)
    assert isinstance(node.events()[0], MessageReceived)


def test_publish_checks_its_input() -> None:
    node, _ = wired_pair()
    msg = sign_message(KEYS[0], TOPIC, 1, b"x")
    with pytest.raises(InvalidArgument):
        node.publish(dataclasses.replace(msg, sig=bytes(64)), 0.0)
    with pytest.raises(InvalidArgument):
        node.publish(dataclasses.replace(msg, topic=""), 0.0)
    with pytest.raises(InvalidArgument):
        sign_message(KEYS[0], TOPIC, 1, bytes(MAX_MESSAGE_DATA + 1))
    with pytest.raises(InvalidArgument):
        sign_message(KEYS[0], "t" * (MAX_TOPIC_LENGTH + 1), 1, b"")
    with pytest.raises(InvalidArgument):
        sign_message(KEYS[0], TOPIC, -1, b"")
    with pytest.raises(InvalidArgument):
        node.add_peer(AGENTS[0], 0.0)


# --------------------------------------------------------------------------- scoring


def test_flooding_peer_goes_negative_is_pruned_and_graylisted() -> None:
    node, flooder = wired_pair()
    honest = AGENTS[2]
    node.add_peer(honest, 0.0)
    node.receive(honest, Rpc(subscriptions=(SubOpt(True, TOPIC),), graft=(Graft(TOPIC),)), 0.0)
    msg = sign_message(KEYS[7], TOPIC, 1, b"m")
    node.receive(honest, Rpc(messages=(msg,)), 0.1)
    for _ in range(20):  # the same message again and again
        node.receive(flooder, Rpc(messages=(msg,)), 0.2)
    assert node.stats.repeats + node.stats.graylisted == 19  # the first copy is fine
    assert node.score(flooder) < ScoreParams().graylist_threshold
    assert node.score(honest) > 0
    before = node.stats.graylisted
    node.receive(flooder, Rpc(prune=(Prune(TOPIC, 0),)), 0.3)  # graylisted: ignored
    assert node.stats.graylisted == before + 1 and flooder in node.mesh(TOPIC)
    node.messages_to_send()
    node.handle_timer(1.0)
    assert flooder not in node.mesh(TOPIC) and honest in node.mesh(TOPIC)
    sent = dict(node.messages_to_send())
    assert sent[flooder].prune == (Prune(TOPIC, 60),)
    node.receive(flooder, Rpc(graft=(Graft(TOPIC),)), 2.0)  # and it must stay out
    assert flooder not in node.mesh(TOPIC)
    node.handle_timer(2.0)
    # Its score is kept when it disconnects and reconnects.
    node.remove_peer(flooder, 2.5)
    assert not node.has_peer(flooder) and flooder not in node.peers()
    node.add_peer(flooder, 2.6)
    assert node.has_peer(flooder)
    assert node.score(flooder) < 0


def test_ihave_spam_and_broken_promises_are_penalized() -> None:
    cfg = PubSubConfig()
    node, spammer = wired_pair(cfg)
    rng = random.Random(5)
    ihaves = tuple(IHave(TOPIC, tuple(rng.randbytes(20) for _ in range(20))) for _ in range(15))
    node.receive(spammer, Rpc(ihave=ihaves), 0.5)
    assert node.stats.ihave_flood == 15 - cfg.max_ihave_messages
    asked = node.stats.iwant_sent
    assert asked == min(cfg.max_ihave_length, cfg.max_ihave_messages * 20)
    (rpc,) = [rpc for peer, rpc in node.messages_to_send() if peer == spammer]
    assert sum(len(w.ids) for w in rpc.iwant) == asked
    node.handle_timer(1.0)
    node.handle_timer(2.0)
    node.handle_timer(4.0)  # the IWANT follow-up time has passed: broken promises
    assert node.stats.broken_promises == asked
    assert node.score(spammer) < ScoreParams().graylist_threshold


def test_iwant_for_unknown_ids_and_retransmission_limit() -> None:
    node, peer = wired_pair()
    msg = sign_message(KEYS[0], TOPIC, 1, b"mine")
    mid = node.publish(msg, 0.1)
    node.messages_to_send()
    for _ in range(5):
        node.receive(peer, Rpc(iwant=(IWant((mid,)),)), 0.2)
    served = [m for _, rpc in node.messages_to_send() for m in rpc.messages]
    assert served == [msg] * node.config.gossip_retransmission
    unknown = Rpc(iwant=(IWant(tuple(bytes([i]) * 20 for i in range(40))),))
    node.receive(peer, unknown, 0.3)
    assert node.score(peer) == 0  # within the free allowance
    for _ in range(3):
        node.receive(peer, unknown, 0.3)
    assert node.score(peer) < 0


def test_unrequested_duplicates_from_non_mesh_peers_are_penalized() -> None:
    node, mesh_peer = wired_pair()
    stranger = AGENTS[2]
    node.add_peer(stranger, 0.0)
    node.receive(stranger, Rpc(subscriptions=(SubOpt(True, TOPIC),)), 0.0)
    msg = sign_message(KEYS[9], TOPIC, 1, b"d")
    node.receive(mesh_peer, Rpc(messages=(msg,)), 0.1)
    for i in range(30):
        other = sign_message(KEYS[9], TOPIC, 100 + i, b"d")
        node.receive(mesh_peer, Rpc(messages=(other,)), 0.1)
        node.receive(stranger, Rpc(messages=(other,)), 0.1)
    assert node.stats.unrequested + node.stats.graylisted == 30  # graylisted after a few
    assert node.stats.unrequested > ScoreParams().behaviour_threshold / 0.25
    assert node.score(stranger) < 0 < node.score(mesh_peer)
    # ... and told (once per heartbeat) that it is not in our mesh.
    sent = dict(node.messages_to_send())
    assert sent[stranger].prune == (Prune(TOPIC, 60),)


def test_score_decays_back() -> None:
    params = ScoreParams()
    node, peer = wired_pair()
    node.receive(peer, Rpc(messages=(dataclasses.replace(
        sign_message(KEYS[3], TOPIC, 1, b"x"), sig=bytes(64)),)), 0.1)  # fmt: skip
    assert node.score(peer) < params.graylist_threshold
    t = 1.0
    while node.score(peer) < 0 and t < 1000:
        node.handle_timer(t)
        t += 1.0
    assert 30 < t < 1000  # minutes of exile for one forgery, not forever


# --------------------------------------------------------------------------- backoff


def test_backoff_is_honored_both_ways() -> None:
    cfg = PubSubConfig()
    swarm = Swarm(2)
    swarm.subscribe_all()
    swarm.run(2)
    a, b = AGENTS[0], AGENTS[1]
    assert b in swarm.nodes[a].mesh(TOPIC)
    # b prunes a: a must not GRAFT b again for the backoff.
    node_b = swarm.nodes[b]
    node_b.receive(a, Rpc(prune=(Prune(TOPIC, 30),)), swarm.now)  # a told b to go
    assert a not in node_b.mesh(TOPIC)
    swarm.sent.clear()
    swarm.run(25)
    grafts = [(s, d) for s, d, rpc in swarm.sent if rpc.graft]
    assert (b, a) not in grafts
    assert a not in node_b.mesh(TOPIC)
    swarm.run(7)  # backoff over: b grafts a again (its mesh is below d_low)
    assert a in node_b.mesh(TOPIC) and b in swarm.nodes[a].mesh(TOPIC)
    # A GRAFT during our backoff is refused, answered with PRUNE, and penalized.
    node_a = swarm.nodes[a]
    node_a.receive(b, Rpc(prune=(Prune(TOPIC, 60),)), swarm.now)
    assert b not in node_a.mesh(TOPIC)
    node_a.messages_to_send()
    node_a.receive(b, Rpc(graft=(Graft(TOPIC),)), swarm.now)
    assert b not in node_a.mesh(TOPIC) and node_a.stats.graft_backoff == 1
    (rpc,) = [rpc for peer, rpc in node_a.messages_to_send() if peer == b]
    assert rpc.prune == (Prune(TOPIC, int(cfg.prune_backoff)),)


def test_graft_for_a_topic_we_do_not_have_is_answered_with_prune() -> None:
    node = PubSub(AGENTS[0], PubSubConfig(), random.Random(1))
    node.add_peer(AGENTS[1], 0.0)
    node.receive(AGENTS[1], Rpc(graft=(Graft("unknown"),)), 0.0)
    ((peer, rpc),) = node.messages_to_send()
    assert peer == AGENTS[1] and rpc.prune == (Prune("unknown", 10),)
    assert node.score(AGENTS[1]) == 0


def test_peer_subscription_limit() -> None:
    node = PubSub(AGENTS[0], PubSubConfig(), random.Random(1))
    node.add_peer(AGENTS[1], 0.0)
    for start in range(0, MAX_PEER_TOPICS + 100, MAX_SUBSCRIPTIONS_PER_RPC):
        subs = tuple(SubOpt(True, f"t{i}") for i in range(start, start + 256))
        node.receive(AGENTS[1], Rpc(subscriptions=subs), 0.0)
    known = sum(1 for i in range(MAX_PEER_TOPICS + 400) if node.topic_peers(f"t{i}"))
    assert known == MAX_PEER_TOPICS


# --------------------------------------------------------------------------- regions


def regional_swarm(preference: bool, seed: int = 3) -> Swarm:
    names = ["eu", "us", "ap"]
    regions = [names[i % 3] for i in range(45)]
    cfg = PubSubConfig(region_preference=preference)
    swarm = Swarm(45, degree=14, seed=seed, config=cfg, regions=regions)
    swarm.subscribe_all()
    swarm.run(12)
    return swarm


def cross_links(swarm: Swarm) -> set[frozenset[str]]:
    return {
        frozenset((a, b))
        for a, node in swarm.nodes.items()
        for b in node.mesh(TOPIC)
        if swarm.region[a] != swarm.region[b]
    }


def test_regions_bridges_hold_the_only_cross_region_links() -> None:
    swarm = regional_swarm(True)
    cfg = swarm.config
    for region in ("eu", "us", "ap"):
        members = [a for a in swarm.ids if swarm.region[a] == region]
        views = {tuple(swarm.nodes[a].bridges(TOPIC)) for a in members}
        assert len(views) == 1  # the whole region agrees on its bridges...
        (view,) = views
        expected = sorted(members, key=lambda a: (bridge_rank(TOPIC, a), a))
        assert list(view) == expected[: cfg.bridges_per_region]  # ...the best-ranked ones
        assert {a for a in members if swarm.nodes[a].is_bridge(TOPIC)} == set(view)
    links = cross_links(swarm)
    assert links
    for link in links:
        assert any(swarm.nodes[a].is_bridge(TOPIC) for a in link), sorted(link)
    # Every bridge reaches every other region.
    for a, node in swarm.nodes.items():
        if node.is_bridge(TOPIC):
            reached = {swarm.region[b] for b in node.mesh(TOPIC)}
            assert reached == {"eu", "us", "ap"} - {swarm.region[a]} | (reached & {swarm.region[a]})
    # Delivery still reaches everyone, with few cross-region copies.
    swarm.sent.clear()
    mid = swarm.publish(AGENTS[0])
    assert swarm.got(mid) == set(swarm.ids) - {AGENTS[0]}
    crossing = sum(
        len(rpc.messages) for s, d, rpc in swarm.sent if swarm.region[s] != swarm.region[d]
    )
    baseline = regional_swarm(False)
    baseline.sent.clear()
    mid = baseline.publish(AGENTS[0])
    base_crossing = sum(
        len(rpc.messages) for s, d, rpc in baseline.sent if baseline.region[s] != baseline.region[d]
    )
    assert crossing * 3 < base_crossing
    assert len(cross_links(swarm)) * 3 < len(cross_links(baseline))


def test_region_recovers_when_a_bridge_leaves() -> None:
    swarm = regional_swarm(True, seed=5)
    bridge = next(a for a in swarm.ids if swarm.nodes[a].is_bridge(TOPIC))
    region = swarm.region[bridge]
    for peer in swarm.nodes[bridge].peers():
        swarm.nodes[peer].remove_peer(bridge, swarm.now)
    del swarm.nodes[bridge]
    swarm.pump()
    swarm.run(4)
    members = [a for a in swarm.ids if swarm.region[a] == region and a != bridge]
    views = {tuple(swarm.nodes[a].bridges(TOPIC)) for a in members}
    assert len(views) == 1 and bridge not in next(iter(views))
    mid = swarm.publish(next(a for a in swarm.ids if swarm.region[a] != region))
    assert swarm.got(mid) >= set(members)


# --------------------------------------------------------------------------- codec

topics = st.text(min_size=1, max_size=12)
ids = st.binary(min_size=20, max_size=20)
id_lists = st.lists(ids, min_size=1, max_size=5).map(tuple)
messages = st.builds(
    Message,
    topics,
    st.sampled_from(AGENTS[:4]),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=40),
    st.binary(min_size=64, max_size=64),
)
rpcs = st.builds(
    Rpc,
    st.lists(st.builds(SubOpt, st.booleans(), topics), max_size=3).map(tuple),
    st.lists(messages, max_size=3).map(tuple),
    st.lists(st.builds(IHave, topics, id_lists), max_size=3).map(tuple),
    st.lists(st.builds(IWant, id_lists), max_size=2).map(tuple),
    st.lists(st.builds(Graft, topics), max_size=3).map(tuple),
    st.lists(st.builds(Prune, topics, st.integers(0, MAX_BACKOFF)), max_size=3).map(tuple),
    st.lists(
        st.builds(
            BridgeView,
            topics,
            st.lists(st.tuples(st.sampled_from(AGENTS[:8]), st.integers(0, 255)), max_size=4).map(
                tuple
            ),
        ),
        max_size=2,
    ).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(rpcs)
def test_rpc_round_trip_is_canonical(rpc: Rpc) -> None:
    data = encode_rpc(rpc)
    assert decode_rpc(data) == rpc
    assert encoded_size(rpc) == len(data)
    assert cbor.encode(cbor.decode(data, max_items=100_000)) == data  # exactly canonical CBOR


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_protocol_violation_only(data: bytes) -> None:
    with contextlib.suppress(ProtocolViolation):
        decode_rpc(data)


@settings(max_examples=60, deadline=None)
@given(rpcs, st.data())
def test_truncated_and_mutated_rpcs_raise_protocol_violation_only(
    rpc: Rpc, data: st.DataObject
) -> None:
    raw = encode_rpc(rpc)
    for cut in range(len(raw)):
        with pytest.raises(ProtocolViolation):
            decode_rpc(raw[:cut])
    pos = data.draw(st.integers(0, len(raw) - 1))
    flipped = bytearray(raw)
    flipped[pos] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(ProtocolViolation):
        decode_rpc(bytes(flipped))


def good_message() -> list[object]:
    m = sign_message(KEYS[0], TOPIC, 1, b"x")
    return [m.topic, m.author, m.key, m.seqno, m.data, m.sig]


@pytest.mark.parametrize(
    "body",
    [
        {0: 2},
        {1: []},
        {0: 1, 9: []},
        {0: 1, 2: [good_message()] * (MAX_MESSAGES_PER_RPC + 1)},
        {0: 1, 2: [[*good_message()[:4], bytes(MAX_MESSAGE_DATA + 1), good_message()[5]]]},
        {0: 1, 2: [["t" * (MAX_TOPIC_LENGTH + 1), *good_message()[1:]]]},
        {0: 1, 2: [[TOPIC, AGENTS[0].upper(), *good_message()[2:]]]},
        {0: 1, 2: [[*good_message()[:3], -1, *good_message()[4:]]]},
        {0: 1, 2: [good_message()[:5]]},
        {0: 1, 1: [[True, TOPIC]] * (MAX_SUBSCRIPTIONS_PER_RPC + 1)},
        {0: 1, 1: [[1, TOPIC]]},
        {0: 1, 3: [[TOPIC, [bytes(20)] * 600], [TOPIC, [bytes(20)] * 600]]},
        {0: 1, 3: [[TOPIC, [bytes(19)]]]},
        {0: 1, 3: [[TOPIC, []]]},
        {0: 1, 4: [[bytes(20)] * (MAX_IWANT_IDS + 1)]},
        {0: 1, 5: [TOPIC] * 200, 6: [[TOPIC, 1]] * 100},
        {0: 1, 6: [[TOPIC, MAX_BACKOFF + 1]]},
        {0: 1, 7: [[TOPIC, [[AGENTS[0], 0]] * 9]]},
        {0: 1, 7: [[TOPIC, [[AGENTS[0], 256]]]]},
        {0: 1, 7: [[TOPIC, [["", 1]]]]},
        {0: 1, 5: []},
        [1],
    ],
)
def test_limits_are_enforced_at_decode(body: object) -> None:
    with pytest.raises(ProtocolViolation):
        decode_rpc(cbor.encode(body))  # type: ignore[arg-type]


def test_oversized_input_is_refused() -> None:
    with pytest.raises(ProtocolViolation):
        decode_rpc(bytes(MAX_RPC_SIZE + 1))
    big = [sign_message(KEYS[0], TOPIC, i, bytes(MAX_MESSAGE_DATA)) for i in range(17)]
    with pytest.raises(InvalidArgument):
        encode_rpc(Rpc(messages=tuple(big)))


def test_outbox_splits_to_fit_the_limits() -> None:
    box = Outbox()
    box.msgs = [sign_message(KEYS[0], TOPIC, i, bytes(60_000)) for i in range(40)]
    box.iwant = [i.to_bytes(20, "big") for i in range(2500)]
    box.ihave = {f"t{i}": [bytes([i]) * 20] * 300 for i in range(10)}
    box.graft = [f"g{i}" for i in range(200)]
    box.subs = [SubOpt(True, f"s{i}") for i in range(300)]
    rpcs = box.build()
    assert len(rpcs) > 1
    for rpc in rpcs:
        assert decode_rpc(encode_rpc(rpc)) == rpc
    assert sum(len(r.messages) for r in rpcs) == 40
    assert sum(len(w.ids) for r in rpcs for w in r.iwant) == 2500
    assert sum(len(h.ids) for r in rpcs for h in r.ihave) == 3000
    assert max(sum(len(h.ids) for h in r.ihave) for r in rpcs) <= MAX_IHAVE_IDS
    assert sum(len(r.graft) for r in rpcs) == 200
    assert sum(len(r.subscriptions) for r in rpcs) == 300


def test_events_are_frozen() -> None:
    event = PeerPruned(TOPIC, AGENTS[1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.peer = "x"  # type: ignore[misc]


def test_config_validation() -> None:
    with pytest.raises(InvalidArgument):
        PubSubConfig(d=3, d_low=4)
    with pytest.raises(InvalidArgument):
        PubSubConfig(history_gossip=6)
    with pytest.raises(InvalidArgument):
        ScoreParams(graylist_threshold=0.0, publish_threshold=-1.0)
    with pytest.raises(InvalidArgument):
        ScoreParams(invalid_weight=1.0)


GOLDEN_ID = "5aa822ff2bfba07c1e9d0c0e3251026b97779472"
GOLDEN_RPC = (
    "a80001018182f5646e657773028186646e657773783464357933653379636b6a78627669626c796a36756575"
    "6f6269376d6a6a7362366c6564767836617974347969776d766634777a61582003a107bff3ce10be1d70dd18"
    "e74bc09967e4d6309ba50d5f1ddc8664125531b80742686958405e062468b7ab5d9f40e37e19d4f5ce133b12"
    "cf95e4f17030d49595368f0ef8a06569399d3f0b2951e7c851eda8f27a227711a6a803cc9fcd2112c9ecf69e"
    "7800038182646e657773815400000000000000000000000000000000000000000481815401010101010101"
    "010101010101010101010101010581646e657773068182636f6c64183c078182646e65777382826161008261"
    "6203"
)


def test_golden_vector() -> None:
    """The wire format, signature domain and ID derivation, pinned."""
    key = IdentityKey.from_private_bytes(bytes(range(32)))
    msg = sign_message(key, "news", 7, b"hi")
    rpc = Rpc(
        subscriptions=(SubOpt(True, "news"),),
        messages=(msg,),
        ihave=(IHave("news", (bytes(20),)),),
        iwant=(IWant((b"\x01" * 20,)),),
        graft=(Graft("news"),),
        prune=(Prune("old", 60),),
        bridges=(BridgeView("news", (("a", 0), ("b", 3))),),
    )
    assert message_id(msg).hex() == GOLDEN_ID
    assert encode_rpc(rpc).hex() == GOLDEN_RPC
    assert decode_rpc(bytes.fromhex(GOLDEN_RPC)) == rpc

"""SWIM membership and failure detection with the Lifeguard refinements (sans-I/O).

One :class:`Membership` per node. The runtime (or the simulator) delivers messages with
:meth:`Membership.receive`, reports undeliverable ones with :meth:`~Membership.unreachable`,
sends what :meth:`~Membership.messages_to_send` returns, drains
:meth:`~Membership.events` and calls :meth:`~Membership.handle_timer` at
:meth:`~Membership.get_timer`. No clock, no sockets, no global randomness.

The protocol (SWIM, Das, Gupta & Motivala 2002; Lifeguard, Dadgar et al. 2018):

* **Probing.** Every ``probe_interval`` the node pings the next member of a randomized
  round-robin order: each cycle walks the member array (shared initial view, then members
  learned later) from a random offset with a random stride coprime to its length, so every
  member is probed once per cycle in a fresh random-looking order without a private
  shuffled copy of the list (O(1) memory per node). Members that join mid-cycle are probed
  from the next cycle on. Unlike the paper's strict protocol period, a new probe may start
  while the previous one is still in its indirect phase: the probe *rate* (which bounds
  detection time) is decoupled from the timeouts (which must cover slow links).
* **Indirect probes.** No ack within ``probe_timeout``: ``indirect_probes`` random members
  get a ``PingReq`` and ping the target for us, forwarding its ack. Lifeguard NACKs: an
  intermediary whose own ping got no answer within ``nack_fraction * probe_timeout`` sends a
  ``Nack``, proving that *our* links work. No ack at all within ``probe_timeout +
  indirect_timeout``: the target becomes suspect.
* **Local health (Lifeguard LHM).** A score in ``[0, max_local_health]``: +1 for a failed
  probe when some helper's NACK is missing (or no helper was available), +1 when we must
  refute a suspicion about ourselves, -1 for every successful probe. Probe interval and all
  probe timeouts are multiplied by ``score + 1``: a node that is itself slow or overloaded
  probes less and waits longer instead of accusing healthy peers.
* **Suspicion (Lifeguard dynamic timeout).** A suspect member is declared dead after
  ``max(min, max - (max - min) * log(C + 1) / log(k + 1))`` seconds, where ``C`` counts the
  independent confirmations (suspect updates from other members) received so far and ``k``
  is ``suspicion_k`` (capped at the number of other live members - 1). The first suspicion
  starts at ``suspicion_max``; each confirmation shortens it down to ``suspicion_min``. New
  confirmations are re-gossiped until ``k`` are known (more cannot shorten anything).
* **Refutation.** Hearing that we are suspect, dead or left at an incarnation >= ours,
  we bump our incarnation and gossip ``Alive``. A ping to a suspect member carries the
  suspicion (Lifeguard's "buddy system") so it can refute at once.
* **Dissemination.** Updates are piggybacked on every message (at most ``max_piggyback``,
  least transmitted first); each is transmitted ``retransmit_mult * ceil(log10(n + 1))``
  times. While updates are pending, a fast gossip round every ``gossip_interval`` sends
  them to ``gossip_fanout`` random live members, or members declared dead in the last
  ``gossip_to_dead`` seconds (so a wrongly declared member hears it and refutes); nothing
  is sent when nothing is pending.
* **Anti-entropy.** Every ``push_pull_interval`` (stretched by ``ceil(log2(n) - 5)`` above
  32 members when ``push_pull_scale``) a full-state push-pull with one random member, chosen
  among live *and dead* members so that both sides of a healed partition find each other.
  A state larger than ``MAX_PUSHPULL_MEMBERS`` entries goes in several ``PushPull`` chunks
  (each merged on arrival; a request is answered after its last chunk).
  A remote ``Dead`` in a push-pull state is merged as a suspicion (the member may be alive;
  it gets the chance to refute), members new to us are added but not re-gossiped (the
  sender itself excepted: that is how a join spreads).
* **Reaping.** Dead and left members are forgotten ``dead_reclaim`` seconds later. A
  partition that outlasts it heals only through a new :meth:`Membership.join` (the
  runtime can re-join its trusted peers now and then).
* **Leaving.** :meth:`Membership.leave` gossips a ``Left`` update (a new incarnation);
  others report :class:`~swarmlink.gossip._swim_events.MemberLeft`, never a failure.

Members of the shared :class:`~swarmlink.gossip._swim_view.InitialView` start alive at
incarnation 0 without events; see that module for the memory layout.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Mapping

from ..errors import InvalidArgument, StateError
from ._swim_config import SwimConfig, SwimStats
from ._swim_messages import (
    _AGENT_RE,
    MAX_INCARNATION,
    MAX_PUSHPULL_MEMBERS,
    MAX_SEQ,
    Ack,
    Alive,
    Gossip,
    Left,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    SwimMessage,
    Update,
    check_region,
)
from ._swim_table import (
    T_ACK,
    T_END,
    T_GOSSIP,
    T_NACK,
    T_PROBE,
    T_PUSHPULL,
    T_REAP,
    T_RELAY_END,
    T_SUSPECT,
    MemberTable,
)
from ._swim_view import DEAD, SUSPECT, InitialView, MemberInfo, MemberState

__all__ = [
    "MAX_JOIN_SEEDS",
    "InitialView",
    "MemberInfo",
    "MemberState",
    "Membership",
    "SwimConfig",
    "SwimStats",
]

#: Seeds one :meth:`Membership.join` contacts.
MAX_JOIN_SEEDS = 16


class _Probe:
    __slots__ = ("expected_nacks", "nacks", "start", "target")

    def __init__(self, target: str, start: float) -> None:
        self.target = target
        self.start = start
        self.expected_nacks = -1  # -1: still in the direct phase
        self.nacks = 0


class _Relay:
    __slots__ = ("nacked", "requester", "seq", "target")

    def __init__(self, requester: str, seq: int, target: str) -> None:
        self.requester = requester
        self.seq = seq
        self.target = target
        self.nacked = False


class Membership(MemberTable):
    """One node's SWIM + Lifeguard membership state machine (see the module docstring).

    ``local`` is our agent ID, ``region`` our region label (it rides in our ``Alive``
    updates). ``initial`` is a starting view assumed converged (agent -> region, every
    member alive at incarnation 0): pass one shared :class:`InitialView` to many cores
    to share its memory. Without it the node knows only itself until :meth:`join`.
    """

    def __init__(
        self,
        local: str,
        config: SwimConfig,
        rng: random.Random,
        now: float,
        *,
        region: str = "",
        initial: InitialView | Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(local, config, rng, now, region=region, initial=initial)
        self._out: list[tuple[str, SwimMessage]] = []
        self._probes: dict[int, _Probe] = {}
        self._relays: dict[int, _Relay] = {}
        self._seq = rng.randrange(MAX_SEQ + 1)
        self._limit_for = -1  # live count the cached retransmit limit was computed for
        self._limit = 0
        # round-robin probe order: position i of the cycle is (offset + i * stride) % n
        self._rr_n = 0
        self._rr_i = 0
        self._rr_offset = 0
        self._rr_stride = 1
        base_alive = self._base_alive.get(local)
        if base_alive is not None and base_alive.region != self.region:
            self._bump(0, now)  # the view has another region for us: announce ours
        self._set_timer((T_PROBE, None), now + rng.random() * config.probe_interval)
        self._set_timer((T_PUSHPULL, None), now + rng.random() * self._push_pull_period())

    def _member_down(self, agent: str) -> None:
        for seq, probe in list(self._probes.items()):
            if probe.target == agent:
                self._end_probe(seq)

    def join(self, seeds: Iterable[str], now: float) -> None:
        """Announce ourselves and exchange full state (push-pull) with each seed (at most
        :data:`MAX_JOIN_SEEDS`). Calling it again later is harmless (e.g. to heal a
        partition that outlasted ``dead_reclaim``)."""
        if self.left:
            raise StateError("this node has left the swarm; create a new Membership")
        targets = list(dict.fromkeys(s for s in seeds if s != self.local))[:MAX_JOIN_SEEDS]
        for seed in targets:
            if not isinstance(seed, str) or _AGENT_RE.fullmatch(seed) is None:
                raise InvalidArgument(f"bad seed agent ID {seed!r:.80}")
        self._broadcast(Alive(self.local, self.incarnation, self.region), now)
        state = self._state()
        for seed in targets:
            self.stats.push_pulls += 1
            self._send_state(seed, state, response=False)

    def leave(self, now: float) -> None:
        """Leave gracefully: gossip a ``Left`` update at once (a gossip round right now)
        and stop probing. Keep delivering messages and timers for a few gossip intervals
        (until :attr:`leave_done`) so the news spreads, then drop the node."""
        if self.left:
            return
        if self.incarnation < MAX_INCARNATION:
            self.incarnation += 1
        self.left = True
        self._since = now
        self._cancel((T_PROBE, None))
        self._cancel((T_PUSHPULL, None))
        for seq in list(self._probes):
            self._end_probe(seq)
        self._broadcast(Left(self.local, self.incarnation), now)
        self._gossip_round(now)

    @property
    def leave_done(self) -> bool:
        """After :meth:`leave`: our ``Left`` update has been transmitted its full count."""
        return self.left and self._queue.pending(self.local) is None

    def set_region(self, region: str, now: float) -> None:
        """Change our region label (a new incarnation carries it to everyone)."""
        region = check_region(region)
        if region == self.region or self.left:
            self.region = region
            return
        self.region = region
        self._bump(self.incarnation, now)

    def unreachable(self, peer: str, now: float) -> None:
        """The runtime could not deliver a message to ``peer`` (no route, connection
        refused or timed out). A direct probe of ``peer`` in progress goes indirect at once
        (like a missed ack); a relayed probe of ``peer`` is NACKed at once. Nothing else:
        a failed delivery alone never makes a member suspect."""
        for seq, probe in list(self._probes.items()):
            if probe.target == peer and probe.expected_nacks < 0:
                self._go_indirect(seq, probe, now)
        for seq, relay in list(self._relays.items()):
            if relay.target == peer and not relay.nacked:
                self._send_nack(seq, relay)

    def messages_to_send(self) -> list[tuple[str, SwimMessage]]:
        """Drain the messages to send: (destination agent ID, message)."""
        out = self._out
        self._out = []
        return out

    def handle_timer(self, now: float) -> None:
        """Run every deadline due at ``now``."""
        heap = self._heap
        ids = self._timer_ids
        while heap and heap[0][0] <= now:
            _, tid, key = heapq.heappop(heap)
            if ids.get(key) != tid:
                continue
            del ids[key]
            kind, arg = key
            if kind == T_PROBE:
                self._probe_tick(now)
            elif kind == T_ACK:
                probe = self._probes.get(arg)
                if probe is not None and probe.expected_nacks < 0:
                    self._go_indirect(arg, probe, now)
            elif kind == T_END:
                self._probe_failed(arg, now)
            elif kind == T_NACK:
                relay = self._relays.get(arg)
                if relay is not None and not relay.nacked:
                    self._send_nack(arg, relay)
            elif kind == T_RELAY_END:
                self._relays.pop(arg, None)
            elif kind == T_SUSPECT:
                self._suspicion_expired(arg, now)
            elif kind == T_GOSSIP:
                self._gossip_armed = False
                self._gossip_round(now)
            elif kind == T_PUSHPULL:
                self._push_pull_tick(now)
            elif kind == T_REAP:
                self._reap(arg)

    def receive(self, peer: str, msg: SwimMessage, now: float) -> None:
        """Handle one message from the authenticated ``peer``."""
        stats = self.stats
        stats.messages_received += 1
        cls = msg.__class__
        if cls is PushPull:
            self._merge(peer, msg.members, now)  # type: ignore[union-attr]
            if not msg.response and not msg.more:  # type: ignore[union-attr]
                self._send_state(peer, self._state(), response=True)
            return
        updates = msg.updates  # type: ignore[union-attr]
        if updates:
            stats.updates_received += len(updates)
            apply = self._apply
            for update in updates:
                apply(update, now)
        if cls is Ping:
            self._send(peer, Ack(msg.seq, self._piggyback(peer)))  # type: ignore[union-attr]
        elif cls is Ack:
            self._on_ack(msg.seq, now)  # type: ignore[union-attr]
        elif cls is PingReq:
            self._on_ping_req(peer, msg, now)  # type: ignore[arg-type]
        elif cls is Nack:
            probe = self._probes.get(msg.seq)  # type: ignore[union-attr]
            if probe is not None:
                probe.nacks += 1
                stats.nacks_received += 1

    @property
    def _scale(self) -> int:
        return self._lhm + 1

    def _push_pull_period(self) -> float:
        cfg = self.config
        n = self._live + 1
        if not cfg.push_pull_scale or n <= 32:
            return cfg.push_pull_interval
        return cfg.push_pull_interval * math.ceil(math.log2(n) - 5)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & MAX_SEQ
        return self._seq

    def _send(self, peer: str, msg: SwimMessage) -> None:
        self.stats.messages_sent += 1
        self._out.append((peer, msg))

    def _retransmit_limit(self) -> int:
        live = self._live
        if live != self._limit_for:
            self._limit_for = live
            self._limit = self.config.retransmit_mult * math.ceil(math.log10(live + 2))
        return self._limit

    def _piggyback(self, peer: str) -> tuple[Update, ...]:
        """Updates for a message to ``peer``: the least transmitted pending ones, and if we
        suspect ``peer`` that suspicion too, so that it can refute at once (Lifeguard's
        buddy system; it does not count as a transmission)."""
        count = self.config.max_piggyback
        rec = self._over.get(peer)
        if rec is None or rec.state != SUSPECT:
            if not self._queue.entries:
                return ()
            updates = self._queue.take(count, self._retransmit_limit())
        else:
            updates = self._queue.take(count - 1, self._retransmit_limit())
            if not any(u.agent == peer for u in updates):
                updates.append(Suspect(peer, rec.incarnation, rec.by))
        self.stats.updates_sent += len(updates)
        return tuple(updates)

    def _gossip_round(self, now: float) -> None:
        if not self._queue:
            return
        self.stats.gossip_rounds += 1
        cfg = self.config
        for peer in self._random_live(cfg.gossip_fanout, dead_since=now - cfg.gossip_to_dead):
            updates = self._piggyback(peer)
            if not updates:
                break
            self._send(peer, Gossip(updates))
        if self._queue and not self._gossip_armed:
            self._set_timer((T_GOSSIP, None), now + self.config.gossip_interval)
            self._gossip_armed = True

    def _push_pull_tick(self, now: float) -> None:
        self._set_timer((T_PUSHPULL, None), now + self._push_pull_period())
        # any member that is not left or reaped: live ones, and dead ones (partitions)
        n = self._n_total()
        if n == 0:
            return
        over = self._over
        target = None
        for _ in range(16):
            agent = self._agent_at(self.rng.randrange(n))
            if agent is None or agent == self.local:
                continue
            rec = over.get(agent)
            if rec is None or rec.state <= DEAD:
                target = agent
                break
        if target is None:
            pool = [a for a in self._extras if over[a].state <= DEAD]
            pool += [
                a
                for a in self._base
                if a != self.local and ((r := over.get(a)) is None or r.state <= DEAD)
            ]
            if not pool:
                return
            target = self.rng.choice(pool)
        self.stats.push_pulls += 1
        self._send_state(target, self._state(), response=False)

    def _send_state(self, peer: str, state: tuple[Update, ...], *, response: bool) -> None:
        """Send a full state in PushPull chunks of at most MAX_PUSHPULL_MEMBERS entries."""
        step = MAX_PUSHPULL_MEMBERS
        for start in range(0, len(state), step):
            more = start + step < len(state)
            self._send(peer, PushPull(response, state[start : start + step], more))

    def _next_target(self) -> str | None:
        """Next live member of the randomized round-robin cycle."""
        over = self._over
        base_alive = self._base_alive
        local = self.local
        steps = 0
        while True:
            if self._rr_i >= self._rr_n:
                n = self._n_total()
                if n == 0 or steps > n:
                    return None
                self._rr_n = n
                self._rr_i = 0
                self._rr_offset = self.rng.randrange(n)
                stride = self.rng.randrange(1, n) if n > 1 else 1
                while math.gcd(stride, n) != 1:
                    stride = self.rng.randrange(1, n)
                self._rr_stride = stride
            position = (self._rr_offset + self._rr_i * self._rr_stride) % self._rr_n
            self._rr_i += 1
            steps += 1
            agent = self._agent_at(position)
            if agent is None or agent == local:
                continue
            rec = over.get(agent)
            if (rec.state <= SUSPECT) if rec is not None else agent in base_alive:
                return agent
            if steps > 2 * self._rr_n + 2:
                return None

    def _probe_tick(self, now: float) -> None:
        cfg = self.config
        scale = self._scale
        self._set_timer((T_PROBE, None), now + cfg.probe_interval * scale)
        if self.left or self._live <= 0:
            return
        target = self._next_target()
        if target is None:
            return
        seq = self._next_seq()
        self._probes[seq] = _Probe(target, now)
        self.stats.probes += 1
        self._set_timer((T_ACK, seq), now + cfg.probe_timeout * scale)
        self._set_timer((T_END, seq), now + (cfg.probe_timeout + cfg.indirect_timeout) * scale)
        self._send(target, Ping(seq, self._piggyback(target)))

    def _go_indirect(self, seq: int, probe: _Probe, now: float) -> None:
        self._cancel((T_ACK, seq))
        helpers = self._random_live(self.config.indirect_probes, exclude=probe.target)
        probe.expected_nacks = len(helpers)
        for helper in helpers:
            self.stats.indirect_probes += 1
            self._send(helper, PingReq(seq, probe.target, self._piggyback(helper)))

    def _end_probe(self, seq: int) -> _Probe | None:
        self._cancel((T_ACK, seq))
        self._cancel((T_END, seq))
        return self._probes.pop(seq, None)

    def _on_ack(self, seq: int, now: float) -> None:
        if self._end_probe(seq) is not None:
            self._health(-1)
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._cancel((T_NACK, seq))
            self._cancel((T_RELAY_END, seq))
            self._send(relay.requester, Ack(relay.seq, self._piggyback(relay.requester)))

    def _probe_failed(self, seq: int, now: float) -> None:
        probe = self._end_probe(seq)
        if probe is None:
            return
        stats = self.stats
        stats.probe_failures += 1
        expected = probe.expected_nacks
        missed = max(0, expected - probe.nacks)
        stats.missed_nacks += missed
        if expected <= 0 or missed > 0:
            self._health(+1)
        target = probe.target
        rec = self._over.get(target)
        if rec is None:
            if target not in self._base_alive:
                return
            inc = 0
        elif rec.state > SUSPECT:
            return
        else:
            inc = rec.incarnation
        stats.suspicions += 1
        self._on_suspect(Suspect(target, inc, self.local), now)

    def _on_ping_req(self, peer: str, msg: PingReq, now: float) -> None:
        if msg.target == self.local:
            self._send(peer, Ack(msg.seq, self._piggyback(peer)))
            return
        cfg = self.config
        seq = self._next_seq()
        self._relays[seq] = _Relay(peer, msg.seq, msg.target)
        self.stats.relays += 1
        self._set_timer((T_NACK, seq), now + cfg.nack_fraction * cfg.probe_timeout)
        self._set_timer((T_RELAY_END, seq), now + cfg.probe_timeout + cfg.indirect_timeout)
        self._send(msg.target, Ping(seq, self._piggyback(msg.target)))

    def _send_nack(self, seq: int, relay: _Relay) -> None:
        relay.nacked = True
        self._cancel((T_NACK, seq))
        self._send(relay.requester, Nack(relay.seq, self._piggyback(relay.requester)))

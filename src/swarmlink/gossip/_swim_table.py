"""The member table of the SWIM core: members and their states, the rules that apply
updates (alive / suspect / dead / left, refutation, Lifeguard suspicion timeouts), the
dissemination queue and the timer heap. :class:`~swarmlink.gossip._swim.Membership` adds
probing, gossip rounds and push-pull on top.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument
from ._swim_config import SwimConfig, SwimStats
from ._swim_events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspected,
    MemberUpdated,
    Refuted,
    SwimEvent,
)
from ._swim_messages import (
    _AGENT_RE,
    MAX_INCARNATION,
    Alive,
    Dead,
    Left,
    Suspect,
    Update,
    check_region,
)
from ._swim_view import (
    ALIVE,
    DEAD,
    LEFT,
    REMOVED,
    STATE_NAMES,
    SUSPECT,
    BroadcastQueue,
    InitialView,
    Member,
    MemberInfo,
    MemberState,
)

__all__ = ["MAX_STATE_MEMBERS", "MemberTable"]

#: Entries of the full state one push-pull sends (in chunks of MAX_PUSHPULL_MEMBERS); a
#: larger view sends us, the live members, then as many others as fit.
MAX_STATE_MEMBERS = 65536

# Timer kinds (first item of a timer key).
T_PROBE = 0
T_ACK = 1
T_END = 2
T_NACK = 3
T_RELAY_END = 4
T_SUSPECT = 5
T_GOSSIP = 6
T_PUSHPULL = 7
T_REAP = 8


class _Suspicion:
    __slots__ = ("confirmers", "deadline", "incarnation", "k", "start")

    def __init__(self, incarnation: int, start: float, first: str, k: int) -> None:
        self.incarnation = incarnation
        self.start = start
        self.confirmers = {first}
        self.k = k
        self.deadline = start


class MemberTable:
    """Members, update rules, dissemination queue and timers of one node."""

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
        if not isinstance(local, str) or _AGENT_RE.fullmatch(local) is None:
            raise InvalidArgument(f"bad local agent ID {local!r:.80}")
        self.local = local
        self.config = config
        self.rng = rng
        self.region = check_region(region)
        self.stats = SwimStats()
        self.incarnation = 0
        self.left = False
        self._since = now
        self._created = now
        self._lhm = 0
        if initial is not None and not isinstance(initial, InitialView):
            initial = InitialView(initial)
        self._base: tuple[str, ...] = initial.agents if initial is not None else ()
        self._base_alive: dict[str, Alive] = initial.alive if initial is not None else {}
        self._over: dict[str, Member] = {}
        self._extras: list[str] = []
        self._extra_pos: dict[str, int] = {}
        self._live = len(self._base) - (1 if local in self._base_alive else 0)
        self._queue = BroadcastQueue(config.max_broadcast_queue)
        self._events: list[SwimEvent] = []
        self._suspicions: dict[str, _Suspicion] = {}
        # timers: heap of (when, id, key); a key is valid while _timer_ids[key] == id
        self._heap: list[tuple[float, int, tuple[int, Any]]] = []
        self._timer_ids: dict[tuple[int, Any], int] = {}
        self._timer_seq = 0
        self._gossip_phase = rng.random() * config.gossip_interval
        self._gossip_armed = False

    @property
    def local_health(self) -> int:
        """Lifeguard local health score (0 = healthy); timeouts scale by ``score + 1``."""
        return self._lhm

    def _me(self) -> MemberInfo:
        state = MemberState.LEFT if self.left else MemberState.ALIVE
        return MemberInfo(self.local, state, self.incarnation, self.region, self._since)

    def members(self) -> list[MemberInfo]:
        """Every member we know, the local node first (dead and left ones until reaped)."""
        out = [self._me()]
        over = self._over
        created = self._created
        for agent in self._base:
            if agent == self.local:
                continue
            rec = over.get(agent)
            if rec is None:
                out.append(
                    MemberInfo(agent, MemberState.ALIVE, 0, self._base_alive[agent].region, created)
                )
            elif rec.state != REMOVED:
                out.append(self._info(agent, rec))
        for agent in self._extras:
            out.append(self._info(agent, over[agent]))
        return out

    def member(self, agent: str) -> MemberInfo | None:
        """One member as we see it (None if unknown or reaped)."""
        if agent == self.local:
            return self._me()
        rec = self._over.get(agent)
        if rec is None:
            base = self._base_alive.get(agent)
            if base is None:
                return None
            return MemberInfo(agent, MemberState.ALIVE, 0, base.region, self._created)
        return None if rec.state == REMOVED else self._info(agent, rec)

    def alive_members(self) -> list[str]:
        """Agent IDs of the live peers (alive or suspect: not yet declared dead), without
        the local node."""
        over = self._over
        out = [
            a
            for a in self._base
            if a != self.local and ((rec := over.get(a)) is None or rec.state <= SUSPECT)
        ]
        out.extend(a for a in self._extras if over[a].state <= SUSPECT)
        return out

    def is_alive(self, agent: str) -> bool:
        """Whether ``agent`` is a live peer (alive or suspect)."""
        rec = self._over.get(agent)
        if rec is not None:
            return rec.state <= SUSPECT
        return agent in self._base_alive and agent != self.local

    @property
    def num_live(self) -> int:
        """Live peers (alive or suspect), the local node not counted."""
        return self._live

    def events(self) -> list[SwimEvent]:
        """Drain the membership events, oldest first."""
        out = self._events
        self._events = []
        return out

    def get_timer(self) -> float | None:
        """Absolute virtual time of the next deadline (None: nothing scheduled)."""
        heap = self._heap
        ids = self._timer_ids
        while heap:
            when, tid, key = heap[0]
            if ids.get(key) == tid:
                return when
            heapq.heappop(heap)
        return None

    def _info(self, agent: str, rec: Member) -> MemberInfo:
        return MemberInfo(agent, STATE_NAMES[rec.state], rec.incarnation, rec.region, rec.since)

    def _n_total(self) -> int:
        return len(self._base) + len(self._extras)

    def _agent_at(self, index: int) -> str | None:
        nb = len(self._base)
        if index < nb:
            return self._base[index]
        index -= nb
        return self._extras[index] if index < len(self._extras) else None

    def _record(self, agent: str) -> Member | None:
        """The member's record, materialising an initial-view member into an override."""
        rec = self._over.get(agent)
        if rec is None:
            base = self._base_alive.get(agent)
            if base is None:
                return None
            rec = Member(ALIVE, 0, base.region, self._created, "")
            self._over[agent] = rec
        return rec

    def _add_member(self, agent: str, update: Alive, now: float) -> None:
        rec = self._over.get(agent)
        if rec is not None:  # an initial-view member that was reaped
            rec.state, rec.incarnation, rec.region, rec.since = (
                ALIVE,
                update.incarnation,
                update.region,
                now,
            )
        else:
            self._over[agent] = Member(ALIVE, update.incarnation, update.region, now, "")
            self._extra_pos[agent] = len(self._extras)
            self._extras.append(agent)
        self._live += 1
        self._events.append(MemberJoined(agent, update.incarnation, now, update.region))

    def _reap(self, agent: str) -> None:
        rec = self._over.get(agent)
        if rec is None or rec.state not in (DEAD, LEFT):
            return
        if agent in self._base_alive:
            rec.state = REMOVED
            return
        del self._over[agent]
        pos = self._extra_pos.pop(agent)
        last = self._extras.pop()
        if last != agent:
            self._extras[pos] = last
            self._extra_pos[last] = pos

    def _random_live(
        self, count: int, exclude: str | None = None, dead_since: float | None = None
    ) -> list[str]:
        """Up to ``count`` distinct random live peers (not ``exclude``); with
        ``dead_since``, members declared dead since then qualify too (gossip to the
        recently dead lets a wrongly declared member hear it and refute)."""
        if count <= 0 or (self._live <= 0 and dead_since is None):
            return []
        n = self._n_total()
        rng = self.rng
        over = self._over
        base_alive = self._base_alive
        local = self.local
        since = math.inf if dead_since is None else dead_since
        chosen: list[str] = []
        for _ in range(4 * count + 8):
            agent = self._agent_at(int(rng.random() * n))
            if agent is None or agent in (local, exclude) or agent in chosen:
                continue
            rec = over.get(agent)
            if (
                agent in base_alive
                if rec is None
                else rec.state <= SUSPECT or (rec.state == DEAD and rec.since >= since)
            ):
                chosen.append(agent)
                if len(chosen) == count:
                    return chosen
        # Few candidates among many entries: pick from the explicit list.
        pool = [a for a in self.alive_members() if a != exclude and a not in chosen]
        if dead_since is not None:
            pool += [
                a
                for a, r in over.items()
                if r.state == DEAD and r.since >= since and a != exclude and a not in chosen
            ]
        chosen.extend(rng.sample(pool, min(len(pool), count - len(chosen))))
        return chosen

    def _set_timer(self, key: tuple[int, Any], when: float) -> None:
        self._timer_seq += 1
        self._timer_ids[key] = self._timer_seq
        heapq.heappush(self._heap, (when, self._timer_seq, key))

    def _cancel(self, key: tuple[int, Any]) -> None:
        self._timer_ids.pop(key, None)

    def _health(self, delta: int) -> None:
        self._lhm = max(0, min(self.config.max_local_health, self._lhm + delta))
        if self._lhm > self.stats.max_local_health:
            self.stats.max_local_health = self._lhm

    def _broadcast(self, update: Update, now: float) -> None:
        self._queue.push(update)
        if not self._gossip_armed:
            gi = self.config.gossip_interval
            phase = self._gossip_phase
            ticks = math.floor((now - phase) / gi) + 1
            self._set_timer((T_GOSSIP, None), phase + ticks * gi)
            self._gossip_armed = True

    def _state(self) -> tuple[Update, ...]:
        """Our full membership state for a push-pull (at most MAX_STATE_MEMBERS)."""
        me: Update = (
            Left(self.local, self.incarnation)
            if self.left
            else Alive(self.local, self.incarnation, self.region)
        )
        over = self._over
        local = self.local
        base_alive = self._base_alive
        state: list[Update] = [me]
        state.extend(
            [base_alive[a] for a in self._base if a not in over and a != local]
            if over
            else [base_alive[a] for a in self._base if a != local]
        )
        for agent, rec in over.items():
            if rec.state == ALIVE:
                state.append(Alive(agent, rec.incarnation, rec.region))
            elif rec.state == SUSPECT:
                state.append(Suspect(agent, rec.incarnation, rec.by))
            elif rec.state == DEAD:
                state.append(Dead(agent, rec.incarnation, rec.by))
            elif rec.state == LEFT:
                state.append(Left(agent, rec.incarnation))
        if len(state) > MAX_STATE_MEMBERS:  # keep us, then live members, then the rest
            rest = sorted(state[1:], key=lambda u: u.__class__ not in (Alive, Suspect))
            state[1:] = rest[: MAX_STATE_MEMBERS - 1]
        return tuple(state)

    def _apply(self, update: Update, now: float) -> None:
        cls = update.__class__
        if cls is Alive:
            self._on_alive(update, now, True)  # type: ignore[arg-type]
        elif cls is Suspect:
            self._on_suspect(update, now)  # type: ignore[arg-type]
        elif cls is Dead:
            self._on_dead(update, now)  # type: ignore[arg-type]
        else:
            self._on_left(update, now)  # type: ignore[arg-type]

    def _merge(self, peer: str, members: tuple[Update, ...], now: float) -> None:
        """Merge a push-pull state from ``peer``."""
        base_alive = self._base_alive
        over = self._over
        for update in members:
            cls = update.__class__
            agent = update.agent
            if cls is Alive:
                if base_alive.get(agent) is update and agent not in over:
                    continue  # the same shared initial entry: nothing to learn
                self._on_alive(update, now, agent == peer)  # type: ignore[arg-type]
            elif cls is Left:
                self._on_left(update, now)  # type: ignore[arg-type]
            elif agent == self.local:
                self._apply(update, now)  # refute what is said about us
            else:
                by = update.suspected_by if cls is Suspect else peer  # type: ignore[union-attr]
                self._on_suspect(Suspect(agent, update.incarnation, by), now)

    def _bump(self, at_least: int, now: float) -> None:
        self.incarnation = min(MAX_INCARNATION, max(self.incarnation, at_least) + 1)
        self._since = now
        self._broadcast(Alive(self.local, self.incarnation, self.region), now)

    def _refute(self, incarnation: int, now: float, accused: str) -> None:
        self._bump(incarnation, now)
        self.stats.refutations += 1
        if accused != "alive":
            self._health(+1)
        self._events.append(Refuted(self.local, self.incarnation, now, accused))

    def _on_alive(self, update: Alive, now: float, spread_new: bool) -> None:
        agent = update.agent
        inc = update.incarnation
        if agent == self.local:
            if not self.left and (
                inc > self.incarnation or (inc == self.incarnation and update.region != self.region)
            ):
                self._refute(inc, now, "alive")
            return
        rec = self._over.get(agent)
        if rec is None:
            base = self._base_alive.get(agent)
            if base is None:
                self._add_member(agent, update, now)
                if spread_new:
                    self._broadcast(update, now)
                return
            if inc == 0:
                return
            rec = self._record(agent)
            assert rec is not None
        state = rec.state
        if state == REMOVED:
            self._add_member(agent, update, now)
            if spread_new:
                self._broadcast(update, now)
            return
        if inc <= rec.incarnation:
            return
        events = self._events
        if state == ALIVE:
            if update.region != rec.region:
                events.append(MemberUpdated(agent, inc, now, update.region))
        elif state == SUSPECT:
            self._drop_suspicion(agent)
            events.append(MemberRecovered(agent, inc, now, "suspect"))
            rec.since = now
        else:
            self._cancel((T_REAP, agent))
            self._live += 1
            if state == DEAD:
                events.append(MemberRecovered(agent, inc, now, "dead"))
            else:
                events.append(MemberJoined(agent, inc, now, update.region))
            rec.since = now
        rec.state = ALIVE
        rec.incarnation = inc
        rec.region = update.region
        rec.by = ""
        self._broadcast(update, now)

    def _on_suspect(self, update: Suspect, now: float) -> None:
        agent = update.agent
        inc = update.incarnation
        if agent == self.local:
            if not self.left and inc >= self.incarnation:
                self._refute(inc, now, "suspect")
            return
        rec = self._over.get(agent)
        if rec is None:
            if agent not in self._base_alive:
                return
            rec = self._record(agent)
            assert rec is not None
        state = rec.state
        if state == ALIVE:
            if inc < rec.incarnation:
                return
            rec.state = SUSPECT
            rec.incarnation = inc
            rec.since = now
            rec.by = update.suspected_by
            self._start_suspicion(agent, inc, update.suspected_by, now)
            self._events.append(MemberSuspected(agent, inc, now, update.suspected_by))
            self._broadcast(update, now)
        elif state == SUSPECT:
            if inc > rec.incarnation:
                rec.incarnation = inc
                rec.by = update.suspected_by
                self._drop_suspicion(agent)
                self._start_suspicion(agent, inc, update.suspected_by, now)
                self._broadcast(update, now)
            elif inc == rec.incarnation:
                suspicion = self._suspicions.get(agent)
                if suspicion is None or update.suspected_by in suspicion.confirmers:
                    return
                if len(suspicion.confirmers) > suspicion.k:
                    return  # k confirmations known: more cannot shorten anything
                suspicion.confirmers.add(update.suspected_by)
                self._arm_suspicion(agent, suspicion)
                self._broadcast(update, now)

    def _down_record(self, agent: str, inc: int, accused: str, now: float) -> Member | None:
        """The record a Dead/Left update about ``agent`` applies to, or None: about us it
        is refuted instead (unless we are leaving); unknown agents are ignored."""
        if agent == self.local:
            if not self.left and inc >= self.incarnation:
                self._refute(inc, now, accused)
            return None
        rec = self._over.get(agent)
        if rec is None and agent not in self._base_alive:
            return None
        if rec is None:
            rec = self._record(agent)
            assert rec is not None
        return rec

    def _on_dead(self, update: Dead, now: float) -> None:
        agent = update.agent
        inc = update.incarnation
        rec = self._down_record(agent, inc, "dead", now)
        if rec is None or rec.state > SUSPECT or inc < rec.incarnation:
            return
        self._mark_down(agent, rec, DEAD, inc, update.declared_by, now)
        self._events.append(MemberFailed(agent, inc, now, update.declared_by))
        self._broadcast(update, now)

    def _on_left(self, update: Left, now: float) -> None:
        agent = update.agent
        inc = update.incarnation
        rec = self._down_record(agent, inc, "left", now)
        if rec is None:
            return
        state = rec.state
        if state >= LEFT or inc < rec.incarnation:
            return
        if state == DEAD:
            self._cancel((T_REAP, agent))
            self._live += 1  # _mark_down takes it off again
        self._mark_down(agent, rec, LEFT, inc, agent, now)
        self._events.append(MemberLeft(agent, inc, now))
        self._broadcast(update, now)

    def _mark_down(
        self, agent: str, rec: Member, state: int, inc: int, by: str, now: float
    ) -> None:
        if rec.state == SUSPECT:
            self._drop_suspicion(agent)
        rec.state = state
        rec.incarnation = inc
        rec.since = now
        rec.by = by
        self._live -= 1
        self._set_timer((T_REAP, agent), now + self.config.dead_reclaim)
        self._member_down(agent)

    def _start_suspicion(self, agent: str, inc: int, by: str, now: float) -> None:
        k = min(self.config.suspicion_k, max(0, self._live - 2))
        suspicion = _Suspicion(inc, now, by, k)
        self._suspicions[agent] = suspicion
        self._arm_suspicion(agent, suspicion)

    def _arm_suspicion(self, agent: str, suspicion: _Suspicion) -> None:
        cfg = self.config
        confirmations = len(suspicion.confirmers) - 1
        k = suspicion.k
        low, high = cfg.suspicion_min, cfg.suspicion_max
        if k <= 0 or confirmations >= k:
            timeout = low
        else:
            frac = math.log(confirmations + 1) / math.log(k + 1)
            timeout = max(low, high - (high - low) * frac)
        suspicion.deadline = suspicion.start + timeout
        self._set_timer((T_SUSPECT, agent), suspicion.deadline)

    def _drop_suspicion(self, agent: str) -> None:
        self._suspicions.pop(agent, None)
        self._cancel((T_SUSPECT, agent))

    def _suspicion_expired(self, agent: str, now: float) -> None:
        suspicion = self._suspicions.pop(agent, None)
        rec = self._over.get(agent)
        if suspicion is None or rec is None or rec.state != SUSPECT:
            return
        inc = rec.incarnation
        self.stats.declared_dead += 1
        self._mark_down(agent, rec, DEAD, inc, self.local, now)
        self._events.append(MemberFailed(agent, inc, now, self.local))
        self._broadcast(Dead(agent, inc, self.local), now)

    def _member_down(self, agent: str) -> None:
        """Hook: ``agent`` was marked dead or left (the prober drops its probes)."""

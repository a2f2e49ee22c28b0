"""Replicated named states: the sans-I/O replication core behind ``node.state(name)``.

:class:`Replicas` holds one :class:`~._crdt_state.State` per name and keeps them in step
with the swarm in two ways:

**Deltas (fast path).** Every local operation yields a delta. Deltas of one name are
joined until drained by :meth:`Replicas.deltas_to_broadcast`, which returns
``(name, encoded delta)`` pairs for the runtime to publish on pub/sub, signed by the
author; receivers hand them to :meth:`Replicas.receive_delta`. Deltas may be lost,
duplicated or reordered: merging is idempotent and commutative, and a delta that arrives
before an earlier one is kept (its dots wait in the causal context's cloud).

**Anti-entropy (repair).** Every ``anti_entropy_interval`` (jittered) the core picks a
random peer (:meth:`Replicas.set_peers`) and sends it a :class:`Digest`: the version
vectors of its states, for a contiguous range of names (all of them, unless there are
more than fit in one digest; then successive rounds walk through them). The peer
answers, push-pull style:

* a :class:`StateMsg` (the full state) for every name in the range where it holds an
  operation the digest's vector does not cover (including names the asker lacks
  entirely), up to ``answer_bytes`` per digest;
* a *reply* digest listing the names where the asker's vector covers an operation it
  lacks (including names it lacks entirely); the asker answers that with its states.
  A reply digest is never answered with another digest, so an exchange ends.

States that peers bring (by delta or anti-entropy) are created here too, up to
``max_states``, with a :class:`~._replica_events.StateCreated` event: every node of the
swarm replicates every state. Changes of visible values raise
:class:`~._replica_events.StateChanged` events.

Messages leave through :meth:`Replicas.messages_to_send` and arrive through
:meth:`Replicas.receive`. Their wire form is a CBOR array whose first item is the kind::

    digest = [1, reply: bool, after: name | null, upto: name | null,
              [agent, ...], [name, [agent index, counter, ...], ...]]
    state  = [2, name, encoded state]

A non-reply digest covers the names ``n`` with ``after < n <= upto`` (``null``: open
end); a reply digest covers exactly the names it lists.

Time is passed in and randomness comes from the ``rng`` given to the constructor.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorCode, InvalidArgument, NotFound, ProtocolViolation, StateError
from ..wire import cbor
from ._crdt import (
    DECODE_HEADROOM,
    MAX_AGENTS,
    MAX_ENCODED_STATE,
    MAX_STATE_ITEMS,
    Hlc,
    Op,
    State,
    Value,
    VersionVector,
    check_agent,
)
from ._crdt_clock import AgentTable, decode_agents
from ._crdt_values import int_or_bad, list_or_bad
from ._replica_events import ReplicaEvent, StateChanged, StateCreated

__all__ = [
    "DEFAULT_ANTI_ENTROPY_INTERVAL",
    "DEFAULT_ANTI_ENTROPY_JITTER",
    "DIGEST_BUDGET",
    "KIND_DIGEST",
    "KIND_STATE",
    "MAX_ANSWER_BYTES",
    "MAX_DELTA_SIZE",
    "MAX_DIGEST_AGENTS",
    "MAX_REPLICA_MESSAGE",
    "MAX_STATES",
    "MAX_STATES_PER_DIGEST",
    "MAX_STATE_NAME",
    "Digest",
    "ReplicaConfig",
    "ReplicaMessage",
    "ReplicaStats",
    "Replicas",
    "StateMsg",
    "decode_replica_message",
    "encode_replica_message",
    "message_size",
    "validate_state_name",
]

#: ``kind`` of a :class:`Digest` on the wire.
KIND_DIGEST = 1
#: ``kind`` of a :class:`StateMsg` on the wire.
KIND_STATE = 2
#: Longest state name (characters ``A-Z a-z 0-9 . _ -``, starting with a letter or digit).
MAX_STATE_NAME = 64
#: States one node holds (default of :attr:`ReplicaConfig.max_states`); names beyond
#: are refused locally (StateError) and ignored when peers offer them.
MAX_STATES = 1024
#: Names one digest may list (untrusted input; default of ``ReplicaConfig.digest_names``).
MAX_STATES_PER_DIGEST = 256
#: Agents one digest's table may name (untrusted input).
MAX_DIGEST_AGENTS = MAX_AGENTS * DECODE_HEADROOM
#: Largest encoded replica message accepted, in bytes (untrusted input): one full state
#: plus its envelope.
MAX_REPLICA_MESSAGE = MAX_ENCODED_STATE + 1024
#: Estimated size the digests we build stay under (a single name may pass it).
DIGEST_BUDGET = 64 * 1024
#: Bytes of full states answered to one digest (default of ``ReplicaConfig.answer_bytes``);
#: the rest waits for the next round.
MAX_ANSWER_BYTES = 1024 * 1024
#: Largest delta published; bigger ones are left to anti-entropy. Must not exceed the
#: pub/sub payload limit (``MAX_MESSAGE_DATA``) minus whatever the runtime wraps around.
MAX_DELTA_SIZE = 32 * 1024
#: Seconds between anti-entropy rounds.
DEFAULT_ANTI_ENTROPY_INTERVAL = 5.0
#: Each interval is drawn uniformly within this fraction either side of the mean.
DEFAULT_ANTI_ENTROPY_JITTER = 0.2

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EMPTY = VersionVector()
# Estimated encoded bytes of one version-vector entry (agent index + counter).
_VV_ENTRY_SIZE = 12


def _bad(what: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed replica message: {what}", ErrorCode.MALFORMED)


def _is_name(name: object) -> bool:
    return (
        isinstance(name, str) and len(name) <= MAX_STATE_NAME and _NAME.fullmatch(name) is not None
    )


def validate_state_name(name: str) -> str:
    """``name`` if it is a valid state name, else :class:`InvalidArgument`."""
    if not _is_name(name):
        raise InvalidArgument(
            f"state names are 1..{MAX_STATE_NAME} characters of A-Z a-z 0-9 . _ - starting "
            f"with a letter or digit, not {name!r:.80}"
        )
    return name


def _name_or_bad(name: object) -> str:
    if not _is_name(name):
        raise _bad("bad state name")
    return name  # type: ignore[return-value]


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Digest:
    """Version vectors of a range of states (anti-entropy request or reply)."""

    #: ``(name, version vector)`` pairs, sorted by name.
    versions: tuple[tuple[str, VersionVector], ...]
    #: Exclusive lower end of the covered names (``None``: from the first).
    after: str | None = None
    #: Inclusive upper end of the covered names (``None``: to the last).
    upto: str | None = None
    #: A reply covers only the names it lists and is answered with states only.
    reply: bool = False


@dataclass(frozen=True, slots=True)
class StateMsg:
    """One full state, sent by anti-entropy."""

    #: The state's name.
    name: str
    #: The state, encoded (:meth:`State.encode`); decoded and checked on receipt.
    state: bytes


ReplicaMessage = Digest | StateMsg


def encode_replica_message(msg: ReplicaMessage) -> bytes:
    """The wire form of ``msg`` (see the module docstring)."""
    if isinstance(msg, StateMsg):
        body: list[Any] = [KIND_STATE, msg.name, msg.state]
    elif isinstance(msg, Digest):
        agents: set[str] = set()
        for _, vv in msg.versions:
            agents.update(vv.to_dict())
        table = AgentTable(agents)
        entries: list[Any] = []
        for name, vv in msg.versions:
            entries += [name, vv.encode_flat(table.index)]
        body = [KIND_DIGEST, msg.reply, msg.after, msg.upto, table.names, entries]
    else:
        raise InvalidArgument(f"not a replica message: {type(msg).__name__}")
    data = cbor.encode(body)
    if len(data) > MAX_REPLICA_MESSAGE:
        raise InvalidArgument(f"replica message of {len(data)} bytes exceeds {MAX_REPLICA_MESSAGE}")
    return data


def decode_replica_message(data: bytes) -> ReplicaMessage:
    """Parse a replica message; :class:`ProtocolViolation` (``MALFORMED``) on bad input.
    The state inside a :class:`StateMsg` is only size-checked here; it is decoded (and
    may still be refused) by :meth:`Replicas.receive`."""
    if not isinstance(data, bytes) or len(data) > MAX_REPLICA_MESSAGE:
        raise _bad(f"messages are bytes of at most {MAX_REPLICA_MESSAGE}")
    item = cbor.decode(data, max_depth=3, max_items=MAX_STATE_ITEMS)
    if not isinstance(item, list) or not item:
        raise _bad("not a list")
    kind = int_or_bad(item[0], KIND_DIGEST, KIND_STATE, "kind")
    if kind == KIND_STATE:
        if len(item) != 3:
            raise _bad("a state message has 3 items")
        state = item[2]
        if not isinstance(state, bytes) or len(state) > MAX_ENCODED_STATE:
            raise _bad(f"states are bytes of at most {MAX_ENCODED_STATE}")
        return StateMsg(_name_or_bad(item[1]), state)
    if len(item) != 6:
        raise _bad("a digest has 6 items")
    _, reply, after, upto, names, flat = item
    if not isinstance(reply, bool):
        raise _bad("reply must be a boolean")
    agents = decode_agents(names, MAX_DIGEST_AGENTS)
    entries = list_or_bad(flat, MAX_STATES_PER_DIGEST, "digest entries", multiple=2)
    versions: list[tuple[str, VersionVector]] = []
    for i in range(0, len(entries), 2):
        name = _name_or_bad(entries[i])
        if versions and name <= versions[-1][0]:
            raise _bad("digest names must be sorted and distinct")
        versions.append((name, VersionVector.decode_flat(entries[i + 1], agents, len(agents))))
    return Digest(
        tuple(versions),
        None if after is None else _name_or_bad(after),
        None if upto is None else _name_or_bad(upto),
        reply,
    )


def _vv_cost(vv: VersionVector, agents: set[str]) -> int:
    """Estimated bytes ``vv`` adds to a digest whose table already names ``agents``
    (which it extends)."""
    cost = _VV_ENTRY_SIZE * len(vv)
    for agent, _ in vv.items():
        if agent not in agents:
            agents.add(agent)
            cost += len(agent) + 2
    return cost


def message_size(msg: ReplicaMessage) -> int:
    """An estimate of the encoded size of ``msg`` (cheap; for simulators)."""
    if isinstance(msg, StateMsg):
        return len(msg.state) + len(msg.name) + 8
    agents: set[str] = set()
    size = 16 + len(msg.after or "") + len(msg.upto or "")
    return size + sum(len(name) + 3 + _vv_cost(vv, agents) for name, vv in msg.versions)


# --------------------------------------------------------------------------- the core


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Tunables of :class:`Replicas`."""

    #: Mean seconds between anti-entropy rounds.
    anti_entropy_interval: float = DEFAULT_ANTI_ENTROPY_INTERVAL
    #: Fraction of the interval by which each round is jittered either way.
    jitter: float = DEFAULT_ANTI_ENTROPY_JITTER
    #: Named states one node holds.
    max_states: int = MAX_STATES
    #: Names listed per digest we send (1..:data:`MAX_STATES_PER_DIGEST`).
    digest_names: int = MAX_STATES_PER_DIGEST
    #: Bytes of full states sent in answer to one digest.
    answer_bytes: int = MAX_ANSWER_BYTES

    def __post_init__(self) -> None:
        if not self.anti_entropy_interval > 0:
            raise InvalidArgument("anti_entropy_interval must be positive")
        if not 0.0 <= self.jitter < 1.0:
            raise InvalidArgument("jitter must be in [0, 1)")
        if self.max_states < 1:
            raise InvalidArgument("max_states must be at least 1")
        if not 1 <= self.digest_names <= MAX_STATES_PER_DIGEST:
            raise InvalidArgument(f"digest_names must be in 1..{MAX_STATES_PER_DIGEST}")
        if self.answer_bytes < 1:
            raise InvalidArgument("answer_bytes must be positive")


@dataclass(slots=True)
class ReplicaStats:
    """Counters of what a :class:`Replicas` did (for tests, simulators and ``status``)."""

    deltas_published: int = 0
    #: Deltas bigger than :data:`MAX_DELTA_SIZE`, left to anti-entropy.
    deltas_oversized: int = 0
    deltas_received: int = 0
    digests_sent: int = 0
    digests_received: int = 0
    states_sent: int = 0
    states_received: int = 0
    #: States larger than a peer would accept, not sent.
    states_oversized: int = 0
    #: Names offered by peers but not taken because ``max_states`` was reached.
    states_refused: int = 0


class Replicas:
    """The named states of one node and their replication (see the module docstring).

    ``local`` is this node's agent ID: the writer of local operations and the owner of
    the hybrid logical clock that all its states share.
    """

    def __init__(self, local: str, config: ReplicaConfig, rng: random.Random) -> None:
        self.local = check_agent(local)
        self.config = config
        self.stats = ReplicaStats()
        self._rng = rng
        self._clock = Hlc(local)
        self._states: dict[str, State] = {}
        self._names: list[str] = []  # sorted
        self._peers: list[str] = []  # sorted
        self._pending: dict[str, State] = {}  # name -> joined deltas not yet drained
        self._ready: list[tuple[str, bytes]] = []
        self._outbox: list[tuple[str, ReplicaMessage]] = []
        self._events: list[ReplicaEvent] = []
        self._dirty: set[str] = set()
        self._cursor: str | None = None  # the next digest covers names after this
        self._next_round = 0.0  # the first timer is due at once; it schedules the rest

    # ---- states -----------------------------------------------------------------------

    def state_names(self) -> list[str]:
        """Names of the states held, sorted."""
        return list(self._names)

    def has_state(self, name: str) -> bool:
        return name in self._states

    def get_state(self, name: str) -> State:
        """The state called ``name``, created empty if new (InvalidArgument for a bad
        name, StateError past ``max_states``). Change it only through
        :meth:`apply_local`, so that deltas and events follow."""
        state = self._states.get(validate_state_name(name))
        if state is None:
            if len(self._states) >= self.config.max_states:
                raise StateError(f"a node holds at most {self.config.max_states} states")
            state = State(self.local, self._clock)
            self._states[name] = state
            bisect.insort(self._names, name)
        return state

    def apply_local(
        self, name: str, op: Op | str, key: str, value: Value, now: float
    ) -> list[StateChanged]:
        """Apply a local operation (see :meth:`State.apply`) to state ``name`` at time
        ``now``; queue its delta for broadcast. Returns the resulting events, which are
        *also* queued for :meth:`events` (handle them in one place or the other)."""
        state = self.get_state(name)
        revision = state.revision
        delta, changed = state.apply(op, key, value, now)
        if state.revision != revision:
            self._dirty.add(name)
        if not delta.is_empty():
            self._queue_delta(name, delta)
        events = [self._event(name, state, key, self.local) for key in changed]
        self._events += events
        return events

    def _event(self, name: str, state: State, key: str, origin: str) -> StateChanged:
        if key in state:
            return StateChanged(name, key, state.get(key), False, origin)
        return StateChanged(name, key, None, True, origin)

    def _merge(self, name: str, incoming: State, origin: str) -> None:
        state = self._states.get(name)
        if state is None:
            if incoming.is_empty():
                return
            if len(self._states) >= self.config.max_states:
                self.stats.states_refused += 1
                return
            state = self.get_state(name)
            self._events.append(StateCreated(name, origin))
        revision = state.revision
        changed = state.merge(incoming)
        if state.revision != revision:
            self._dirty.add(name)
        self._events += [self._event(name, state, key, origin) for key in changed]

    # ---- deltas -----------------------------------------------------------------------

    def _queue_delta(self, name: str, delta: State) -> None:
        pending = self._pending.get(name)
        if pending is None:
            self._pending[name] = delta
        elif pending.size_estimate() + delta.size_estimate() > MAX_DELTA_SIZE:
            self._flush(name)
            self._pending[name] = delta
        else:
            pending.merge(delta)

    def _flush(self, name: str) -> None:
        data = self._pending.pop(name).encode()
        if len(data) > MAX_DELTA_SIZE:
            self.stats.deltas_oversized += 1
        else:
            self._ready.append((name, data))
            self.stats.deltas_published += 1

    def deltas_to_broadcast(self) -> list[tuple[str, bytes]]:
        """Drain ``(name, encoded delta)`` pairs to publish (deltas of one name made
        since the last drain are joined into one, up to :data:`MAX_DELTA_SIZE`)."""
        for name in list(self._pending):
            self._flush(name)
        ready, self._ready = self._ready, []
        return ready

    def receive_delta(self, name: str, data: bytes, now: float, origin_peer: str) -> None:
        """Merge a delta published by ``origin_peer`` (its author) for state ``name``.
        Bad input raises :class:`ProtocolViolation` and changes nothing."""
        name = _name_or_bad(name)
        incoming = State.decode(data)
        self.stats.deltas_received += 1
        self._merge(name, incoming, origin_peer)

    # ---- anti-entropy -----------------------------------------------------------------

    def set_peers(self, peers: Iterable[str]) -> None:
        """The peers anti-entropy may pick from (this node excluded)."""
        self._peers = sorted(set(peers) - {self.local})

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due (0.0 before the first call)."""
        return self._next_round

    def handle_timer(self, now: float) -> None:
        """Run an anti-entropy round if one is due, and schedule the next."""
        if now < self._next_round:
            return
        if self._peers:
            digest, self._cursor = self._digest_after(self._cursor)
            self._send(self._rng.choice(self._peers), digest)
        jitter = self.config.jitter
        interval = self.config.anti_entropy_interval * (1.0 + self._rng.uniform(-jitter, jitter))
        self._next_round = now + interval

    def sync_with(self, peer: str) -> None:
        """Send ``peer`` digests of every state now (e.g. when it joins or reconnects)."""
        after: str | None = None
        while True:
            digest, after = self._digest_after(after)
            self._send(peer, digest)
            if after is None:
                return

    def _digest_after(self, after: str | None) -> tuple[Digest, str | None]:
        """A digest of the names after ``after`` (as many as fit) and where the next one
        starts (``None``: this one reached the end)."""
        names = self._names
        start = 0 if after is None else bisect.bisect_right(names, after)
        end = min(len(names), start + self.config.digest_names)
        versions: list[tuple[str, VersionVector]] = []
        agents: set[str] = set()
        size = 0
        for name in names[start:end]:
            vv = self._states[name].version_vector()
            size += len(name) + 3 + _vv_cost(vv, agents)
            if versions and size > DIGEST_BUDGET:
                break
            versions.append((name, vv))
        if start + len(versions) < len(names):
            upto = versions[-1][0]
            return Digest(tuple(versions), after, upto), upto
        return Digest(tuple(versions), after, None), None

    def _send(self, peer: str, msg: ReplicaMessage) -> None:
        if isinstance(msg, Digest):
            self.stats.digests_sent += 1
        else:
            self.stats.states_sent += 1
        self._outbox.append((peer, msg))

    def _names_in(self, after: str | None, upto: str | None) -> Sequence[str]:
        names = self._names
        low = 0 if after is None else bisect.bisect_right(names, after)
        high = len(names) if upto is None else bisect.bisect_right(names, upto)
        return names[low:high]

    def _send_states(self, peer: str, wanted: Iterable[tuple[str, VersionVector]]) -> None:
        """Send ``peer`` each named state that has operations its vector lacks, within
        ``answer_bytes`` (at least one state, so a big one is not stuck; starting at a
        random one, so the same names do not always take the budget)."""
        news = [
            (name, state)
            for name, vv in wanted
            if (state := self._states.get(name)) is not None and state.has_news_for(vv)
        ]
        if not news:
            return
        start = self._rng.randrange(len(news))
        budget = self.config.answer_bytes
        for name, state in news[start:] + news[:start]:
            data = state.encode()
            if len(data) > MAX_ENCODED_STATE:
                self.stats.states_oversized += 1
                continue
            if len(data) > budget and budget < self.config.answer_bytes:
                return
            budget -= len(data)
            self._send(peer, StateMsg(name, data))

    def receive(self, peer: str, msg: ReplicaMessage, now: float) -> None:
        """Handle a message from ``peer``. A bad state inside a :class:`StateMsg` raises
        :class:`ProtocolViolation` and changes nothing."""
        if isinstance(msg, StateMsg):
            incoming = State.decode(msg.state)
            self.stats.states_received += 1
            self._merge(_name_or_bad(msg.name), incoming, peer)
            return
        if not isinstance(msg, Digest):
            raise InvalidArgument(f"not a replica message: {type(msg).__name__}")
        self.stats.digests_received += 1
        if msg.reply:
            self._send_states(peer, msg.versions)
            return
        theirs = dict(msg.versions)
        self._send_states(
            peer, ((n, theirs.get(n, _EMPTY)) for n in self._names_in(msg.after, msg.upto))
        )
        wanted: list[tuple[str, VersionVector]] = []
        room = self.config.max_states - len(self._states)
        for name, vv in msg.versions:
            state = self._states.get(name)
            if state is not None:
                if state.misses_from(vv):
                    wanted.append((name, state.version_vector()))
            elif len(vv) and room > 0:
                room -= 1
                wanted.append((name, VersionVector()))
        for i in range(0, len(wanted), self.config.digest_names):
            self._send(peer, Digest(tuple(wanted[i : i + self.config.digest_names]), reply=True))

    def messages_to_send(self) -> list[tuple[str, ReplicaMessage]]:
        """Drain ``(peer, message)`` pairs to send (encode with
        :func:`encode_replica_message`)."""
        out, self._outbox = self._outbox, []
        return out

    def events(self) -> list[ReplicaEvent]:
        """Drain the events, in order: :class:`StateChanged` for local and remote changes,
        :class:`StateCreated` for states peers brought."""
        out, self._events = self._events, []
        return out

    # ---- persistence -------------------------------------------------------------------

    def snapshot(self, name: str) -> bytes:
        """The encoded state ``name``, to persist (NotFound if not held)."""
        state = self._states.get(name)
        if state is None:
            raise NotFound(f"no state named {name!r}")
        return state.encode()

    def restore(self, name: str, data: bytes) -> None:
        """Merge a persisted snapshot into state ``name`` (created if new); no events,
        not marked dirty. Bad data raises :class:`ProtocolViolation`."""
        validate_state_name(name)
        incoming = State.decode(data)
        self.get_state(name).merge(incoming)

    def take_dirty(self) -> set[str]:
        """Names whose state changed since the last call (to persist)."""
        out, self._dirty = self._dirty, set()
        return out

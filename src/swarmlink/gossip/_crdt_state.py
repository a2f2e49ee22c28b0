"""The state document: a named, replicated key -> typed value map (``node.state(name)``).

A :class:`State` combines the CRDTs of :mod:`._crdt_types` under **one causal context**
(the delta-state "causal CRDT" composition of Almeida et al.): every local operation
takes a fresh dot of its agent, and the delta it returns carries that dot in its
context. So :meth:`State.version_vector` summarises every operation the replica has
integrated, which is what anti-entropy compares.

Keys and kinds:

* ``set(key, value, now)`` / ``delete(key, now)``: an LWW register per key (HLC stamps;
  a delete writes a tombstone, so delete and set race by stamp). ``delete`` also
  observed-removes every element of a set at that key; it cannot delete a counter
  (counters have no reset), which raises :class:`~swarmlink.errors.InvalidArgument`.
* ``add(key, element)`` / ``remove(key, element)``: an add-wins OR-set per key. Its dots
  live in the document's context; removed dots leave no tombstone.
* ``increment(key, n=1)``: a PN-counter per key (``n < 0`` decrements).

A key's **kind** is the kind of what it currently holds: a live (not deleted) register,
else a non-empty set, else a counter. Writing a key with an operation of another kind
raises InvalidArgument, so locally a key keeps the kind of its first write. A deleted
register or an emptied set frees the key; a counter never does. If concurrent writers
gave one key different kinds, all of them are kept, and :meth:`State.get` shows one by
the fixed precedence **register > set > counter** (the same order as above).

Plain values: a register's value, a set as a sorted list (see
:func:`~._crdt_values.value_sort_key`), a counter as an ``int``.

**Merge** is in place, returns the keys whose *visible* value changed, and is
commutative, associative and idempotent; deltas and full states merge alike. Each
mutator applies its delta locally and returns it, to be broadcast.

Limits: local writes stop at :data:`~._crdt_types.MAX_KEYS` keys (tombstones included),
:data:`~._crdt_types.MAX_SET_ELEMENTS` per set, :data:`~._crdt_types.MAX_AGENTS` writers
and an estimated :data:`~._crdt_types.MAX_STATE_SIZE` bytes (StateError); decoding
accepts :data:`~._crdt_types.DECODE_HEADROOM` times as much.

Encoding: a CBOR map, empty parts left out::

    {"a": [agent, ...],                                 sorted agent table
     "v": [agent index, n, ...],                        version vector
     "d": [agent index, n, ...],                        dot cloud
     "r": [key, agent index, wall, logical, value | null (tombstone), ...]
     "s": [key, [element, [agent index, n, ...], ...], ...]
     "n": [key, [agent index, increments, decrements, ...], ...]}

Values and elements are byte strings holding their canonical encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

from ..errors import InvalidArgument, StateError
from ..wire import cbor
from ._crdt_clock import AgentTable, CausalContext, Dot, Hlc, VersionVector, decode_agents
from ._crdt_lww import LWWMap
from ._crdt_types import (
    DECODE_HEADROOM,
    DOT_SIZE,
    ELEMENT_OVERHEAD,
    MAX_AGENTS,
    MAX_KEYS,
    MAX_SET_ELEMENTS,
    MAX_STATE_SIZE,
    DotStore,
    PNCounter,
    decode_body,
    sorted_values,
)
from ._crdt_values import (
    Value,
    bad,
    check_agent,
    check_key,
    decode_value,
    encode_value,
    key_or_bad,
    list_or_bad,
)

__all__ = ["Kind", "Op", "State"]

_FIELDS = frozenset({"a", "v", "d", "r", "s", "n"})
_MAX_KEYS_IN = MAX_KEYS * DECODE_HEADROOM
_MAX_AGENTS_IN = MAX_AGENTS * DECODE_HEADROOM
# Size estimates (bytes of encoding) behind the MAX_STATE_SIZE check.
_KEY_OVERHEAD = 8
_REGISTER_OVERHEAD = 20
_COUNT_SIZE = 20
_AGENT_SIZE = 64


class Kind(enum.StrEnum):
    """What a key holds, in :meth:`State.get` precedence order."""

    REGISTER = "register"
    SET = "set"
    COUNTER = "counter"


class Op(enum.StrEnum):
    """A local operation on a state (see :meth:`State.apply`)."""

    SET = "set"
    DELETE = "delete"
    ADD = "add"
    REMOVE = "remove"
    INCREMENT = "increment"


class State:
    """A replicated key -> typed value document (see the module docstring).

    ``agent`` is the local writer (``None`` for a delta or a read-only copy, whose
    mutators raise StateError); ``clock`` its hybrid logical clock, shared by all the
    states of one node (a private one is made if omitted).
    """

    __slots__ = (
        "_agent",
        "_cc",
        "_clock",
        "_counters",
        "_registers",
        "_revision",
        "_sets",
        "_size",
        "_sizes",
    )

    def __init__(self, agent: str | None = None, clock: Hlc | None = None) -> None:
        if agent is not None:
            check_agent(agent)
            if clock is None:
                clock = Hlc(agent)
            elif clock.agent != agent:
                raise InvalidArgument("the clock belongs to another agent")
        self._agent = agent
        self._clock = clock
        self._cc = CausalContext()
        self._registers = LWWMap()
        self._sets = DotStore()
        self._counters: dict[str, PNCounter] = {}
        self._sizes: dict[str, int] = {}  # key -> estimated encoded size; every key held
        self._size = 0
        self._revision = 0

    @property
    def agent(self) -> str | None:
        """The local writer, if any."""
        return self._agent

    @property
    def revision(self) -> int:
        """Grows whenever the content changes (for persistence and caches)."""
        return self._revision

    # ---- local operations -----------------------------------------------------------

    def set(self, key: str, value: Value, now: float) -> State:
        """Set ``key`` to ``value`` (LWW, stamped at ``now``); returns the delta."""
        return self.apply(Op.SET, key, value, now)[0]

    def delete(self, key: str, now: float) -> State:
        """Delete ``key`` (tombstone; empties a set; not for counters); the delta."""
        return self.apply(Op.DELETE, key, None, now)[0]

    def add(self, key: str, element: Value) -> State:
        """Add ``element`` to the set at ``key``; returns the delta."""
        return self.apply(Op.ADD, key, element)[0]

    def remove(self, key: str, element: Value) -> State:
        """Remove ``element`` from the set at ``key`` (observed dots only); the delta,
        empty if the element was absent."""
        return self.apply(Op.REMOVE, key, element)[0]

    def increment(self, key: str, n: int = 1) -> State:
        """Add ``n`` to the counter at ``key`` (negative ``n`` decrements); the delta."""
        return self.apply(Op.INCREMENT, key, n)[0]

    def apply(
        self, op: Op | str, key: str, value: Value = None, now: float | None = None
    ) -> tuple[State, list[str]]:
        """Apply one local operation; returns ``(delta, keys whose visible value
        changed)``. ``value`` is the value (SET), the element (ADD, REMOVE) or the amount
        (INCREMENT; ``None`` means 1); ``now`` (seconds, required by SET and DELETE)
        stamps the write."""
        try:
            op = Op(op)
        except ValueError:
            raise InvalidArgument(f"unknown state operation {op!r}") from None
        key = check_key(key)
        writer = self._writer()
        kind = self.kind(key)
        if op is Op.SET or op is Op.DELETE:
            delta = self._register_op(op, key, value, now, writer, kind)
        elif op is Op.INCREMENT:
            delta = self._counter_op(key, value, writer, kind)
        else:
            if kind is Kind.REGISTER or kind is Kind.COUNTER:
                raise InvalidArgument(f"key {key!r} holds a {kind}, not a set")
            element = encode_value(value)
            existing = self._sets.dots_of(key, element)
            if op is Op.REMOVE and not existing:
                return State(), []
            if op is Op.ADD and not existing:
                if len(self._sets.elements(key)) >= MAX_SET_ELEMENTS:
                    raise StateError(f"a set holds at most {MAX_SET_ELEMENTS} elements")
                self._check_room(key, writer, len(element) + ELEMENT_OVERHEAD + DOT_SIZE)
            delta, dot = self._new_delta(writer)
            if op is Op.ADD:
                delta._sets.insert(key, element, dot)
            delta._cc.cloud.update(existing)
        delta._cc.compact()
        delta._resize(dict.fromkeys(delta._keys()))
        return delta, self.merge(delta)

    def _writer(self) -> str:
        if self._agent is None:
            raise StateError("this state has no local agent (a delta or a copy)")
        return self._agent

    def _new_delta(self, writer: str) -> tuple[State, Dot]:
        """An empty delta holding the dot of a new operation by ``writer``."""
        dot = self._cc.next_dot(writer)
        delta = State()
        delta._cc.cloud.add(dot)
        return delta, dot

    def _register_op(
        self, op: Op, key: str, value: Value, now: float | None, writer: str, kind: Kind | None
    ) -> State:
        assert self._clock is not None  # set with the agent
        if now is None:
            raise InvalidArgument(f"{op} needs the current time (now)")
        if op is Op.SET:
            if kind is Kind.SET or kind is Kind.COUNTER:
                raise InvalidArgument(f"key {key!r} holds a {kind}, not a register")
            payload: bytes | None = encode_value(value)
        else:
            if kind is Kind.COUNTER:
                raise InvalidArgument(f"key {key!r} holds a counter, which cannot be deleted")
            payload = None
        self._check_room(key, writer, _REGISTER_OVERHEAD + len(payload or b""))
        stamp = self._clock.tick(now, self._registers.stamp(key))
        delta, _ = self._new_delta(writer)
        delta._registers.put(key, stamp, payload)
        if op is Op.DELETE:
            for dots in self._sets.elements(key).values():
                delta._cc.cloud.update(dots)
        return delta

    def _counter_op(self, key: str, value: Value, writer: str, kind: Kind | None) -> State:
        if kind is Kind.REGISTER or kind is Kind.SET:
            raise InvalidArgument(f"key {key!r} holds a {kind}, not a counter")
        n = 1 if value is None else value
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidArgument(f"counters change by an integer, not {n!r}")
        counter = self._counters.get(key)
        change = (PNCounter() if counter is None else counter).delta_for(writer, n)
        self._check_room(key, writer, _COUNT_SIZE)
        delta, _ = self._new_delta(writer)
        delta._counters[key] = change
        return delta

    def _check_room(self, key: str, writer: str, growth: int) -> None:
        if key not in self._sizes and len(self._sizes) >= MAX_KEYS:
            raise StateError(f"a state holds at most {MAX_KEYS} keys (deleted ones included)")
        if writer not in self._cc.vv and len(self._cc.vv) >= MAX_AGENTS:
            raise StateError(f"a state carries at most {MAX_AGENTS} writers")
        if self.size_estimate() + growth > MAX_STATE_SIZE:
            raise StateError(f"a state's encoding is limited to {MAX_STATE_SIZE} bytes")

    # ---- reading ----------------------------------------------------------------------

    def kind(self, key: str) -> Kind | None:
        """What ``key`` shows (see the module docstring), ``None`` if nothing."""
        entry = self._registers.entry(key)
        if entry is not None and entry[1] is not None:
            return Kind.REGISTER
        if key in self._sets.map:
            return Kind.SET
        if key in self._counters:
            return Kind.COUNTER
        return None

    def get(self, key: str, default: Value = None) -> Value:
        """The plain value of ``key`` (a fresh copy), or ``default`` if it shows nothing."""
        kind = self.kind(key)
        if kind is Kind.REGISTER:
            entry = self._registers.entry(key)
            assert entry is not None and entry[1] is not None
            return decode_value(entry[1])
        if kind is Kind.SET:
            return sorted_values(self._sets.elements(key))
        if kind is Kind.COUNTER:
            return self._counters[key].value()
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.kind(key) is not None

    def keys(self) -> list[str]:
        """Keys that show a value, sorted."""
        keys = set(self._registers.keys())
        keys.update(self._sets.map)
        keys.update(self._counters)
        return sorted(keys)

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> list[tuple[str, Value]]:
        """``(key, plain value)`` pairs, sorted by key."""
        return [(key, self.get(key)) for key in self.keys()]

    def to_dict(self) -> dict[str, Value]:
        """The document as a plain dict (sorted by key)."""
        return dict(self.items())

    def version_vector(self) -> VersionVector:
        """A copy of the contiguous part of the causal context: every operation up to
        these counters has been integrated."""
        return self._cc.vv.copy()

    def context(self) -> CausalContext:
        """A copy of the whole causal context (vector and dot cloud)."""
        return self._cc.copy()

    def has_news_for(self, vv: VersionVector) -> bool:
        """Whether this state holds an operation that ``vv`` does not cover."""
        return not self._cc.covered_by(vv)

    def misses_from(self, vv: VersionVector) -> bool:
        """Whether ``vv`` covers an operation this state has not integrated."""
        return not vv <= self._cc.vv

    def is_empty(self) -> bool:
        """Whether this is the empty state (no operation integrated)."""
        return not self._sizes and self._cc.size() == 0

    def size_estimate(self) -> int:
        """An estimate of :meth:`encode`'s length, kept up to date as the state changes."""
        return self._size + _AGENT_SIZE * len(self._cc.vv) + DOT_SIZE * len(self._cc.cloud)

    # ---- merging ------------------------------------------------------------------------

    def _visible(self, key: str) -> Hashable:
        kind = self.kind(key)
        if kind is Kind.REGISTER:
            entry = self._registers.entry(key)
            return (kind, entry[1] if entry is not None else None)
        if kind is Kind.SET:
            return (kind, self._sets.token(key))
        if kind is Kind.COUNTER:
            return (kind, self._counters[key].value())
        return None

    def merge(self, other: State) -> list[str]:
        """Merge a delta or a full state into this one (in place); returns the keys whose
        visible value changed, sorted."""
        if other is self:
            return []
        before: dict[str, Hashable] = {}

        def note(key: str) -> None:
            if key not in before:
                before[key] = self._visible(key)

        changed = self._sets.join(other._sets, self._cc, other._cc, note)
        changed = bool(self._registers.merge_keys(other._registers, note)) or changed
        for key, counter in other._counters.items():
            note(key)
            mine = self._counters.get(key)
            if mine is None:
                self._counters[key] = counter.copy()
                changed = True
            else:
                changed = mine.merge(counter) or changed
        changed = self._cc.merge(other._cc) or changed
        if not changed:
            return []
        self._revision += 1
        self._resize(before)
        return sorted(key for key, shown in before.items() if self._visible(key) != shown)

    def _resize(self, keys: dict[str, Hashable]) -> None:
        for key in keys:
            old = self._sizes.pop(key, 0)
            new = self._estimate(key)
            if new:
                self._sizes[key] = new
            self._size += new - old

    def _estimate(self, key: str) -> int:
        """Estimated bytes ``key`` adds to the encoding; 0 if it holds nothing."""
        size = 0
        entry = self._registers.entry(key)
        if entry is not None:
            size += _REGISTER_OVERHEAD + len(entry[1] or b"")
        size += self._sets.size(key)
        counter = self._counters.get(key)
        if counter is not None:
            size += _COUNT_SIZE * len(counter.counts())
        return size + len(key) + _KEY_OVERHEAD if size else 0

    # ---- copies, equality, encoding ---------------------------------------------------

    def copy(self, agent: str | None = None, clock: Hlc | None = None) -> State:
        """A deep copy, for ``agent`` (default: none, read-only)."""
        clone = State(agent, clock)
        clone._cc = self._cc.copy()
        clone._registers = self._registers.copy()
        clone._sets = self._sets.copy()
        clone._counters = {k: c.copy() for k, c in self._counters.items()}
        clone._sizes = dict(self._sizes)
        clone._size = self._size
        return clone

    def __eq__(self, other: object) -> bool:
        """Same content (the local agent and clock are not compared)."""
        return (
            isinstance(other, State)
            and self._cc == other._cc
            and self._registers == other._registers
            and self._sets == other._sets
            and self._counters == other._counters
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"State({self.to_dict()!r}, vv={self._cc.vv.to_dict()!r})"

    def encode(self) -> bytes:
        """The deterministic encoding (see the module docstring)."""
        agents = self._cc.agents() | self._registers.agents()
        for counter in self._counters.values():
            agents.update(counter.counts())
        table = AgentTable(agents)
        vector, cloud = self._cc.encode_parts(table.index)
        body: dict[str, cbor.CborValue] = {}
        sets: list[cbor.CborValue] = []
        for key in sorted(self._sets.map):
            sets += [key, self._sets.encode_key(key, table)]
        counters: list[cbor.CborValue] = []
        for key in sorted(self._counters):
            counters += [key, self._counters[key].encode_flat(table.index)]
        parts: dict[str, list[cbor.CborValue] | list[int] | list[str]] = {
            "a": table.names,
            "v": vector,
            "d": cloud,
            "r": self._registers.encode_flat(table.index),
            "s": sets,
            "n": counters,
        }
        for name, part in parts.items():
            if part:
                body[name] = part
        return cbor.encode(body)

    @classmethod
    def decode(cls, data: bytes, agent: str | None = None, clock: Hlc | None = None) -> State:
        """Decode an encoded state or delta (for ``agent``, default none);
        :class:`~swarmlink.errors.ProtocolViolation` on bad or oversized input."""
        body = decode_body(data, 4)
        if not isinstance(body, dict) or not set(body) <= _FIELDS:
            raise bad("a state is a map with fields a, v, d, r, s, n")
        agents = decode_agents(body.get("a", []), _MAX_AGENTS_IN)
        state = cls(agent, clock)
        state._cc = CausalContext.decode_parts(
            body.get("v", []), body.get("d", []), agents, _MAX_AGENTS_IN
        )
        state._registers = LWWMap.decode_flat(body.get("r", []), agents)
        flat = list_or_bad(body.get("s", []), _MAX_KEYS_IN, "sets", multiple=2)
        for i in range(0, len(flat), 2):
            key = key_or_bad(flat[i])
            if key in state._sets.map:
                raise bad("key repeated in sets")
            state._sets.decode_key(key, flat[i + 1], agents, state._cc)
        flat = list_or_bad(body.get("n", []), _MAX_KEYS_IN, "counters", multiple=2)
        for i in range(0, len(flat), 2):
            key = key_or_bad(flat[i])
            if key in state._counters:
                raise bad("key repeated in counters")
            counter = PNCounter.decode_flat(flat[i + 1], agents)
            if not counter.counts():
                raise bad("empty counter")
            state._counters[key] = counter
        keys = state._keys()
        if len(keys) > _MAX_KEYS_IN:
            raise bad(f"more than {_MAX_KEYS_IN} keys")
        state._resize(dict.fromkeys(keys))
        return state

    def _keys(self) -> frozenset[str]:
        """Every key holding something, tombstones included."""
        return frozenset(self._registers.all_keys()).union(self._sets.map, self._counters)

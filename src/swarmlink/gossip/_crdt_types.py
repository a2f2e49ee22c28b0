"""The CRDT building blocks: LWW register, LWW map, OR-set and PN-counter.

All are *state-based* CRDTs in the delta-state style (Almeida, Shoker, Baquero 2018):
every mutator changes the object **in place** and returns a small object of the same
type, the *delta*, which a peer merges like a full state. ``merge(other)`` is always in
place, idempotent, commutative and associative, and returns whether anything changed.

* :class:`LWWRegister`: one value with a :class:`~._crdt_clock.Timestamp`; the greater
  stamp wins (ties, possible only if one agent reused a stamp, go to the greater
  encoding).
* :class:`LWWMap`: key -> LWW entry; a delete writes a *tombstone* entry, so a delete
  and a concurrent set are ordered by their stamps like two sets.
* :class:`ORSet`: the add-wins *optimized* OR-set: each add tags the element with a fresh
  dot; a remove drops the dots it has observed (recorded in the causal context, not as a
  tombstone). An add concurrent with a remove survives, because the remove did not
  observe its dot.
* :class:`PNCounter`: per-agent (increments, decrements) pairs; merge takes the
  per-agent maximum; the value is the sum of increments minus decrements.

Encodings are deterministic CBOR; decoders raise only
:class:`~swarmlink.errors.ProtocolViolation` on bad input and enforce the limits below
(:data:`DECODE_HEADROOM` times the local ones, see there).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

from ..errors import InvalidArgument, StateError
from ..wire import cbor
from ._crdt_clock import (
    AgentTable,
    CausalContext,
    Dot,
    agent_at,
    decode_agents,
    decode_dots,
)
from ._crdt_values import (
    Value,
    bad,
    check_agent,
    decode_value,
    encode_value,
    int_or_bad,
    list_or_bad,
    value_or_bad,
    value_sort_key,
)

__all__ = [
    "DECODE_HEADROOM",
    "MAX_AGENTS",
    "MAX_COUNTER",
    "MAX_ENCODED_STATE",
    "MAX_KEYS",
    "MAX_SET_ELEMENTS",
    "MAX_STATE_ITEMS",
    "MAX_STATE_SIZE",
    "ORSet",
    "PNCounter",
]

#: Keys one state document or LWW map may hold, tombstones included. A local write of a
#: new key beyond this raises :class:`~swarmlink.errors.StateError`.
MAX_KEYS = 1024
#: Elements one OR-set may hold; adding a new element beyond this raises StateError.
MAX_SET_ELEMENTS = 1024
#: Agents whose dots, stamps or counts one state may carry; the first write of one more
#: agent raises StateError.
MAX_AGENTS = 1024
#: Size in bytes a state document's encoding may reach through local writes (estimated
#: as writes happen); a write that would pass it raises StateError.
MAX_STATE_SIZE = 128 * 1024
#: Decoders accept this multiple of the local limits above (keys, elements, agents,
#: size). Local writes stop at the limits, but concurrent writes on several replicas can
#: together pass them; the headroom lets such merged states still travel.
DECODE_HEADROOM = 2
#: Largest encoded state (or delta, or standalone CRDT) a decoder accepts, in bytes.
MAX_ENCODED_STATE = MAX_STATE_SIZE * DECODE_HEADROOM
#: CBOR items (array elements + map entries) a decoded state may contain.
MAX_STATE_ITEMS = 1 << 17
#: Largest per-agent total of increments (and of decrements) of a PN-counter.
MAX_COUNTER = 2**63 - 1
#: Set elements whose decoded value and sort key are kept in a (process-wide) cache.
ELEMENT_CACHE = 4096
#: Estimated encoded bytes of a set element besides its value, and of one dot.
ELEMENT_OVERHEAD = 4
DOT_SIZE = 12

#: Decoder-side limits (untrusted input).
_MAX_ELEMENTS_IN = MAX_SET_ELEMENTS * DECODE_HEADROOM
_MAX_AGENTS_IN = MAX_AGENTS * DECODE_HEADROOM
_SET_KEY = ""  # the single key of a standalone OR-set's dot store


def decode_body(data: bytes, max_depth: int) -> Any:
    """CBOR-decode a state encoding under the size and item limits."""
    if not isinstance(data, bytes) or len(data) > MAX_ENCODED_STATE:
        raise bad(f"an encoded state is bytes of at most {MAX_ENCODED_STATE}")
    return cbor.decode(data, max_depth=max_depth, max_items=MAX_STATE_ITEMS)


def fixed_list(item: object, length: int, what: str) -> list[Any]:
    """A ``list`` of exactly ``length`` items, or :class:`ProtocolViolation`."""
    if not isinstance(item, list) or len(item) != length:
        raise bad(f"{what} must be a list of {length} items")
    return item


# --------------------------------------------------------------------------- dot store


class DotStore:
    """key -> element encoding -> dots: the dot store of OR-sets (one per state document
    sharing the document's causal context, or one per standalone :class:`ORSet`), with
    an index from each dot to where it sits, and a running summary of each key (see
    :meth:`token` and :meth:`size`) so that merges need not rescan big sets."""

    __slots__ = ("index", "map", "summary")

    def __init__(self) -> None:
        self.map: dict[str, dict[bytes, set[Dot]]] = {}
        self.index: dict[Dot, tuple[str, bytes]] = {}
        # key -> [element count, XOR of the elements' hashes, estimated encoded bytes]
        self.summary: dict[str, list[int]] = {}

    def insert(self, key: str, element: bytes, dot: Dot) -> None:
        """Tag ``element`` at ``key`` with the new ``dot`` (not already in the store)."""
        elements = self.map.setdefault(key, {})
        summary = self.summary.setdefault(key, [0, 0, 0])
        dots = elements.get(element)
        if dots is None:
            dots = elements[element] = set()
            summary[0] += 1
            summary[1] ^= hash(element)
            summary[2] += len(element) + ELEMENT_OVERHEAD
        dots.add(dot)
        summary[2] += DOT_SIZE
        self.index[dot] = (key, element)

    def discard(self, dot: Dot) -> None:
        """Drop ``dot`` (and its element, if that was its last dot)."""
        place = self.index.pop(dot, None)
        if place is None:
            return
        key, element = place
        elements = self.map[key]
        summary = self.summary[key]
        dots = elements[element]
        dots.discard(dot)
        summary[2] -= DOT_SIZE
        if not dots:
            del elements[element]
            summary[0] -= 1
            summary[1] ^= hash(element)
            summary[2] -= len(element) + ELEMENT_OVERHEAD
            if not elements:
                del self.map[key]
                del self.summary[key]

    def token(self, key: str) -> tuple[int, int]:
        """Changes (in practice) whenever the set of elements at ``key`` changes, and
        comes back when it does: the element count and the XOR of their hashes."""
        summary = self.summary.get(key)
        return (0, 0) if summary is None else (summary[0], summary[1])

    def size(self, key: str) -> int:
        """Estimated bytes the elements and dots at ``key`` take in an encoding."""
        summary = self.summary.get(key)
        return 0 if summary is None else summary[2]

    def dots_of(self, key: str, element: bytes) -> frozenset[Dot]:
        return frozenset(self.map.get(key, {}).get(element, ()))

    def elements(self, key: str) -> dict[bytes, set[Dot]]:
        """Element encoding -> dots at ``key`` (live view; empty if none)."""
        return self.map.get(key, {})

    def join(
        self,
        other: DotStore,
        mine: CausalContext,
        theirs: CausalContext,
        note: Callable[[str], None],
    ) -> bool:
        """The causal join of (self, ``mine``) with (``other``, ``theirs``) into self,
        before the contexts themselves are merged. A dot survives if both stores have
        it, or if one store has it and the other's context has not seen it (the other
        side never observed it, so did not remove it). ``note(key)`` is called before a
        key changes. Whether anything changed."""
        changed = False
        # Removals: our dots the other side has seen but no longer has.
        if theirs.size() <= len(self.index):
            seen = [dot for dot in theirs.dots() if dot in self.index]
        else:
            seen = [dot for dot in self.index if dot in theirs]
        for dot in seen:
            if dot not in other.index:
                note(self.index[dot][0])
                self.discard(dot)
                changed = True
        # Additions: their dots we have not seen.
        index = self.index
        for key, elements in other.map.items():
            for element, dots in elements.items():
                for dot in dots:
                    if dot not in index and dot not in mine:
                        note(key)
                        self.insert(key, element, dot)
                        changed = True
        return changed

    def copy(self) -> DotStore:
        clone = DotStore()
        clone.map = {k: {e: set(d) for e, d in els.items()} for k, els in self.map.items()}
        clone.index = dict(self.index)
        clone.summary = {k: list(v) for k, v in self.summary.items()}
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DotStore) and self.map == other.map

    __hash__ = None  # type: ignore[assignment]

    def encode_key(self, key: str, table: AgentTable) -> list[Any]:
        """``[element, [agent index, n, ...], ...]`` for ``key``, sorted by element."""
        out: list[Any] = []
        elements = self.map.get(key, {})
        for element in sorted(elements):
            out += [element, table.dots(elements[element])]
        return out

    def decode_key(self, key: str, item: object, agents: list[str], cc: CausalContext) -> None:
        """Add ``key``'s elements from untrusted input; every dot must be in ``cc`` and
        appear only once in the store."""
        flat = list_or_bad(item, _MAX_ELEMENTS_IN, "set elements", multiple=2)
        if not flat:
            raise bad("empty set entry")
        for i in range(0, len(flat), 2):
            element = value_or_bad(flat[i])
            if element in self.map.get(key, {}):
                raise bad("element repeated in a set")
            dots = list_or_bad(flat[i + 1], len(agents), "element dots", multiple=2)
            if not dots:
                raise bad("element without dots")
            for dot in decode_dots(dots, agents):
                if dot in self.index or dot not in cc:
                    raise bad("set dot repeated or outside the causal context")
                self.insert(key, element, dot)


@functools.lru_cache(maxsize=ELEMENT_CACHE)
def _element(data: bytes) -> tuple[Value, tuple[int, Any, bytes]]:
    """An element's decoded value and sort key (cached: sets are re-listed whenever they
    change, for events; only immutable values may be handed out from here)."""
    value = decode_value(data)
    return value, value_sort_key(value, data)


def sorted_values(elements: Iterable[bytes]) -> list[Value]:
    """The decoded elements (fresh copies), in :func:`value_sort_key` order."""
    rows = sorted(map(_element, elements), key=itemgetter(1))
    return [
        decode_value(key[2]) if isinstance(value, (list, dict)) else value for value, key in rows
    ]


class ORSet:
    """An add-wins observed-remove set of values (optimized, dot-based)."""

    __slots__ = ("_cc", "_store")

    def __init__(self) -> None:
        self._store = DotStore()
        self._cc = CausalContext()

    def add(self, agent: str, element: Value) -> ORSet:
        """Add ``element`` as ``agent``; returns the delta (the new dot, plus the dots of
        the element it supersedes in its context)."""
        check_agent(agent)
        payload = encode_value(element)
        existing = self._store.dots_of(_SET_KEY, payload)
        if not existing and len(self._store.elements(_SET_KEY)) >= MAX_SET_ELEMENTS:
            raise StateError(f"an OR-set holds at most {MAX_SET_ELEMENTS} elements")
        if agent not in self._cc.vv and len(self._cc.agents()) >= MAX_AGENTS:
            raise StateError(f"an OR-set carries at most {MAX_AGENTS} agents")
        dot = self._cc.next_dot(agent)
        delta = ORSet()
        delta._store.insert(_SET_KEY, payload, dot)
        delta._cc.cloud = {dot, *existing}
        delta._cc.compact()
        self.merge(delta)
        return delta

    def remove(self, element: Value) -> ORSet:
        """Remove ``element`` as observed here; returns the delta (the removed dots, in
        its context only). Removing an absent element is a no-op (empty delta)."""
        delta = ORSet()
        delta._cc.cloud = set(self._store.dots_of(_SET_KEY, encode_value(element)))
        delta._cc.compact()
        self.merge(delta)
        return delta

    def __contains__(self, element: object) -> bool:
        try:
            payload = encode_value(element)
        except InvalidArgument:
            return False
        return payload in self._store.elements(_SET_KEY)

    def __len__(self) -> int:
        return len(self._store.elements(_SET_KEY))

    def value(self) -> list[Value]:
        """The elements, sorted (see :func:`value_sort_key`)."""
        return sorted_values(self._store.elements(_SET_KEY))

    def context(self) -> CausalContext:
        """A copy of the causal context."""
        return self._cc.copy()

    def dot_count(self) -> int:
        """Dots held (the set's metadata besides its context)."""
        return len(self._store.index)

    def merge(self, other: ORSet) -> bool:
        """Causal join with ``other``; whether anything changed."""
        changed = self._store.join(other._store, self._cc, other._cc, _ignore)
        return self._cc.merge(other._cc) or changed

    def copy(self) -> ORSet:
        clone = ORSet()
        clone._store = self._store.copy()
        clone._cc = self._cc.copy()
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ORSet) and (self._store, self._cc) == (other._store, other._cc)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ORSet({self.value()!r})"

    def encode(self) -> bytes:
        """``[agent table, vector, cloud, [element, dots, ...]]``."""
        table = AgentTable(self._cc.agents())
        vector, cloud = self._cc.encode_parts(table.index)
        return cbor.encode([table.names, vector, cloud, self._store.encode_key(_SET_KEY, table)])

    @classmethod
    def decode(cls, data: bytes) -> ORSet:
        """Inverse of :meth:`encode`; :class:`ProtocolViolation` on bad input."""
        names, vector, cloud, elements = fixed_list(decode_body(data, 3), 4, "an OR-set")
        agents = decode_agents(names, _MAX_AGENTS_IN)
        orset = cls()
        orset._cc = CausalContext.decode_parts(vector, cloud, agents, _MAX_AGENTS_IN)
        if elements:
            orset._store.decode_key(_SET_KEY, elements, agents, orset._cc)
        return orset


def _ignore(key: str) -> None:
    """A ``note`` callback that does nothing."""


# --------------------------------------------------------------------------- PN-counter


class PNCounter:
    """A counter of per-agent increments and decrements."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}

    def increment(self, agent: str, n: int = 1) -> PNCounter:
        """Add ``n`` (negative: subtract) as ``agent``; returns the delta (``agent``'s new
        totals). Totals beyond :data:`MAX_COUNTER` raise InvalidArgument."""
        delta = self.delta_for(agent, n)
        self.merge(delta)
        return delta

    def delta_for(self, agent: str, n: int) -> PNCounter:
        """The delta :meth:`increment` would produce, without applying it."""
        check_agent(agent)
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidArgument(f"counters change by an integer, not {n!r}")
        if agent not in self._counts and len(self._counts) >= MAX_AGENTS:
            raise StateError(f"a counter carries at most {MAX_AGENTS} agents")
        up, down = self._counts.get(agent, (0, 0))
        up, down = (up + n, down) if n >= 0 else (up, down - n)
        if up > MAX_COUNTER or down > MAX_COUNTER:
            raise InvalidArgument(f"a counter's per-agent total cannot pass {MAX_COUNTER}")
        delta = PNCounter()
        delta._counts[agent] = (up, down)
        return delta

    def value(self) -> int:
        """Sum of increments minus sum of decrements."""
        return sum(up - down for up, down in self._counts.values())

    def counts(self) -> dict[str, tuple[int, int]]:
        """agent -> (increments, decrements), a copy."""
        return dict(self._counts)

    def merge(self, other: PNCounter) -> bool:
        """Per-agent maximum of both totals; whether anything changed."""
        mine = self._counts
        changed = False
        for agent, (up, down) in other._counts.items():
            old = mine.get(agent)
            if old is None:
                mine[agent] = (up, down)
                changed = True
            elif up > old[0] or down > old[1]:
                mine[agent] = (max(up, old[0]), max(down, old[1]))
                changed = True
        return changed

    def copy(self) -> PNCounter:
        clone = PNCounter()
        clone._counts = dict(self._counts)
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PNCounter) and self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PNCounter({self.value()})"

    def encode_flat(self, index: Mapping[str, int]) -> list[int]:
        """``[agent index, increments, decrements, ...]`` sorted by agent index."""
        rows = sorted((index[a], up, down) for a, (up, down) in self._counts.items())
        return [x for row in rows for x in row]

    @classmethod
    def decode_flat(cls, item: object, agents: list[str]) -> PNCounter:
        """Inverse of :meth:`encode_flat` for untrusted input."""
        flat = list_or_bad(item, len(agents), "counter entries", multiple=3)
        counter = cls()
        for i in range(0, len(flat), 3):
            agent = agent_at(agents, flat[i])
            if agent in counter._counts:
                raise bad("agent repeated in a counter")
            counter._counts[agent] = (
                int_or_bad(flat[i + 1], 0, MAX_COUNTER, "increments"),
                int_or_bad(flat[i + 2], 0, MAX_COUNTER, "decrements"),
            )
        return counter

    def encode(self) -> bytes:
        """``[agent table, flat entries]`` (see :meth:`encode_flat`)."""
        table = AgentTable(self._counts)
        return cbor.encode([table.names, self.encode_flat(table.index)])

    @classmethod
    def decode(cls, data: bytes) -> PNCounter:
        """Inverse of :meth:`encode`; :class:`ProtocolViolation` on bad input."""
        names, flat = fixed_list(decode_body(data, 2), 2, "a counter")
        return cls.decode_flat(flat, decode_agents(names, _MAX_AGENTS_IN))

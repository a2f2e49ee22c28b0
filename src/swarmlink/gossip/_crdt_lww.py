"""Last-writer-wins CRDTs: :class:`LWWRegister` and :class:`LWWMap`.

Entries are ``(stamp, value encoding)``; the greater pair wins, so concurrent writes
are ordered by their :class:`~._crdt_clock.Timestamp` (wall time, logical counter,
then agent), and two entries with one stamp, which only an agent reusing a stamp can
produce, still merge deterministically. A map's delete writes a *tombstone* (an empty
encoding, below every value), so a delete and a concurrent set race by stamp like two
sets. Tombstones count towards :data:`~._crdt_types.MAX_KEYS` and are not collected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import StateError
from ..wire import cbor
from ._crdt_clock import (
    MAX_HLC_LOGICAL,
    MAX_HLC_WALL,
    AgentTable,
    Timestamp,
    agent_at,
    decode_agents,
)
from ._crdt_types import DECODE_HEADROOM, MAX_AGENTS, MAX_KEYS, decode_body, fixed_list
from ._crdt_values import (
    Value,
    agent_or_bad,
    bad,
    check_key,
    decode_value,
    encode_value,
    int_or_bad,
    key_or_bad,
    list_or_bad,
    value_or_bad,
)

__all__ = ["LWWMap", "LWWRegister"]

_MAX_KEYS_IN = MAX_KEYS * DECODE_HEADROOM
_MAX_AGENTS_IN = MAX_AGENTS * DECODE_HEADROOM
_TOMBSTONE = b""


def _wins(stamp: Timestamp, payload: bytes, old: tuple[Timestamp, bytes] | None) -> bool:
    """Whether ``(stamp, payload)`` beats the entry ``old``."""
    return old is None or (stamp, payload) > old


class LWWRegister:
    """A last-writer-wins register (see the module docstring)."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[Timestamp, bytes] | None = None

    @property
    def stamp(self) -> Timestamp | None:
        """The stamp of the current value (``None`` if never written)."""
        return None if self._entry is None else self._entry[0]

    def value(self) -> Value:
        """The current value (a fresh copy; ``None`` if never written)."""
        return None if self._entry is None else decode_value(self._entry[1])

    def set(self, value: Value, stamp: Timestamp) -> LWWRegister:
        """Write ``value`` stamped ``stamp`` (from the writer's :class:`Hlc`); returns the
        delta. A stamp below the current one loses at once, as a concurrent write would."""
        delta = LWWRegister()
        delta._entry = (stamp, encode_value(value))
        self.merge(delta)
        return delta

    def merge(self, other: LWWRegister) -> bool:
        """Keep the entry with the greater stamp; whether this register changed."""
        if other._entry is not None and _wins(*other._entry, self._entry):
            self._entry = other._entry
            return True
        return False

    def copy(self) -> LWWRegister:
        clone = LWWRegister()
        clone._entry = self._entry
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LWWRegister) and self._entry == other._entry

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LWWRegister({self.value()!r}, {self.stamp!r})"

    def encode(self) -> bytes:
        """``[]`` if unset, else ``[agent, wall, logical, value encoding]``."""
        if self._entry is None:
            return cbor.encode([])
        stamp, payload = self._entry
        return cbor.encode([stamp.agent, stamp.wall, stamp.logical, payload])

    @classmethod
    def decode(cls, data: bytes) -> LWWRegister:
        """Inverse of :meth:`encode`; :class:`ProtocolViolation` on bad input."""
        item = decode_body(data, 1)
        register = cls()
        if item == []:
            return register
        agent, wall, logical, payload = fixed_list(item, 4, "a register")
        register._entry = (_stamp_or_bad(agent, wall, logical), value_or_bad(payload))
        return register


def _stamp_or_bad(agent: object, wall: object, logical: object) -> Timestamp:
    return Timestamp(
        int_or_bad(wall, 0, MAX_HLC_WALL, "a stamp's wall time"),
        int_or_bad(logical, 0, MAX_HLC_LOGICAL, "a stamp's logical time"),
        agent_or_bad(agent),
    )


class LWWMap:
    """Key -> last-writer-wins entry, with tombstones for deletes."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # key -> (stamp, value encoding or _TOMBSTONE)
        self._entries: dict[str, tuple[Timestamp, bytes]] = {}

    def set(self, key: str, value: Value, stamp: Timestamp) -> LWWMap:
        """Write ``key`` (a new key beyond :data:`MAX_KEYS` raises StateError); the delta."""
        return self._write(check_key(key), stamp, encode_value(value))

    def delete(self, key: str, stamp: Timestamp) -> LWWMap:
        """Write a tombstone for ``key``; returns the delta."""
        return self._write(check_key(key), stamp, _TOMBSTONE)

    def _write(self, key: str, stamp: Timestamp, payload: bytes) -> LWWMap:
        if key not in self._entries and len(self._entries) >= MAX_KEYS:
            raise StateError(f"an LWW map holds at most {MAX_KEYS} keys")
        delta = LWWMap()
        delta._entries[key] = (stamp, payload)
        self.merge(delta)
        return delta

    def get(self, key: str, default: Value = None) -> Value:
        """The value at ``key`` (a fresh copy), or ``default`` if absent or deleted."""
        entry = self._entries.get(key)
        if entry is None or entry[1] == _TOMBSTONE:
            return default
        return decode_value(entry[1])

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key) if isinstance(key, str) else None
        return entry is not None and entry[1] != _TOMBSTONE

    def __len__(self) -> int:
        return sum(1 for _, payload in self._entries.values() if payload != _TOMBSTONE)

    def keys(self) -> list[str]:
        """Visible keys, sorted."""
        return sorted(k for k, (_, p) in self._entries.items() if p != _TOMBSTONE)

    def value(self) -> dict[str, Value]:
        """Visible entries as a plain dict (fresh copies), sorted by key."""
        return {k: decode_value(self._entries[k][1]) for k in self.keys()}

    def stamp(self, key: str) -> Timestamp | None:
        """The stamp of ``key``'s entry, tombstone or not."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def entry(self, key: str) -> tuple[Timestamp, bytes | None] | None:
        """``(stamp, value encoding)`` of ``key``; the encoding is ``None`` for a
        tombstone; ``None`` if the key was never written."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        return entry[0], (None if entry[1] == _TOMBSTONE else entry[1])

    def put(self, key: str, stamp: Timestamp, payload: bytes | None) -> None:
        """Store an entry as is (``payload`` already canonical; ``None`` for a tombstone),
        for building deltas."""
        self._entries[key] = (stamp, _TOMBSTONE if payload is None else payload)

    def entry_count(self) -> int:
        """Entries, tombstones included."""
        return len(self._entries)

    def all_keys(self) -> Iterator[str]:
        """Every key with an entry, tombstones included (unordered)."""
        return iter(self._entries)

    def merge(self, other: LWWMap) -> bool:
        """Entry-wise LWW merge; whether anything changed."""
        return bool(self.merge_keys(other))

    def merge_keys(self, other: LWWMap, note: Callable[[str], None] | None = None) -> list[str]:
        """Entry-wise LWW merge; the keys whose entry changed. ``note(key)`` is called
        before a key changes."""
        mine = self._entries
        changed = []
        for key, entry in other._entries.items():
            if _wins(*entry, mine.get(key)):
                if note is not None:
                    note(key)
                mine[key] = entry
                changed.append(key)
        return changed

    def copy(self) -> LWWMap:
        clone = LWWMap()
        clone._entries = dict(self._entries)
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LWWMap) and self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LWWMap({self.value()!r})"

    def agents(self) -> frozenset[str]:
        """Agents named by the stamps."""
        return frozenset(stamp.agent for stamp, _ in self._entries.values())

    def encode_flat(self, index: Mapping[str, int]) -> list[Any]:
        """``[key, agent index, wall, logical, value encoding or null, ...]`` by key."""
        out: list[Any] = []
        for key in sorted(self._entries):
            stamp, payload = self._entries[key]
            out += [key, index[stamp.agent], stamp.wall, stamp.logical, payload or None]
        return out

    @classmethod
    def decode_flat(cls, item: object, agents: list[str]) -> LWWMap:
        """Inverse of :meth:`encode_flat` for untrusted input."""
        flat = list_or_bad(item, _MAX_KEYS_IN, "LWW entries", multiple=5)
        lww = cls()
        for i in range(0, len(flat), 5):
            key, agent, wall, logical, payload = flat[i : i + 5]
            key = key_or_bad(key)
            if key in lww._entries:
                raise bad("key repeated in LWW entries")
            stamp = _stamp_or_bad(agent_at(agents, agent), wall, logical)
            lww._entries[key] = (stamp, _TOMBSTONE if payload is None else value_or_bad(payload))
        return lww

    def encode(self) -> bytes:
        """``[agent table, flat entries]`` (see :meth:`encode_flat`)."""
        table = AgentTable(self.agents())
        return cbor.encode([table.names, self.encode_flat(table.index)])

    @classmethod
    def decode(cls, data: bytes) -> LWWMap:
        """Inverse of :meth:`encode`; :class:`ProtocolViolation` on bad input."""
        agents, flat = fixed_list(decode_body(data, 2), 2, "an LWW map")
        return cls.decode_flat(flat, decode_agents(agents, _MAX_AGENTS_IN))

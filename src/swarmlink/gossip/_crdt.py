"""Conflict-free replicated data types for swarm-wide shared state (sans-I/O).

Everything here is plain data: no clock reads, no randomness, no I/O. Time reaches the
LWW types as an explicit ``now`` (seconds) through a :class:`Hlc`.

The implementation is split into private modules, re-exported here:

* :mod:`._crdt_values`: the JSON-like :data:`Value` model and its canonical encoding,
  key and agent-name checks;
* :mod:`._crdt_clock`: dots, :class:`VersionVector`, :class:`CausalContext`,
  :class:`Timestamp` and the hybrid logical clock :class:`Hlc`;
* :mod:`._crdt_types`: :class:`LWWRegister`, :class:`LWWMap`, :class:`ORSet`,
  :class:`PNCounter` and the size limits;
* :mod:`._crdt_state`: the :class:`State` document that ``node.state(name)`` shows.

Conventions shared by every type: ``merge(other)`` works **in place** (standalone types
return whether they changed, :class:`State` returns the keys whose visible value
changed); mutators change the object in place and **return a delta** of the same type
that peers merge like any state; ``value()`` (or ``get``/``to_dict`` for
:class:`State`) returns plain, freshly built values; ``encode()``/``decode()`` use
deterministic CBOR, and decoding raises only
:class:`~swarmlink.errors.ProtocolViolation` (code ``MALFORMED``) on bad input.
"""

from __future__ import annotations

from ._crdt_clock import (
    MAX_CLOUD_DOTS,
    MAX_HLC_LOGICAL,
    MAX_HLC_WALL,
    MAX_SEQUENCE,
    CausalContext,
    Dot,
    Hlc,
    Timestamp,
    VersionVector,
)
from ._crdt_lww import LWWMap, LWWRegister
from ._crdt_state import Kind, Op, State
from ._crdt_types import (
    DECODE_HEADROOM,
    MAX_AGENTS,
    MAX_COUNTER,
    MAX_ENCODED_STATE,
    MAX_KEYS,
    MAX_SET_ELEMENTS,
    MAX_STATE_ITEMS,
    MAX_STATE_SIZE,
    ORSet,
    PNCounter,
)
from ._crdt_values import (
    MAX_AGENT_LENGTH,
    MAX_KEY_LENGTH,
    MAX_VALUE_DEPTH,
    MAX_VALUE_SIZE,
    Value,
    check_agent,
    check_key,
    decode_value,
    encode_value,
    value_sort_key,
)

__all__ = [
    "DECODE_HEADROOM",
    "MAX_AGENTS",
    "MAX_AGENT_LENGTH",
    "MAX_CLOUD_DOTS",
    "MAX_COUNTER",
    "MAX_ENCODED_STATE",
    "MAX_HLC_LOGICAL",
    "MAX_HLC_WALL",
    "MAX_KEYS",
    "MAX_KEY_LENGTH",
    "MAX_SEQUENCE",
    "MAX_SET_ELEMENTS",
    "MAX_STATE_ITEMS",
    "MAX_STATE_SIZE",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_SIZE",
    "CausalContext",
    "Dot",
    "Hlc",
    "Kind",
    "LWWMap",
    "LWWRegister",
    "ORSet",
    "Op",
    "PNCounter",
    "State",
    "Timestamp",
    "Value",
    "VersionVector",
    "check_agent",
    "check_key",
    "decode_value",
    "encode_value",
    "value_sort_key",
]

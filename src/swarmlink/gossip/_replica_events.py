"""Events of the replicated-state core (:class:`~._replica.Replicas`), drained with
``Replicas.events()``."""

from __future__ import annotations

from dataclasses import dataclass

from ._crdt_values import Value

__all__ = ["ReplicaEvent", "StateChanged", "StateCreated"]


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The visible value of one key of a named state changed.

    One event per key whose plain value (:meth:`~._crdt_state.State.get`) differs after
    a local operation or a merge; merges that only add metadata, or that bring a value
    already shown, raise none.
    """

    #: The state's name (as in ``node.state(name)``).
    name: str
    #: The key that changed.
    key: str
    #: The key's plain value after the change: a register's value, a set's sorted list
    #: of elements, a counter's ``int``; ``None`` when ``deleted``.
    value: Value
    #: Whether the key now shows nothing (a register deleted, a set emptied).
    deleted: bool
    #: Where the change came from: the local agent ID for a local operation; for a
    #: delta, the agent the runtime names as its author (the signer of the pub/sub
    #: message); for a state received by anti-entropy, the peer that sent it, which
    #: relays the work of any number of writers and is not necessarily their author.
    origin: str


@dataclass(frozen=True, slots=True)
class StateCreated:
    """A peer brought a state this node did not hold (by a delta or by anti-entropy); it
    is now replicated here. The runtime should start receiving its deltas (subscribe to
    its topic). Comes before the :class:`StateChanged` events of the same merge."""

    #: The state's name.
    name: str
    #: The peer it came from (the delta's author, or the anti-entropy peer).
    origin: str


ReplicaEvent = StateChanged | StateCreated
"""Any event :meth:`~._replica.Replicas.events` returns."""
